"""The Snow cover dock driven in a QGIS main window: real sample, background task, styled layer, screenshot.

The screenshot is saved as ``test-artifacts/snow_dock.png`` (git-ignored).
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import REPO_ROOT, render_canvas, show_dock, wait_for
from test_snow_engine import _bright_cloud_mask, read, sen12

ARTIFACTS = REPO_ROOT / "test-artifacts"
SNOW, NO_SNOW, CLOUD, NODATA = 100, 0, 205, 255

pytestmark = pytest.mark.gui


@pytest.fixture()
def dock(qgis_iface):
    from topoclear.ui.snow_dock import SnowDock

    yield from show_dock(qgis_iface, SnowDock)


def test_dock_maps_snow_on_a_real_sample(dock, qgis_iface, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    source = sen12("s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139")
    mask_path = _bright_cloud_mask(source, tmp_path / "cloud_mask.tif")
    image = QgsRasterLayer(str(source), "S2 136_p139 (cloudy, Tatarstan)")
    mask = QgsRasterLayer(str(mask_path), "cloud mask")
    assert image.isValid() and mask.isValid()
    QgsProject.instance().addMapLayers([mask, image])
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(image.crs())
    canvas.setExtent(image.extent())

    dock.layer_combo.setLayer(image)
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("threshold"))
    assert dock.threshold_box.isVisibleTo(dock) and not dock.lis_box.isVisibleTo(dock)
    dock.cloud_mode.setCurrentIndex(dock.cloud_mode.findData("raster"))
    dock.cloud_combo.setLayer(mask)
    dock.output_widget.setFilePath(str(tmp_path / "dock_snow.tif"))
    dock.whole_layer.setChecked(True)

    dock.run_button.click()
    assert not dock.run_button.isEnabled() and dock.cancel_button.isEnabled()
    ok, message = wait_for(dock.runFinished)
    assert ok, message
    assert dock.run_button.isEnabled() and dock.progress.value() == 100

    layer = QgsProject.instance().mapLayer(dock.last_layer_id)
    assert layer is not None and layer.name() == "Snow map - S2 136_p139 (cloudy, Tatarstan)"
    assert layer.source() == str(tmp_path / "dock_snow.tif")
    assert layer in canvas.layers()
    renderer = layer.renderer()
    assert renderer.type() == "paletted"
    assert {c.value: c.label for c in renderer.classes()} == {0: "No snow (0)", 100: "Snow (100)", 205: "Cloud (205)"}
    classes = read(tmp_path / "dock_snow.tif")
    valid = classes != NODATA
    snow_pct = 100 * float((classes[valid] == SNOW).mean())
    assert 5 < snow_pct < 20 and (classes == CLOUD).mean() > 0.2
    result = dock.last_result
    assert result.snow_percent == pytest.approx(snow_pct)
    assert "km²" in dock.result_label.text() and f"{snow_pct:.2f} %" in dock.result_label.text()
    # the engine's messages reach the dock's log box: the product read and the result
    log = dock.log.toPlainText().splitlines()
    assert log[0].startswith("Sentinel-2 layout: 13-band L1C") and log[-1] == result.summary()

    # the screenshot: snow map over the image in the main window, with the dock
    canvas.setLayers([layer, image])
    render_canvas(canvas)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "snow_dock.png"
    pixmap = qgis_iface.mainWindow().grab()
    assert pixmap.save(str(shot))
    assert shot.stat().st_size > 10_000
    image_of_canvas = canvas.grab().toImage()
    colours = {image_of_canvas.pixel(x, y) for x in range(0, image_of_canvas.width(), 17)
               for y in range(0, image_of_canvas.height(), 17)}
    assert len(colours) >= 3  # snow, no snow and cloud drawn, not a blank canvas

    # the canvas extent: zoom on the upper-left quarter and run again (LIS, no DEM)
    extent = image.extent()
    from qgis.core import QgsRectangle

    canvas.setExtent(QgsRectangle(extent.xMinimum(), extent.center().y(), extent.center().x(), extent.yMaximum()))
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("lis"))
    dock.canvas_extent.setChecked(True)
    dock.output_widget.setFilePath(str(tmp_path / "dock_quarter.tif"))
    dock.run_button.click()
    ok, message = wait_for(dock.runFinished)
    assert ok, message
    shown = canvas.extent()  # the quarter, widened to the canvas's aspect ratio
    import math

    col0 = math.floor((max(shown.xMinimum(), extent.xMinimum()) - extent.xMinimum()) / 10 + 1e-9)
    col1 = math.ceil((min(shown.xMaximum(), extent.xMaximum()) - extent.xMinimum()) / 10 - 1e-9)
    row0 = math.floor((extent.yMaximum() - min(shown.yMaximum(), extent.yMaximum())) / 10 + 1e-9)
    row1 = math.ceil((extent.yMaximum() - max(shown.yMinimum(), extent.yMinimum())) / 10 - 1e-9)
    with rasterio.open(tmp_path / "dock_quarter.tif") as ds:
        assert (ds.width, ds.height) == (col1 - col0, row1 - row0)
        assert 100 < ds.width < 256 and 100 < ds.height < 256
        assert ds.bounds.left == pytest.approx(extent.xMinimum() + 10 * col0)
        assert ds.bounds.top == pytest.approx(extent.yMaximum() - 10 * row0)
    assert "Snowline: none (no DEM)" in dock.result_label.text()
    log = dock.log.toPlainText()
    assert "No DEM given: the snowline and pass 2 of Let It Snow are skipped" in log
    assert log.splitlines()[-1] == dock.last_result.summary() and "snowline none (no DEM)" in log
    del layer, renderer, image, mask


def test_dock_cancel_and_bad_input(dock, qgis_iface, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    # a 13-band stack big enough to be cancelled part-way (1-row windows)
    size = 400
    path = tmp_path / "stack.tif"
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=13, dtype="uint16",
                       crs="EPSG:32632", transform=from_origin(400000, 5100000, 20, 20)) as ds:
        ds.write(np.full((13, size, size), 2000, np.uint16))
    image = QgsRasterLayer(str(path), "stack")
    four = tmp_path / "four.tif"
    with rasterio.open(four, "w", driver="GTiff", width=8, height=8, count=4, dtype="uint16", crs="EPSG:32632",
                       transform=from_origin(400000, 5100000, 20, 20)) as ds:
        ds.write(np.full((4, 8, 8), 2000, np.uint16))
    odd = QgsRasterLayer(str(four), "four bands")
    QgsProject.instance().addMapLayers([image, odd])

    dock.layer_combo.setLayer(image)
    dock._window_rows = 1
    dock.output_widget.setFilePath(str(tmp_path / "cancelled.tif"))
    dock.progress.valueChanged.connect(lambda value: dock.cancel() if value > 0 else None)
    dock.run_button.click()
    ok, message = wait_for(dock.runFinished)
    assert not ok and "Cancelled" in message
    assert not (tmp_path / "cancelled.tif").exists()
    assert dock.run_button.isEnabled() and dock.last_layer_id is None

    dock.layer_combo.setLayer(odd)
    dock.output_widget.setFilePath(str(tmp_path / "odd.tif"))
    dock.run_button.click()
    ok, message = wait_for(dock.runFinished)
    assert not ok and "does not look like a Sentinel-2" in message
    del image, odd


# -- a narrow dock, the layer pickers, tooltips, progress and device ------------------------------------------

def assert_fits_width(dock, qgis_iface, width=300):
    """At ``width`` px (every group expanded): Run and Cancel and every control inside the scroll area's
    viewport, the content no wider than it, no horizontal scroll bar, a vertical one when it overflows."""
    from qgis.core import QgsApplication
    from qgis.gui import QgsCollapsibleGroupBox
    from qgis.PyQt.QtCore import QPoint, Qt
    from qgis.PyQt.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QLabel, QLineEdit,
                                     QProgressBar, QScrollArea, QWidget)

    main = qgis_iface.mainWindow()
    for group in dock.findChildren(QgsCollapsibleGroupBox):
        group.setCollapsed(False)
    main.resizeDocks([dock], [width], Qt.Horizontal)
    for _ in range(20):
        QgsApplication.processEvents()
    assert abs(dock.width() - width) <= 4, dock.width()
    scroll = dock.widget()
    assert isinstance(scroll, QScrollArea)
    viewport, body = scroll.viewport(), scroll.widget()
    assert body.width() <= viewport.width(), f"content {body.width()} px in a {viewport.width()} px viewport"
    assert body.minimumSizeHint().width() <= viewport.width()
    assert not scroll.horizontalScrollBar().isVisible()
    for button in (dock.run_button, dock.cancel_button):
        left = button.mapTo(viewport, QPoint(0, 0)).x()
        assert button.isVisible() and left >= 0 and left + button.width() <= viewport.width()
        assert button.width() >= button.fontMetrics().horizontalAdvance(button.text())
    cut = [f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r} ends at "
           f"{w.mapTo(viewport, QPoint(w.width(), 0)).x()} px"
           for w in body.findChildren(QWidget)
           if w.isVisible() and isinstance(w, (QAbstractButton, QComboBox, QLineEdit, QLabel, QAbstractSpinBox,
                                                 QProgressBar))
           and w.mapTo(viewport, QPoint(w.width(), 0)).x() > viewport.width() + 1]
    assert not cut, cut
    bar = scroll.verticalScrollBar()
    assert body.height() > viewport.height(), "the expanded dock should overflow the window's height"
    assert bar.isVisible() and bar.maximum() >= body.height() - viewport.height() - 2
    # the lowest control is reachable by scrolling
    bar.setValue(bar.maximum())
    QgsApplication.processEvents()
    bottom = dock.log.mapTo(viewport, QPoint(0, dock.log.height())).y()
    assert bottom <= viewport.height() + 1


def _add_layers(*parts_and_names):
    from qgis.core import QgsProject, QgsRasterLayer

    from conftest import data_path

    layers = []
    for parts, name in parts_and_names:
        layer = QgsRasterLayer(str(data_path(*parts)), name)
        assert layer.isValid(), parts
        QgsProject.instance().addMapLayer(layer)
        layers.append(layer)
    return layers


TRIPLET = ("terramind", "{}", "282D_485L_3_3.tif")
BIG_TUJUNGA = (("dem", "bigtujunga.tif"), "DEM Big Tujunga (SRTM 30 m, San Gabriel Mountains)")


def test_dock_fits_300_px(dock, qgis_iface):
    _add_layers(BIG_TUJUNGA, ((TRIPLET[0], "S2L2A", TRIPLET[2]), "TerraMind S2L2A 282D_485L_3_3 (Sentinel-2 L2A)"))
    assert_fits_width(dock, qgis_iface, 300)
    # the whole text of a shortened title is in its tooltip
    from qgis.gui import QgsCollapsibleGroupBox

    for group in dock.findChildren(QgsCollapsibleGroupBox):
        if group.title().endswith("…"):
            assert group.toolTip().startswith(group.property("topoclear_full_text"))


def test_layer_scores_on_real_samples():
    from qgis.core import QgsRasterLayer

    from conftest import data_path
    from topoclear.ui.task_dock import dem_score, layer_facts, sentinel2_score

    ben = ("bigearthnet", "BigEarthNet-S2-Example", "S2B_MSIL2A_20180204T94161_57_38")
    samples = {  # path -> (looks like Sentinel-2, looks like a DEM)
        (TRIPLET[0], "S2L2A", TRIPLET[2]): (True, False),
        (TRIPLET[0], "S1RTC", TRIPLET[2]): (False, False),
        (TRIPLET[0], "DEM", TRIPLET[2]): (False, True),
        ("dem", "bigtujunga.tif"): (False, True),
        ben + ("S2B_MSIL2A_20180204T94161_57_38_B03.tif",): (True, False),
        ("sen12ms-cr", "s1", "ROIs1868_summer_s1_19_p30.tif"): (False, False),
        ("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif"): (True, False),
    }
    for parts, (s2, dem) in samples.items():
        layer = QgsRasterLayer(str(data_path(*parts)), parts[-1])  # named after the file only
        facts = layer_facts(layer)
        assert (sentinel2_score(*facts) > 0, dem_score(*facts) > 0) == (s2, dem), (parts, facts)
    # names alone: a single-band layer named like a DEM, a Sentinel-1 pair, an anonymous 4-band stack
    assert dem_score("srtm_alps", 1) and not sentinel2_score("srtm_alps", 1)
    assert not dem_score("T32TLR_20220105_B03_20m.jp2", 1) and sentinel2_score("T32TLR_20220105_B03_20m.jp2", 1)
    assert not sentinel2_score("scene VV VH", 2) and not dem_score("band", 1)
    assert sentinel2_score("stack", 4) and sentinel2_score("stack", 13) > sentinel2_score("stack", 4)
    assert sentinel2_score("bands", 3, ["B02", "B03", "B04"]) > 0


def test_pickers_preselect_what_looks_right(dock, qgis_iface):
    from qgis.core import QgsProject

    # the DEM first: the Sentinel-2 picker must not take it (it used to take the first raster)
    dem, s1 = _add_layers(BIG_TUJUNGA, ((TRIPLET[0], "S1RTC", TRIPLET[2]), "S1 282D_485L_3_3"))
    assert dock.layer_combo.currentLayer() is None
    assert dock.dem_combo.currentLayer() is dem
    (s2,) = _add_layers(((TRIPLET[0], "S2L2A", TRIPLET[2]), "TerraMind 282D_485L_3_3"))
    # the image lies far from Big Tujunga: the DEM picker lets go of it and takes a DEM that overlaps the image
    assert dock.layer_combo.currentLayer() is s2 and dock.dem_combo.currentLayer() is None
    (near,) = _add_layers(((TRIPLET[0], "DEM", TRIPLET[2]), "TerraMind DEM 282D_485L_3_3"))
    assert dock.dem_combo.currentLayer() is near
    # a new dock on the same project picks the same
    from topoclear.ui.snow_dock import SnowDock

    other = SnowDock(None)
    assert other.layer_combo.currentLayer() is s2 and other.dem_combo.currentLayer() is near
    other.deleteLater()
    # the user's choice is kept: emptied by the user, the DEM picker stays empty when layers come and go
    index = dock.dem_combo.findText("")  # the empty entry
    dock.dem_combo.setCurrentIndex(index)
    dock.dem_combo.activated.emit(index)
    _add_layers(((TRIPLET[0], "DEM", TRIPLET[2]), "TerraMind DEM 282D_485L_3_3 again"))
    assert dock.dem_combo.currentLayer() is None
    # a removed Sentinel-2 layer: the picker falls back on nothing rather than on the DEM or Sentinel-1
    QgsProject.instance().removeMapLayer(s2.id())
    assert dock.layer_combo.currentLayer() is None
    del dem, s1, s2, near


def test_every_control_has_a_tooltip(dock):
    from qgis.PyQt.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QFormLayout, QLineEdit,
                                     QListWidget, QPlainTextEdit, QProgressBar)

    body = dock.widget().widget()

    def tip(widget) -> str:  # Qt shows the nearest tooltip up the parents
        while widget is not None and widget is not body:
            if widget.toolTip():
                return widget.toolTip()
            widget = widget.parentWidget()
        return ""

    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QListWidget, QPlainTextEdit, QProgressBar)
    missing = [f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}" for w in body.findChildren(kinds)
               if not tip(w)]
    assert not missing, missing
    for form in body.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.LabelRole)
            if item is not None and item.widget() is not None:
                assert item.widget().toolTip(), item.widget().text()
    assert dock.run_button.toolTip() and dock.cancel_button.toolTip() and dock.progress.toolTip()
    assert dock.output_widget.toolTip() and dock.log.toolTip()
    # long menu entries: the whole entry as the item's tooltip
    from qgis.PyQt.QtCore import Qt

    for i in range(dock.method_combo.count()):
        assert dock.method_combo.itemData(i, Qt.ToolTipRole) == dock.method_combo.itemText(i)


def test_progress_stays_at_100_after_a_run_and_restarts_at_0(dock, qgis_iface, tmp_path):
    import time

    from qgis.core import QgsApplication

    ben = ("bigearthnet", "BigEarthNet-S2-Example", "S2B_MSIL2A_20180204T94161_57_38")
    (image,) = _add_layers((ben + ("S2B_MSIL2A_20180204T94161_57_38_B03.tif",), "BigEarthNet B03"))
    assert dock.layer_combo.currentLayer() is image  # preselected: a Sentinel-2 band file
    values = []
    dock.progress.valueChanged.connect(values.append)
    for run in range(2):
        values.clear()
        dock.output_widget.setFilePath(str(tmp_path / f"run{run}.tif"))
        dock.run_button.click()
        assert dock.progress.value() == 0
        ok, message = wait_for(dock.runFinished)
        assert ok, message
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # late reports of the finished task must not move the bar
            QgsApplication.processEvents()
        assert dock.progress.value() == 100 and values[-1] == 100
        if run == 1:
            assert values[0] == 0  # the second run started from 0 %
    dock.progress.valueChanged.disconnect(values.append)
    del image


def test_device_line_is_shown_when_the_dock_is_first_shown(dock):
    from qgis.core import QgsApplication

    for _ in range(5):
        QgsApplication.processEvents()
    line = dock.runs_on_label.text()
    assert line.startswith("Runs on: CPU (") and "GPU" in line and dock.runs_on_label.toolTip()


def test_device_summary_and_the_message_log():
    from topoclear.qgis_common.log import log_info_once
    from topoclear.ui.task_dock import device_summary

    line, details = device_summary()
    assert line.startswith("Runs on: ") and ("CPU (" in line or "GPU cuda:0" in line)
    assert "PyTorch" in line and "PyTorch" in details and "ONNX Runtime" in details
    assert device_summary() == (line, details)  # cached
    assert not log_info_once("device", line)  # already logged once
    assert log_info_once("test-key", "a") and not log_info_once("test-key", "a") and log_info_once("test-key", "b")

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

"""The Cloud removal dock in a QGIS main window: its fit at 300 px, its defaults, the methods and the inputs they
read, runs on the whole layer and on the canvas extent, with other dates, the background task, device, result
on the canvas, cancel.

Runs on the real SEN12MS-CR patch 19_p30 (Sentinel-2 L1C + its Sentinel-1), with the fill or a small DSen2-CR
whose random weights were saved through ``engine.checkpoints``, and on two dates of the real SEN12MS-CR-TS
series cut to 96 px. The screenshot is saved as ``test-artifacts/cloud_dock.png`` (git-ignored).
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.windows
import torch

from conftest import REPO_ROOT, data_path, render_canvas, show_dock, wait_for
from topoclear.engine import checkpoints
from topoclear.models import build_model

ARTIFACTS = REPO_ROOT / "test-artifacts"
S2 = ("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif")
S1 = ("sen12ms-cr", "s1", "ROIs1868_summer_s1_19_p30.tif")

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("dsen2cr", features=8, blocks=2)
    model.build_options = {"features": 8, "blocks": 2}
    return str(checkpoints.save_model(tmp_path_factory.mktemp("w") / "dsen2cr_small", model)[0])


@pytest.fixture()
def dock(qgis_iface):
    from topoclear.ui.cloud_dock import CloudDock

    yield from show_dock(qgis_iface, CloudDock)


def test_dock_removes_clouds_in_the_background(dock, qgis_iface, weights, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    image = QgsRasterLayer(str(data_path(*S2)), "S2 19_p30 (cloudy, Nigeria)")
    radar = QgsRasterLayer(str(data_path(*S1)), "S1 19_p30")
    assert image.isValid() and radar.isValid()
    QgsProject.instance().addMapLayers([radar, image])
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(image.crs())
    canvas.setExtent(image.extent())

    dock.s2_combo.setLayer(image)
    dock.s1_combo.setLayer(None)
    dock.dem_combo.setLayer(None)
    dock.model_combo.setCurrentIndex(dock.model_combo.findData("dsen2cr"))
    assert dock.s1_combo.isEnabled() and not dock.dem_combo.isEnabled()  # DSen2-CR reads radar, not terrain
    assert "optical-only variant" in dock.model_info.text()
    dock.s1_combo.setLayer(radar)
    dock.model_combo.setCurrentIndex(dock.model_combo.findData("dsen2cr"))
    info = dock.model_info.text()  # the bands of the shipped weights, which the user's weights below replace
    assert "Sentinel-2 (10 bands: B2" in info and "Shipped weights: dsen2cr.safetensors" in info
    dock.weights_widget.setFilePath(weights)
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cpu"))
    dock.tile_spin.setValue(96)
    dock.output_widget.setFilePath(str(tmp_path / "dock_clear.tif"))

    dock.run_button.click()
    assert not dock.run_button.isEnabled() and dock.cancel_button.isEnabled()
    ok, message = wait_for(dock.runFinished)
    assert ok, message
    assert dock.run_button.isEnabled() and dock.progress.value() == 100
    assert dock.device_label.text().startswith("Device: cpu")
    assert "Device: cpu" in dock.log.toPlainText() and "Tiling:" in dock.log.toPlainText()

    layer = QgsProject.instance().mapLayer(dock.last_layer_id)
    assert layer is not None and layer.name() == "Cloud-free - S2 19_p30 (cloudy, Nigeria)"
    assert layer.source() == str(tmp_path / "dock_clear.tif") and layer in canvas.layers()
    renderer = layer.renderer()
    assert renderer.type() == "multibandcolor"
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (4, 3, 2)
    report = dock.last_report
    assert 0 < report.cloud_pixels < report.valid_pixels == 256 * 256 and report.kept_pixels > 0
    with rasterio.open(tmp_path / "dock_clear.tif") as out, rasterio.open(data_path(*S2)) as src:
        assert out.profile["dtype"] == src.profile["dtype"] and out.count == 13 and out.transform == src.transform

    canvas.setLayers([layer, image])
    render_canvas(canvas)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "cloud_dock.png"
    assert qgis_iface.mainWindow().grab().save(str(shot))
    assert shot.stat().st_size > 10_000
    drawn = canvas.grab().toImage()
    colours = {drawn.pixel(x, y) for x in range(0, drawn.width(), 17) for y in range(0, drawn.height(), 17)}
    assert len(colours) > 10  # an image, not a blank canvas
    del layer, renderer, image, radar


def test_dock_cancel_leaves_nothing_and_errors_are_shown(dock, qgis_iface, weights, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer

    # a larger scene in many small tiles, cancelled at the first progress step
    with rasterio.open(data_path(*S2)) as ds:
        data, profile = ds.read(), ds.profile
    big = tmp_path / "big.tif"
    with rasterio.open(big, "w", **dict(profile, width=512, height=512)) as ds:
        ds.write(np.tile(data, (1, 2, 2)))
    with rasterio.open(data_path(*S1)) as ds:
        s1, s1_profile = ds.read(), ds.profile
    big_s1 = tmp_path / "big_s1.tif"
    with rasterio.open(big_s1, "w", **dict(s1_profile, width=512, height=512)) as ds:
        ds.write(np.tile(s1, (1, 2, 2)))
    image, radar = QgsRasterLayer(str(big), "big"), QgsRasterLayer(str(big_s1), "big s1")
    QgsProject.instance().addMapLayers([image, radar])
    dock.s2_combo.setLayer(image)
    dock.s1_combo.setLayer(radar)
    dock.model_combo.setCurrentIndex(dock.model_combo.findData("dsen2cr"))
    dock.weights_widget.setFilePath(weights)
    dock.tile_spin.setValue(48)
    dock.batch_spin.setValue(1)
    dock.output_widget.setFilePath(str(tmp_path / "cancelled.tif"))
    dock.progress.valueChanged.connect(lambda value: dock.cancel() if value > 0 else None)
    dock.run_button.click()
    ok, message = wait_for(dock.runFinished)
    assert not ok and "Cancelled" in message
    assert not (tmp_path / "cancelled.tif").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert dock.run_button.isEnabled() and dock.last_layer_id is None
    dock.progress.valueChanged.disconnect()

    # weights of the SAR model without a Sentinel-1 layer: the message says what to do
    dock.s1_combo.setLayer(None)
    dock.model_combo.setCurrentIndex(dock.model_combo.findData("dsen2cr"))
    dock.output_widget.setFilePath(str(tmp_path / "nosar.tif"))
    dock.run_button.click()
    ok, message = wait_for(dock.runFinished)
    assert not ok and "trained with Sentinel-1" in message
    del image, radar


def test_dock_fits_300_px(dock, qgis_iface):
    """At the default dock width every control is reachable by scrolling vertically only, and the device
    line is shown once the dock is up."""
    from qgis.core import QgsApplication

    from test_snow_dock import BIG_TUJUNGA, TRIPLET, _add_layers, assert_fits_width

    layers = _add_layers(BIG_TUJUNGA, ((TRIPLET[0], "S2L2A", TRIPLET[2]), "TerraMind S2L2A 282D_485L_3_3 (Sentinel-2 L2A)"),
                ((TRIPLET[0], "S1RTC", TRIPLET[2]), "TerraMind S1RTC 282D_485L_3_3 (Sentinel-1 RTC)"),
                (TS[0], "SEN12MS-CR-TS ROIs2017 146 patch 0, 2018-01-06 (Sentinel-2 L1C, another date)"))
    dock.s2_combo.setLayer(layers[1])
    assert dock.dates_group.layers.count() == 1 and not dock.multi_date()
    assert_fits_width(dock, qgis_iface, 300)
    for _ in range(5):
        QgsApplication.processEvents()
    line = dock.runs_on_label.text()
    assert line.startswith("Runs on: ") and "PyTorch" in line and "checking" not in line
    assert "PyTorch" in dock.runs_on_label.toolTip()


def _tooltipless(dock):
    """The dock's controls without a tooltip."""
    from qgis.gui import QgsFileWidget
    from qgis.PyQt.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QGroupBox, QLineEdit,
                                     QListWidget, QProgressBar, QPlainTextEdit, QToolButton)

    body = dock.widget().widget()
    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QgsFileWidget, QLineEdit, QListWidget, QProgressBar,
             QPlainTextEdit, QGroupBox)
    missing, checked = [], 0
    for widget in body.findChildren(kinds):
        parent = widget.parentWidget()
        if isinstance(parent, (QAbstractSpinBox, QComboBox, QgsFileWidget)) or \
                (isinstance(parent, QGroupBox) and isinstance(widget, QToolButton)):
            continue  # the parts of a spin box, menu or file field, a group's collapse button
        checked += 1
        if not widget.toolTip():
            missing.append(f"{type(widget).__name__} {getattr(widget, 'text', lambda: '')()!r}")
    assert checked > 25, checked
    return missing


def test_dock_defaults_are_automatic_and_inputs_follow_the_method(dock, qgis_iface):
    from qgis.core import QgsProject, QgsRasterLayer

    from topoclear.engine.clouds.methods.catalogue import removal_methods
    from topoclear.qgis_common.cloud_choices import method_inputs

    image = QgsRasterLayer(str(data_path(*S2)), "S2 19_p30 (cloudy, Nigeria)")
    other = QgsRasterLayer(str(data_path(*TS[0])), "S2 2018-01-06")
    radar = QgsRasterLayer(str(data_path(*S1)), "S1 19_p30")
    QgsProject.instance().addMapLayers([radar, image, other])
    assert dock.s2_combo.currentLayer() is not None and dock.s2_combo.currentLayer().id() != radar.id()
    assert dock.model_combo.currentData() == "auto" and dock.model_combo.currentIndex() == 0
    assert dock.mask_mode.currentData() == "auto" and dock.dates_group.method.currentData() == "automatic"
    assert dock.whole_layer.isChecked() and not dock.canvas_extent.isChecked() and not dock.multi_date()
    assert [m.key for m in removal_methods()] == dock.available_models()  # the catalogue, in its order
    assert dock.s1_combo.isEnabled() and dock.dem_combo.isEnabled()  # automatic may choose a method reading them
    for index in range(dock.model_combo.count()):
        dock.model_combo.setCurrentIndex(index)
        reads = method_inputs(dock.model_combo.currentData())
        assert (dock.s1_combo.isEnabled(), dock.dem_combo.isEnabled()) == (reads["s1"], reads["dem"])
    dock.model_combo.setCurrentIndex(dock.model_combo.findData("fill"))
    assert not dock.s1_combo.isEnabled() and not dock.dem_combo.isEnabled() and dock.fill_distance.isEnabled()
    # the other dates: the project's other Sentinel-2 layers only (not the target, not the radar)
    listed = dock.dates_group.listed_ids()
    dock.s2_combo.setLayer(image)
    assert dock.dates_group.listed_ids() == [other.id()], listed
    dock.dates_group.check([other])
    assert dock.multi_date() and not dock.model_combo.isEnabled() and not dock.fill_distance.isEnabled()
    assert dock.s1_combo.isEnabled() and not dock.dem_combo.isEnabled()  # no multi-date method reads terrain
    dock.dates_group.method.setCurrentIndex(dock.dates_group.method.findData("timeseries_fill"))
    assert not dock.s1_combo.isEnabled()
    dock.dates_group.check([])
    assert not dock.multi_date() and dock.model_combo.isEnabled()
    assert not _tooltipless(dock), _tooltipless(dock)


def _run(dock):
    dock.run_button.click()
    ok, message = wait_for(dock.runFinished)
    assert ok, message
    assert dock.run_button.isEnabled() and dock.progress.value() == 100
    return dock.last_layer_id


def test_dock_runs_on_the_whole_layer_and_on_the_canvas_extent(dock, qgis_iface, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle

    image = QgsRasterLayer(str(data_path(*S2)), "S2 19_p30 (cloudy, Nigeria)")
    QgsProject.instance().addMapLayer(image)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(image.crs())
    canvas.setExtent(image.extent())
    dock.s2_combo.setLayer(image)
    dock.model_combo.setCurrentIndex(dock.model_combo.findData("fill"))
    dock.mask_mode.setCurrentIndex(dock.mask_mode.findData("computed"))
    dock.fill_distance.setValue(2)  # clouds far from clear pixels: no information there, and a warning
    dock.output_widget.setFilePath(str(tmp_path / "whole.tif"))
    whole = QgsProject.instance().mapLayer(_run(dock))
    assert whole.source() == str(tmp_path / "whole.tif") and whole.renderer().type() == "multibandcolor"
    report = dock.last_report
    assert report.model.startswith("Fill") and report.valid_pixels == 256 * 256 and report.cloud_pixels > 0
    with rasterio.open(tmp_path / "whole.tif") as out, rasterio.open(data_path(*S2)) as src:
        assert out.transform == src.transform and out.shape == src.shape and out.count == 13
        bounds, res = src.bounds, src.res[0]
    assert report.no_information_warning  # the run's warning reaches the log and the result
    assert report.no_information_warning in dock.log.toPlainText()
    assert "no information" in dock.result_label.text()

    # the canvas shows the upper-left part of the layer: only that part is cleared, on the layer's pixels
    part = QgsRectangle(bounds.left + 20.5 * res, bounds.top - 100.2 * res, bounds.left + 120.3 * res,
                        bounds.top - 10.7 * res)
    canvas.setExtent(part)
    shown = canvas.extent()
    dock.canvas_extent.setChecked(True)
    dock.output_widget.setFilePath(str(tmp_path / "part.tif"))
    layer = QgsProject.instance().mapLayer(_run(dock))
    assert layer is not None and "Canvas extent" in dock.log.toPlainText()
    with rasterio.open(tmp_path / "part.tif") as out, rasterio.open(data_path(*S2)) as src:
        assert out.count == 13 and out.dtypes == src.dtypes
        assert out.width < src.width and out.height < src.height
        left, top = out.transform.c, out.transform.f
        assert (left - bounds.left) / res == pytest.approx(round((left - bounds.left) / res), abs=1e-6)
        assert (bounds.top - top) / res == pytest.approx(round((bounds.top - top) / res), abs=1e-6)
        assert out.bounds.left <= max(shown.xMinimum(), bounds.left) + 1e-6
        assert out.bounds.right >= min(shown.xMaximum(), bounds.right) - 1e-6
        assert out.bounds.left > shown.xMinimum() - res and out.bounds.right < shown.xMaximum() + res
        window = src.window(*out.bounds)
        clear = src.read(window=window.round_offsets().round_lengths())
        data = out.read()
    observed = dock.last_report.observed_counts
    assert dock.last_report.valid_pixels == data.shape[1] * data.shape[2] and observed is not None
    with rasterio.open(dock.last_report.observed) as codes:
        kept = codes.read(1) == 1
    assert kept.any() and np.array_equal(data[:, kept], clear[:, kept])  # clear pixels unchanged

    # a canvas away from the layer: the message says so, nothing runs
    canvas.setExtent(QgsRectangle(bounds.right + 1000, bounds.top + 1000, bounds.right + 2000, bounds.top + 2000))
    dock.output_widget.setFilePath(str(tmp_path / "away.tif"))
    dock.run_button.click()
    assert "does not overlap" in dock.result_label.text() and not (tmp_path / "away.tif").exists()
    del whole, layer, image


TS = (("sen12ms-cr-ts", "s2_ROIs2017_146_ImgNo_0_2018-01-06_patch_0.tif"),
      ("sen12ms-cr-ts", "s2_ROIs2017_146_ImgNo_1_2018-01-21_patch_0.tif"))


def test_dock_runs_with_another_date(dock, qgis_iface, tmp_path):
    """Two dates of the real SEN12MS-CR-TS series, cut to 96 px: the target cleared from the other date, with
    the source of each pixel added styled beside it."""
    from qgis.core import QgsProject, QgsRasterLayer

    layers = []
    for parts in TS:
        with rasterio.open(data_path(*parts)) as src:
            window = rasterio.windows.Window(80, 80, 96, 96)
            profile = dict(src.profile, width=96, height=96, transform=src.window_transform(window))
            path = tmp_path / parts[-1]
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(window=window))
        layers.append(QgsRasterLayer(str(path), parts[-1][:-4]))
    target, other = layers
    QgsProject.instance().addMapLayers([target, other])
    dock.s2_combo.setLayer(target)
    dock.dates_group.check([other])
    assert dock.multi_date()
    dock.dates_group.method.setCurrentIndex(dock.dates_group.method.findData("timeseries_fill"))
    dock.mask_mode.setCurrentIndex(dock.mask_mode.findData("computed"))
    dock.output_widget.setFilePath(str(tmp_path / "series.tif"))
    layer = QgsProject.instance().mapLayer(_run(dock))
    report = dock.last_report
    assert layer.source() == str(tmp_path / "series.tif") and layer.renderer().type() == "multibandcolor"
    assert report.method_key == "timeseries_fill" and len(report.dates) == 1
    source = QgsProject.instance().mapLayer(dock.last_source_id)
    assert source is not None and source.source() == report.source_output == str(tmp_path / "series_source.tif")
    assert source.renderer().type() == "paletted"
    assert "2018-01-21" in " ".join(c.label for c in source.renderer().classes())
    with rasterio.open(report.source_output) as ds, rasterio.open(tmp_path / "series.tif") as out:
        codes = ds.read(1)
        assert out.shape == ds.shape == (96, 96) and out.count == 13
    assert set(np.unique(codes)) <= {0, 1, 254, 255} and (codes == 1).sum() > 1000  # filled from 2018-01-21
    assert "2018-01-06" in dock.log.toPlainText() and "Done" in dock.result_label.text()

    # on the canvas extent (a geographic CRS): only the part shown is cleared from the other date
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(target.crs())
    extent = target.extent()
    extent.scale(0.5)
    canvas.setExtent(extent)
    dock.canvas_extent.setChecked(True)
    dock.output_widget.setFilePath(str(tmp_path / "series_part.tif"))
    _run(dock)
    with rasterio.open(tmp_path / "series_part.tif") as out, rasterio.open(tmp_path / "series_part_source.tif") as ds:
        assert out.width < 96 and out.height < 96 and ds.shape == out.shape and (ds.read(1) == 1).any()
    assert QgsProject.instance().mapLayer(dock.last_source_id) is not None
    del layer, source, target, other


def test_canvas_extent_clip_keeps_the_product(tmp_path):
    """The copy cut to the canvas extent reads as the product did: same layout, level, radiometry and SCL, every
    band on the same extent (a SAFE folder and a band file inside it; a BigEarthNet band file)."""
    from topoclear.engine.sentinel2.locate import locate_bands
    from topoclear.ui.extent import clip_sentinel2

    safe = data_path("sentinel2-safe", "esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE")
    ben = data_path("bigearthnet", "BigEarthNet-S2-Example", "S2A_MSIL2A_20170613T101031_87_48")
    names = ("B2", "B3", "B4", "B11")
    band_file = locate_bands(safe, names).bands["B3"].path
    for source in (str(safe), band_file, str(ben / "S2A_MSIL2A_20170613T101031_87_48_B03.tif")):
        whole = locate_bands(source, names)
        with rasterio.open(whole.bands["B3"].path) as ds:
            b = ds.bounds
        box = (b.left + 0.31 * (b.right - b.left), b.bottom + 0.27 * (b.top - b.bottom),
               b.left + 0.7 * (b.right - b.left), b.top - 0.2 * (b.top - b.bottom))
        part = locate_bands(clip_sentinel2(source, box, str(tmp_path)), names)
        assert (part.layout, part.level, part.scl is None) == (whole.layout, whole.level, whole.scl is None)
        assert {k: (v.offset, v.quantification) for k, v in part.bands.items()} == \
            {k: (v.offset, v.quantification) for k, v in whole.bands.items()}
        extents = set()
        for band in part.bands.values():
            with rasterio.open(band.path) as ds:
                extents.add(tuple(ds.bounds))
                assert ds.width < 1 + (box[2] - box[0]) / ds.res[0] + 2
        (left, bottom, right, top), = extents
        assert left <= box[0] and bottom <= box[1] and right >= box[2] and top >= box[3]

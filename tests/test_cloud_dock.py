"""The Cloud removal dock in a QGIS main window: background task, device, result on the canvas, cancel.

Runs on the real SEN12MS-CR patch 19_p30 (Sentinel-2 L1C + its Sentinel-1) with a small DSen2-CR
whose random weights were saved through ``engine.checkpoints``. The screenshot is saved as
``test-artifacts/cloud_dock.png`` (git-ignored).
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
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
    offered = [dock.model_combo.itemData(i) for i in range(dock.model_combo.count())]
    assert "crt_unet" not in offered and "sar2opt_gan" not in offered  # no DEM, no Sentinel-1
    assert "optical-only variant" in dock.model_info.text() or dock.model_combo.currentData() != "dsen2cr"
    dock.s1_combo.setLayer(radar)
    offered = [dock.model_combo.itemData(i) for i in range(dock.model_combo.count())]
    assert "sar2opt_gan" in offered and "crt_unet" not in offered
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

    _add_layers(BIG_TUJUNGA, ((TRIPLET[0], "S2L2A", TRIPLET[2]), "TerraMind S2L2A 282D_485L_3_3 (Sentinel-2 L2A)"),
                ((TRIPLET[0], "S1RTC", TRIPLET[2]), "TerraMind S1RTC 282D_485L_3_3 (Sentinel-1 RTC)"))
    assert_fits_width(dock, qgis_iface, 300)
    for _ in range(5):
        QgsApplication.processEvents()
    line = dock.runs_on_label.text()
    assert line.startswith("Runs on: ") and "PyTorch" in line and "checking" not in line
    assert "PyTorch" in dock.runs_on_label.toolTip()

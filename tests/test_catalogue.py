"""The model catalogue: a model is its module plus one registry entry, and every tool offers it from there.

A toy network (a 1x1 convolution that learns a correction of the cloudy image, initialised to
zero: it returns its input) is registered with its ModelSpec for each test and removed after.
The removeclouds algorithm, the Cloud removal dock and the trainmodel algorithm, created after
the registration, offer it; its spec's receptive field and tile sizes drive the tiling; weights
saved through ``engine.checkpoints`` run it through the toolbox on the real SEN12MS-CR patch.
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from conftest import data_path, show_dock
from topoclear.engine import checkpoints
from topoclear.engine.clouds.request import InferenceOptions
from topoclear.engine.clouds.tiling_defaults import default_tiling, receptive_radius
from topoclear.models import build_model
from topoclear.models.registry import (ModelSpec, TileDefaults, get_spec, list_models, register_model, removal_models,
                                       training_models, unregister_model)

S2 = ("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif")
MENU = ["crt_unet_fill", "unet_fill", "dsen2cr_fill", "crt_unet", "unet", "dsen2cr", "cr_gan", "sar2opt_gan"]
#: The removeclouds method menu: automatic and the fill, then the networks.
METHODS = ["auto", "fill"] + MENU


class ToyCorrection(nn.Module):
    """Cloudy image plus a learnt 1x1 correction (zero at first): the identity until trained."""

    def __init__(self, s2_bands: int, s1_bands: int, terrain_bands: int) -> None:
        super().__init__()
        self.correction = nn.Conv2d(s2_bands, s2_bands, 1)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def forward(self, s2, s1=None, terrain=None):
        return s2 + self.correction(s2)


TOY = ModelSpec(
    name="toy_correction",
    title="Toy correction (S2 only)",
    description="A 1x1 convolution added to the cloudy image; the identity until trained.",
    builder=ToyCorrection,
    default_s2_bands=("B2", "B3", "B4", "B8"),
    default_s1_bands=(),
    predicts_residual=True,
    menu_order=990,
    receptive_field=lambda model: 0,
    tiles=TileDefaults(cpu=96, cuda=192),
)


@pytest.fixture()
def toy():
    register_model(TOY)
    yield TOY
    unregister_model(TOY.name)


def test_the_catalogue_holds_each_models_facts():
    assert [s.name for s in removal_models()] == MENU  # menu order from the specs
    assert "ca_mtcr" in list_models() and "ca_mtcr" not in [s.name for s in training_models()]
    assert get_spec("crt_unet").tiles.for_device("cuda") == 2048 and get_spec("dsen2cr").tiles.for_device("cpu") == 256
    assert get_spec("dsen2cr").weights == ("dsen2cr.safetensors", "dsen2cr_nosar.safetensors")
    assert [get_spec(n).optical_variant for n in MENU] == [True] * 7 + [False]
    assert [get_spec(n).prior for n in MENU] == ["fill"] * 3 + [None] * 5
    assert not get_spec("crt_unet").runs_with(has_s1=True, has_dem=False)
    assert get_spec("unet").runs_with(has_s1=False, has_dem=False)
    assert not get_spec("sar2opt_gan").runs_with(has_s1=False, has_dem=True)
    assert get_spec("unet").describe_needs().endswith("+ Sentinel-1 (VV, VH); without it, the optical-only variant")


def test_a_registered_model_has_its_tiling_from_its_spec(toy):
    model = build_model(toy.name)
    assert receptive_radius(model) == 0
    assert default_tiling(model, toy.size_multiple, InferenceOptions(), "cpu") == (96, 0, "crop")
    assert default_tiling(model, toy.size_multiple, InferenceOptions(), "cuda") == (192, 0, "crop")
    assert toy.name in [s.name for s in removal_models()] and toy.name in [s.name for s in training_models()]
    unregister_model(toy.name)
    assert toy.name not in list_models()


def test_removeclouds_offers_and_runs_a_registered_model(toy, topoclear_provider, run_alg, tmp_path):
    from topoclear.qgis_common.cloud_choices import keys, mask_choices

    alg = topoclear_provider.algorithm("removeclouds").create()  # created after the registration
    options = alg.parameterDefinition("MODEL").options()
    from topoclear.engine.clouds.methods.catalogue import get_method

    assert options == [get_method(n).title for n in METHODS] + [toy.title]
    assert f"({toy.name}): needs Sentinel-2 (4 bands: B2, B3, B4, B8)" in alg.shortHelpString()

    torch.manual_seed(0)
    weights = str(checkpoints.save_model(tmp_path / "toy", build_model(toy.name))[0])
    out = tmp_path / "toy_out.tif"
    result = run_alg("topoclear:removeclouds", INPUT=str(data_path(*S2)), MODEL=options.index(toy.title),
                     WEIGHTS=weights, MASK_TYPE=keys(mask_choices("removal")).index("none"), DEVICE="cpu",
                     OUTPUT=str(out))
    assert result["MODEL_USED"] == toy.title
    with rasterio.open(out) as o, rasterio.open(data_path(*S2)) as i:
        before, after = i.read().astype(int), o.read().astype(int)
        assert o.descriptions[1] == f"B2, cloud removed ({toy.name})"
        assert o.descriptions[0].startswith("B1, copied from the input")
    assert np.abs(after - before).max() <= 1  # the identity, through scaling and back to DN

    unregister_model(toy.name)
    fresh = topoclear_provider.algorithm("removeclouds").create()
    assert fresh.parameterDefinition("MODEL").options() == [get_method(n).title for n in METHODS]


def test_trainmodel_offers_a_registered_model(toy, topoclear_provider):
    from topoclear.processing_provider.training import model_names

    alg = topoclear_provider.algorithm("trainmodel").create()
    assert alg.parameterDefinition("MODEL").options() == model_names() == MENU + [toy.name]


@pytest.fixture()
def dock(qgis_iface, toy):
    from topoclear.ui.cloud_dock import CloudDock

    yield from show_dock(qgis_iface, CloudDock)


@pytest.mark.gui
def test_the_cloud_dock_offers_a_registered_model(dock, toy):
    from qgis.core import QgsProject, QgsRasterLayer

    image = QgsRasterLayer(str(data_path(*S2)), "S2 19_p30")
    QgsProject.instance().addMapLayer(image)
    dock.s2_combo.setLayer(image)
    dock.s1_combo.setLayer(None)
    dock.dem_combo.setLayer(None)
    from topoclear.qgis_common.cloud_choices import keys, method_inputs, model_choices

    offered = [dock.model_combo.itemData(i) for i in range(dock.model_combo.count())]
    assert offered == keys(model_choices())  # every method of the catalogue, whatever the layers
    assert offered[:2] == ["auto", "fill"] and toy.name in offered
    assert method_inputs(toy.name) == {"s1": False, "dem": False}  # the toy reads Sentinel-2 only
    assert dock.model_combo.currentData() == "auto"  # the default
    assert dock.model_combo.itemText(offered.index(toy.name)) == toy.title
    dock.model_combo.setCurrentIndex(dock.model_combo.findData(toy.name))
    assert dock.model_info.text().startswith("Needs: Sentinel-2 (4 bands: B2, B3, B4, B8).")
    assert "No weights are shipped" in dock.model_info.text()
    request = dock.choices().request()
    assert request.model == toy.name and request.s2 == str(data_path(*S2)) and request.s1 is None
    del image

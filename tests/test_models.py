"""Cloud-removal networks, their registry and value scalings (CPU, small tiles, no training)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from topoclear.models import (  # noqa: E402
    build_discriminator,
    build_model,
    count_parameters,
    get_spec,
    list_models,
)
from topoclear.models import scaling  # noqa: E402
from topoclear.models.crt_unet import CRTUNet  # noqa: E402
from topoclear.models.dsen2cr import DSen2CR  # noqa: E402
from topoclear.models.gan import (  # noqa: E402
    CloudRemovalGAN,
    DilatedResidualInceptionBlock,
    DRIBGenerator,
    PatchDiscriminator,
)
from topoclear.models.registry import InputMismatchError, MissingInputError, UnknownModelError  # noqa: E402
from topoclear.models.unet import UNet  # noqa: E402

TILE = 64


def random_inputs(model: nn.Module, size: int = TILE, batch: int = 1, seed: int = 0) -> dict:
    """Random tensors for every input a registry-built model needs."""
    gen = torch.Generator().manual_seed(seed)
    layout = model.input_layout
    out = {name: torch.rand(batch, len(layout.bands(name)), size, size, generator=gen) for name in layout.inputs}
    if get_spec(model.spec_name).prior == "fill":  # networks that start from the fill: its mask and the fill
        out["mask"] = (torch.rand(batch, 1, size, size, generator=gen) > 0.5).float()
        out["prior"] = torch.rand(batch, len(layout.s2), size, size, generator=gen)
    return out


# ------------------------------------------------------------------------------------------------
# parameter counts
# ------------------------------------------------------------------------------------------------
def test_dsen2cr_parameter_counts_are_exact():
    assert count_parameters(build_model("dsen2cr", s2_bands=10, s1_bands=2)) == 18_933_514
    assert count_parameters(build_model("dsen2cr", s2_bands=13, s1_bands=2)) == 18_947_341


def test_unet_and_crt_unet_match_table_i_within_half_percent():
    unet = count_parameters(build_model("unet", s2_bands=10, s1_bands=2))
    crt = count_parameters(build_model("crt_unet", s2_bands=10, s1_bands=2, terrain_bands=4))
    assert unet == 22_358_842
    assert crt == 22_361_146
    assert abs(unet / 22.325e6 - 1) < 0.005
    assert abs(crt / 22.328e6 - 1) < 0.005
    # Table I: CRT-UNet has ~3 k more parameters than the UNet (4 terrain channels x 3 x 3 x 64)
    assert crt - unet == 4 * 3 * 3 * 64


def test_count_parameters_trainable_only_skips_frozen_translator():
    model = build_model("cr_gan", blocks=1)
    generator_only = count_parameters(model.generator)
    assert count_parameters(model, trainable_only=True) == generator_only
    assert count_parameters(model) == generator_only + count_parameters(model.translator)


# ------------------------------------------------------------------------------------------------
# DSen2-CR
# ------------------------------------------------------------------------------------------------
def test_dsen2cr_he_uniform_weights_and_zero_biases():
    torch.manual_seed(0)
    model = DSen2CR(s2_bands=10, s1_bands=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 16 + 1
    for conv in convs:
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        bound = math.sqrt(6.0 / fan_in)
        w = conv.weight.detach()
        assert float(w.abs().max()) <= bound + 1e-7
        assert float(w.abs().max()) > 0.95 * bound  # really spread over the whole interval
        assert abs(float(w.std()) / math.sqrt(2.0 / fan_in) - 1) < 0.05  # var of U(-b, b) = b^2 / 3
        assert torch.count_nonzero(conv.bias) == 0
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in model.modules())


def test_dsen2cr_structure_and_long_skip():
    model = DSen2CR(s2_bands=10, s1_bands=2)
    assert model.head[0].in_channels == 12 and model.head[0].out_channels == 256
    assert len(model.body) == 16 and all(block.scale == 0.1 for block in model.body)
    assert model.tail.out_channels == 10
    nn.init.zeros_(model.tail.weight)  # no correction -> the cloudy input comes back unchanged
    s2, s1 = torch.rand(1, 10, 24, 24), torch.rand(1, 2, 24, 24)
    with torch.no_grad():
        assert torch.equal(model(s2, s1), s2)
    assert get_spec("dsen2cr").predicts_residual


# ------------------------------------------------------------------------------------------------
# GANs (seed 004, Tables 1 and 2)
# ------------------------------------------------------------------------------------------------
def _conv_of(layer: nn.Module) -> nn.Module:
    return next(m for m in layer.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def _kinds(layer: nn.Module) -> set:
    return {type(m) for m in layer.modules()}


def test_drib_generator_layers_follow_table_1():
    gen = DRIBGenerator(in_channels=1, out_channels=3)
    # encoder CL(64,4,2) CBL(128,4,2) CBL(256,4,2) CBL(512,4,1)
    expected_encoder = [(64, 2, False), (128, 2, True), (256, 2, True), (512, 1, True)]
    for layer, (filters, stride, bn) in zip(gen.encoder, expected_encoder):
        conv = _conv_of(layer)
        assert (conv.out_channels, conv.kernel_size, conv.stride) == (filters, (4, 4), (stride, stride))
        assert (nn.BatchNorm2d in _kinds(layer)) == bn
        assert nn.LeakyReLU in _kinds(layer)
    # decoder CBDR(256,4,1) CBDR(128,4,2) CBR(64,4,2) CT(3,4,2)
    expected_decoder = [
        (256, 1, True, nn.ReLU), (128, 2, True, nn.ReLU), (64, 2, False, nn.ReLU), (3, 2, False, nn.Tanh)
    ]
    for layer, (filters, stride, dropout, act) in zip(gen.decoder, expected_decoder):
        conv = _conv_of(layer)
        assert (conv.out_channels, conv.kernel_size, conv.stride) == (filters, (4, 4), (stride, stride))
        assert (nn.Dropout in _kinds(layer)) == dropout
        assert act in _kinds(layer)
    # symmetric skips: decoder inputs = previous decoder output (+ encoder output of same size)
    assert [_conv_of(layer).in_channels for layer in gen.decoder] == [512, 256 + 256, 128 + 128, 64 + 64]


def test_drib_blocks_follow_table_2():
    gen = DRIBGenerator(in_channels=1, out_channels=3)
    assert len(gen.bottleneck) == 8
    for block in gen.bottleneck:
        assert isinstance(block, DilatedResidualInceptionBlock)
        assert len(block.branches) == 3
        for branch, dilation in zip(block.branches, (1, 2, 3)):
            convs = [m for m in branch if isinstance(m, nn.Conv2d)]
            assert [(c.in_channels, c.out_channels, c.kernel_size, c.dilation) for c in convs] == [
                (512, 256, (1, 1), (1, 1)),
                (256, 256, (3, 3), (dilation, dilation)),
            ]
        fuse = _conv_of(block.fuse)
        assert (fuse.in_channels, fuse.out_channels, fuse.kernel_size) == (768, 512, (1, 1))


def test_drib_generator_feature_map_shapes():
    gen = DRIBGenerator(in_channels=1, out_channels=3).eval()
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
             for m in [*gen.encoder, gen.bottleneck, *gen.decoder]]
    with torch.no_grad():
        out = gen(torch.rand(1, 1, TILE, TILE))
    for hook in hooks:
        hook.remove()
    s = TILE
    assert shapes == [
        (64, s // 2, s // 2), (128, s // 4, s // 4), (256, s // 8, s // 8), (512, s // 8, s // 8),  # encoder
        (512, s // 8, s // 8),  # 8 DRIBs, resolution kept by the dilations
        (256, s // 8, s // 8), (128, s // 4, s // 4), (64, s // 2, s // 2), (3, s, s),  # decoder
    ]
    assert float(out.abs().max()) <= 1.0  # tanh


def test_patch_discriminator_follows_table_1_and_is_conditional():
    disc = PatchDiscriminator(condition_channels=1, image_channels=3)
    convs = [m for m in disc.net if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (64, 4, 2), (128, 4, 2), (256, 4, 2), (512, 4, 2), (1, 3, 1)
    ]
    assert convs[0].in_channels == 1 + 3
    logits = disc(torch.rand(2, 1, TILE, TILE), torch.rand(2, 3, TILE, TILE))
    assert logits.shape == (2, 1, TILE // 16, TILE // 16)
    # the paper's discriminator input sizes: SAR-to-optical 1 + 3 channels, cloud removal 6 + 3
    assert _conv_of(build_discriminator(build_model("sar2opt_gan", blocks=1)).net).in_channels == 1 + 3
    assert _conv_of(build_discriminator(build_model("cr_gan", blocks=1)).net).in_channels == 6 + 3


def test_cr_gan_uses_the_sar_translation_and_keeps_the_translator_frozen():
    torch.manual_seed(0)
    sar2opt = build_model("sar2opt_gan", blocks=2).eval()
    cr = build_model("cr_gan", blocks=2)
    cr.load_translator(sar2opt.state_dict())
    cr.train()
    assert not cr.translator.training and cr.generator.training
    assert all(not p.requires_grad for p in cr.translator.parameters())
    cr.eval()
    s2, s1 = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        translated = sar2opt(s1=s1)
        assert torch.allclose(cr(s2, s1), cr(s2, translated=translated), atol=1e-6)
    raw = CloudRemovalGAN(s2_bands=3, s1_bands=1, sar_input="raw", blocks=1)
    assert raw.translator is None and raw.condition_channels == 4


# ------------------------------------------------------------------------------------------------
# every registry model
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_models(multi_temporal=False))
def test_every_registry_model_runs_with_default_bands(name):
    spec = get_spec(name)
    assert spec.description and spec.scaling in scaling.SCALINGS
    model = build_model(name).eval()
    size = TILE if name != "dsen2cr" else 32
    with torch.no_grad():
        out = model(**random_inputs(model, size, batch=2))
    assert out.shape == (2, len(model.input_layout.output), size, size)
    assert model.input_layout.output == spec.output_bands


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("unet", dict(s2_bands=10, s1_bands=2)),
        ("crt_unet", dict(s2_bands=10, s1_bands=2, terrain_bands=4)),
        ("dsen2cr", dict(s2_bands=10, s1_bands=2)),
        ("sar2opt_gan", dict(s2_bands=10, s1_bands=2)),
        ("cr_gan", dict(s2_bands=10, s1_bands=2)),
    ],
)
def test_registry_models_run_with_the_crt_unet_band_set(name, kwargs):
    model = build_model(name, **kwargs).eval()
    size = TILE if name != "dsen2cr" else 32
    with torch.no_grad():
        out = model(**random_inputs(model, size))
    assert out.shape == (1, 10, size, size)


@pytest.mark.parametrize("name", ["unet", "crt_unet", "dsen2cr", "cr_gan"])
def test_variants_without_sar_build_and_run(name):
    model = build_model(name, s2_bands=4, s1_bands=0).eval()
    assert "s1" not in model.input_layout.inputs
    inputs = random_inputs(model, 32)
    with torch.no_grad():
        out = model(**inputs)
    assert out.shape == (1, 4, 32, 32)


def test_the_fill_prior_variants_leave_the_papers_configurations_as_they_are():
    """unet_fill / crt_unet_fill / dsen2cr_fill are separate specs: the papers' networks keep their counts."""
    assert count_parameters(build_model("dsen2cr", s2_bands=10, s1_bands=2)) == 18_933_514
    fill = build_model("unet_fill", s2_bands=10, s1_bands=0)
    assert fill.backbone.encoder[0][0].in_channels == 21  # cloudy + fill + mask
    assert fill.backbone.head.out_channels == 10 and fill.widths == (16, 32, 64, 128)
    assert get_spec("unet_fill").receptive_radius(fill) == 51
    crt = build_model("crt_unet_fill", s2_bands=10, s1_bands=2, terrain_bands=4)
    assert crt.backbone.encoder[1][0].in_channels == 16 + 4
    dsen = build_model("dsen2cr_fill", s2_bands=10, s1_bands=2)
    assert dsen.backbone.head[0].in_channels == 23 and not dsen.backbone.long_skip
    assert get_spec("dsen2cr_fill").receptive_radius(dsen) == 18
    with pytest.raises(ValueError, match="levels"):
        build_model("unet_fill", widths=[8, 16, 32, 64, 128])


def test_dsen2cr_without_sar_has_fewer_input_weights():
    with_sar = count_parameters(build_model("dsen2cr", s2_bands=10, s1_bands=2))
    without = count_parameters(build_model("dsen2cr", s2_bands=10, s1_bands=0))
    assert with_sar - without == 2 * 3 * 3 * 256


def test_models_accept_band_names():
    model = build_model("unet", s2_bands=("B4", "B3", "B2", "B8"), s1_bands=("VV",))
    assert model.input_layout.s2 == ("B4", "B3", "B2", "B8") and model.input_layout.s1 == ("VV",)
    assert model.encoder[0][0].in_channels == 5


# ------------------------------------------------------------------------------------------------
# CRT-UNet terrain injection and ablation
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crt_unet_and_inputs():
    torch.manual_seed(1)
    model = build_model("crt_unet", s2_bands=10, s1_bands=2, terrain_bands=4).eval()
    return model, random_inputs(model, TILE, seed=3)


def test_crt_unet_injects_terrain_at_half_resolution(crt_unet_and_inputs):
    model, inputs = crt_unet_and_inputs
    assert model.encoder[1][0].in_channels == model.widths[0] + 4
    seen = []
    hook = model.encoder[1].register_forward_hook(lambda _m, inp, _o: seen.append(tuple(inp[0].shape)))
    with torch.no_grad():
        full = model(**inputs)
        half = model(inputs["s2"], inputs["s1"], torch.nn.functional.avg_pool2d(inputs["terrain"], 2))
    hook.remove()
    assert seen[0] == (1, model.widths[0] + 4, TILE // 2, TILE // 2)
    assert torch.allclose(full, half, atol=1e-6)


def test_crt_unet_zeroing_terrain_changes_output_and_equals_zero_inputs(crt_unet_and_inputs):
    model, inputs = crt_unet_and_inputs
    s2, s1, terrain = inputs["s2"], inputs["s1"], inputs["terrain"]
    with torch.no_grad():
        full = model(s2, s1, terrain)
        no_dem = model(s2, s1, terrain, zero_terrain=["dem"])
        dem_zeroed = terrain.clone()
        dem_zeroed[:, 0] = 0
        assert not torch.allclose(full, no_dem)
        assert torch.equal(no_dem, model(s2, s1, dem_zeroed))
        slope_and_hillshade_zeroed = terrain * torch.tensor([1.0, 0, 1, 0]).view(1, 4, 1, 1)
        assert torch.equal(model(s2, s1, terrain, zero_terrain=("slope", 3)), model(s2, s1, slope_and_hillshade_zeroed))
        all_zero = model(s2, s1, terrain, zero_terrain="all")
        assert torch.equal(all_zero, model(s2, s1, torch.zeros_like(terrain)))
        assert not torch.allclose(all_zero, full)
    with pytest.raises(ValueError, match="elevation, slope, aspect, hillshade"):
        model(s2, s1, terrain, zero_terrain=["curvature"])


def test_crt_unet_rejects_a_terrain_of_the_wrong_size():
    model = CRTUNet(s2_bands=3, s1_bands=0, terrain_bands=4)
    with pytest.raises(ValueError, match="terrain is 40x40 px"):
        model(torch.rand(1, 3, 64, 64), terrain=torch.rand(1, 4, 40, 40))


def test_unet_residual_option_adds_the_cloudy_input():
    model = UNet(s2_bands=3, s1_bands=1, residual=True)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    s2 = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(s2, torch.rand(1, 1, 32, 32)), s2)


# ------------------------------------------------------------------------------------------------
# registry errors
# ------------------------------------------------------------------------------------------------
def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(UnknownModelError, match=r"unknown model 'dsen3cr'.*crt_unet.*dsen2cr"):
        build_model("dsen3cr")
    with pytest.raises(UnknownModelError):
        get_spec("nope")


def test_missing_input_names_what_is_missing_and_what_was_expected():
    model = build_model("crt_unet", s2_bands=10, s1_bands=2, terrain_bands=4)
    inputs = random_inputs(model, 32)
    with pytest.raises(MissingInputError) as err:
        model(inputs["s2"], inputs["s1"])
    message = str(err.value)
    assert "'terrain'" in message and "elevation, slope, aspect, hillshade" in message
    assert "s2 (10 channels: B2" in message and "s1 (2 channels: VV, VH)" in message
    with pytest.raises(MissingInputError, match="needs input 's1'"):
        build_model("dsen2cr", s2_bands=10, s1_bands=2)(s2=inputs["s2"])
    with pytest.raises(MissingInputError, match="needs input 's1'"):
        build_model("sar2opt_gan")(s2=torch.rand(1, 3, 32, 32))


def test_wrong_channel_count_and_tile_size_are_reported():
    model = build_model("unet", s2_bands=10, s1_bands=2)
    with pytest.raises(InputMismatchError, match=r"input 's1' has shape \(1, 3, 32, 32\).*C = 2 \(VV, VH\)"):
        model(torch.rand(1, 10, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(InputMismatchError, match="multiples of 32"):
        model(torch.rand(1, 10, 48, 48), torch.rand(1, 2, 48, 48))


def test_registry_rejects_inconsistent_configurations():
    with pytest.raises(ValueError, match="takes no terrain input"):
        build_model("unet", terrain_bands=4)
    with pytest.raises(ValueError, match="needs at least one terrain band"):
        build_model("crt_unet", terrain_bands=0)
    with pytest.raises(TypeError, match="no option 'depth'"):
        build_model("dsen2cr", depth=3)
    with pytest.raises(ValueError, match="needs at least one Sentinel-1 band"):
        build_model("sar2opt_gan", s1_bands=0)
    with pytest.raises(ValueError, match="not trained adversarially"):
        build_discriminator(build_model("unet"))


def test_specs_declare_inputs_and_scalings():
    crt = get_spec("crt_unet")
    assert crt.needs_s1 and crt.needs_terrain and crt.scaling == "unit" and crt.size_multiple == 32
    assert crt.default_s2_bands == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    assert not get_spec("unet").needs_terrain
    assert get_spec("dsen2cr").scaling == "dsen2cr" and len(get_spec("dsen2cr").default_s2_bands) == 13
    sar2opt = get_spec("sar2opt_gan")
    assert not sar2opt.needs_s2 and sar2opt.scaling == "signed" and sar2opt.adversarial
    assert not any(get_spec(n).multi_temporal for n in list_models(multi_temporal=False))
    assert [n for n in list_models() if get_spec(n).multi_temporal] == ["ca_mtcr"]  # 5-D time series inputs
    ca_mtcr = get_spec("ca_mtcr")
    assert not ca_mtcr.offered_for_removal and ca_mtcr.optical_variant and ca_mtcr.size_multiple == 4


def test_models_package_imports_neither_qgis_nor_torch_for_scaling():
    code = (
        "import sys, topoclear.models.scaling; assert 'torch' not in sys.modules, 'torch imported';"
        "import topoclear.models.registry; assert not any(m == 'qgis' or m.startswith('qgis.') for m in sys.modules);"
        "assert 'torch' not in sys.modules, 'the catalogue imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# scalings
# ------------------------------------------------------------------------------------------------
def test_dsen2cr_scaling_values():
    s2 = np.array([[[0, 2000, 10000, 15000]]], dtype=np.uint16)
    assert np.allclose(scaling.scale_s2(s2, "dsen2cr"), [[[0, 1, 5, 5]]])
    s1 = np.array([[[-30.0, -25.0, 0.0, 3.0]], [[-40.0, -32.5, -16.25, 0.0]]])  # VV, VH
    assert np.allclose(scaling.scale_s1(s1, "dsen2cr"), [[[0, 0, 2, 2]], [[0, 0, 1, 2]]])


def test_unit_and_signed_scaling_values():
    s2 = np.array([[[0.0, 5000.0, 10000.0]]])
    assert np.allclose(scaling.scale_s2(s2, "unit"), [[[0, 0.5, 1]]])
    assert np.allclose(scaling.scale_s2(s2, "signed"), [[[-1, 0, 1]]])
    s1 = np.array([[[-25.0, -12.5, 0.0]], [[-25.0, -12.5, 0.0]]])
    assert np.allclose(scaling.scale_s1(s1, "unit"), [[[0, 0.5, 1]], [[0, 0.5, 1]]])
    assert np.allclose(scaling.scale_s1(s1, "signed"), [[[-1, 0, 1]], [[-1, 0, 1]]])


@pytest.mark.parametrize("name", sorted(scaling.SCALINGS))
def test_scalings_round_trip_for_numpy_and_torch(name):
    rng = np.random.default_rng(0)
    s2 = rng.uniform(0, 10000, (2, 3, 5, 5)).astype(np.float32)
    s1 = np.stack([rng.uniform(-25, 0, (2, 5, 5)), rng.uniform(-32.5, 0, (2, 5, 5))], axis=1).astype(np.float32)
    s1[:, 1] = np.maximum(s1[:, 1], scaling.SCALINGS[name].s1_lower_db["VH"])  # inside the clipping range
    terrain = np.stack(
        [rng.uniform(0, top, (2, 5, 5)) for top in (4000, 90, 360, 255)],
        axis=1,
    ).astype(np.float32)
    for make in (np.asarray, torch.from_numpy):
        a2, a1, at = make(s2), make(s1), make(terrain)
        back2 = scaling.unscale_s2(scaling.scale_s2(a2, name), name)
        back1 = scaling.unscale_s1(scaling.scale_s1(a1, name), name)
        backt = scaling.unscale_terrain(scaling.scale_terrain(at, name), name)
        for back, ref, tol in ((back2, s2, 0.05), (back1, s1, 1e-4), (backt, terrain, 1e-3)):
            assert type(back) is type(a2)
            assert np.allclose(np.asarray(back), ref, atol=tol)


def test_scaling_keeps_torch_dtype_and_converts_integers():
    x = torch.full((1, 2, 2, 2), -10.0, dtype=torch.float64)
    assert scaling.scale_s1(x, "unit").dtype == torch.float64
    assert scaling.scale_s2(torch.full((1, 1, 2, 2), 100, dtype=torch.int16)).dtype == torch.float32
    assert scaling.scale_s2(np.full((1, 2, 2), 100, dtype=np.uint16)).dtype == np.float32
    s2 = np.full((1, 2, 2), 3000.0)
    scaling.scale_s2(s2)
    assert s2[0, 0, 0] == 3000.0  # inputs are never modified in place


def test_scaling_errors_are_explicit():
    with pytest.raises(ValueError, match="unknown scaling 'minmax'"):
        scaling.scale_s2(np.zeros((1, 2, 2)), "minmax")
    with pytest.raises(ValueError, match=r"3 channels on axis -3, expected 2 \(VV, VH\)"):
        scaling.scale_s1(np.zeros((3, 2, 2)), "unit")
    with pytest.raises(ValueError, match="no range for Sentinel-1 band 'HH'"):
        scaling.scale_s1(np.zeros((1, 2, 2)), "dsen2cr", bands=("HH",))
    assert np.allclose(scaling.scale_terrain(np.full((1, 2, 2), 4500.0), bands=("DEM",)), 0.5)


def test_registry_accepts_a_multi_temporal_model():
    from topoclear.models.registry import REGISTRY, ModelSpec, register_model

    class MeanOverTime(nn.Module):
        def __init__(self, s2_bands: int, s1_bands: int, terrain_bands: int) -> None:
            super().__init__()
            self.mix = nn.Conv2d(s2_bands + s1_bands, s2_bands, 1)

        def forward(self, s2, s1=None, terrain=None):
            return self.mix(torch.cat([s2, s1], dim=2).mean(dim=1))

    register_model(
        ModelSpec(
            name="test_multi_temporal",
            title="test",
            description="time series in, one image out",
            builder=MeanOverTime,
            default_s2_bands=("B4", "B3", "B2"),
            default_s1_bands=("VV", "VH"),
            multi_temporal=True,
        )
    )
    try:
        assert "test_multi_temporal" in list_models(multi_temporal=True)
        model = build_model("test_multi_temporal")
        out = model(torch.rand(2, 4, 3, 8, 8), torch.rand(2, 4, 2, 8, 8))
        assert out.shape == (2, 3, 8, 8)
        with pytest.raises(InputMismatchError, match=r"\(N, T, C, H, W\)"):
            model(torch.rand(2, 3, 8, 8), torch.rand(2, 2, 8, 8))
    finally:
        REGISTRY.pop("test_multi_temporal", None)

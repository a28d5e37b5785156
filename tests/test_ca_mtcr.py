"""CA-MTCR (seed 003): parameter count, shapes, information flow, SAR pretraining, loss (CPU, tiny tiles)."""
from __future__ import annotations

import pathlib
import pickle

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from topoclear.models import build_model, count_parameters, get_spec, list_models  # noqa: E402
from topoclear.models.ca_mtcr import (  # noqa: E402
    CAMTCR,
    PAPER_PARAMETERS,
    SARNoise2NoiseVQVAE,
    sar_change_map,
)
from topoclear.models.losses import l1_loss, ssim_loss  # noqa: E402
from topoclear.models.perceptual_loss import VGG16_LAYERS, CAMTCRLoss, VGG16Features  # noqa: E402
from topoclear.models.registry import InputMismatchError, MissingInputError  # noqa: E402

SIZE = 16  # 4 x 4 tokens on the 1/4 working grid


def series(n=1, t=2, s2=13, s1=2, size=SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {"s2": torch.rand(n, t, s2, size, size, generator=g)}
    if s1:
        out["s1"] = torch.rand(n, t, s1, size, size, generator=g)
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two contending ones on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("ca_mtcr", s2_bands=13, s1_bands=2).eval()


@pytest.fixture(scope="module")
def optical_model():
    torch.manual_seed(0)
    return build_model("ca_mtcr", s2_bands=13, s1_bands=0).eval()


# ------------------------------------------------------------------------------------------------
# size and registry
# ------------------------------------------------------------------------------------------------
def test_parameter_count_matches_table_1(model):
    n = count_parameters(model)
    assert abs(n / PAPER_PARAMETERS - 1) < 0.005, n
    assert n == 7_442_512
    spec = get_spec("ca_mtcr")
    assert spec.multi_temporal and spec.scaling == "unit" and spec.size_multiple == 4
    assert len(spec.default_s2_bands) == 13 and spec.default_s1_bands == ("VV", "VH")
    assert "ca_mtcr" in list_models(multi_temporal=True) and "ca_mtcr" not in list_models(multi_temporal=False)


def test_encoder_has_nine_transformer_blocks_and_sar_encoder_three_convs_two_mbconvs(model):
    assert len(model.optical_encoder.blocks) == 9 and len(model.optical_encoder.selectors) == 9
    sar = model.sar_encoder
    assert [type(m).__name__ for m in sar.blocks] == ["MBConv", "MBConv"]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in (sar.conv1, sar.conv2, sar.conv3)] == [
        (2, 64, 2), (64, 128, 2), (128, 128, 1)
    ]


@pytest.mark.parametrize("t", [1, 2, 4])
@pytest.mark.parametrize("with_sar", [True, False])
def test_forward_shapes_for_any_number_of_dates(model, optical_model, t, with_sar):
    net = model if with_sar else optical_model
    inputs = series(n=2, t=t, s1=2 if with_sar else 0)
    mask = (torch.rand(2, t, 1, SIZE, SIZE) > 0.5).float()
    with torch.no_grad():
        out = net(**inputs, mask=mask)
        details = net.analyse(**inputs, mask=mask)
    assert out.shape == (2, 13, SIZE, SIZE) and torch.isfinite(out).all()
    assert torch.equal(details["prediction"], out)
    grid = SIZE // 4
    assert details["change"].shape == (2, t, 1, grid, grid)
    assert details["weights"].shape == (2, t, 16, grid, grid)
    assert torch.allclose(details["weights"].sum(dim=1), torch.ones(2, 16, grid, grid), atol=1e-5)
    assert details["region_masks"].shape == (2, t, 9, 1, grid, grid)
    assert torch.equal(details["change"][:, -1], torch.ones(2, 1, grid, grid))  # c^N = 1


def test_registry_checks_the_time_series_inputs(model, optical_model):
    inputs = series(t=2)
    with pytest.raises(InputMismatchError, match=r"\(N, T, C, H, W\)"):
        model(inputs["s2"][:, 0], inputs["s1"][:, 0])
    with pytest.raises(MissingInputError, match="needs input 's1'"):
        model(inputs["s2"], mask=torch.zeros(1, 2, 1, SIZE, SIZE))
    with pytest.raises(InputMismatchError, match="multiples of 4"):
        model(torch.rand(1, 2, 13, 18, 18), torch.rand(1, 2, 2, 18, 18))
    with pytest.raises(ValueError, match="mask has shape"):
        model(**inputs, mask=torch.zeros(1, 3, 1, SIZE, SIZE))
    assert "s1" not in optical_model.input_layout.inputs
    small = build_model("ca_mtcr", depth=2, optical_dim=32, heads=2, fused_dim=32, sar_dim=16)
    assert len(small.optical_encoder.blocks) == 2


def test_mask_conventions(model):
    inputs = series(t=2, seed=3)
    mask = (torch.rand(1, 2, SIZE, SIZE) > 0.5).float()
    with torch.no_grad():
        four_d = model(**inputs, mask=mask)
        five_d = model(**inputs, mask=mask[:, :, None])
        positional = model(inputs["s2"], inputs["s1"], mask[:, :, None])
        none = model(**inputs)
        clear = model(**inputs, mask=torch.zeros(1, 2, 1, SIZE, SIZE))
    assert torch.equal(four_d, five_d) and torch.equal(four_d, positional)
    assert torch.equal(none, clear)  # mask=None means all clear
    assert not torch.allclose(four_d, clear)  # the mask steers the region selection


# ------------------------------------------------------------------------------------------------
# where the information comes from
# ------------------------------------------------------------------------------------------------
def test_clear_target_pixels_drive_the_output(model):
    inputs = series(t=2, seed=1)
    s2 = inputs["s2"].clone().requires_grad_(True)
    mask = torch.zeros(1, 2, 1, SIZE, SIZE)
    mask[:, -1, :, :, : SIZE // 2] = 1.0  # target: left half cloudy, right half clear
    out = model(s2, inputs["s1"], mask=mask)
    out[..., SIZE // 2:].sum().backward()
    grad_clear = s2.grad[0, -1, :, :, SIZE // 2:].abs().sum(dim=0)
    assert (grad_clear > 0).all()
    changed = inputs["s2"].clone()
    changed[0, -1, :, :, SIZE // 2:] = 1 - changed[0, -1, :, :, SIZE // 2:]
    with torch.no_grad():
        assert (model(changed, inputs["s1"], mask=mask) - out.detach())[..., SIZE // 2:].abs().mean() > 1e-4


def test_fully_cloudy_target_takes_information_from_a_clear_auxiliary_date(model):
    inputs = series(t=2, seed=2)
    s2 = inputs["s2"].clone().requires_grad_(True)
    mask = torch.zeros(1, 2, 1, SIZE, SIZE)
    mask[:, -1] = 1.0  # target fully cloudy, auxiliary date clear
    out = model(s2, inputs["s1"], mask=mask)
    out.sum().backward()
    grad_aux = s2.grad[0, 0].abs().sum(dim=0)
    assert (grad_aux > 0).all()  # every auxiliary pixel reaches the output under the cloud
    with torch.no_grad():
        other = inputs["s2"].clone()
        other[0, 0] = torch.rand(13, SIZE, SIZE, generator=torch.Generator().manual_seed(9))
        assert (model(other, inputs["s1"], mask=mask) - out.detach()).abs().mean() > 1e-4
        mono = model(inputs["s2"][:, -1:], inputs["s1"][:, -1:], mask=mask[:, -1:])
        assert (mono - out.detach()).abs().mean() > 1e-4


def test_auxiliary_dates_are_interchangeable_and_the_target_is_not(model):
    inputs = series(t=3, seed=4)
    mask = (torch.rand(1, 3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    swap = [1, 0, 2]
    target_swap = [0, 2, 1]
    with torch.no_grad():
        out = model(**inputs, mask=mask)
        swapped = model(inputs["s2"][:, swap], inputs["s1"][:, swap], mask=mask[:, swap])
        other_target = model(inputs["s2"][:, target_swap], inputs["s1"][:, target_swap], mask=mask[:, target_swap])
    assert torch.allclose(out, swapped, atol=1e-5)
    assert not torch.allclose(out, other_target, atol=1e-3)


def test_sar_change_map_is_the_cosine_similarity_of_sar_features(model):
    inputs = series(t=3, seed=6)
    s1 = inputs["s1"].clone()
    s1[:, 1] = s1[:, 2]  # date 1: same radar image as the target -> no change
    with torch.no_grad():
        change = model.analyse(inputs["s2"], s1)["change"]
        feats = model.sar_encoder(s1.flatten(0, 1)).view(1, 3, 128, SIZE // 4, SIZE // 4)
    expected = F.cosine_similarity(feats[:, 0], feats[:, 2], dim=1)
    assert torch.allclose(change[:, 0, 0], expected, atol=1e-5)
    assert change[:, 0].max() < 0.999  # a different radar image reads as change
    assert torch.allclose(change[:, 1:], torch.ones_like(change[:, 1:]), atol=1e-5)
    assert torch.allclose(sar_change_map(feats), change, atol=1e-5)
    ablation = CAMTCR(s2_bands=13, s1_bands=2, change_aware=False).eval()
    with torch.no_grad():
        assert torch.equal(ablation.analyse(inputs["s2"], s1)["change"], torch.ones_like(change))


def test_optical_only_change_map_uses_clear_pixels_only(optical_model):
    inputs = series(t=2, s1=0, seed=7)
    mask = torch.zeros(1, 2, 1, SIZE, SIZE)
    mask[:, 0, :, : SIZE // 2] = 1.0  # auxiliary date cloudy in the top half
    with torch.no_grad():
        details = optical_model.analyse(inputs["s2"], mask=mask)
    change = details["change"][0, 0, 0]
    assert torch.allclose(change[: SIZE // 8], torch.ones(SIZE // 8, SIZE // 4))  # cloudy: no evidence of change
    assert (change[SIZE // 8:] < 0.999).any()  # clear on both dates: optical similarity
    uniform = CAMTCR(s2_bands=13, s1_bands=0, optical_change="uniform").eval()
    with torch.no_grad():
        assert torch.equal(uniform.analyse(inputs["s2"], mask=mask)["change"], torch.ones(1, 2, 1, 4, 4))


def test_ablation_without_region_selection_keeps_the_transformer_blocks():
    plain = CAMTCR(s2_bands=13, s1_bands=2, region_selective=False).eval()
    assert plain.optical_encoder.selectors is None and len(plain.optical_encoder.blocks) == 9
    with torch.no_grad():
        details = plain.analyse(**series(t=2))
    assert "region_masks" not in details and details["prediction"].shape == (1, 13, SIZE, SIZE)


# ------------------------------------------------------------------------------------------------
# SAR encoder pretraining (Noise2Noise VQ-VAE)
# ------------------------------------------------------------------------------------------------
def test_vqvae_pretraining_loss_decreases_and_the_encoder_transfers(model):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(4, 2, SIZE, SIZE, generator=g)
    y1 = clean + 0.1 * torch.randn(4, 2, SIZE, SIZE, generator=g)
    y2 = clean + 0.1 * torch.randn(4, 2, SIZE, SIZE, generator=g)
    vq = SARNoise2NoiseVQVAE(s1_bands=2, dim=128)
    assert vq.alpha == 1.0 and vq.beta == 0.1
    opt = torch.optim.Adam(vq.parameters(), lr=2e-4)  # the paper's pretraining rate
    losses, reconstructions = [], []
    for _ in range(15):
        opt.zero_grad()
        loss, parts = vq.pretraining_loss(y1, y2)
        assert torch.isclose(loss.detach(), parts["reconstruction"] + parts["codebook"] + 0.1 * parts["commitment"])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        reconstructions.append(float(parts["reconstruction"]))
    assert losses[-1] < 0.9 * losses[0], losses
    assert reconstructions[-1] < 0.5 * reconstructions[0], reconstructions
    assert vq(y1).shape == y1.shape

    net = CAMTCR(s2_bands=13, s1_bands=2)
    before = count_parameters(net)
    net.load_sar_encoder(vq)
    assert count_parameters(net) == before  # quantiser and decoder are not part of CA-MTCR
    for key, value in vq.encoder.state_dict().items():
        assert torch.equal(net.sar_encoder.state_dict()[key], value)
    other = CAMTCR(s2_bands=13, s1_bands=2)
    other.load_sar_encoder(vq.state_dict())  # the whole VQ-VAE state dict ("encoder." keys)
    assert torch.equal(other.sar_encoder.conv1.weight, vq.encoder.conv1.weight)
    assert count_parameters(vq.encoder) == count_parameters(model.sar_encoder)


def test_parameter_groups_follow_the_paper(model):
    groups = model.parameter_groups()
    assert [g["lr"] for g in groups] == [1e-4, 1e-5]
    assert sum(p.numel() for g in groups for p in g["params"]) == count_parameters(model)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.sar_encoder.parameters()}


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    net = build_model("ca_mtcr")  # the paper's configuration
    inputs = series(n=2, t=2, seed=11)
    mask = (torch.rand(2, 2, 1, SIZE, SIZE, generator=g) > 0.5).float()
    target = 0.3 * torch.rand(2, 13, SIZE, SIZE, generator=g)
    with pytest.warns(UserWarning, match="without VGG16"):
        loss_fn = CAMTCRLoss()
    opt = torch.optim.Adam(net.parameter_groups(lr=1e-4, sar_lr=1e-5))
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = loss_fn(net(**inputs, mask=mask), target)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


# ------------------------------------------------------------------------------------------------
# loss: 2 L1 + VGG16 features + 250 style, or 2 L1 + SSIM
# ------------------------------------------------------------------------------------------------
class _Payload:
    """Pickles to a call that would create ``marker`` if the file were unpickled unsafely."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vgg")
    state = VGG16Features().state_dict()
    state["classifier.6.bias"] = torch.zeros(1000)  # extra keys of a torchvision vgg16 state dict
    pth = folder / "vgg16.pth"
    torch.save(state, pth)
    from safetensors.torch import save_file

    st = folder / "vgg16.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    return state, pth, st


def test_vgg16_layers_follow_torchvision_naming():
    vgg = VGG16Features()
    convs = [k[len("features."):-len(".weight")] for k in vgg.state_dict() if k.endswith(".weight")]
    assert convs == ["0", "2", "5", "7", "10", "12", "14", "17", "19", "21", "24"]
    assert VGG16_LAYERS == {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 18, "relu5_1": 25}
    out = vgg(torch.rand(1, 3, 32, 32))
    assert [tuple(v.shape[1:]) for v in out.values()] == [
        (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)
    ]
    assert all((v >= 0).all() for v in out.values())  # taps are after the ReLUs


def test_vgg_loss_loads_the_weights_and_combines_the_terms(vgg_files):
    state, pth, st = vgg_files
    loss_fn = CAMTCRLoss(vgg_weights=pth)
    assert loss_fn.mode == "vgg"
    assert torch.equal(loss_fn.vgg.features[0].weight, state["features.0.weight"])
    assert torch.equal(loss_fn.vgg.features[24].bias, state["features.24.bias"])
    assert not any(p.requires_grad for p in loss_fn.vgg.parameters())
    loss_fn.train()
    assert not loss_fn.vgg.training
    g = torch.Generator().manual_seed(0)
    target = 0.3 * torch.rand(2, 13, 32, 32, generator=g)
    pred = (target + 0.05 * torch.randn(2, 13, 32, 32, generator=g)).requires_grad_(True)
    total, terms = loss_fn.terms(pred, target)
    assert terms["feature"] > 0 and terms["style"] > 0
    assert torch.isclose(total.detach(), 2 * l1_loss(pred, target).detach() + terms["feature"] + 250 * terms["style"])
    total.backward()
    assert pred.grad.abs().sum() > 0
    assert float(loss_fn(target, target)) == 0.0
    # VGG sees only B4, B3, B2 (channels 3, 2, 1 of the 13 Level-1C bands)
    other = pred.detach().clone()
    other[:, 10] += 0.2
    _, moved = loss_fn.terms(other, target)
    assert moved["feature"] == terms["feature"] and moved["style"] == terms["style"]
    other[:, 3] += 0.2
    assert loss_fn.terms(other, target)[1]["feature"] != terms["feature"]
    # the same tensors as safetensors give the same loss
    assert torch.isclose(CAMTCRLoss(vgg_weights=st)(pred.detach(), target), total.detach())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_vgg_loss_refuses_files_that_are_not_state_dicts(tmp_path, vgg_files):
    marker = tmp_path / "executed"
    for name, write in [
        ("payload.pth", lambda p: torch.save(_Payload(marker), p)),
        ("payload.pkl", lambda p: p.write_bytes(pickle.dumps(_Payload(marker)))),
    ]:
        path = tmp_path / name
        write(path)
        with pytest.raises(ValueError, match="not a VGG16 weights file"):
            CAMTCRLoss(vgg_weights=path)
        assert not marker.exists()  # nothing was executed
    settings = tmp_path / "settings.pth"
    torch.save({"epoch": 3, "lr": 1e-4}, settings)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        CAMTCRLoss(vgg_weights=settings)
    state = dict(vgg_files[0])
    del state["features.24.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing features.24.weight"):
        CAMTCRLoss(vgg_weights=tmp_path / "partial.pth")
    state = dict(vgg_files[0])
    state["features.0.weight"] = torch.zeros(64, 13, 3, 3)
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong shapes"):
        CAMTCRLoss(vgg_weights=tmp_path / "wrong.pth")
    with pytest.raises(FileNotFoundError):
        CAMTCRLoss(vgg_weights=tmp_path / "absent.pth")


def test_loss_without_vgg_is_l1_plus_ssim_and_says_so():
    with pytest.warns(UserWarning, match=r"2\*L1 \+ 1\*\(1 - SSIM\)"):
        loss_fn = CAMTCRLoss()
    assert loss_fn.mode == "l1_ssim" and loss_fn.vgg is None
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 13, 16, 16, generator=g), torch.rand(2, 13, 16, 16, generator=g)
    assert torch.isclose(loss_fn(pred, target), 2 * l1_loss(pred, target) + ssim_loss(pred, target))


# ------------------------------------------------------------------------------------------------
# shipped weights
# ------------------------------------------------------------------------------------------------
def test_shipped_weights_are_the_optical_only_compact_variant_and_say_so():
    from topoclear.engine import checkpoints
    from topoclear.engine.clouds.weights import WEIGHTS_DIR

    path = pathlib.Path(WEIGHTS_DIR) / "ca_mtcr_nosar.safetensors"
    if not path.is_file():
        pytest.skip("no shipped CA-MTCR weights")
    model, card = checkpoints.load_model(path, expect_model="ca_mtcr")
    layout = model.input_layout
    assert layout.s1 == () and layout.inputs == ("s2",) and model.sar_encoder is None
    assert card["weights"]["dtype"] == "float16"
    assert model.optical_encoder is not None and len(model.optical_encoder.blocks) == 9  # L = 9 as in the paper
    text = str(card["description"]) + str(card["training"])
    assert "(1 - SSIM)" in text and "VGG16" in text and "no real Sentinel-1 time series" in text
    held = card["metrics"]["held_out"]["real_series"]
    assert {"1", "2", "4", "all"} <= set(held["by_auxiliary_dates"])
    # a forward pass with any number of dates
    x = torch.rand(1, 3, len(layout.s2), 32, 32)
    with torch.no_grad():
        assert model(x, mask=torch.zeros(1, 3, 1, 32, 32)).shape == (1, len(layout.output), 32, 32)

"""Losses on tiny hand-computed tensors: L1, CARL, TMARL, SSIM, the conditional-GAN objective."""
from __future__ import annotations

import math

import pytest
import torch

from topoclear.models.losses import (
    LOSSES,
    CARLLoss,
    CGANDiscriminatorLoss,
    CGANGeneratorLoss,
    L1SSIMLoss,
    TMARLLoss,
    carl_loss,
    discriminator_loss,
    generator_loss,
    l1_loss,
    l1_ssim_loss,
    ssim_loss,
    tmarl_loss,
)

D = torch.float64


def t(values, shape=(1, 1, 2, 2)):
    return torch.tensor(values, dtype=D).reshape(shape)


# A 1x1x2x2 case worked out by hand:
#   P = [0.2 0.4; 0.6 0.8], T = [0.0 0.4; 1.0 0.5], I = [0.3 0.1; 0.6 0.9]
#   |P-T| = [0.2 0.0; 0.4 0.3] -> mean 0.225;  |P-I| = [0.1 0.3; 0.0 0.1] -> mean 0.125
P = t([0.2, 0.4, 0.6, 0.8])
T = t([0.0, 0.4, 1.0, 0.5])
I = t([0.3, 0.1, 0.6, 0.9])
CSM = t([1, 0, 0, 1])  # cloud top-left, shadow bottom-right
CM = t([1, 0, 0, 0])
SM = t([0, 0, 0, 1])


def test_l1_hand():
    assert l1_loss(P, T).item() == pytest.approx(0.225)
    assert l1_loss(P, I).item() == pytest.approx(0.125)


def test_carl_hand():
    # adaptive part: CSM|P-T| + (1-CSM)|P-I| = [0.2 0.3; 0.0 0.3] -> 0.8 / 4 = 0.2
    assert carl_loss(P, T, I, CSM).item() == pytest.approx(0.2 + 0.225)
    assert carl_loss(P, T, I, CSM, lam=0.5).item() == pytest.approx(0.2 + 0.5 * 0.225)
    assert CARLLoss(lam=0.0)(P, T, I, CSM).item() == pytest.approx(0.2)


def test_carl_edge_cases():
    g = torch.Generator().manual_seed(0)
    p, tg, i = (torch.rand(2, 3, 8, 8, generator=g, dtype=D) for _ in range(3))
    ones = torch.ones(2, 1, 8, 8, dtype=D)
    zeros = torch.zeros(2, 1, 8, 8, dtype=D)
    for lam in (0.0, 1.0, 2.5):
        # everything cloudy: CARL = (1 + lambda) * L1(P, T)
        assert carl_loss(p, tg, i, ones, lam).item() == pytest.approx((1 + lam) * l1_loss(p, tg).item())
        # everything clear: CARL = L1(P, I) + lambda * L1(P, T)
        assert carl_loss(p, tg, i, zeros, lam).item() == pytest.approx(
            l1_loss(p, i).item() + lam * l1_loss(p, tg).item()
        )


def test_mask_broadcasting_shapes_and_dtypes():
    g = torch.Generator().manual_seed(1)
    p, tg, i = (torch.rand(2, 4, 6, 6, generator=g, dtype=D) for _ in range(3))
    m = torch.rand(2, 1, 6, 6, generator=g) > 0.5
    ref = carl_loss(p, tg, i, m.to(D))
    assert carl_loss(p, tg, i, m).item() == pytest.approx(ref.item())  # bool mask
    assert carl_loss(p, tg, i, m[:, 0]).item() == pytest.approx(ref.item())  # (N, H, W)
    assert carl_loss(p, tg, i, m.expand(2, 4, 6, 6)).item() == pytest.approx(ref.item())  # (N, C, H, W)
    # the mean runs over N*C*H*W elements (the N_tot of the paper), not over mask pixels
    manual = (m * (p - tg).abs() + (~m) * (p - i).abs()).sum() / p.numel() + (p - tg).abs().mean()
    assert ref.item() == pytest.approx(manual.item())
    with pytest.raises(ValueError):
        carl_loss(p, tg, i, torch.ones(2, 1, 5, 6))
    with pytest.raises(ValueError):
        carl_loss(p, tg[:, :3], i, m)


def test_tmarl_hand():
    # L_cloud (CM): [0.2 0.3; 0.0 0.1] -> 0.15 ;  L_shadow (SM): [0.1 0.3; 0.0 0.3] -> 0.175
    assert tmarl_loss(P, T, I, CM, SM).item() == pytest.approx(0.8 * 0.15 + 0.2 * 0.175 + 0.225)  # 0.38
    assert tmarl_loss(P, T, I, CM, SM, alpha=1.0).item() == pytest.approx(0.15 + 0.225)
    assert tmarl_loss(P, T, I, CM, SM, alpha=0.0).item() == pytest.approx(0.175 + 0.225)
    assert TMARLLoss(alpha=0.5, lam=2.0)(P, T, I, CM, SM).item() == pytest.approx(0.5 * 0.15 + 0.5 * 0.175 + 0.45)
    assert TMARLLoss().alpha == 0.8  # best alpha of the paper


def test_tmarl_alpha_edge_cases():
    g = torch.Generator().manual_seed(2)
    p, tg, i = (torch.rand(1, 2, 8, 8, generator=g, dtype=D) for _ in range(3))
    cm = (torch.rand(1, 1, 8, 8, generator=g) > 0.6).to(D)
    sm = (torch.rand(1, 1, 8, 8, generator=g) > 0.8).to(D)
    # alpha = 1 ignores the shadow mask, alpha = 0 ignores the cloud mask
    assert tmarl_loss(p, tg, i, cm, sm, alpha=1.0).item() == pytest.approx(tmarl_loss(p, tg, i, cm, 1 - sm, alpha=1.0).item())
    assert tmarl_loss(p, tg, i, cm, sm, alpha=0.0).item() == pytest.approx(tmarl_loss(p, tg, i, 1 - cm, sm, alpha=0.0).item())
    # alpha = 1 is CARL with CSM = CM; same masks give CARL for any alpha
    assert tmarl_loss(p, tg, i, cm, sm, alpha=1.0).item() == pytest.approx(carl_loss(p, tg, i, cm).item())
    for alpha in (0.0, 0.3, 0.8, 1.0):
        assert tmarl_loss(p, tg, i, cm, cm, alpha=alpha).item() == pytest.approx(carl_loss(p, tg, i, cm).item())
    with pytest.raises(ValueError):
        tmarl_loss(p, tg, i, cm, sm, alpha=1.5)


def test_carl_gradient_by_hand():
    p = P.clone().requires_grad_(True)
    carl_loss(p, T, I, CSM).backward()
    # d/dP of [m|P-T| + (1-m)|P-I| + |P-T|] / 4, with d|x|/dx = sign(x) (0 at 0):
    #   px0: m=1, P-T>0 -> (1+1)/4 ; px1: m=0, P-I>0, P-T=0 -> 1/4
    #   px2: m=0, P-I=0, P-T<0 -> -1/4 ; px3: m=1, P-T>0 -> 2/4
    assert p.grad.flatten().tolist() == pytest.approx([0.5, 0.25, -0.25, 0.5])


def test_ssim_loss_hand():
    x = torch.full((1, 1, 16, 16), 0.5, dtype=D)
    y = torch.full((1, 1, 16, 16), 0.6, dtype=D)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-12)
    # constant images: variances and covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    c1 = 0.01**2
    expected = 1 - (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert ssim_loss(x, y).item() == pytest.approx(expected, rel=1e-9)
    # data_range scales the constants: C1 = (0.01 * 2)^2 for [-1, 1] images
    c1 = 0.02**2
    assert ssim_loss(x, y, data_range=2.0).item() == pytest.approx(1 - (0.6 + c1) / (0.61 + c1), rel=1e-9)
    assert l1_ssim_loss(x, y, l1_weight=2.0, ssim_weight=3.0).item() == pytest.approx(2 * 0.1 + 3 * expected)
    assert L1SSIMLoss()(x, y).item() == pytest.approx(0.1 + expected)
    with pytest.raises(ValueError):
        ssim_loss(x[..., :10, :10], y[..., :10, :10])  # smaller than the 11x11 window


def test_ssim_loss_gradcheck():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 2, 12, 13, generator=g, dtype=D, requires_grad=True)
    y = torch.rand(1, 2, 12, 13, generator=g, dtype=D)
    assert torch.autograd.gradcheck(lambda a: ssim_loss(a, y), (x,))


def test_generator_loss_weights_hand():
    x = torch.full((1, 1, 16, 16), 0.5, dtype=D)
    y = torch.full((1, 1, 16, 16), 0.6, dtype=D)
    one_minus_ssim = 1 - (0.6 + 1e-4) / (0.61 + 1e-4)
    total, parts = generator_loss(torch.zeros(1, 1, 4, 4, dtype=D), x, y)
    # BCE(logit 0, label 1) = log 2 ; L1 = 0.1 ; weights 1, 100, 100 (seed 004)
    assert parts["adv"].item() == pytest.approx(math.log(2))
    assert parts["l1"].item() == pytest.approx(0.1)
    assert parts["ssim"].item() == pytest.approx(one_minus_ssim)
    assert total.item() == pytest.approx(math.log(2) + 100 * 0.1 + 100 * one_minus_ssim)
    # non-saturating generator term: -log(sigmoid(2)) = log(1 + e^-2)
    total, parts = CGANGeneratorLoss(adv_weight=1.0, l1_weight=0.0, ssim_weight=0.0)(torch.full((1, 1, 3, 3), 2.0, dtype=D), x, y)
    assert total.item() == pytest.approx(math.log1p(math.exp(-2.0)))


def test_discriminator_loss_hand():
    z = torch.zeros(2, 1, 4, 4, dtype=D)
    assert discriminator_loss(z, z).item() == pytest.approx(math.log(2))  # 0.5 * (log 2 + log 2)
    real = torch.full((2, 1, 4, 4), 3.0, dtype=D)
    fake = torch.full((2, 1, 4, 4), -3.0, dtype=D)
    assert discriminator_loss(real, fake).item() == pytest.approx(math.log1p(math.exp(-3.0)))
    assert CGANDiscriminatorLoss(weight=1.0)(real, fake).item() == pytest.approx(2 * math.log1p(math.exp(-3.0)))


def test_gradients_flow_through_every_loss():
    g = torch.Generator().manual_seed(4)
    shape = (2, 3, 16, 16)
    tg, i = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
    cm = torch.rand(2, 1, 16, 16, generator=g) > 0.7
    sm = torch.rand(2, 1, 16, 16, generator=g) > 0.9
    calls = {
        "l1": lambda p: LOSSES["l1"]()(p, tg),
        "carl": lambda p: LOSSES["carl"]()(p, tg, i, cm | sm),
        "tmarl": lambda p: LOSSES["tmarl"]()(p, tg, i, cm, sm),
        "ssim": lambda p: LOSSES["ssim"]()(p, tg),
        "l1_ssim": lambda p: LOSSES["l1_ssim"](l1_weight=100, ssim_weight=100)(p, tg),
        "gan_g": lambda p: generator_loss(p.mean(dim=1, keepdim=True)[:, :, ::4, ::4] * 4, p, tg)[0],
    }
    for name, fn in calls.items():
        p = torch.rand(shape, generator=g).requires_grad_(True)
        loss = fn(p)
        assert loss.ndim == 0 and torch.isfinite(loss), name
        loss.backward()
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # the discriminator loss reaches the discriminator's logits
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    discriminator_loss(logits, logits.detach() - 1).backward()
    assert logits.grad.abs().sum() > 0

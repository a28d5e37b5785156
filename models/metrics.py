"""Image-quality metrics for cloud removal (torch, CPU or GPU; numpy arrays accepted).

Conventions (REFERENCE section 7, DSen2-CR, UnCRtainTS):

* images are **reflectance in [0, 1]** (DN / 10000, clipped); shapes ``(N, C, H, W)``,
  ``(C, H, W)`` (one sample) or ``(H, W)`` (one band);
* masks are 1 (True) on cloud / cloud-shadow pixels, shapes ``(N, 1, H, W)``, ``(N, H, W)``,
  ``(H, W)`` (one sample), or ``(N, C, H, W)``; they are binarised (``> 0.5``);
* MAE and RMSE in reflectance units, PSNR = 20 log10(data_range / RMSE) in **dB** with
  ``data_range`` 1, SSIM unitless, SAM in **degrees** (CRT-UNet reports radians: divide by
  57.2958 to compare);
* every metric is computed **per sample** and then averaged over the samples
  (``reduction="mean"``); ``reduction="none"`` returns the per-sample values (a float64 tensor
  of shape (N,)). Masked metrics of a sample whose region is empty are NaN and are left out of
  the mean (NaN when no sample has the region).

Non-differentiable entry points (everything except :func:`ssim_map` / :func:`gaussian_window`)
run under ``torch.no_grad()`` in float64.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_window",
    "ssim_map",
    "mae",
    "rmse",
    "psnr",
    "ssim",
    "sam_map",
    "sam",
    "split_metrics",
    "evaluate",
    "metrics_by_cloud_cover",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: SSIM defaults (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03.
SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


# --------------------------------------------------------------------------- helpers
def _as_images(x: ArrayLike) -> torch.Tensor:
    """float64 tensor of shape (N, C, H, W) from (N,C,H,W), (C,H,W) or (H,W)."""
    t = torch.as_tensor(x).detach()
    t = t.to(torch.float64)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[None]
    elif t.ndim != 4:
        raise ValueError(f"expected an image of 2, 3 or 4 dimensions, got shape {tuple(t.shape)}")
    return t


def _as_mask(mask: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    """Boolean mask of shape (N, 1 or C, H, W) matching the images ``like`` (N, C, H, W)."""
    m = torch.as_tensor(mask).detach().to(like.device)
    m = m if m.dtype == torch.bool else m.to(torch.float64) > 0.5
    n, c, h, w = like.shape
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        # (N, H, W): one mask per sample; otherwise (1 or C, H, W) of a single sample
        m = m[:, None] if m.shape[0] == n else m[None]
    if m.ndim != 4 or m.shape[-2:] != (h, w) or m.shape[1] not in (1, c) or m.shape[0] not in (1, n):
        raise ValueError(f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not fit images {tuple(like.shape)}")
    return m.expand(n, m.shape[1], h, w)


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _as_images(pred), _as_images(target)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {tuple(p.shape)} vs {tuple(t.shape)}")
    return p, t.to(p.device)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor | float:
    if reduction == "none":
        return values
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    finite = ~torch.isnan(values)
    return float(values[finite].mean()) if finite.any() else float("nan")


def _masked_mean_per_sample(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (N, C', H, W) per sample, over mask pixels (all channels) when given."""
    n = values.shape[0]
    if mask is None:
        return values.reshape(n, -1).mean(dim=1)
    m = mask.expand_as(values).to(values.dtype)
    total = (values * m).reshape(n, -1).sum(dim=1)
    count = m.reshape(n, -1).sum(dim=1)
    out = total / count
    return torch.where(count > 0, out, torch.full_like(out, float("nan")))


# --------------------------------------------------------------------------- SSIM core
def gaussian_window(
    win_size: int = SSIM_WIN_SIZE,
    sigma: float = SSIM_SIGMA,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``win_size`` taps (the 2-D window is its outer product).

    11 taps with sigma 1.5 is exactly the kernel of ``scipy.ndimage.gaussian_filter(sigma=1.5,
    truncate=3.5)`` that scikit-image uses.
    """
    if win_size % 2 != 1:
        raise ValueError("win_size must be odd")
    x = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2.0
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (N, C, H, W) with no padding ('valid' region)."""
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = SSIM_WIN_SIZE,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> torch.Tensor:
    """Differentiable local SSIM of (N, C, H, W) tensors, shape (N, C, H - win + 1, W - win + 1).

    Gaussian-weighted means, variances and covariance (population form, i.e. scikit-image's
    ``use_sample_covariance=False``), C1 = (K1 L)^2, C2 = (K2 L)^2 with L = ``data_range``.
    **Padding convention**: none. Only windows lying entirely inside the image are evaluated,
    so the map is ``(win_size - 1) // 2`` = 5 px smaller on each side. This is exactly the region
    scikit-image averages (it filters with a padded Gaussian and then crops that border), so
    ``ssim_map(...).mean()`` equals ``structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)``.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim_map expects two (N, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} px are smaller than the {win_size}x{win_size} SSIM window")
    g = gaussian_window(win_size, sigma, dtype=x.dtype, device=x.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    c = x.shape[1]
    stats = _filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), g)
    mu_x, mu_y, e_xx, e_yy, e_xy = torch.split(stats, c, dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


# --------------------------------------------------------------------------- pixel metrics
@torch.no_grad()
def mae(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, reduction: str = "mean"):
    """Mean absolute error (reflectance units), over all bands and (masked) pixels per sample."""
    p, t = _pair(pred, target)
    m = None if mask is None else _as_mask(mask, p)
    return _reduce(_masked_mean_per_sample((p - t).abs(), m), reduction)


@torch.no_grad()
def rmse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None, reduction: str = "mean"):
    """Root-mean-square error (reflectance units) per sample, over all bands and (masked) pixels."""
    p, t = _pair(pred, target)
    m = None if mask is None else _as_mask(mask, p)
    return _reduce(_masked_mean_per_sample((p - t) ** 2, m).sqrt(), reduction)


@torch.no_grad()
def psnr(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    data_range: float = 1.0,
    reduction: str = "mean",
):
    """Peak signal-to-noise ratio in dB: 20 log10(data_range / RMSE) per sample (inf if RMSE = 0).

    With ``mask`` the RMSE is taken over the masked pixels only (seed 004's "PSNR of cloudy
    areas"; pass ``~mask`` for the non-cloudy areas).
    """
    p, t = _pair(pred, target)
    m = None if mask is None else _as_mask(mask, p)
    e = _masked_mean_per_sample((p - t) ** 2, m).sqrt()
    return _reduce(20.0 * torch.log10(data_range / e), reduction)


@torch.no_grad()
def ssim(
    pred: ArrayLike,
    target: ArrayLike,
    data_range: float = 1.0,
    win_size: int = SSIM_WIN_SIZE,
    sigma: float = SSIM_SIGMA,
    reduction: str = "mean",
):
    """Mean SSIM per sample: mean over bands and over the valid window positions of :func:`ssim_map`.

    Agrees with ``skimage.metrics.structural_similarity(target, pred, data_range=1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0)`` on float64
    input.
    """
    p, t = _pair(pred, target)
    s = ssim_map(p, t, data_range=data_range, win_size=win_size, sigma=sigma)
    return _reduce(s.reshape(s.shape[0], -1).mean(dim=1), reduction)


def sam_map(pred: ArrayLike, target: ArrayLike, degrees: bool = True) -> torch.Tensor:
    """Per-pixel spectral angle (N, 1, H, W) between the band vectors of pred and target.

    arccos(<p, t> / (|p| |t|)), with the cosine clamped to [-1, 1]. Zero vectors: if both are
    zero the angle is 0; if only one is zero the angle is 90 deg (the largest angle two
    non-negative reflectance spectra can make), so the result is never NaN.
    """
    p, t = _pair(pred, target)
    dot = (p * t).sum(dim=1, keepdim=True)
    norm = p.norm(dim=1, keepdim=True) * t.norm(dim=1, keepdim=True)
    cos = torch.where(norm > 0, dot / norm.clamp_min(torch.finfo(p.dtype).tiny), torch.zeros_like(dot))
    angle = torch.arccos(cos.clamp(-1.0, 1.0))
    both_zero = (p.abs().sum(dim=1, keepdim=True) == 0) & (t.abs().sum(dim=1, keepdim=True) == 0)
    angle = torch.where(both_zero, torch.zeros_like(angle), angle)
    return torch.rad2deg(angle) if degrees else angle


@torch.no_grad()
def sam(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike | None = None,
    degrees: bool = True,
    reduction: str = "mean",
):
    """Spectral angle mapper: mean over (masked) pixels of :func:`sam_map`, degrees by default."""
    a = sam_map(pred, target, degrees=degrees)
    m = None if mask is None else _as_mask(mask, _as_images(pred))[:, :1]
    return _reduce(_masked_mean_per_sample(a, m), reduction)


# --------------------------------------------------------------------------- DSen2-CR split
@torch.no_grad()
def split_metrics(
    pred: ArrayLike,
    target: ArrayLike,
    cloudy: ArrayLike,
    mask: ArrayLike,
    reduction: str = "mean",
) -> dict:
    """DSen2-CR's Target / Reproduction / Reconstruction split of MAE and SAM (Table 1).

    * ``*_target``: prediction vs target over the whole image;
    * ``*_reproduction``: prediction vs the **cloudy input** on clear pixels (mask == 0): how
      well the network keeps what was visible;
    * ``*_reconstruction``: prediction vs target inside the cloud/shadow mask (mask == 1).

    MAE in reflectance, SAM in degrees.
    """
    p, t = _pair(pred, target)
    i = _as_images(cloudy).to(p.device)
    if i.shape != p.shape:
        raise ValueError(f"cloudy input shape {tuple(i.shape)} differs from prediction {tuple(p.shape)}")
    m = _as_mask(mask, p)[:, :1]
    return {
        "mae_target": mae(p, t, reduction=reduction),
        "mae_reproduction": mae(p, i, mask=~m, reduction=reduction),
        "mae_reconstruction": mae(p, t, mask=m, reduction=reduction),
        "sam_target": sam(p, t, reduction=reduction),
        "sam_reproduction": sam(p, i, mask=~m, reduction=reduction),
        "sam_reconstruction": sam(p, t, mask=m, reduction=reduction),
    }


@torch.no_grad()
def evaluate(
    pred: ArrayLike,
    target: ArrayLike,
    cloudy: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    data_range: float = 1.0,
    per_sample: bool = False,
) -> dict:
    """All metrics of a prediction against its cloud-free target.

    ``pred``, ``target`` and ``cloudy`` are reflectance in [0, 1], (N, C, H, W) or (C, H, W);
    ``mask`` is the cloud/cloud-shadow mask (1 = cloud or shadow).

    Always: ``mae``, ``rmse`` (reflectance), ``psnr`` (dB), ``ssim`` (unitless), ``sam``
    (degrees), all prediction vs target over the whole image (DSen2-CR's "Target").
    With ``mask``: ``cloud_fraction`` (0..1), ``psnr_cloudy`` / ``psnr_clear`` (dB, prediction
    vs target inside / outside the mask, seed 004), ``mae_reconstruction``,
    ``sam_reconstruction`` (inside the mask). With ``mask`` and ``cloudy``:
    ``mae_reproduction``, ``sam_reproduction`` (prediction vs cloudy input on clear pixels).

    Values are means over samples (floats), or per-sample lists with ``per_sample=True``
    (e.g. to feed :func:`metrics_by_cloud_cover`).
    """
    if cloudy is not None and mask is None:
        raise ValueError("reproduction metrics need the cloud mask: pass mask together with cloudy")
    red = "none" if per_sample else "mean"
    p, t = _pair(pred, target)
    out = {
        "mae": mae(p, t, reduction=red),
        "rmse": rmse(p, t, reduction=red),
        "psnr": psnr(p, t, data_range=data_range, reduction=red),
        "ssim": ssim(p, t, data_range=data_range, reduction=red),
        "sam": sam(p, t, reduction=red),
    }
    if mask is not None:
        m = _as_mask(mask, p)[:, :1]
        frac = m.to(torch.float64).reshape(m.shape[0], -1).mean(dim=1)
        out["cloud_fraction"] = _reduce(frac, red)
        out["psnr_cloudy"] = psnr(p, t, mask=m, data_range=data_range, reduction=red)
        out["psnr_clear"] = psnr(p, t, mask=~m, data_range=data_range, reduction=red)
        out["mae_reconstruction"] = mae(p, t, mask=m, reduction=red)
        out["sam_reconstruction"] = sam(p, t, mask=m, reduction=red)
        if cloudy is not None:
            i = _as_images(cloudy).to(p.device)
            out["mae_reproduction"] = mae(p, i, mask=~m, reduction=red)
            out["sam_reproduction"] = sam(p, i, mask=~m, reduction=red)
    if per_sample:
        out = {k: v.tolist() for k, v in out.items()}
    return out


# --------------------------------------------------------------------------- cloud-cover bins
def metrics_by_cloud_cover(
    cloud_fractions: Sequence[float] | np.ndarray,
    metrics: Mapping[str, Sequence[float]],
    bin_width: float = 0.1,
) -> list[dict]:
    """Per-cloud-cover breakdown (CRT-UNet Fig. 8): samples grouped in bins of ``bin_width``.

    ``cloud_fractions``: one cloud (or cloud + shadow) fraction per sample in [0, 1];
    ``metrics``: name -> one value per sample (e.g. ``evaluate(..., per_sample=True)``).
    Bins are [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] (the last one closed, so a fully covered
    sample counts in 90-100 %). Returns one dict per bin, empty bins included:
    ``{"bin": "0-10%", "low": 0.0, "high": 0.1, "count": n, <metric>: mean or NaN}``. NaN
    values of a metric (e.g. reconstruction MAE of a clear sample) are left out of its mean.
    """
    f = np.asarray(cloud_fractions, dtype=np.float64).ravel()
    if np.any(~np.isfinite(f)) or np.any(f < 0) or np.any(f > 1):
        raise ValueError("cloud fractions must be finite and within [0, 1] (fractions, not percent)")
    nbins = int(round(1.0 / bin_width))
    if not math.isclose(nbins * bin_width, 1.0):
        raise ValueError("bin_width must divide 1 (e.g. 0.1, 0.2, 0.25)")
    values = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in metrics.items()}
    for k, v in values.items():
        if v.shape != f.shape:
            raise ValueError(f"metric {k!r} has {v.size} values for {f.size} samples")
    idx = np.minimum(np.floor(f / bin_width + 1e-9).astype(int), nbins - 1)
    rows = []
    for b in range(nbins):
        sel = idx == b
        lo, hi = b * bin_width, (b + 1) * bin_width
        row = {"bin": f"{round(lo * 100):d}-{round(hi * 100):d}%", "low": lo, "high": hi, "count": int(sel.sum())}
        for k, v in values.items():
            vals = v[sel]
            vals = vals[~np.isnan(vals)]
            row[k] = float(vals.mean()) if vals.size else float("nan")
        rows.append(row)
    return rows

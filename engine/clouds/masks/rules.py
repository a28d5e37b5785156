"""Cloud and cloud-shadow masks for Sentinel-2 (numpy + scipy.ndimage only).

* **Rule-based L1C masks** used by DSen2-CR (Meraner et al. 2020, ISPRS J., section 3.4) to
  build the cloud/cloud-shadow mask (CSM) of its CARL loss, and by TMARL for its separate cloud
  (CM) and shadow (SM) masks:

  - cloud score after Schmitt et al. (2019), inherited from the Earth Engine Sentinel-2 cloud
    score; on top-of-atmosphere reflectance (DN / 10000), needs B1 and B10;
  - cloud shadow after Zhai et al. (2018): a cloud-shadow index CSI = (B8 + B11) / 2 and a
    blue threshold, both relative to **scene statistics** (see :func:`shadow_thresholds`).

  The rules, band combinations, limits (TCL = 0.2, t3 = 3/4, t4 = 5/6) and the filter
  sequence (5x5 grey closing, 7x7 box mean, 5x5 median) follow the published DSen2-CR
  implementation, including its border handling (the box mean and the median treat pixels
  outside the image as 0) and its unclipped per-rule rescaling (see :func:`cloud_score_l1c`).

(the Sen2Cor SCL classes of Level-2A products are in :mod:`.scl`).

Band arguments are mappings from band names (``'B1' .. 'B12'``, ``'B8A'``, ``'B10'``) to 2-D
arrays of **reflectance** (DN / 10000, or (DN + offset) / 10000 for processing baseline
>= 04.00, see :func:`dn_to_reflectance`). All bands must already share one grid (resample the
20 m / 60 m bands to the 10 m grid, e.g. nearest neighbour, before calling). Use
:func:`bands_from_stack` to turn a (13, H, W) L1C stack in the SEN12MS-CR / DSen2-CR order
B1, B2, B3, B4, B5, B6, B7, B8, B8A, B9, B10, B11, B12 into such a mapping.

Working on windows of a large scene:

* the cloud score is local: every output pixel depends on input pixels at most
  :data:`CLOUD_SCORE_HALO` = 7 px away (closing 2 + 2, box mean 3). Read each window with that
  halo and crop it off, and the result equals the whole-image result (except at the true scene
  border, where the zero padding of the reference implementation applies);
* the shadow mask is **not** local: T3 and T4 are the minimum and mean of CSI and B2 over the
  whole image. Computing them per window makes every window self-normalising, so the same
  ground pixel can be shadow in one window and clear in the next. A windowed caller must
  first compute the thresholds once over the full scene (or a decimated overview of it, at
  the cost of a slightly higher minimum) with :func:`shadow_thresholds` and then pass them to
  :func:`shadow_mask_l1c` for every window (halo :data:`SHADOW_HALO` = 2 px for the median).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from ....models.bands import S2_BANDS_L1C

__all__ = [
    "CLOUD_THRESHOLD",
    "CLOUD_SCORE_HALO",
    "SHADOW_HALO",
    "dn_to_reflectance",
    "bands_from_stack",
    "rescale",
    "normalized_difference",
    "cloud_score_l1c",
    "cloud_mask_l1c",
    "shadow_thresholds",
    "shadow_mask_l1c",
    "cloud_shadow_masks_l1c",
    "mask_fraction",
]


#: Binarisation threshold T_CL of the smoothed cloud score (DSen2-CR, chosen visually).
CLOUD_THRESHOLD = 0.2
#: Pixels of context the cloud score needs on each side of a window.
CLOUD_SCORE_HALO = 7
#: Pixels of context the shadow median filter needs on each side of a window.
SHADOW_HALO = 2



def dn_to_reflectance(dn: np.ndarray, offset: float = 0.0, quantification: float = 10000.0) -> np.ndarray:
    """Digital numbers to reflectance: ``(DN + offset) / quantification`` as float32.

    ``offset`` is 0 before processing baseline 04.00 and ``BOA_ADD_OFFSET`` /
    ``RADIO_ADD_OFFSET`` (-1000) from it on (25 January 2022). No clipping is applied.
    """
    return ((np.asarray(dn, dtype=np.float64) + offset) / quantification).astype(np.float32)


def bands_from_stack(
    stack: np.ndarray,
    order: Sequence[str] = S2_BANDS_L1C,
    scale: float | None = 1.0 / 10000.0,
    offset: float = 0.0,
) -> dict[str, np.ndarray]:
    """Split a (bands, H, W) stack into ``{band name: 2-D array}``.

    ``order`` names the bands along axis 0 (default: the 13-band L1C order). With ``scale``
    (default 1/10000) the arrays are converted from DN to reflectance as
    ``(DN + offset) * scale`` in float64; pass ``scale=None`` when the stack already holds
    reflectance.
    """
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.shape[0] != len(order):
        raise ValueError(f"expected a ({len(order)}, H, W) stack for bands {list(order)}, got {stack.shape}")
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(order):
        band = stack[i].astype(np.float64)
        if scale is not None:
            band = (band + offset) * scale
        out[name] = band
    return out


def rescale(x: np.ndarray, limits: Sequence[float], clip: bool = False) -> np.ndarray:
    """Linear ramp ``(x - a) / (b - a)`` for ``limits = (a, b)``; ``b < a`` gives a falling ramp.

    With ``clip=True`` the result is limited to [0, 1] (``r(x, [a, b])`` of the formulas).
    """
    a, b = float(limits[0]), float(limits[1])
    r = (x - a) / (b - a)
    return np.clip(r, 0.0, 1.0) if clip else r


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)``; a zero sum is replaced by 0.001 (as in the reference code)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    s = a + b
    s = np.where(s == 0, 0.001, s)
    return (a - b) / s


def _band(bands: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        arr = bands[name]
    except KeyError:
        raise KeyError(f"band {name!r} is required (have {sorted(bands)})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"band {name} must be a 2-D array, got shape {arr.shape}")
    return arr


def cloud_score_l1c(
    bands: Mapping[str, np.ndarray],
    clip_terms: bool = False,
    moisture_check: bool = False,
    edge_mode: str = "constant",
) -> np.ndarray:
    """Smoothed cloud score in [1e-5, 1] (float32, shape H x W) from L1C TOA reflectance.

    Needs B1, B2, B3, B4, B11 and B10 (B8 too with ``moisture_check``). Cloud until proven
    otherwise: start at 1 and take the minimum with

    * r(B2, [0.1, 0.5])            clouds are bright in blue,
    * r(B1, [0.1, 0.3])            ... and in the aerosol band,
    * r(B1 + B10, [0.15, 0.2])     ... and in aerosol + cirrus,
    * r(B4 + B3 + B2, [0.2, 0.8])  ... and in all visible bands,
    * r(NDMI, [-0.1, 0.1])         clouds are moist (only with ``moisture_check``; off in
      DSen2-CR), NDMI = (B8 - B11) / (B8 + B11),
    * r(NDSI, [0.8, 0.6])          but clouds are not snow, NDSI = (B3 - B11) / (B3 + B11),

    where r(x, [a, b]) = (x - a) / (b - a). Then a 5x5 grey closing (reflecting border), a 7x7
    box mean and a clip to [1e-5, 1].

    ``clip_terms``: the DSen2-CR implementation does **not** clip each r() to [0, 1], so dark
    pixels carry negative scores that lower the 7x7 mean of their bright neighbours (cloud
    edges shrink a little); ``clip_terms=True`` clips each term to [0, 1] as the formula is
    often written. ``edge_mode``: border handling of the box mean, ``"constant"`` (zeros
    outside, as the reference ``convolve2d(mode='same')``) or any ``scipy.ndimage`` mode such as
    ``"reflect"``.
    """
    b1 = _band(bands, "B1")
    b2 = _band(bands, "B2")
    b3 = _band(bands, "B3")
    b4 = _band(bands, "B4")
    b10 = _band(bands, "B10")
    b11 = _band(bands, "B11")

    score = np.ones_like(b2)
    score = np.minimum(score, rescale(b2, (0.1, 0.5), clip_terms))
    score = np.minimum(score, rescale(b1, (0.1, 0.3), clip_terms))
    score = np.minimum(score, rescale(b1 + b10, (0.15, 0.2), clip_terms))
    score = np.minimum(score, rescale(b4 + b3 + b2, (0.2, 0.8), clip_terms))
    if moisture_check:
        ndmi = normalized_difference(_band(bands, "B8"), b11)
        score = np.minimum(score, rescale(ndmi, (-0.1, 0.1), clip_terms))
    ndsi = normalized_difference(b3, b11)
    score = np.minimum(score, rescale(ndsi, (0.8, 0.6), clip_terms))

    score = ndimage.grey_closing(score, size=(5, 5), mode="reflect")
    score = ndimage.uniform_filter(score, size=7, mode=edge_mode, cval=0.0)
    return np.clip(score, 1e-5, 1.0).astype(np.float32)


def cloud_mask_l1c(
    bands: Mapping[str, np.ndarray],
    threshold: float = CLOUD_THRESHOLD,
    **score_kwargs,
) -> np.ndarray:
    """Boolean cloud mask (H x W): ``cloud_score_l1c(bands) >= threshold`` (T_CL = 0.2)."""
    return cloud_score_l1c(bands, **score_kwargs) >= threshold


def shadow_thresholds(
    bands: Mapping[str, np.ndarray],
    valid: np.ndarray | None = None,
    t3: float = 3.0 / 4.0,
    t4: float = 5.0 / 6.0,
) -> tuple[float, float]:
    """Scene thresholds ``(T3, T4)`` of the Zhai et al. (2018) shadow test.

    CSI = (B8 + B11) / 2; T3 = min(CSI) + t3 (mean(CSI) - min(CSI));
    T4 = min(B2) + t4 (mean(B2) - min(B2)), with t3 = 3/4 and t4 = 5/6 as in DSen2-CR.

    The statistics are taken over the pixels given (optionally only where ``valid`` is True,
    e.g. to leave nodata out). They describe the scene, not the pixel: compute them once over
    the whole image and reuse them for every window of it.
    """
    b2 = _band(bands, "B2")
    csi = (_band(bands, "B8") + _band(bands, "B11")) / 2.0
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if not valid.any():
            raise ValueError("no valid pixel to compute the shadow thresholds")
        b2, csi = b2[valid], csi[valid]
    csi_min, b2_min = float(csi.min()), float(b2.min())
    T3 = csi_min + t3 * (float(csi.mean()) - csi_min)
    T4 = b2_min + t4 * (float(b2.mean()) - b2_min)
    return T3, T4


def shadow_mask_l1c(
    bands: Mapping[str, np.ndarray],
    thresholds: tuple[float, float] | None = None,
    median_size: int = 5,
) -> np.ndarray:
    """Boolean cloud-shadow mask (H x W) after Zhai et al. (2018), as used by DSen2-CR.

    Needs B2, B8 and B11 (reflectance). Raw shadow where CSI < T3 and B2 < T4, then a
    ``median_size`` x ``median_size`` median filter with zeros outside the image (a pixel stays
    shadow when at least 13 of the 25 pixels of its window are raw shadow).

    ``thresholds``: ``(T3, T4)`` from :func:`shadow_thresholds`; computed from ``bands`` when
    None. Pass the whole-scene thresholds when ``bands`` is only a window of a scene.
    Water is dark in NIR/SWIR and blue too, so this test also flags water bodies.
    """
    b2 = _band(bands, "B2")
    csi = (_band(bands, "B8") + _band(bands, "B11")) / 2.0
    T3, T4 = thresholds if thresholds is not None else shadow_thresholds(bands)
    raw = ((csi < T3) & (b2 < T4)).astype(np.uint8)
    return ndimage.median_filter(raw, size=median_size, mode="constant", cval=0).astype(bool)


def cloud_shadow_masks_l1c(
    bands: Mapping[str, np.ndarray],
    cloud_threshold: float = CLOUD_THRESHOLD,
    thresholds: tuple[float, float] | None = None,
    **score_kwargs,
) -> dict[str, np.ndarray]:
    """Cloud mask CM, shadow mask SM and CSM = CM or SM (TMARL eq. 3), all boolean H x W.

    ``thresholds``: whole-scene ``(T3, T4)`` of the shadow test (see :func:`shadow_thresholds`).
    Returns ``{"score": float32 cloud score, "cloud": CM, "shadow": SM, "csm": CM | SM}``.
    In DSen2-CR's three-class encoding a pixel that is both is a cloud: use
    ``shadow & ~cloud`` for a shadow-only class.
    """
    score = cloud_score_l1c(bands, **score_kwargs)
    cloud = score >= cloud_threshold
    shadow = shadow_mask_l1c(bands, thresholds=thresholds)
    return {"score": score, "cloud": cloud, "shadow": shadow, "csm": cloud | shadow}


def mask_fraction(mask: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Fraction of True pixels of ``mask`` (over ``valid`` pixels when given); NaN if none."""
    mask = np.asarray(mask, dtype=bool)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        n = int(valid.sum())
        return float((mask & valid).sum() / n) if n else float("nan")
    return float(mask.mean()) if mask.size else float("nan")

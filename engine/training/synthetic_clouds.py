"""Synthetic clouds and cloud shadows on clear Sentinel-2 images (numpy + scipy only).

Training pairs with a perfectly known target: take a real clear image, lay a simulated cloud
field over it and keep the clear image as the target. Seed 004 (Darbaghshahi et al.) built its
cloud-removal training set this way, by alpha blending (Porter and Duff 1984) cloud layers onto
clear optical images. Everything here is deterministic for a given seed.

The model, step by step (all images in the units of the input, e.g. reflectance x 10000):

1. **Thickness field.** Gaussian white noise filtered in the Fourier domain by an amplitude
   ``|k|^(-beta/2)`` (power spectrum ``|k|^-beta``, ``beta`` = 3 by default, a rough
   fractal field like real cloud fields; wavelengths longer than ``max_scale_px`` are not
   boosted further, so the largest clouds are about that size). The field is standardised and
   thresholded at the quantile that leaves ``coverage`` of the pixels under cloud.
2. **Opacity.** ``alpha = max_opacity * clip((field - threshold) / ramp, 0, 1) ** gamma``:
   ``ramp`` (in standard deviations of the field) sets how soft cloud edges are. Two kinds:
   *thick* (``max_opacity`` ~ 1, short ramp: opaque cores, as in seed 004) and *thin*
   (``max_opacity`` 0.25-0.6, long ramp: haze through which the ground stays visible).
   ``"mixed"`` lays a thin layer and a thick layer over each other (``alpha = 1 - (1 -
   a_thin)(1 - a_thick)``).
3. **Cloud shadow.** Each cloud casts a shadow displaced away from the sun by
   ``cloud_height_m * tan(sun_zenith) / pixel_size_m`` pixels along the azimuth
   ``sun_azimuth + 180`` (clockwise from north; rows grow southwards). The field is generated
   on a canvas larger than the image, so clouds just outside the frame still cast shadows into
   it. In the shadow the ground is darkened: ``clear * (1 - shadow_strength * a_shifted *
   band_factor)``; ``band_factor`` is lower in the blue (more diffuse skylight reaches
   shadows at short wavelengths) and 1 from the red edge on (:data:`SHADOW_BAND_FACTORS`).
4. **Blending.** ``cloudy = (1 - alpha) * shadowed + alpha * cloud``, with the cloud spectrum
   :data:`CLOUD_SPECTRUM` (top-of-atmosphere reflectance per band) times a brightness texture
   ``1 + brightness_variation * n`` (``n`` a second smooth field in [-1, 1]).

Masks returned: ``cloud_mask = alpha >= mask_threshold``; ``shadow_mask = visible shadow``,
i.e. ``shadow_strength * a_shifted >= mask_threshold`` and not under the cloud mask (a cloud
hides the shadow beneath it; DSen2-CR's encoding also gives cloud priority).

:data:`CLOUD_SPECTRUM` was measured on real data: the median Level-1C spectrum of the pixels
whose DSen2-CR cloud score (:func:`topoclear.engine.clouds.masks.rules.cloud_score_l1c`) exceeds 0.9 in the
SEN12MS-CR cloudy patches ``19_p30``, ``26_p100`` and ``39_p500`` (low cumulus: bright and
nearly flat from blue to NIR, somewhat darker in the SWIR, dark in the water-vapour band B9 and
almost invisible in the cirrus band B10, as low clouds are).

The noise field is computed over the whole image with an FFT: this module is meant for patches
and small scenes (a few thousand pixels on a side), which is what training pairs are.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = [
    "CLOUD_SPECTRUM",
    "SHADOW_BAND_FACTORS",
    "CloudParameters",
    "SyntheticClouds",
    "fractal_field",
    "random_parameters",
    "add_synthetic_clouds",
    "cloud_optics",
    "write_synthetic_pair",
]

#: Top-of-atmosphere reflectance of a thick low cloud per Sentinel-2 band (see module docstring).
CLOUD_SPECTRUM: Dict[str, float] = {
    "B1": 0.48, "B2": 0.49, "B3": 0.49, "B4": 0.53, "B5": 0.52, "B6": 0.59, "B7": 0.64,
    "B8": 0.59, "B8A": 0.67, "B9": 0.12, "B10": 0.005, "B11": 0.58, "B12": 0.45,
}
#: Reflectance used for bands not in :data:`CLOUD_SPECTRUM` (e.g. generic band names).
DEFAULT_CLOUD_REFLECTANCE = 0.5
#: Relative darkening of each band in cloud shadow (1 = full ``shadow_strength``).
SHADOW_BAND_FACTORS: Dict[str, float] = {"B1": 0.6, "B2": 0.7, "B3": 0.8, "B4": 0.9}
KINDS = ("thick", "thin", "mixed")


@dataclass(frozen=True)
class CloudParameters:
    """Parameters of one synthetic cloud layer and its shadow (see the module docstring).

    Attributes:
        coverage: fraction of pixels with non-zero cloud opacity (0-1).
        kind: ``"thick"``, ``"thin"`` or ``"mixed"``.
        max_opacity: opacity of the thickest cloud (thick layer; the thin layer of ``"mixed"``
            uses ``thin_opacity``).
        thin_opacity: peak opacity of thin clouds.
        ramp: edge softness of thick clouds, in standard deviations of the field.
        thin_ramp: edge softness of thin clouds.
        gamma: exponent of the opacity ramp (>1 gives thinner edges).
        beta: spectral slope of the field (power spectrum ``|k|^-beta``).
        max_scale_px: wavelength (px) above which the spectrum stops rising.
        brightness_variation: relative texture of the cloud tops (0 = flat colour).
        sun_azimuth: degrees clockwise from north.
        sun_zenith: degrees from vertical.
        cloud_height_m: height of the cloud layer above the ground, metres.
        pixel_size_m: ground size of one pixel, metres.
        shadow_strength: fraction of light removed under an opaque cloud's shadow (0 = none).
        mask_threshold: opacity (and shadow darkening) from which a pixel counts as masked.
    """

    coverage: float = 0.3
    kind: str = "thick"
    max_opacity: float = 1.0
    thin_opacity: float = 0.45
    ramp: float = 0.6
    thin_ramp: float = 2.0
    gamma: float = 1.0
    beta: float = 3.0
    max_scale_px: float = 128.0
    brightness_variation: float = 0.12
    sun_azimuth: float = 150.0
    sun_zenith: float = 35.0
    cloud_height_m: float = 1500.0
    pixel_size_m: float = 10.0
    shadow_strength: float = 0.6
    mask_threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.coverage <= 1.0:
            raise ValueError(f"coverage must lie in [0, 1], got {self.coverage}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("max_opacity", "thin_opacity", "shadow_strength"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        for name in ("ramp", "thin_ramp", "gamma", "max_scale_px", "pixel_size_m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.sun_zenith < 90.0:
            raise ValueError(f"sun_zenith must lie in [0, 90), got {self.sun_zenith}")

    @property
    def shadow_offset_px(self) -> tuple[int, int]:
        """(rows, cols) by which shadows are displaced from their clouds (rows grow southwards)."""
        distance = self.cloud_height_m * math.tan(math.radians(self.sun_zenith)) / self.pixel_size_m
        away = math.radians(self.sun_azimuth + 180.0)
        return int(round(-distance * math.cos(away))), int(round(distance * math.sin(away)))


@dataclass
class SyntheticClouds:
    """Result of :func:`add_synthetic_clouds`.

    ``cloudy`` has the shape, units and float dtype of the clear input; masks are boolean
    (H, W); ``opacity`` and ``shadow`` are the float32 alpha of the cloud and the darkening
    of its shadow (0-1); ``parameters`` are the values used (for a model card or a log).
    """

    cloudy: np.ndarray
    cloud_mask: np.ndarray
    shadow_mask: np.ndarray
    opacity: np.ndarray
    shadow: np.ndarray
    parameters: CloudParameters
    seed: Optional[int] = None
    band_names: Sequence[str] = field(default_factory=tuple)

    @property
    def csm(self) -> np.ndarray:
        """Cloud or cloud shadow (DSen2-CR's CSM)."""
        return self.cloud_mask | self.shadow_mask

    def describe(self) -> dict:
        """Parameters, seed and mask fractions as a JSON-ready dict."""
        return {
            "method": "synthetic clouds: fractal opacity field, alpha blending toward a measured cloud spectrum, "
                      "shadows displaced away from the sun and darkened (topoclear.engine.training.synthetic_clouds)",
            "seed": self.seed,
            "parameters": asdict(self.parameters),
            "cloud_fraction": float(self.cloud_mask.mean()),
            "shadow_fraction": float(self.shadow_mask.mean()),
        }


def fractal_field(shape: tuple[int, int], rng: np.random.Generator, beta: float = 3.0,
                  max_scale_px: float = 128.0) -> np.ndarray:
    """Smooth random field (H, W), zero mean and unit standard deviation, power spectrum ~|k|^-beta."""
    h, w = int(shape[0]), int(shape[1])
    noise = rng.standard_normal((h, w))
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.sqrt(kx * kx + ky * ky)
    k = np.maximum(k, 1.0 / max_scale_px)  # flatten the spectrum beyond the largest scale
    amplitude = k ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    out = np.fft.irfft2(np.fft.rfft2(noise) * amplitude, s=(h, w))
    std = out.std()
    return ((out - out.mean()) / std if std > 0 else out).astype(np.float64)


def _layer(field_: np.ndarray, coverage: float, peak: float, ramp: float, gamma: float) -> np.ndarray:
    """Opacity of one layer: the top ``coverage`` of the field, ramped up to ``peak``."""
    if coverage <= 0.0:
        return np.zeros_like(field_)
    threshold = np.quantile(field_, 1.0 - coverage) if coverage < 1.0 else field_.min() - 1e-6
    return peak * np.clip((field_ - threshold) / ramp, 0.0, 1.0) ** gamma


def random_parameters(rng: np.random.Generator, **fixed) -> CloudParameters:
    """Random but plausible parameters: coverage 0.1-0.6, a random kind, sun azimuth 90-270 deg,
    zenith 20-50 deg, cloud height 300-1500 m. Keywords fix any parameter."""
    values = dict(
        coverage=float(rng.uniform(0.1, 0.6)),
        kind=str(rng.choice(KINDS)),
        thin_opacity=float(rng.uniform(0.25, 0.6)),
        sun_azimuth=float(rng.uniform(90.0, 270.0)),
        sun_zenith=float(rng.uniform(20.0, 50.0)),
        cloud_height_m=float(rng.uniform(300.0, 1500.0)),
        shadow_strength=float(rng.uniform(0.4, 0.75)),
    )
    values.update(fixed)
    return CloudParameters(**values)


def add_synthetic_clouds(
    clear: np.ndarray,
    band_names: Sequence[str],
    seed: Optional[int] = 0,
    parameters: Optional[CloudParameters] = None,
    reflectance_scale: float = 10000.0,
    **overrides,
) -> SyntheticClouds:
    """Lay synthetic clouds and their shadows over a clear (bands, H, W) image.

    Args:
        clear: clear image, (C, H, W), in reflectance x ``reflectance_scale`` (10000 for
            Sentinel-2 digital numbers; 1 for reflectance).
        band_names: name of each band (``"B2"``...), to pick the cloud spectrum and shadow factors.
        seed: seed of the random fields (same seed, same clouds).
        parameters: a :class:`CloudParameters`; None draws them with :func:`random_parameters`
            from the same seed. ``overrides`` replace single fields.
        reflectance_scale: value of reflectance 1 in the input's units.
    """
    clear = np.asarray(clear)
    if clear.ndim != 3:
        raise ValueError(f"expected a (bands, H, W) image, got shape {clear.shape}")
    if len(band_names) != clear.shape[0]:
        raise ValueError(f"{len(band_names)} band names for {clear.shape[0]} bands")
    rng = np.random.default_rng(seed)
    if parameters is None:
        parameters = random_parameters(rng, **overrides)
    elif overrides:
        parameters = replace(parameters, **overrides)
    p = parameters
    _, h, w = clear.shape
    dy, dx = p.shadow_offset_px
    pad_y, pad_x = abs(dy), abs(dx)
    canvas = (h + 2 * pad_y, w + 2 * pad_x)

    thick_field = fractal_field(canvas, rng, p.beta, p.max_scale_px)
    if p.kind == "thick":
        alpha = _layer(thick_field, p.coverage, p.max_opacity, p.ramp, p.gamma)
    elif p.kind == "thin":
        alpha = _layer(thick_field, p.coverage, p.thin_opacity, p.thin_ramp, p.gamma)
    else:  # mixed: thin haze over the whole coverage, thick cores over half of it
        thin_field = fractal_field(canvas, rng, p.beta, p.max_scale_px)
        thin = _layer(thin_field, p.coverage, p.thin_opacity, p.thin_ramp, p.gamma)
        thick = _layer(thick_field, p.coverage / 2.0, p.max_opacity, p.ramp, p.gamma)
        alpha = 1.0 - (1.0 - thin) * (1.0 - thick)
    texture = fractal_field(canvas, rng, p.beta, p.max_scale_px / 4.0)
    texture = np.clip(texture / 3.0, -1.0, 1.0)

    opacity = alpha[pad_y:pad_y + h, pad_x:pad_x + w]
    # the shadow at pixel x comes from the cloud at x - (dy, dx)
    shadow_alpha = alpha[pad_y - dy:pad_y - dy + h, pad_x - dx:pad_x - dx + w]
    shadow = p.shadow_strength * shadow_alpha
    brightness = 1.0 + p.brightness_variation * texture[pad_y:pad_y + h, pad_x:pad_x + w]

    return cloud_optics(clear, band_names, opacity, shadow, brightness, p, seed, reflectance_scale)


def cloud_optics(clear: np.ndarray, band_names: Sequence[str], opacity: np.ndarray, shadow: np.ndarray,
                 brightness: np.ndarray, parameters: CloudParameters, seed: Optional[int] = None,
                 reflectance_scale: float = 10000.0) -> SyntheticClouds:
    """Steps 3 and 4 of the module notes on given fields: darken ``clear`` (C, H, W) by ``shadow``
    (H, W, 0-1, times the band factors), blend towards :data:`CLOUD_SPECTRUM` x ``brightness`` with
    ``opacity`` (H, W, 0-1), and derive the masks with ``parameters.mask_threshold``. Shared by the
    fractal clouds here and the real cloud shapes of :mod:`.real_shape_clouds`."""
    p = parameters
    cloud_values = np.array([CLOUD_SPECTRUM.get(str(b).upper(), DEFAULT_CLOUD_REFLECTANCE) for b in band_names])
    factors = np.array([SHADOW_BAND_FACTORS.get(str(b).upper(), 1.0) for b in band_names])
    clear_f = np.asarray(clear).astype(np.float64)
    shadowed = clear_f * (1.0 - shadow[None] * factors[:, None, None])
    cloud = cloud_values[:, None, None] * reflectance_scale * brightness[None]
    cloudy = (1.0 - opacity[None]) * shadowed + opacity[None] * cloud

    cloud_mask = opacity >= p.mask_threshold
    shadow_mask = (shadow >= p.mask_threshold) & ~cloud_mask
    out_dtype = clear.dtype if np.issubdtype(clear.dtype, np.floating) else np.float32
    return SyntheticClouds(
        cloudy=cloudy.astype(out_dtype),
        cloud_mask=cloud_mask,
        shadow_mask=shadow_mask,
        opacity=np.asarray(opacity, np.float32),
        shadow=np.asarray(shadow, np.float32),
        parameters=p,
        seed=seed,
        band_names=tuple(band_names),
    )


def write_synthetic_pair(
    clear_path: os.PathLike | str,
    band_names: Sequence[str],
    cloudy_path: os.PathLike | str,
    cloud_mask_path: os.PathLike | str,
    shadow_mask_path: os.PathLike | str,
    seed: int = 0,
    parameters: Optional[CloudParameters] = None,
    **overrides,
) -> SyntheticClouds:
    """Read a clear multi-band GeoTIFF (digital numbers), add clouds, write the cloudy image
    (same dtype and grid as the input, values rounded and clipped to the dtype's range) and the
    two masks (uint8 0/1). The pixel size for the shadow displacement is taken from the file."""
    from ..io.atomic import AtomicRasterWriter
    from ..io.raster import Grid, open_raster

    with open_raster(clear_path, "clear image") as ds:
        clear = ds.read()
        grid = Grid.of(ds)
        dtype = ds.dtypes[0]
        pixel = abs(ds.transform.a) if ds.crs is not None and ds.crs.is_projected else None
        descriptions = list(ds.descriptions)
    if pixel and "pixel_size_m" not in overrides and parameters is None:
        overrides["pixel_size_m"] = float(pixel)
    result = add_synthetic_clouds(clear, band_names, seed=seed, parameters=parameters, **overrides)
    values = result.cloudy
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    with AtomicRasterWriter(cloudy_path, grid, clear.shape[0], dtype,
                            descriptions=[d or b for d, b in zip(descriptions, band_names)]) as out:
        out.write(values.astype(dtype))
        out.update_tags(**{"SYNTHETIC_CLOUDS": "yes", "SEED": str(seed), "SOURCE": os.path.basename(str(clear_path))})
    for path, mask, name in ((cloud_mask_path, result.cloud_mask, "cloud"),
                             (shadow_mask_path, result.shadow_mask, "cloud shadow")):
        with AtomicRasterWriter(path, grid, 1, "uint8", descriptions=[f"{name} mask (1 = {name})"]) as out:
            out.write(mask.astype(np.uint8)[None])
    return result

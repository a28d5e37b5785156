"""Training and evaluation series for multi-temporal cloud removal (CA-MTCR), in memory.

A **series** is a list of dated images of one place on one grid: reflectance (C, H, W) in
[0, 1] on :data:`SERIES_BANDS` (NaN = nodata), the image's own cloud / shadow mask and its date.
Three kinds are built, and each says what it is:

* ``"real"``: the real SEN12MS-CR-TS series (:func:`load_real_series`: one 256 x 256 patch near
  Rome at 21 dates of 2018), each date with the cloud / shadow mask of the mask engine
  (:func:`~topoclear.engine.clouds.masks.engine.open_scene_mask`, the automatic method: the
  pretrained detector where installed, else the DSen2-CR rules). ``exclude`` keeps held-out
  dates out of it entirely.
* ``"synthetic"``: a real clear image (a SEN12MS-CR clear image or a clear SEN12MS-CR-TS
  patch) made into a series by :func:`synthetic_series`: each auxiliary date is the same
  image with a smooth, spatially varying per-band gain and offset (phenology, haze, sun) and,
  further from the target date, patches where the ground changed (pieces of the image moved
  in, as new land cover); dates 8-60 days apart.
* ``"semi-synthetic"``: terrain-aware scenes (:mod:`.semisynthetic`) of one real DEM whose
  snowline and sun change from date to date (:func:`semisynthetic_series`): the ground, its
  spectra and texture stay, the snow cover and the illumination move.

**Samples** (:class:`SeriesSampler`) follow the SEN12MS-CR-TS protocol: the target is a
*clear* date of a series (its truth), the auxiliary dates are others of the same series, and
the target's clouds are **real cloud shapes transplanted** from a cloudy image
(:class:`CloudPool`): the mask of a real cloudy image (flipped, turned, cut) and, inside it,
that image's own cloudy values (real cloud radiance, thin edges included). The network sees
the cloudy target last, the auxiliary dates before it (with their own clouds: real ones in the
real series, transplanted ones in the others) and every date's mask. Crops, flips and turns
are the same for every date of a sample.

Nothing here imports ``qgis``; ``torch`` is not needed (batches are numpy).
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ...models.bands import S2_BANDS_10_20M
from ..errors import InputError
from .synthetic_clouds import add_synthetic_clouds, fractal_field

__all__ = ["SERIES_BANDS", "CLEAR_FRACTION", "SeriesImage", "Series", "CloudShape", "CloudPool", "read_image",
           "image_mask", "load_real_series", "load_single_images", "synthetic_series", "semisynthetic_series",
           "SeriesSampler", "date_of"]

#: Bands of the series (the 10 and 20 m bands; the 60 m atmospheric bands B1, B9, B10 are left out).
SERIES_BANDS: Tuple[str, ...] = S2_BANDS_10_20M
#: Largest mask fraction of an image that counts as clear (a target candidate).
CLEAR_FRACTION = 0.01
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def date_of(name: str) -> _dt.date:
    """The first ``YYYY-MM-DD`` of a file name (SEN12MS-CR-TS names hold the acquisition date)."""
    m = _DATE.search(name)
    if m is None:
        raise InputError(f"{name}: no YYYY-MM-DD date in the name")
    return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


@dataclass
class SeriesImage:
    """One date: reflectance (C, H, W) float32 in [0, 1] (NaN nodata), mask (H, W) True = cloud/shadow."""

    image: np.ndarray
    mask: np.ndarray
    date: _dt.date
    name: str

    @property
    def cloud_fraction(self) -> float:
        return float(self.mask.mean())

    @property
    def clear(self) -> bool:
        return self.cloud_fraction <= CLEAR_FRACTION


@dataclass
class Series:
    """Dated images of one place; ``kind``: ``"real"``, ``"synthetic"`` or ``"semi-synthetic"``."""

    name: str
    kind: str
    images: List[SeriesImage]
    notes: str = ""

    def clear_indices(self) -> List[int]:
        return [i for i, im in enumerate(self.images) if im.clear]

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "dates": [str(im.date) for im in self.images],
                "clear_dates": [str(self.images[i].date) for i in self.clear_indices()],
                "cloud_fractions": [round(im.cloud_fraction, 4) for im in self.images], "notes": self.notes}


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_image(path: os.PathLike | str, bands: Sequence[str] = SERIES_BANDS) -> np.ndarray:
    """Reflectance (len(bands), H, W) of a Sentinel-2 file (band stack or product), NaN = nodata."""
    from ..sentinel2.locate import locate_bands
    from ..sentinel2.reader import BandReader

    product = locate_bands(str(path), names=list(bands), preferred_resolutions=(10, 20, 60))
    with BandReader(product, list(bands), resolution="finest") as reader:
        from rasterio.windows import Window

        grid = reader.grid
        win = Window(0, 0, grid.width, grid.height)
        return np.stack([reader.read(b, win) for b in bands]).astype(np.float32)


def image_mask(path: os.PathLike | str, method: str = "auto", cache: Optional[os.PathLike | str] = None
               ) -> Tuple[np.ndarray, str]:
    """(cloud / shadow mask (H, W) bool, method used) of a Sentinel-2 file by the mask engine.

    ``cache``: a folder where the mask is kept (``<file stem>.<method>.npy``) for later calls."""
    path = Path(path)
    if cache is not None:
        stored = Path(cache) / f"{path.stem}.{method}.npz"
        if stored.is_file():
            data = np.load(stored)
            return data["mask"].astype(bool), str(data["method"])
    from ..clouds.masks.engine import open_scene_mask
    from ..sentinel2.locate import locate_bands
    from ..sentinel2.reader import BandReader

    product = locate_bands(str(path), names=["B2", "B3", "B4", "B8"], preferred_resolutions=(10, 20, 60),
                           optional=[b for b in ("B1", "B10", "B11", "B12", "B5", "B6", "B7", "B8A", "B9")])
    with BandReader(product, ["B2"], resolution="finest") as reader:
        grid = reader.grid
    engine = open_scene_mask(product, grid, method, consumer="removal")
    if engine is None:
        mask, used = np.zeros((grid.height, grid.width), bool), "none"
    else:
        with engine:
            mask, used = engine.cloud_shadow((0, 0, grid.height, grid.width)), engine.method.key
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(Path(cache) / f"{path.stem}.{method}.npz", mask=mask, method=used)
    return mask, used


def load_real_series(folder: os.PathLike | str, exclude: Sequence[_dt.date] = (), name: str = "real",
                     mask_method: str = "auto", cache: Optional[os.PathLike | str] = None,
                     bands: Sequence[str] = SERIES_BANDS) -> Series:
    """The real series of ``folder`` (one place, dates in the file names), without the dates ``exclude``."""
    files = sorted(Path(folder).glob("*.tif"), key=lambda p: date_of(p.name))
    if not files:
        raise InputError(f"no GeoTIFF in {folder}")
    excluded = set(exclude)
    images, used = [], set()
    for path in files:
        when = date_of(path.name)
        if when in excluded:
            continue
        image = read_image(path, bands)
        mask, method = image_mask(path, mask_method, cache)
        used.add(method)
        images.append(SeriesImage(image, mask | ~np.isfinite(image).all(axis=0), when, path.name))
    return Series(name, "real", images, notes=f"real dates of {Path(folder).name}; masks by the mask engine "
                                               f"({', '.join(sorted(used))})")


def load_single_images(paths: Sequence[os.PathLike | str], mask_method: str = "auto",
                       cache: Optional[os.PathLike | str] = None,
                       bands: Sequence[str] = SERIES_BANDS) -> List[SeriesImage]:
    """Single real images (any date), each with its mask."""
    out = []
    for path in paths:
        path = Path(path)
        try:
            when = date_of(path.name)
        except InputError:
            when = _dt.date(2018, 6, 1)
        image = read_image(path, bands)
        mask, _ = image_mask(path, mask_method, cache)
        out.append(SeriesImage(image, mask | ~np.isfinite(image).all(axis=0), when, path.name))
    return out


# --------------------------------------------------------------------------------------------
# synthetic and semi-synthetic series
# --------------------------------------------------------------------------------------------
def _smooth(shape: Tuple[int, int], rng: np.random.Generator, scale: float = 96.0) -> np.ndarray:
    return fractal_field(shape, rng, beta=3.5, max_scale_px=scale).astype(np.float32)


def change_date(image: np.ndarray, days: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` (C, H, W) as it might look ``days`` away: smooth per-band gain and offset fields whose
    strength grows with the distance, and patches of changed ground (pieces of the image itself, moved)
    covering up to a fifth of it at 60 days."""
    c, h, w = image.shape
    strength = min(1.0, abs(days) / 60.0)
    common = _smooth((h, w), rng)
    gains = (1.0 + rng.uniform(-0.12, 0.12) * strength + 0.06 * (0.3 + strength) * common)[None] \
        * (1.0 + rng.normal(0.0, 0.04 * (0.3 + strength), size=(c, 1, 1)))
    offsets = rng.normal(0.0, 0.01 * (0.3 + strength), size=(c, 1, 1)) \
        + 0.01 * (0.3 + strength) * _smooth((h, w), rng)[None]
    out = image * gains.astype(np.float32) + offsets.astype(np.float32)
    coverage = 0.2 * strength * rng.uniform(0.2, 1.0)
    if coverage > 0.005:
        blob = _smooth((h, w), rng, 48.0)
        changed = blob > np.quantile(blob, 1.0 - coverage)
        moved = np.rot90(image, int(rng.integers(1, 4)), axes=(1, 2))
        if moved.shape != image.shape:
            moved = np.transpose(moved, (0, 2, 1))
        soft = ndimage.gaussian_filter(changed.astype(np.float32), 1.0)[None]
        out = out * (1.0 - soft) + moved * soft * gains.astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def synthetic_series(clear: SeriesImage, rng: np.random.Generator, dates: int = 6,
                     name: Optional[str] = None) -> Series:
    """A series of ``dates`` images made from one real clear image (see the module notes); the
    image itself is the clear middle date, the others are changed copies (their masks are empty: the
    sampler lays clouds on them)."""
    base = np.where(np.isfinite(clear.image), clear.image, 0.0).astype(np.float32)
    offsets = np.cumsum(rng.uniform(8.0, 20.0, size=dates - 1))
    before = int(rng.integers(0, dates))
    day_offsets = sorted(list(-offsets[:before]) + list(offsets[:dates - 1 - before]) + [0.0])
    images = []
    for days in day_offsets:
        img = base if days == 0.0 else change_date(base, days, rng)
        when = clear.date + _dt.timedelta(days=int(round(days)))
        images.append(SeriesImage(img, clear.mask.copy() if days == 0.0 else np.zeros(base.shape[1:], bool), when,
                                  f"{clear.name} ({'real' if days == 0.0 else f'{days:+.0f} days, synthetic'})"))
    return Series(name or f"synthetic:{clear.name}", "synthetic", images,
                  notes="one real clear image; the other dates are smooth per-band gain/offset changes and moved "
                        "patches of its own ground")


def semisynthetic_series(dem: os.PathLike | str, folder: os.PathLike | str, name: str,
                         snowline_percentiles: Sequence[float] = (25, 40, 55, 70, 85),
                         sun: Sequence[Tuple[float, float]] = ((62, 165), (52, 160), (42, 150), (34, 140), (30, 130)),
                         start: _dt.date = _dt.date(2019, 2, 1), step_days: int = 15, resolution_m: float = 30.0,
                         seed: int = 0, library=None, max_side: int = 512) -> Series:
    """Terrain-aware scenes of one DEM (:func:`~.semisynthetic.generate_scene`, same seed: same ground and
    texture) at ``len(sun)`` dates, the snowline at the given elevation percentiles and the sun at the
    given (zenith, azimuth); the clear images make the series (cached in ``folder``)."""
    from ..io.raster import nodata_to_nan, open_raster
    from .semisynthetic import SemiSyntheticConfig, generate_scene

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open_raster(str(dem), "DEM") as ds:
        z = nodata_to_nan(ds.read(1, out_dtype=np.float32), ds.nodata)
    z = z[np.isfinite(z)]
    images = []
    for k, ((zenith, azimuth), pct) in enumerate(zip(sun, snowline_percentiles)):
        scene_name = f"{name}_d{k}"
        path = folder / f"{scene_name}_semisynthetic_s2_clear.tif"
        if not path.is_file():
            config = SemiSyntheticConfig(name=scene_name, resolution_m=resolution_m, sun_zenith=float(zenith),
                                         sun_azimuth=float(azimuth), snowline_m=float(np.percentile(z, pct)),
                                         seed=seed)
            generate_scene(dem, folder, config, library=library)
        with open_raster(str(path), "semi-synthetic scene") as ds:
            dn = ds.read(out_dtype=np.float32)
            nodata = ds.nodata
        valid = (dn != nodata).all(axis=0) if nodata is not None else np.ones(dn.shape[1:], bool)
        image = np.where(valid[None], dn / 10000.0, np.nan).astype(np.float32)
        h, w = image.shape[1:]
        image = image[:, :min(h, max_side * 2), :min(w, max_side * 2)]
        images.append(SeriesImage(image, ~np.isfinite(image).all(axis=0), start + _dt.timedelta(days=k * step_days),
                                  f"{scene_name} (semi-synthetic)"))
    return Series(f"semi-synthetic:{name}", "semi-synthetic", images,
                  notes=f"terrain-aware semi-synthetic scenes of {Path(dem).name}: snowline at elevation percentiles "
                        f"{list(snowline_percentiles)}, sun (zenith, azimuth) {list(sun)}")


# --------------------------------------------------------------------------------------------
# real cloud shapes
# --------------------------------------------------------------------------------------------
@dataclass
class CloudShape:
    """A real cloudy image and its cloud / shadow mask, the source of transplanted clouds."""

    image: np.ndarray  # (C, H, W) reflectance, NaN nodata
    mask: np.ndarray  # (H, W)
    name: str


@dataclass
class CloudPool:
    """Real cloud shapes (cloud fraction between ``low`` and ``high``) to transplant onto clear images."""

    shapes: List[CloudShape] = field(default_factory=list)
    low: float = 0.03
    high: float = 0.97

    def add(self, image: SeriesImage) -> bool:
        if self.low <= image.cloud_fraction <= self.high:
            self.shapes.append(CloudShape(image.image, image.mask, image.name))
            return True
        return False

    def __len__(self) -> int:
        return len(self.shapes)

    def transplant(self, target: np.ndarray, rng: np.random.Generator, synthetic_share: float = 0.25,
                   band_names: Sequence[str] = SERIES_BANDS) -> Tuple[np.ndarray, np.ndarray]:
        """(cloudy image, mask) of ``target`` (C, h, w): a random real shape placed at random, its cloudy
        values copied inside its mask; in ``synthetic_share`` of the calls (or with an empty pool) synthetic
        fractal clouds instead. Reflectance in, reflectance out."""
        c, h, w = target.shape
        if not self.shapes or rng.random() < synthetic_share:
            clouds = add_synthetic_clouds(np.nan_to_num(target) * 10000.0, list(band_names),
                                          seed=int(rng.integers(0, 2 ** 31)))
            return (np.asarray(clouds.cloudy, np.float32) / 10000.0).clip(0, 1), clouds.csm
        shape = self.shapes[int(rng.integers(0, len(self.shapes)))]
        img, mask = _place(shape.image, shape.mask, (h, w), rng)
        inside = mask & np.isfinite(img).all(axis=0)
        out = target.copy()
        out[:, inside] = img[:, inside]
        return out, inside


def _place(image: np.ndarray, mask: np.ndarray, shape: Tuple[int, int], rng: np.random.Generator
           ) -> Tuple[np.ndarray, np.ndarray]:
    """``image`` and ``mask`` flipped, turned and cut (mirrored where smaller) to ``shape``, the same way."""
    img, m = image, mask
    if rng.random() < 0.5:
        img, m = img[:, :, ::-1], m[:, ::-1]
    if rng.random() < 0.5:
        img, m = img[:, ::-1, :], m[::-1, :]
    k = int(rng.integers(0, 4))
    img, m = np.rot90(img, k, axes=(1, 2)), np.rot90(m, k)
    h, w = shape
    if m.shape[0] < h or m.shape[1] < w:
        pad = ((0, max(0, h - m.shape[0])), (0, max(0, w - m.shape[1])))
        m = np.pad(m, pad, mode="symmetric")
        img = np.pad(img, ((0, 0),) + pad, mode="symmetric")
    r = int(rng.integers(0, m.shape[0] - h + 1))
    c = int(rng.integers(0, m.shape[1] - w + 1))
    return np.ascontiguousarray(img[:, r:r + h, c:c + w]), np.ascontiguousarray(m[r:r + h, c:c + w])


# --------------------------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------------------------
@dataclass
class SeriesSampler:
    """Random training samples from ``series`` with clouds from ``pool`` (see the module notes).

    ``weights``: relative sampling weight of each series (default equal). :meth:`batch` returns
    ``{"s2": (B, T, C, h, w), "mask": (B, T, 1, h, w), "target": (B, C, h, w)}`` float32 in [0, 1]
    (the ``"unit"`` scaling), date T-1 the cloudy target, and ``"days"`` (B, T-1) the auxiliary
    dates' distances to the target.
    """

    series: List[Series]
    pool: CloudPool
    weights: Optional[Sequence[float]] = None
    aux_cloud_probability: float = 0.6
    min_target_cloud: float = 0.05
    max_target_cloud: float = 0.9

    def __post_init__(self) -> None:
        self.series = [s for s in self.series if s.clear_indices() and len(s.images) >= 2]
        if not self.series:
            raise InputError("no series with a clear date and at least one other date")
        w = np.asarray(self.weights if self.weights is not None else [1.0] * len(self.series), np.float64)
        if self.weights is not None and len(w) != len(self.series):
            w = np.ones(len(self.series))
        self._p = w / w.sum()

    def sample(self, rng: np.random.Generator, dates: int, crop: int) -> Dict[str, np.ndarray]:
        s = self.series[int(rng.choice(len(self.series), p=self._p))]
        t = s.clear_indices()[int(rng.integers(0, len(s.clear_indices())))]
        others = [i for i in range(len(s.images)) if i != t]
        pick = list(rng.choice(others, size=dates - 1, replace=len(others) < dates - 1))
        target = s.images[t]
        _, h, w = target.image.shape
        for _ in range(20):
            r, c = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            box = (slice(None), slice(r, r + crop), slice(c, c + crop))
            if np.isfinite(target.image[box]).all():
                break
        truth = np.nan_to_num(target.image[box]).astype(np.float32)
        for _ in range(6):
            cloudy, tmask = self.pool.transplant(truth, rng)
            if self.min_target_cloud <= tmask.mean() <= self.max_target_cloud:
                break
        s2, masks = [], []
        for i in pick:
            aux = s.images[i]
            img = np.nan_to_num(aux.image[box]).astype(np.float32)
            m = aux.mask[box[1:]] | ~np.isfinite(aux.image[box]).all(axis=0)
            if s.kind != "real" and rng.random() < self.aux_cloud_probability:
                img, extra = self.pool.transplant(img, rng)
                m = m | extra
            s2.append(img)
            masks.append(m)
        s2.append(cloudy)
        masks.append(tmask)
        stack = np.stack(s2)
        mstack = np.stack(masks)[:, None].astype(np.float32)
        k = int(rng.integers(0, 4))
        flip = rng.random() < 0.5
        stack, mstack, truth = (_turn(a, k, flip) for a in (stack, mstack, truth))
        days = np.array([(s.images[i].date - target.date).days for i in pick], np.float32)
        return {"s2": np.clip(stack, 0, 1).astype(np.float32), "mask": mstack.astype(np.float32),
                "target": np.clip(truth, 0, 1).astype(np.float32), "days": days}

    def batch(self, rng: np.random.Generator, size: int, dates: int, crop: int) -> Dict[str, np.ndarray]:
        items = [self.sample(rng, dates, crop) for _ in range(size)]
        return {k: np.stack([it[k] for it in items]) for k in items[0]}


def _turn(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(-2, -1))
    if flip:
        a = a[..., ::-1]
    return np.ascontiguousarray(a)

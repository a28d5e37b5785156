"""Real Sentinel-2 spectra per land-cover class, and real Sentinel-1 levels, from the sample data.

The library behind the semi-synthetic scenes (:mod:`topoclear.engine.training.semisynthetic`):

* **snow**: pixels passing Let It Snow's first snow test (NDSI > 0.40 and red > 0.20) in the
  BigEarthNet-MM Level-2A patch ``S2B_MSIL2A_20180204T94161_57_38`` (Finland, 4 Feb 2018,
  seasonal snow, per-band GeoTIFFs; 20 m bands repeated onto the 10 m grid) and in the fully
  snow-covered SEN12MS-CR Level-1C clear image ``26_p100`` (N. Canada);
* **vegetation**: NDVI > 0.5, NDSI < 0.2, blue < 0.15;
* **bare ground / rock**: NDVI < 0.25, NDSI < 0, NIR > 0.12, SWIR2 > 0.08, blue < 0.25,
  NDWI (McFeeters) < 0 (not water);

vegetation and rock come from the other clear SEN12MS-CR images, the clear SEN12MS-CR-TS date
2018-05-31 (Rome) and the five other BigEarthNet patches. Level-1C pixels flagged by DSen2-CR's
cloud score (:func:`topoclear.engine.clouds.masks.rules.cloud_mask_l1c`) are left out. The
Sentinel-1 level of each class is the median VV and VH (dB) of the real BigEarthNet-MM
Sentinel-1 patches over the pixels of that class in the co-registered Sentinel-2 patch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...models.bands import S1_BANDS, S2_BANDS_10_20M
from ..clouds.masks.rules import bands_from_stack, cloud_mask_l1c
from ..errors import InputError
from ..io.raster import open_raster
from .sample_data import bigearthnet_band_file, bigearthnet_patch_key, default_data_root, sen12mscr_pair_key

__all__ = ["CLASSES", "SNOW_NDSI", "SNOW_RED", "MIN_SOURCE_PIXELS", "SpectralLibrary", "load_spectral_library"]

#: Land-cover classes: name -> code in the land-cover raster (snow = snow fraction >= 0.5).
CLASSES: Dict[str, int] = {"vegetation": 1, "rock": 2, "snow": 3}
#: Rule thresholds of the spectral library (reflectance).
SNOW_NDSI, SNOW_RED = 0.40, 0.20
#: A source image contributes to a class only with at least this many pixels of it.
MIN_SOURCE_PIXELS = 50
#: Sources of real snow spectra: a BigEarthNet-MM patch and a SEN12MS-CR clear image.
_SNOW_PATCH = "S2B_MSIL2A_20180204T94161_57_38"
_SNOW_L1C = "26_p100"


@dataclass
class SpectralLibrary:
    """Real Sentinel-2 spectra per land-cover class, and real Sentinel-1 levels where measured.

    ``spectra[class]`` is (N, 10) float32 reflectance in the band order :data:`~topoclear.models.bands.S2_BANDS_10_20M`,
    sorted along the class's first principal component. ``sources[class]`` lists
    ``"<patch> (<level>): <n> px"``. ``backscatter[class][pol]`` is the median sigma0 (dB)
    measured on real Sentinel-1 pixels of the class (only classes with real data).
    """

    spectra: Dict[str, np.ndarray]
    sources: Dict[str, List[str]]
    backscatter: Dict[str, Dict[str, float]] = field(default_factory=dict)
    backscatter_sources: Dict[str, List[str]] = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "bands": list(S2_BANDS_10_20M),
            "spectra": {k: int(v.shape[0]) for k, v in self.spectra.items()},
            "sources": self.sources,
            "median_spectra": {k: [round(float(x), 4) for x in np.median(v, axis=0)] for k, v in self.spectra.items()},
            "backscatter_db_measured": self.backscatter,
            "backscatter_sources": self.backscatter_sources,
        }


def _indices(b: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    def nd(x, y):
        s = x + y
        return np.where(s != 0, (x - y) / np.where(s != 0, s, 1.0), 0.0)

    return {"ndsi": nd(b["B3"], b["B11"]), "ndvi": nd(b["B8"], b["B4"]), "ndwi": nd(b["B3"], b["B8"])}


def _classify_pixels(b: Mapping[str, np.ndarray], usable: np.ndarray) -> Dict[str, np.ndarray]:
    """Boolean masks of the library's classes (module docstring rules)."""
    ix = _indices(b)
    snow = (ix["ndsi"] > SNOW_NDSI) & (b["B4"] > SNOW_RED)
    veg = (ix["ndvi"] > 0.5) & (ix["ndsi"] < 0.2) & (b["B2"] < 0.15)
    rock = ((ix["ndvi"] < 0.25) & (ix["ndsi"] < 0.0) & (b["B8"] > 0.12) & (b["B12"] > 0.08) & (b["B2"] < 0.25)
            & (ix["ndwi"] < 0.0))
    return {"snow": snow & usable, "vegetation": veg & usable, "rock": rock & usable}


def _read_l1c(path: Path) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Bands (reflectance) of a 13-band L1C stack and the not-cloud mask."""
    with open_raster(path, "Sentinel-2 L1C image") as ds:
        stack = ds.read().astype(np.float64)
    if stack.shape[0] != 13:
        raise InputError(f"{path}: expected a 13-band Level-1C stack, got {stack.shape[0]} bands")
    bands = bands_from_stack(stack)
    usable = ~cloud_mask_l1c(bands) & (stack.sum(axis=0) > 0)
    return bands, usable


def _read_bigearthnet(folder: Path) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """The 10 bands of a BigEarthNet-MM L2A patch on its 10 m grid (20 m bands repeated 2 x 2)."""
    bands: Dict[str, np.ndarray] = {}
    shape = None
    for band in S2_BANDS_10_20M:
        path = bigearthnet_band_file(folder, band)
        if path is None:
            raise InputError(f"{folder}: band {band} file missing")
        with open_raster(path, f"BigEarthNet band {band}") as ds:
            data = ds.read(1).astype(np.float64) / 10000.0
        bands[band] = data
        if shape is None or data.shape[0] > shape[0]:
            shape = data.shape
    for band, data in bands.items():
        if data.shape != shape:
            k = shape[0] // data.shape[0]
            bands[band] = np.repeat(np.repeat(data, k, axis=0), k, axis=1)[:shape[0], :shape[1]]
    usable = np.all([bands[b] > 0 for b in S2_BANDS_10_20M], axis=0)
    return bands, usable


def _bigearthnet_s1(root: Path, patch_key: str) -> Optional[Dict[str, np.ndarray]]:
    folder = root / "bigearthnet" / "BigEarthNet-S1-Example"
    if not folder.is_dir():
        return None
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and sub.name.endswith("_" + patch_key):
            out = {}
            for pol in S1_BANDS:
                files = sorted(sub.glob(f"*_{pol}.tif"))
                if not files:
                    return None
                with open_raster(files[0], "Sentinel-1 patch") as ds:
                    out[pol] = ds.read(1).astype(np.float64)
            return out
    return None


class _Collector:
    """Pixels of each class gathered image by image, with where they come from."""

    def __init__(self) -> None:
        self.pools: Dict[str, List[np.ndarray]] = {k: [] for k in CLASSES}
        self.sources: Dict[str, List[str]] = {k: [] for k in CLASSES}
        self.s1_values: Dict[str, Dict[str, List[np.ndarray]]] = {k: {p: [] for p in S1_BANDS} for k in CLASSES}
        self.s1_sources: Dict[str, List[str]] = {k: [] for k in CLASSES}

    def add(self, name: str, level: str, bands: Mapping[str, np.ndarray], usable: np.ndarray,
            allowed: Sequence[str], s1: Optional[Dict[str, np.ndarray]] = None) -> None:
        masks = _classify_pixels(bands, usable)
        stack = np.stack([bands[b] for b in S2_BANDS_10_20M], axis=-1)
        for cls in allowed:
            n = int(masks[cls].sum())
            if n < MIN_SOURCE_PIXELS:
                continue
            self.pools[cls].append(stack[masks[cls]].astype(np.float32))
            self.sources[cls].append(f"{name} ({level}): {n} px")
            if s1 is not None and n >= 100 and all(s1[p].shape == masks[cls].shape for p in S1_BANDS):
                for p in S1_BANDS:
                    self.s1_values[cls][p].append(s1[p][masks[cls]])
                self.s1_sources[cls].append(f"{name} Sentinel-1: {n} px")

    def measured_backscatter(self) -> Dict[str, Dict[str, float]]:
        return {cls: {p: round(float(np.median(np.concatenate(v[p]))), 2) for p in S1_BANDS}
                for cls, v in self.s1_values.items() if v[S1_BANDS[0]]}


def _collect(root: Path) -> _Collector:
    found = _Collector()
    cr = root / "sen12ms-cr" / "s2_clear"
    for path in sorted(cr.glob("*.tif")) if cr.is_dir() else []:
        key = sen12mscr_pair_key(path.name)
        bands, usable = _read_l1c(path)
        allowed = ("snow",) if key == _SNOW_L1C else ("vegetation", "rock")
        found.add(f"SEN12MS-CR clear {key}", "L1C", bands, usable, allowed)
    ts = root / "sen12ms-cr-ts"
    for path in sorted(ts.glob("*2018-05-31*.tif")) if ts.is_dir() else []:
        bands, usable = _read_l1c(path)
        found.add("SEN12MS-CR-TS Rome 2018-05-31", "L1C", bands, usable, ("vegetation", "rock"))
    ben = root / "bigearthnet" / "BigEarthNet-S2-Example"
    for folder in sorted(p for p in ben.iterdir() if p.is_dir()) if ben.is_dir() else []:
        bands, usable = _read_bigearthnet(folder)
        allowed = ("snow",) if folder.name == _SNOW_PATCH else ("vegetation", "rock")
        found.add(f"BigEarthNet-MM {folder.name}", "L2A", bands, usable, allowed,
                  _bigearthnet_s1(root, bigearthnet_patch_key(folder.name)))
    return found


def _pc1_sorted(pool: np.ndarray) -> np.ndarray:
    """Spectra sorted along their first principal component (growing with brightness)."""
    centred = pool - pool.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, pool.shape[0] // 5000)].astype(np.float64), full_matrices=False)
    pc1 = centred @ vt[0].astype(np.float32)
    if vt[0].sum() < 0:
        pc1 = -pc1
    return np.ascontiguousarray(pool[np.argsort(pc1, kind="stable")])


def load_spectral_library(data_root: Optional[os.PathLike | str] = None, max_per_class: int = 20000,
                          seed: int = 0) -> SpectralLibrary:
    """Collect real spectra per class from the sample data (see the module docstring).

    ``data_root`` is the folder of the shared sample data (default
    :func:`~topoclear.engine.training.sample_data.default_data_root`). At most ``max_per_class``
    spectra are kept per class (a deterministic random subset).
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    found = _collect(root)
    rng = np.random.default_rng([seed, 7])
    spectra: Dict[str, np.ndarray] = {}
    for cls, parts in found.pools.items():
        if not parts:
            raise InputError(f"spectral library: no real {cls} pixels found under {root} (the SEN12MS-CR, "
                             "SEN12MS-CR-TS and BigEarthNet-MM samples are needed)")
        pool = np.concatenate(parts, axis=0)
        if pool.shape[0] > max_per_class:
            pool = pool[np.sort(rng.choice(pool.shape[0], max_per_class, replace=False))]
        spectra[cls] = _pc1_sorted(pool)
    return SpectralLibrary(spectra, found.sources, found.measured_backscatter(),
                           {k: v for k, v in found.s1_sources.items() if v})

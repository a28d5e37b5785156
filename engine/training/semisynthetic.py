"""Terrain-aware **semi-synthetic** Sentinel-1/Sentinel-2 scenes: a real DEM, real spectra, modelled light.

No openly licensed mountain scene with a cloudy and a clear Sentinel-2 image, a Sentinel-1 image
and a DEM could be obtained, so this module builds one honestly and says so in every name it
writes ("semi-synthetic"). What is real and what is modelled:

**Real**

* the relief: a real DEM (e.g. SRTM ``bigtujunga.tif``, San Gabriel Mountains; the Rocky
  Mountain NP DEM ``rmnp-dem.tif`` in EPSG:4326, reprojected here to its UTM zone);
* every surface spectrum: each pixel's 10-band spectrum is one measured Sentinel-2 pixel drawn
  from a spectral library (:func:`load_spectral_library`) of real clear patches:

  - **snow**: pixels passing Let It Snow's first snow test (NDSI > 0.40 and red > 0.20) in the
    BigEarthNet-MM Level-2A patch ``S2B_MSIL2A_20180204T94161_57_38`` (Finland, 4 Feb 2018,
    seasonal snow, per-band GeoTIFFs; 20 m bands repeated onto the 10 m grid) and in the
    fully snow-covered SEN12MS-CR Level-1C clear image ``26_p100`` (N. Canada);
  - **vegetation**: NDVI > 0.5, NDSI < 0.2, blue < 0.15;
  - **bare ground / rock**: NDVI < 0.25, NDSI < 0, NIR > 0.12, SWIR2 > 0.08, blue < 0.25,
    NDWI (McFeeters) < 0 (not water);

  vegetation and rock come from the other clear SEN12MS-CR images, the clear SEN12MS-CR-TS
  date 2018-05-31 (Rome) and the five other BigEarthNet patches. Level-1C pixels flagged by
  DSen2-CR's cloud score (:func:`topoclear.engine.clouds.masks.rules.cloud_mask_l1c`) are left out. The
  library therefore mixes top-of-atmosphere (L1C) and surface (L2A) reflectance; the
  difference (mostly path radiance in the blue bands) is not corrected. The library shares
  single-pixel spectra (never places) with those clear images, some of which may sit in an
  evaluation split of a dataset that also holds them;
* the Sentinel-1 level of each class at the reference incidence: the median VV and VH (dB) of
  the real BigEarthNet-MM Sentinel-1 patches over the pixels of that class in the
  co-registered Sentinel-2 patch (snow: the Finland February pair, dry snow; vegetation and
  bare ground: the summer and autumn pairs), when the data is present; otherwise the
  defaults of :data:`DEFAULT_BACKSCATTER_DB` (values of the same kind, documented there);
* the cloud spectrum and cloud model (:mod:`topoclear.engine.training.synthetic_clouds`, seed 004's
  alpha blending; its cloud spectrum is measured on real SEN12MS-CR clouds).

**Modelled** (all parameters in :class:`SemiSyntheticConfig`)

* **Land cover from the terrain.** Snow fraction
  ``f = clip((z - z_s) / transition + 0.5, 0, 1) * clip((max_snow_slope - slope) / 10 + 0.5, 0, 1)``
  with a local snowline ``z_s = snowline + noise - aspect_shift * cos(aspect - poleward) *
  min(1, slope / 20)``: snow reaches lower on slopes facing the pole (north in the northern
  hemisphere) and sheds from cliffs. The noise is a smooth fractal field
  (:func:`topoclear.engine.training.synthetic_clouds.fractal_field`) times ``snowline_noise_m``. The
  ground under the snow is rock where the slope exceeds ``rock_slope_deg`` (plus noise) or the
  elevation exceeds a (noisy) ``treeline_m``, vegetation elsewhere. Surface reflectance =
  ``f * snow + (1 - f) * ground``.
* **Spatial texture.** Each class's library is sorted along its first principal component; a
  smooth random field (plus a little pixel noise), mapped to a uniform variable, picks the
  spectrum of each pixel, so neighbouring pixels get similar, but always real, spectra.
* **Illumination** (this is where the terrain informs the image). With the local incidence of
  the sun ``cos i = cos Zs cos S + sin Zs sin S cos(As - A)`` (slope S, aspect A, sun zenith Zs,
  azimuth As; exactly the hillshade of the terrain stack / 255, before clipping at 0):
  ``L_b = d_b * (1 + cos S) / 2 + (1 - d_b) * max(cos i, 0) * (1 - cast) / cos Zs`` with the
  per-band diffuse-sky fraction ``d_b`` of :data:`DIFFUSE_FRACTION` (typical clear-sky
  values, higher in the blue) and ``cast`` = 1 where another part of the relief hides the sun
  (ray marching towards the sun over the elevation band). ``L = 1`` on flat open ground.
  Clear reflectance = surface reflectance x ``L_b``.
* **Clouds and shadows** on top of the clear image with
  :func:`topoclear.engine.training.synthetic_clouds.add_synthetic_clouds`, lit by the same sun: the
  shadows fall ``cloud_height * tan(Zs)`` away from each cloud along ``As + 180``.
* **Sentinel-1** VV and VH in dB: ``sigma0 = a + b * cos(theta_loc)`` per class and
  polarisation, with ``a`` chosen so that ``sigma0`` equals the class's (measured) reference
  level at ``theta_loc`` = the ellipsoid incidence, and the angular sensitivity ``b`` of
  :data:`BACKSCATTER_SLOPE_DB` (surface scattering from rock and wet snow depends more on the
  angle than volume scattering from vegetation). ``cos theta_loc = cos T cos S + sin T sin S
  cos(A - Ar)``, ``T`` the ellipsoid incidence (39 deg, mid-swath of the IW mode) and ``Ar``
  the azimuth from the ground to the satellite: Sentinel-1 looks right, so with an
  **ascending** pass (heading about 348 deg) it looks towards 78 deg and sits at
  ``Ar`` = 258 deg (west); **descending** (heading about 192 deg) it looks towards 282 deg and
  sits at ``Ar`` = 102 deg (east). Snow mixes with its ground in linear power. Slopes facing
  away by more than 90 deg from the radar (radar shadow) get the noise floor
  (:data:`NOISE_FLOOR_DB`). Multiplicative speckle: linear power times a Gamma variable of
  shape ``looks`` (4.4, the equivalent number of looks of IW GRDH) and mean 1. Foreshortening
  and layover displacements are not modelled (the image stays on the map grid).

Outputs of :func:`generate_scene` (aligned GeoTIFFs on one UTM grid, ``resolution_m`` pixels):

* ``<name>_semisynthetic_s2_clear.tif``: 10 bands B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12,
  uint16 reflectance x 10000, nodata 0 (outside the DEM);
* ``<name>_semisynthetic_s2_cloudy.tif``: the same with clouds and shadows;
* ``<name>_semisynthetic_s1.tif``: VV, VH in dB, float32, nodata NaN;
* ``<name>_semisynthetic_terrain.tif``: the 4-band terrain stack (elevation, slope, aspect,
  hillshade under the scene's sun) of :func:`topoclear.engine.terrain.stack.terrain_stack`;
* ``<name>_semisynthetic_cloud_mask.tif``, ``..._shadow_mask.tif``: uint8 0/1;
* ``<name>_semisynthetic_landcover.tif``: band 1 class (1 vegetation, 2 rock, 3 snow where the
  snow fraction >= 0.5, 0 nodata), band 2 snow fraction x 100, band 3 cast shadow (0/1);
* ``<name>_semisynthetic.json``: every parameter, the seed, the sources and their pixel counts.

Everything is a function of the DEM, the configuration and its ``seed``: the same inputs give
byte-identical rasters. The scene is built in memory (about 600 bytes per pixel at the peak: 2.3 GB
for the 1733 x 2151 px Rocky Mountain scene at 20 m): it is meant for DEMs of a few thousand
pixels on a side, which is what a training scene is.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform
from scipy.special import ndtr

from ..errors import InputError
from ..io.atomic import write_text_atomic
from ..progress import SILENT, Monitor
from ..io.atomic import AtomicRasterWriter
from ..io.raster import Grid, open_raster
from ...models.bands import S2_BANDS_10_20M
from ..sentinel2.metadata import SunAngles
from .synthetic_clouds import CloudParameters, add_synthetic_clouds, fractal_field
from ..terrain.derivatives import TerrainOptions
from ..terrain.stack import terrain_stack

__all__ = [
    "S2_BANDS",
    "S1_BANDS",
    "CLASSES",
    "DIFFUSE_FRACTION",
    "DEFAULT_BACKSCATTER_DB",
    "BACKSCATTER_SLOPE_DB",
    "NOISE_FLOOR_DB",
    "ORBITS",
    "SemiSyntheticConfig",
    "SpectralLibrary",
    "SemiSyntheticScene",
    "default_data_root",
    "load_spectral_library",
    "scene_grid",
    "land_cover",
    "cos_incidence",
    "cast_shadow",
    "illumination",
    "local_incidence",
    "backscatter",
    "generate_scene",
]

#: Bands of the semi-synthetic Sentinel-2 images (CRT-UNet's 10 m + 20 m set).
S2_BANDS: Tuple[str, ...] = S2_BANDS_10_20M
S1_BANDS: Tuple[str, ...] = ("VV", "VH")
#: Land-cover classes: name -> code in the land-cover raster (snow = snow fraction >= 0.5).
CLASSES: Dict[str, int] = {"vegetation": 1, "rock": 2, "snow": 3}

#: Fraction of the irradiance that is diffuse skylight, per band (clear sky, typical values).
DIFFUSE_FRACTION: Dict[str, float] = {"B2": 0.25, "B3": 0.18, "B4": 0.14, "B5": 0.12, "B6": 0.10, "B7": 0.09,
                                      "B8": 0.08, "B8A": 0.08, "B11": 0.05, "B12": 0.04}
#: Sentinel-1 sigma0 (dB) of each class at the reference incidence, used when the real
#: BigEarthNet-MM pairs are absent: the medians those pairs give (see the module docstring),
#: rounded to 0.1 dB; snow is the dry-snow level of the Finland February pair.
DEFAULT_BACKSCATTER_DB: Dict[str, Dict[str, float]] = {
    "vegetation": {"VV": -11.3, "VH": -16.5},
    "rock": {"VV": -11.5, "VH": -19.6},
    "snow": {"VV": -8.3, "VH": -16.4},
}
#: Angular sensitivity b (dB per unit of cos(theta_loc)) of each class and polarisation.
BACKSCATTER_SLOPE_DB: Dict[str, Dict[str, float]] = {
    "vegetation": {"VV": 6.0, "VH": 5.0},
    "rock": {"VV": 14.0, "VH": 11.0},
    "snow": {"VV": 10.0, "VH": 8.0},
}
#: Backscatter of radar-shadowed slopes (about Sentinel-1 IW's noise-equivalent sigma0).
NOISE_FLOOR_DB: Dict[str, float] = {"VV": -24.0, "VH": -29.0}
#: Azimuth (deg clockwise from north) from the ground towards the satellite for each pass.
ORBITS: Dict[str, float] = {"ascending": 258.0, "descending": 102.0}
#: Rule thresholds of the spectral library (reflectance).
SNOW_NDSI, SNOW_RED = 0.40, 0.20
#: A source image contributes to a class only with at least this many pixels of it.
MIN_SOURCE_PIXELS = 50

_SHARED_DATA_ENV = "TOPOCLEAR_SHARED_DATA"
_SNOW_PATCH = "S2B_MSIL2A_20180204T94161_57_38"
_SNOW_L1C = "26_p100"
_S2_BANDS_L1C = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


# ---------------------------------------------------------------------------------------------
# configuration and results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SemiSyntheticConfig:
    """Parameters of one semi-synthetic scene (see the module docstring for the model).

    Attributes:
        name: prefix of the output files.
        resolution_m: pixel size of the output grid, metres (10 or 20 are the Sentinel-2 ones).
        sun_zenith, sun_azimuth: sun position, degrees (azimuth clockwise from north).
        snowline_m: mean snowline elevation; None: the 60th percentile of the scene's elevation.
        snowline_noise_m: amplitude (1 standard deviation) of the snowline's random undulation.
        snow_transition_m: elevation over which the snow fraction goes from 0 to 1.
        aspect_snow_shift_m: how much lower the snowline is on slopes facing the pole.
        max_snow_slope_deg: slopes steeper than this shed their snow.
        treeline_m: elevation above which the ground is rock; None: no treeline.
        treeline_noise_m: amplitude of the treeline's undulation.
        rock_slope_deg: slopes steeper than this are rock.
        orbit: ``"ascending"`` or ``"descending"`` Sentinel-1 pass.
        incidence_deg: Sentinel-1 ellipsoid incidence angle (constant over the scene).
        looks: equivalent number of looks of the speckle.
        clouds: cloud parameters (their sun and pixel size are replaced by the scene's).
        max_pixels: refuse grids larger than this (the scene is built in memory).
        seed: seed of every random field.
    """

    name: str = "scene"
    resolution_m: float = 20.0
    sun_zenith: float = 40.0
    sun_azimuth: float = 160.0
    snowline_m: Optional[float] = None
    snowline_noise_m: float = 120.0
    snow_transition_m: float = 80.0
    aspect_snow_shift_m: float = 150.0
    max_snow_slope_deg: float = 50.0
    treeline_m: Optional[float] = None
    treeline_noise_m: float = 80.0
    rock_slope_deg: float = 38.0
    orbit: str = "ascending"
    incidence_deg: float = 39.0
    looks: float = 4.4
    clouds: CloudParameters = field(default_factory=lambda: CloudParameters(coverage=0.4, kind="mixed",
                                                                            max_scale_px=256.0))
    max_pixels: int = 16_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.orbit not in ORBITS:
            raise InputError(f"orbit must be one of {', '.join(ORBITS)}, got {self.orbit!r}")
        if not 0.0 <= self.sun_zenith < 90.0:
            raise InputError(f"sun zenith must lie in [0, 90) degrees, got {self.sun_zenith}")
        if not 0.0 < self.incidence_deg < 90.0:
            raise InputError(f"incidence angle must lie in (0, 90) degrees, got {self.incidence_deg}")
        if self.resolution_m <= 0:
            raise InputError(f"resolution must be > 0 m, got {self.resolution_m}")
        if self.looks <= 0:
            raise InputError(f"looks must be > 0, got {self.looks}")
        if not self.name or any(c in self.name for c in "/\\"):
            raise InputError(f"scene name {self.name!r} must be a plain file-name prefix")

    @property
    def sun(self) -> SunAngles:
        return SunAngles(zenith=self.sun_zenith, azimuth=self.sun_azimuth, source="semi-synthetic scene parameters")


@dataclass
class SpectralLibrary:
    """Real Sentinel-2 spectra per land-cover class, and real Sentinel-1 levels where measured.

    ``spectra[class]`` is (N, 10) float32 reflectance in the band order :data:`S2_BANDS`,
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
            "bands": list(S2_BANDS),
            "spectra": {k: int(v.shape[0]) for k, v in self.spectra.items()},
            "sources": self.sources,
            "median_spectra": {k: [round(float(x), 4) for x in np.median(v, axis=0)] for k, v in self.spectra.items()},
            "backscatter_db_measured": self.backscatter,
            "backscatter_sources": self.backscatter_sources,
        }


@dataclass
class SemiSyntheticScene:
    """Paths and statistics of a generated scene."""

    name: str
    paths: Dict[str, str]
    grid: Grid
    stats: Dict[str, float]
    config: SemiSyntheticConfig


# ---------------------------------------------------------------------------------------------
# the spectral library
# ---------------------------------------------------------------------------------------------
def default_data_root() -> Path:
    """``$TOPOCLEAR_SHARED_DATA``, else ``../shared/data`` beside the plugin folder."""
    env = os.environ.get(_SHARED_DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


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
    from ..clouds.masks.rules import bands_from_stack, cloud_mask_l1c

    with open_raster(path, "Sentinel-2 L1C image") as ds:
        stack = ds.read().astype(np.float64)
    if stack.shape[0] != 13:
        raise InputError(f"{path}: expected a 13-band Level-1C stack, got {stack.shape[0]} bands")
    bands = bands_from_stack(stack)
    usable = ~cloud_mask_l1c(bands) & (stack.sum(axis=0) > 0)
    return bands, usable


def _bigearthnet_band_file(folder: Path, band: str) -> Optional[Path]:
    suffix = "8A" if band == "B8A" else band[1:].zfill(2)
    files = sorted(folder.glob(f"*_B{suffix}.tif"))
    return files[0] if files else None


def _read_bigearthnet(folder: Path) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """The 10 bands of a BigEarthNet-MM L2A patch on its 10 m grid (20 m bands repeated 2 x 2)."""
    bands: Dict[str, np.ndarray] = {}
    shape = None
    for band in S2_BANDS:
        path = _bigearthnet_band_file(folder, band)
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
    usable = np.all([bands[b] > 0 for b in S2_BANDS], axis=0)
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


def load_spectral_library(data_root: Optional[os.PathLike | str] = None, max_per_class: int = 20000,
                          seed: int = 0) -> SpectralLibrary:
    """Collect real spectra per class from the sample data (see the module docstring).

    ``data_root`` is the folder of the shared sample data (default :func:`default_data_root`).
    At most ``max_per_class`` spectra are kept per class (a deterministic random subset).
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    pools: Dict[str, List[np.ndarray]] = {k: [] for k in CLASSES}
    sources: Dict[str, List[str]] = {k: [] for k in CLASSES}
    s1_values: Dict[str, Dict[str, List[np.ndarray]]] = {k: {p: [] for p in S1_BANDS} for k in CLASSES}
    s1_sources: Dict[str, List[str]] = {k: [] for k in CLASSES}

    def add(name: str, level: str, bands: Mapping[str, np.ndarray], usable: np.ndarray, allowed: Sequence[str],
            s1: Optional[Dict[str, np.ndarray]] = None) -> None:
        masks = _classify_pixels(bands, usable)
        stack = np.stack([bands[b] for b in S2_BANDS], axis=-1)
        for cls in allowed:
            n = int(masks[cls].sum())
            if n < MIN_SOURCE_PIXELS:
                continue
            pools[cls].append(stack[masks[cls]].astype(np.float32))
            sources[cls].append(f"{name} ({level}): {n} px")
            if s1 is not None and n >= 100 and all(s1[p].shape == masks[cls].shape for p in S1_BANDS):
                for p in S1_BANDS:
                    s1_values[cls][p].append(s1[p][masks[cls]])
                s1_sources[cls].append(f"{name} Sentinel-1: {n} px")

    cr = root / "sen12ms-cr" / "s2_clear"
    for path in sorted(cr.glob("*.tif")) if cr.is_dir() else []:
        key = "_".join(path.stem.split("_")[-2:])
        bands, usable = _read_l1c(path)
        allowed = ("snow",) if key == _SNOW_L1C else ("vegetation", "rock")
        add(f"SEN12MS-CR clear {key}", "L1C", bands, usable, allowed)
    ts = root / "sen12ms-cr-ts"
    for path in sorted(ts.glob("*2018-05-31*.tif")) if ts.is_dir() else []:
        bands, usable = _read_l1c(path)
        add("SEN12MS-CR-TS Rome 2018-05-31", "L1C", bands, usable, ("vegetation", "rock"))
    ben = root / "bigearthnet" / "BigEarthNet-S2-Example"
    for folder in sorted(p for p in ben.iterdir() if p.is_dir()) if ben.is_dir() else []:
        bands, usable = _read_bigearthnet(folder)
        patch_key = "_".join(folder.name.split("_")[-2:])
        allowed = ("snow",) if folder.name == _SNOW_PATCH else ("vegetation", "rock")
        add(f"BigEarthNet-MM {folder.name}", "L2A", bands, usable, allowed, _bigearthnet_s1(root, patch_key))

    rng = np.random.default_rng([seed, 7])
    spectra: Dict[str, np.ndarray] = {}
    for cls, parts in pools.items():
        if not parts:
            raise InputError(f"spectral library: no real {cls} pixels found under {root} (the SEN12MS-CR, "
                             "SEN12MS-CR-TS and BigEarthNet-MM samples are needed)")
        pool = np.concatenate(parts, axis=0)
        if pool.shape[0] > max_per_class:
            pool = pool[np.sort(rng.choice(pool.shape[0], max_per_class, replace=False))]
        centred = pool - pool.mean(axis=0)
        _, _, vt = np.linalg.svd(centred[:: max(1, pool.shape[0] // 5000)].astype(np.float64), full_matrices=False)
        pc1 = centred @ vt[0].astype(np.float32)
        if vt[0].sum() < 0:  # PC1 grows with brightness
            pc1 = -pc1
        spectra[cls] = np.ascontiguousarray(pool[np.argsort(pc1, kind="stable")])
    measured = {cls: {p: round(float(np.median(np.concatenate(v[p]))), 2) for p in S1_BANDS}
                for cls, v in s1_values.items() if v[S1_BANDS[0]]}
    return SpectralLibrary(spectra, sources, measured, {k: v for k, v in s1_sources.items() if v})


# ---------------------------------------------------------------------------------------------
# grid
# ---------------------------------------------------------------------------------------------
def _utm_crs(lon: float, lat: float) -> CRS:
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def scene_grid(dem_path: os.PathLike | str, resolution_m: float) -> Grid:
    """Output grid of a scene over ``dem_path``: the DEM's CRS when projected, otherwise the UTM
    zone of its centre; the largest north-up rectangle inside the DEM, one DEM cell in from its
    edges, snapped to ``resolution_m``."""
    with open_raster(dem_path, "DEM") as ds:
        if ds.crs is None:
            raise InputError(f"DEM {dem_path} has no coordinate reference system")
        t, w, h = ds.transform, ds.width, ds.height
        inner = [t * (1, 1), t * (w - 1, 1), t * (1, h - 1), t * (w - 1, h - 1)]
        src_crs = ds.crs
    if src_crs.is_projected:
        crs = src_crs
        xs, ys = [p[0] for p in inner], [p[1] for p in inner]
    else:
        lon = sum(p[0] for p in inner) / 4.0
        lat = sum(p[1] for p in inner) / 4.0
        crs = _utm_crs(lon, lat)
        xs, ys = warp_transform(src_crs, crs, [p[0] for p in inner], [p[1] for p in inner])
    # corners: top-left, top-right, bottom-left, bottom-right (north-up source)
    left = max(xs[0], xs[2])
    right = min(xs[1], xs[3])
    top = min(ys[0], ys[1])
    bottom = max(ys[2], ys[3])
    if top < bottom:
        top, bottom = max(ys[2], ys[3]), min(ys[0], ys[1])
    r = float(resolution_m)
    left, top = math.ceil(left / r) * r, math.floor(top / r) * r
    width, height = int((right - left) // r), int((top - bottom) // r)
    if width < 2 or height < 2:
        raise InputError(f"DEM {dem_path} is too small for a {r} m grid")
    return Grid(crs, Affine(r, 0.0, left, 0.0, -r, top), width, height)


def _latitude(grid: Grid) -> float:
    cx, cy = grid.transform * (grid.width / 2.0, grid.height / 2.0)
    if grid.crs.is_geographic:
        return float(cy)
    _, lat = warp_transform(grid.crs, CRS.from_epsg(4326), [cx], [cy])
    return float(lat[0])


# ---------------------------------------------------------------------------------------------
# the physical pieces (pure functions on arrays)
# ---------------------------------------------------------------------------------------------
def _rng(seed: int, component: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(component)])


def _smooth(shape, rng, scale_px: float) -> np.ndarray:
    """Unit-variance smooth field with features up to ``scale_px`` pixels."""
    return fractal_field(shape, rng, beta=3.0, max_scale_px=max(4.0, scale_px))


def land_cover(elevation: np.ndarray, slope: np.ndarray, aspect: np.ndarray, config: SemiSyntheticConfig,
               latitude: float = 45.0, valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Ground class (1 vegetation, 2 rock; 0 invalid) and snow fraction (0-1) from the terrain.

    ``aspect`` may be NaN on flat cells. Returns ``(ground, snow_fraction, parameters)`` where
    ``parameters`` records the snowline and treeline used.
    """
    if valid is None:
        valid = np.isfinite(elevation) & np.isfinite(slope)
    shape = elevation.shape
    z = np.where(valid, elevation, np.nan)
    snowline = config.snowline_m if config.snowline_m is not None else float(np.nanpercentile(z, 60))
    poleward = 0.0 if latitude >= 0 else 180.0
    s = np.where(valid, slope, 0.0)
    a = np.where(np.isfinite(aspect), aspect, poleward + 90.0)
    facing = np.cos(np.radians(a - poleward)) * np.minimum(1.0, s / 20.0)
    snow_noise = _smooth(shape, _rng(config.seed, 1), 4000.0 / config.resolution_m)
    local_snowline = snowline + config.snowline_noise_m * snow_noise - config.aspect_snow_shift_m * facing
    f_elev = np.clip((np.nan_to_num(z, nan=-1e9) - local_snowline) / config.snow_transition_m + 0.5, 0.0, 1.0)
    f_slope = np.clip((config.max_snow_slope_deg - s) / 10.0 + 0.5, 0.0, 1.0)
    snow = np.where(valid, f_elev * f_slope, 0.0).astype(np.float32)

    rock_noise = _smooth(shape, _rng(config.seed, 2), 1500.0 / config.resolution_m)
    rock = s > config.rock_slope_deg + 5.0 * rock_noise
    if config.treeline_m is not None:
        tree_noise = _smooth(shape, _rng(config.seed, 3), 3000.0 / config.resolution_m)
        rock |= np.nan_to_num(z, nan=-1e9) > config.treeline_m + config.treeline_noise_m * tree_noise
    ground = np.where(valid, np.where(rock, CLASSES["rock"], CLASSES["vegetation"]), 0).astype(np.uint8)
    return ground, snow, {"snowline_m": round(float(snowline), 1), "treeline_m": config.treeline_m,
                          "poleward_aspect_deg": poleward}


def _pick_spectra(pool: np.ndarray, selected: np.ndarray, rng: np.random.Generator,
                  scale_px: float) -> np.ndarray:
    """(N_selected, 10) spectra for the True cells of ``selected``: a smooth field indexes the
    PC1-sorted pool, so neighbours get similar real spectra."""
    smooth = _smooth(selected.shape, rng, scale_px)
    white = rng.standard_normal(selected.shape)
    u = ndtr(0.92 * smooth + 0.39 * white)  # unit variance -> uniform in (0, 1)
    idx = np.minimum((u[selected] * pool.shape[0]).astype(np.int64), pool.shape[0] - 1)
    return pool[idx]


def surface_reflectance(ground: np.ndarray, snow: np.ndarray, library: SpectralLibrary, seed: int,
                        resolution_m: float) -> np.ndarray:
    """(10, H, W) float32 flat-terrain reflectance: ground spectra mixed with snow by fraction."""
    h, w = ground.shape
    out = np.zeros((len(S2_BANDS), h, w), np.float32)
    flat = out.reshape(len(S2_BANDS), -1)
    g = ground.ravel()
    for code, cls in ((CLASSES["vegetation"], "vegetation"), (CLASSES["rock"], "rock")):
        sel = ground == code
        if sel.any():
            flat[:, np.flatnonzero(g == code)] = _pick_spectra(library.spectra[cls], sel, _rng(seed, 10 + code),
                                                              800.0 / resolution_m).T
    has_snow = snow > 0
    if has_snow.any():
        snow_spec = _pick_spectra(library.spectra["snow"], has_snow, _rng(seed, 20), 1500.0 / resolution_m).T
        cells = np.flatnonzero(has_snow.ravel())
        f = snow.ravel()[cells]
        flat[:, cells] = f * snow_spec + (1.0 - f) * flat[:, cells]
    return out


def cos_incidence(slope_deg: np.ndarray, aspect_deg: np.ndarray, zenith_deg: float, azimuth_deg: float) -> np.ndarray:
    """cos of the angle between the surface normal and a direction (zenith, azimuth).

    ``cos Z cos S + sin Z sin S cos(Az - A)``; flat cells (NaN aspect) count as slope 0.
    """
    s = np.radians(np.where(np.isfinite(aspect_deg), slope_deg, 0.0))
    a = np.radians(np.where(np.isfinite(aspect_deg), aspect_deg, 0.0))
    z, az = math.radians(zenith_deg), math.radians(azimuth_deg)
    return (math.cos(z) * np.cos(s) + math.sin(z) * np.sin(s) * np.cos(az - a)).astype(np.float32)


def cast_shadow(elevation: np.ndarray, pixel_size_m: float, zenith_deg: float, azimuth_deg: float,
                max_distance_px: int = 1000) -> np.ndarray:
    """True where the relief hides the sun: some cell towards the sun rises above the sun's ray.

    Ray marching over the elevation grid (1-pixel steps to 64 px, then steps growing by 3 %),
    up to the distance at which the scene's relief can no longer block a sun at that
    altitude. Cells outside the grid or NaN do not cast shadows.
    """
    z = np.where(np.isfinite(elevation), elevation, -np.inf).astype(np.float32)
    altitude = math.radians(90.0 - zenith_deg)
    if altitude <= 0:
        return np.isfinite(elevation)
    tan_alt = math.tan(altitude)
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return np.zeros(z.shape, bool)
    relief = float(finite.max() - finite.min())
    reach = min(max_distance_px, int(math.ceil(relief / (tan_alt * pixel_size_m))) + 1)
    d_row, d_col = -math.cos(math.radians(azimuth_deg)), math.sin(math.radians(azimuth_deg))
    h, w = z.shape
    shadow = np.zeros(z.shape, bool)
    seen = set()
    d = 1.0
    while d <= reach:
        dr, dc = int(round(d * d_row)), int(round(d * d_col))
        d = d + 1.0 if d < 64 else d * 1.03
        if (dr, dc) in seen or (dr == 0 and dc == 0) or abs(dr) >= h or abs(dc) >= w:
            continue
        seen.add((dr, dc))
        rise = math.hypot(dr, dc) * pixel_size_m * tan_alt
        # value at p: elevation at p + (dr, dc)
        tr0, tr1 = max(0, -dr), min(h, h - dr)
        tc0, tc1 = max(0, -dc), min(w, w - dc)
        target = z[tr0:tr1, tc0:tc1]
        source = z[tr0 + dr:tr1 + dr, tc0 + dc:tc1 + dc]
        shadow[tr0:tr1, tc0:tc1] |= source - target > rise
    return shadow & np.isfinite(elevation)


def illumination(slope_deg: np.ndarray, aspect_deg: np.ndarray, zenith_deg: float, azimuth_deg: float,
                 cast: Optional[np.ndarray] = None, bands: Sequence[str] = S2_BANDS) -> np.ndarray:
    """(bands, H, W) illumination factor (1 on flat open ground; module docstring formula)."""
    cos_i = np.maximum(cos_incidence(slope_deg, aspect_deg, zenith_deg, azimuth_deg), 0.0)
    if cast is not None:
        cos_i = np.where(cast, 0.0, cos_i)
    s = np.radians(np.where(np.isfinite(slope_deg), slope_deg, 0.0))
    sky_view = (1.0 + np.cos(s)) / 2.0
    direct = cos_i / max(math.cos(math.radians(zenith_deg)), 1e-3)
    out = np.empty((len(bands),) + np.shape(slope_deg), np.float32)
    for i, b in enumerate(bands):
        d = DIFFUSE_FRACTION.get(b, 0.1)
        out[i] = d * sky_view + (1.0 - d) * direct
    return out


def local_incidence(slope_deg: np.ndarray, aspect_deg: np.ndarray, incidence_deg: float = 39.0,
                    orbit: str = "ascending") -> np.ndarray:
    """Local incidence angle (degrees, 0-180) of the radar beam on the terrain for a pass."""
    if orbit not in ORBITS:
        raise InputError(f"orbit must be one of {', '.join(ORBITS)}, got {orbit!r}")
    cos_loc = cos_incidence(slope_deg, aspect_deg, incidence_deg, ORBITS[orbit])
    return np.degrees(np.arccos(np.clip(cos_loc, -1.0, 1.0))).astype(np.float32)


def backscatter_levels(library: Optional[SpectralLibrary] = None) -> Dict[str, Dict[str, float]]:
    """Reference sigma0 (dB) per class and polarisation: measured where the library has it."""
    levels = {k: dict(v) for k, v in DEFAULT_BACKSCATTER_DB.items()}
    if library is not None:
        for cls, pols in library.backscatter.items():
            levels[cls].update(pols)
    return levels


def backscatter(theta_loc_deg: np.ndarray, ground: np.ndarray, snow: np.ndarray, incidence_deg: float,
                levels: Mapping[str, Mapping[str, float]], rng: Optional[np.random.Generator],
                looks: float = 4.4) -> np.ndarray:
    """(2, H, W) VV, VH sigma0 in dB (module docstring model); ``rng`` None: no speckle."""
    cos_loc = np.cos(np.radians(theta_loc_deg))
    cos_ref = math.cos(math.radians(incidence_deg))
    shadowed = theta_loc_deg >= 90.0
    out = np.empty((2,) + ground.shape, np.float32)
    for p, pol in enumerate(S1_BANDS):
        def linear(cls):
            b = BACKSCATTER_SLOPE_DB[cls][pol]
            a = levels[cls][pol] - b * cos_ref
            return 10.0 ** ((a + b * cos_loc) / 10.0)

        ground_lin = np.where(ground == CLASSES["rock"], linear("rock"), linear("vegetation"))
        power = snow * linear("snow") + (1.0 - snow) * ground_lin
        power = np.where(shadowed, 10.0 ** (NOISE_FLOOR_DB[pol] / 10.0), power)
        if rng is not None:
            power = power * rng.gamma(looks, 1.0 / looks, size=power.shape)
        out[p] = 10.0 * np.log10(np.maximum(power, 1e-6))
    return out


# ---------------------------------------------------------------------------------------------
# the scene
# ---------------------------------------------------------------------------------------------
def _output_paths(output_dir: Path, name: str) -> Dict[str, Path]:
    stem = f"{name}_semisynthetic"
    return {
        "s2_clear": output_dir / f"{stem}_s2_clear.tif",
        "s2_cloudy": output_dir / f"{stem}_s2_cloudy.tif",
        "s1": output_dir / f"{stem}_s1.tif",
        "terrain": output_dir / f"{stem}_terrain.tif",
        "cloud_mask": output_dir / f"{stem}_cloud_mask.tif",
        "shadow_mask": output_dir / f"{stem}_shadow_mask.tif",
        "landcover": output_dir / f"{stem}_landcover.tif",
        "metadata": output_dir / f"{stem}.json",
    }


def _compressed(dtype: str) -> Dict[str, str]:
    """Tiled DEFLATE GeoTIFF options (horizontal predictor for integers, floating-point for floats)."""
    return {"TILED": "YES", "BLOCKXSIZE": "512", "BLOCKYSIZE": "512", "BIGTIFF": "IF_SAFER", "COMPRESS": "DEFLATE",
            "PREDICTOR": "3" if dtype.startswith("float") else "2"}


def _to_dn(reflectance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint16 reflectance x 10000; 1 at least on valid cells (0 is the nodata value)."""
    dn = np.clip(np.rint(reflectance * 10000.0), 1, 65535)
    return np.where(valid[None], dn, 0).astype(np.uint16)


def generate_scene(dem_path: os.PathLike | str, output_dir: os.PathLike | str,
                   config: SemiSyntheticConfig = SemiSyntheticConfig(),
                   library: Optional[SpectralLibrary] = None, data_root: Optional[os.PathLike | str] = None,
                   dem_description: str = "", monitor: Monitor = SILENT) -> SemiSyntheticScene:
    """Write one terrain-aware semi-synthetic scene over ``dem_path`` into ``output_dir``.

    ``library``: the spectral library (loaded from ``data_root`` when None). ``dem_description``
    goes into the metadata (where the DEM comes from). Returns the output paths and statistics
    (fractions of snow, rock, cloud and shadow; mean illumination).
    """
    out_dir = Path(output_dir)
    if not out_dir.is_dir():
        raise InputError(f"output folder {out_dir} does not exist")
    paths = _output_paths(out_dir, config.name)
    if library is None:
        library = load_spectral_library(data_root)
    grid = scene_grid(dem_path, config.resolution_m)
    if grid.width * grid.height > config.max_pixels:
        raise InputError(f"the {config.resolution_m} m grid over {dem_path} has {grid.width} x {grid.height} px, "
                         f"more than max_pixels={config.max_pixels}; use a coarser resolution or a smaller DEM")
    monitor.message(f"semi-synthetic scene {config.name}: {grid.width} x {grid.height} px at "
                    f"{config.resolution_m} m in {grid.crs}")

    # 1. terrain stack on the output grid, lit by the scene's sun
    fd, ref_path = tempfile.mkstemp(prefix=f".{config.name}.grid.", suffix=".tif", dir=str(out_dir))
    os.close(fd)
    try:
        with rasterio.open(ref_path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                           dtype="uint8", crs=grid.crs, transform=grid.transform, SPARSE_OK="TRUE") as ref:
            ref.set_band_description(1, "grid of a semi-synthetic scene")
        terrain_stack(dem_path, ref_path, paths["terrain"], options=TerrainOptions(sun=config.sun),
                      monitor=monitor.sub(0, 30))
    finally:
        if os.path.exists(ref_path):
            os.remove(ref_path)
    monitor.check()
    with rasterio.open(paths["terrain"]) as ds:
        terrain = ds.read().astype(np.float32)
        nod = ds.nodata
    terrain[terrain == np.float32(nod)] = np.nan
    elevation, slope, aspect, hillshade = terrain
    valid = np.isfinite(elevation) & np.isfinite(slope) & np.isfinite(hillshade)
    if not valid.any():
        raise InputError(f"DEM {dem_path} gives no valid terrain on the scene grid")

    # 2. land cover and flat-terrain reflectance from real spectra
    latitude = _latitude(grid)
    ground, snow, cover_params = land_cover(elevation, slope, aspect, config, latitude, valid)
    surface = surface_reflectance(ground, snow, library, config.seed, config.resolution_m)
    monitor.progress(45)
    monitor.check()

    # 3. illumination by the sun over the relief
    cast = cast_shadow(np.where(valid, elevation, np.nan), config.resolution_m, config.sun_zenith,
                       config.sun_azimuth)
    light = illumination(slope, aspect, config.sun_zenith, config.sun_azimuth, cast)
    clear = surface * light
    del surface
    clear_dn = _to_dn(clear, valid)
    del clear
    monitor.progress(60)
    monitor.check()

    # 4. clouds and their shadows, lit by the same sun
    cloud_params = replace(config.clouds, sun_azimuth=config.sun_azimuth, sun_zenith=config.sun_zenith,
                           pixel_size_m=float(config.resolution_m))
    clouds = add_synthetic_clouds(clear_dn.astype(np.float32), S2_BANDS, seed=int(config.seed) * 1000 + 4,
                                  parameters=cloud_params)
    cloudy_dn = np.where(valid[None], np.clip(np.rint(clouds.cloudy), 1, 65535), 0).astype(np.uint16)
    cloud_mask = clouds.cloud_mask & valid
    shadow_mask = clouds.shadow_mask & valid
    del clouds
    monitor.progress(75)
    monitor.check()

    # 5. Sentinel-1 following the local incidence angle
    theta = local_incidence(slope, aspect, config.incidence_deg, config.orbit)
    levels = backscatter_levels(library)
    s1 = backscatter(theta, ground, snow, config.incidence_deg, levels, _rng(config.seed, 30), config.looks)
    s1[:, ~valid] = np.nan
    monitor.progress(85)

    # 6. outputs
    tags = {"SEMI_SYNTHETIC": "yes", "SEED": str(config.seed), "SCENE": config.name,
            "DEM": os.path.basename(str(dem_path))}
    band_desc = list(S2_BANDS)
    with AtomicRasterWriter(paths["s2_clear"], grid, len(S2_BANDS), "uint16", 0, band_desc,
                            _compressed("uint16")) as dst:
        dst.write(clear_dn)
        dst.update_tags(**tags, CONTENT="semi-synthetic clear Sentinel-2-like reflectance x 10000")
    with AtomicRasterWriter(paths["s2_cloudy"], grid, len(S2_BANDS), "uint16", 0, band_desc,
                            _compressed("uint16")) as dst:
        dst.write(cloudy_dn)
        dst.update_tags(**tags, CONTENT="semi-synthetic cloudy Sentinel-2-like reflectance x 10000")
    with AtomicRasterWriter(paths["s1"], grid, 2, "float32", float("nan"),
                            [f"{p} sigma0 dB ({config.orbit}, semi-synthetic)" for p in S1_BANDS],
                            _compressed("float32")) as dst:
        dst.write(s1)
        dst.update_tags(**tags, CONTENT="semi-synthetic Sentinel-1 backscatter, dB")
    for key, mask, label in (("cloud_mask", cloud_mask, "cloud"), ("shadow_mask", shadow_mask, "cloud shadow")):
        with AtomicRasterWriter(paths[key], grid, 1, "uint8", None, [f"{label} mask (1 = {label})"],
                                _compressed("uint8")) as dst:
            dst.write(mask.astype(np.uint8)[None])
            dst.update_tags(**tags)
    cover = np.where(valid, np.where(snow >= 0.5, CLASSES["snow"], ground), 0).astype(np.uint8)
    with AtomicRasterWriter(paths["landcover"], grid, 3, "uint8", None,
                            ["class (0 nodata, 1 vegetation, 2 rock, 3 snow)", "snow fraction x 100",
                             "terrain cast shadow (1 = shadow)"], _compressed("uint8")) as dst:
        dst.write(np.stack([cover, np.rint(snow * 100).astype(np.uint8), (cast & valid).astype(np.uint8)]))
        dst.update_tags(**tags)

    n_valid = float(valid.sum())
    stats = {
        "pixels": int(valid.size), "valid_pixels": int(n_valid),
        "snow_fraction": float(snow[valid].mean()),
        "rock_fraction": float((ground[valid] == CLASSES["rock"]).mean()),
        "cloud_fraction": float(cloud_mask.sum() / n_valid),
        "shadow_fraction": float(shadow_mask.sum() / n_valid),
        "terrain_cast_shadow_fraction": float((cast & valid).sum() / n_valid),
        "radar_shadow_fraction": float(((theta >= 90.0) & valid).sum() / n_valid),
        "mean_illumination_B8": float(light[S2_BANDS.index("B8")][valid].mean()),
    }
    metadata = {
        "what": "terrain-aware semi-synthetic scene: real DEM, real Sentinel-2 spectra, modelled illumination, "
                "synthetic clouds, modelled Sentinel-1 (topoclear.engine.training.semisynthetic)",
        "semi_synthetic": True,
        "dem": {"path": os.path.basename(str(dem_path)), "description": dem_description},
        "grid": {"crs": grid.crs.to_string(), "transform": list(grid.transform)[:6], "width": grid.width,
                 "height": grid.height, "resolution_m": config.resolution_m},
        "config": _jsonable(asdict(config)),
        "land_cover": cover_params,
        "latitude": round(latitude, 4),
        "illumination": {"diffuse_fraction": DIFFUSE_FRACTION, "terrain_cast_shadows": True},
        "sentinel1": {"orbit": config.orbit, "sensor_azimuth_deg": ORBITS[config.orbit],
                      "incidence_deg": config.incidence_deg, "looks": config.looks,
                      "reference_levels_db": levels, "angular_slope_db": BACKSCATTER_SLOPE_DB,
                      "noise_floor_db": NOISE_FLOOR_DB},
        "clouds": _jsonable(asdict(cloud_params)),
        "spectral_library": library.describe(),
        "bands": {"s2": list(S2_BANDS), "s1": list(S1_BANDS)},
        "stats": stats,
        "files": {k: p.name for k, p in paths.items() if k != "metadata"},
    }
    write_text_atomic(paths["metadata"], json.dumps(metadata, indent=1))
    monitor.progress(100)
    return SemiSyntheticScene(config.name, {k: str(p) for k, p in paths.items()}, grid, stats, config)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

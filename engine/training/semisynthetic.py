"""Terrain-aware **semi-synthetic** Sentinel-1/Sentinel-2 scenes: a real DEM, real spectra, modelled light.

No openly licensed mountain scene with a cloudy and a clear Sentinel-2 image, a Sentinel-1 image
and a DEM could be obtained, so this module builds one honestly and says so in every name it
writes ("semi-synthetic"). What is real and what is modelled:

**Real**

* the relief: a real DEM (e.g. SRTM ``bigtujunga.tif``, San Gabriel Mountains; the Rocky
  Mountain NP DEM ``rmnp-dem.tif`` in EPSG:4326, reprojected here to its UTM zone);
* every surface spectrum: each pixel's 10-band spectrum is one measured Sentinel-2 pixel drawn
  from a spectral library (:func:`~topoclear.engine.training.spectral_library.load_spectral_library`) of real clear patches:

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
  defaults of :data:`~topoclear.engine.training.sar_simulation.DEFAULT_BACKSCATTER_DB` (values of the same kind, documented there);
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
  per-band diffuse-sky fraction ``d_b`` of :data:`~topoclear.engine.training.optical_simulation.DIFFUSE_FRACTION` (typical clear-sky
  values, higher in the blue) and ``cast`` = 1 where another part of the relief hides the sun
  (ray marching towards the sun over the elevation band). ``L = 1`` on flat open ground.
  Clear reflectance = surface reflectance x ``L_b``.
* **Clouds and shadows** on top of the clear image with
  :func:`topoclear.engine.training.synthetic_clouds.add_synthetic_clouds`, lit by the same sun: the
  shadows fall ``cloud_height * tan(Zs)`` away from each cloud along ``As + 180``.
* **Sentinel-1** VV and VH in dB: ``sigma0 = a + b * cos(theta_loc)`` per class and
  polarisation, with ``a`` chosen so that ``sigma0`` equals the class's (measured) reference
  level at ``theta_loc`` = the ellipsoid incidence, and the angular sensitivity ``b`` of
  :data:`~topoclear.engine.training.sar_simulation.BACKSCATTER_SLOPE_DB` (surface scattering from rock and wet snow depends more on the
  angle than volume scattering from vegetation). ``cos theta_loc = cos T cos S + sin T sin S
  cos(A - Ar)``, ``T`` the ellipsoid incidence (39 deg, mid-swath of the IW mode) and ``Ar``
  the azimuth from the ground to the satellite: Sentinel-1 looks right, so with an
  **ascending** pass (heading about 348 deg) it looks towards 78 deg and sits at
  ``Ar`` = 258 deg (west); **descending** (heading about 192 deg) it looks towards 282 deg and
  sits at ``Ar`` = 102 deg (east). Snow mixes with its ground in linear power. Slopes facing
  away by more than 90 deg from the radar (radar shadow) get the noise floor
  (:data:`~topoclear.engine.training.sar_simulation.NOISE_FLOOR_DB`). Multiplicative speckle: linear power times a Gamma variable of
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
from typing import Dict, Optional, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from ...models.bands import S1_BANDS, S2_BANDS_10_20M
from ..checkpoints import jsonable
from ..errors import InputError
from ..io.atomic import AtomicRasterWriter, write_text_atomic
from ..io.raster import Grid, nodata_to_nan, open_raster
from ..progress import SILENT, Monitor
from ..sentinel2.metadata import SunAngles
from ..terrain.derivatives import TerrainOptions
from ..terrain.stack import terrain_stack
from .optical_simulation import (DIFFUSE_FRACTION, cast_shadow, component_rng, illumination, land_cover,
                                 surface_reflectance)
from .sar_simulation import BACKSCATTER_SLOPE_DB, NOISE_FLOOR_DB, ORBITS, backscatter, backscatter_levels, \
    local_incidence
from .spectral_library import CLASSES, SpectralLibrary, load_spectral_library
from .synthetic_clouds import CloudParameters, add_synthetic_clouds

__all__ = ["SemiSyntheticConfig", "SemiSyntheticScene", "scene_grid", "generate_scene"]


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
class SemiSyntheticScene:
    """Paths and statistics of a generated scene."""

    name: str
    paths: Dict[str, str]
    grid: Grid
    stats: Dict[str, float]
    config: SemiSyntheticConfig


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


@dataclass
class _Layers:
    """The rasters of a scene in memory, on its grid (module docstring for their meaning)."""

    valid: np.ndarray
    ground: np.ndarray
    snow: np.ndarray
    cast: np.ndarray
    light: np.ndarray
    clear_dn: np.ndarray
    cloudy_dn: Optional[np.ndarray] = None
    cloud_mask: Optional[np.ndarray] = None
    shadow_mask: Optional[np.ndarray] = None
    theta: Optional[np.ndarray] = None
    s1: Optional[np.ndarray] = None


def _terrain_on_grid(dem_path, grid: Grid, out_dir: Path, path: Path, config: SemiSyntheticConfig,
                     monitor: Monitor) -> np.ndarray:
    """(4, H, W) terrain stack on the scene grid lit by the scene's sun (NaN where unknown)."""
    fd, ref_path = tempfile.mkstemp(prefix=f".{config.name}.grid.", suffix=".tif", dir=str(out_dir))
    os.close(fd)
    try:
        with rasterio.open(ref_path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                           dtype="uint8", crs=grid.crs, transform=grid.transform, SPARSE_OK="TRUE") as ref:
            ref.set_band_description(1, "grid of a semi-synthetic scene")
        terrain_stack(dem_path, ref_path, path, options=TerrainOptions(sun=config.sun), monitor=monitor)
    finally:
        if os.path.exists(ref_path):
            os.remove(ref_path)
    with rasterio.open(path) as ds:
        return nodata_to_nan(ds.read().astype(np.float32), ds.nodata)


def _clear_image(terrain: np.ndarray, valid: np.ndarray, latitude: float, config: SemiSyntheticConfig,
                 library: SpectralLibrary, monitor: Monitor) -> Tuple[_Layers, dict]:
    """Land cover, real spectra and terrain illumination: the clear image, and the land-cover parameters."""
    elevation, slope, aspect, _ = terrain
    ground, snow, cover_params = land_cover(elevation, slope, aspect, config, latitude, valid)
    surface = surface_reflectance(ground, snow, library, config.seed, config.resolution_m)
    monitor.progress(45)
    monitor.check()
    cast = cast_shadow(np.where(valid, elevation, np.nan), config.resolution_m, config.sun_zenith,
                       config.sun_azimuth)
    light = illumination(slope, aspect, config.sun_zenith, config.sun_azimuth, cast)
    clear = surface * light
    del surface
    layers = _Layers(valid, ground, snow, cast, light, _to_dn(clear, valid))
    return layers, cover_params


def _add_clouds(layers: _Layers, config: SemiSyntheticConfig) -> CloudParameters:
    """Clouds and their shadows over the clear image, lit by the scene's sun; the cloud parameters used."""
    cloud_params = replace(config.clouds, sun_azimuth=config.sun_azimuth, sun_zenith=config.sun_zenith,
                           pixel_size_m=float(config.resolution_m))
    clouds = add_synthetic_clouds(layers.clear_dn.astype(np.float32), S2_BANDS_10_20M, seed=int(config.seed) * 1000 + 4,
                                  parameters=cloud_params)
    valid = layers.valid
    layers.cloudy_dn = np.where(valid[None], np.clip(np.rint(clouds.cloudy), 1, 65535), 0).astype(np.uint16)
    layers.cloud_mask = clouds.cloud_mask & valid
    layers.shadow_mask = clouds.shadow_mask & valid
    return cloud_params


def _add_sentinel1(layers: _Layers, slope: np.ndarray, aspect: np.ndarray, config: SemiSyntheticConfig,
                   library: SpectralLibrary) -> Dict[str, Dict[str, float]]:
    """VV and VH following the local incidence angle; the reference levels used."""
    layers.theta = local_incidence(slope, aspect, config.incidence_deg, config.orbit)
    levels = backscatter_levels(library)
    s1 = backscatter(layers.theta, layers.ground, layers.snow, config.incidence_deg, levels,
                     component_rng(config.seed, 30), config.looks)
    s1[:, ~layers.valid] = np.nan
    layers.s1 = s1
    return levels


def _write_rasters(paths: Dict[str, Path], grid: Grid, layers: _Layers, config: SemiSyntheticConfig,
                   dem_path) -> None:
    tags = {"SEMI_SYNTHETIC": "yes", "SEED": str(config.seed), "SCENE": config.name,
            "DEM": os.path.basename(str(dem_path))}
    band_desc = list(S2_BANDS_10_20M)
    for key, dn, what in (("s2_clear", layers.clear_dn, "clear"), ("s2_cloudy", layers.cloudy_dn, "cloudy")):
        with AtomicRasterWriter(paths[key], grid, len(S2_BANDS_10_20M), "uint16", 0, band_desc,
                                _compressed("uint16")) as dst:
            dst.write(dn)
            dst.update_tags(**tags, CONTENT=f"semi-synthetic {what} Sentinel-2-like reflectance x 10000")
    with AtomicRasterWriter(paths["s1"], grid, 2, "float32", float("nan"),
                            [f"{p} sigma0 dB ({config.orbit}, semi-synthetic)" for p in S1_BANDS],
                            _compressed("float32")) as dst:
        dst.write(layers.s1)
        dst.update_tags(**tags, CONTENT="semi-synthetic Sentinel-1 backscatter, dB")
    for key, mask, label in (("cloud_mask", layers.cloud_mask, "cloud"),
                             ("shadow_mask", layers.shadow_mask, "cloud shadow")):
        with AtomicRasterWriter(paths[key], grid, 1, "uint8", None, [f"{label} mask (1 = {label})"],
                                _compressed("uint8")) as dst:
            dst.write(mask.astype(np.uint8)[None])
            dst.update_tags(**tags)
    valid, snow = layers.valid, layers.snow
    cover = np.where(valid, np.where(snow >= 0.5, CLASSES["snow"], layers.ground), 0).astype(np.uint8)
    with AtomicRasterWriter(paths["landcover"], grid, 3, "uint8", None,
                            ["class (0 nodata, 1 vegetation, 2 rock, 3 snow)", "snow fraction x 100",
                             "terrain cast shadow (1 = shadow)"], _compressed("uint8")) as dst:
        dst.write(np.stack([cover, np.rint(snow * 100).astype(np.uint8), (layers.cast & valid).astype(np.uint8)]))
        dst.update_tags(**tags)


def _scene_stats(layers: _Layers) -> Dict[str, float]:
    valid = layers.valid
    n_valid = float(valid.sum())
    return {
        "pixels": int(valid.size), "valid_pixels": int(n_valid),
        "snow_fraction": float(layers.snow[valid].mean()),
        "rock_fraction": float((layers.ground[valid] == CLASSES["rock"]).mean()),
        "cloud_fraction": float(layers.cloud_mask.sum() / n_valid),
        "shadow_fraction": float(layers.shadow_mask.sum() / n_valid),
        "terrain_cast_shadow_fraction": float((layers.cast & valid).sum() / n_valid),
        "radar_shadow_fraction": float(((layers.theta >= 90.0) & valid).sum() / n_valid),
        "mean_illumination_B8": float(layers.light[S2_BANDS_10_20M.index("B8")][valid].mean()),
    }


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
    terrain = _terrain_on_grid(dem_path, grid, out_dir, paths["terrain"], config, monitor.sub(0, 30))
    monitor.check()
    valid = np.isfinite(terrain[0]) & np.isfinite(terrain[1]) & np.isfinite(terrain[3])
    if not valid.any():
        raise InputError(f"DEM {dem_path} gives no valid terrain on the scene grid")
    latitude = _latitude(grid)
    layers, cover_params = _clear_image(terrain, valid, latitude, config, library, monitor)
    monitor.progress(60)
    monitor.check()
    cloud_params = _add_clouds(layers, config)
    monitor.progress(75)
    monitor.check()
    levels = _add_sentinel1(layers, terrain[1], terrain[2], config, library)
    monitor.progress(85)
    _write_rasters(paths, grid, layers, config, dem_path)
    stats = _scene_stats(layers)
    metadata = {
        "what": "terrain-aware semi-synthetic scene: real DEM, real Sentinel-2 spectra, modelled illumination, "
                "synthetic clouds, modelled Sentinel-1 (topoclear.engine.training.semisynthetic)",
        "semi_synthetic": True,
        "dem": {"path": os.path.basename(str(dem_path)), "description": dem_description},
        "grid": {"crs": grid.crs.to_string(), "transform": list(grid.transform)[:6], "width": grid.width,
                 "height": grid.height, "resolution_m": config.resolution_m},
        "config": jsonable(asdict(config)),
        "land_cover": cover_params,
        "latitude": round(latitude, 4),
        "illumination": {"diffuse_fraction": DIFFUSE_FRACTION, "terrain_cast_shadows": True},
        "sentinel1": {"orbit": config.orbit, "sensor_azimuth_deg": ORBITS[config.orbit],
                      "incidence_deg": config.incidence_deg, "looks": config.looks,
                      "reference_levels_db": levels, "angular_slope_db": BACKSCATTER_SLOPE_DB,
                      "noise_floor_db": NOISE_FLOOR_DB},
        "clouds": jsonable(asdict(cloud_params)),
        "spectral_library": library.describe(),
        "bands": {"s2": list(S2_BANDS_10_20M), "s1": list(S1_BANDS)},
        "stats": stats,
        "files": {k: p.name for k, p in paths.items() if k != "metadata"},
    }
    write_text_atomic(paths["metadata"], json.dumps(metadata, indent=1))
    monitor.progress(100)
    return SemiSyntheticScene(config.name, {k: str(p) for k, p in paths.items()}, grid, stats, config)

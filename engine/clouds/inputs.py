"""Sentinel-1, DEM terrain and cloud masks brought onto the Sentinel-2 grid, one window at a time.

Cloud removal reads its auxiliary inputs on the Sentinel-2 scene's own grid (CRS, pixel size,
extent). They may come in any CRS, resolution or extent:

* **Sentinel-1** (VV, VH): resampled bilinearly (in the units of the file: a linear power
  file is interpolated in power, then converted to dB). Bands are found from band
  descriptions (``VV``/``VH``), from file names (``..._VV.tif`` with ``..._VH.tif`` beside it,
  as BigEarthNet), or for a 2-band file without names in the SEN12MS order VV, VH. Units are
  detected from the values (dB are mostly negative, linear sigma0 is positive and small) or
  given.
* **DEM**: the terrain stack (elevation, slope, aspect, hillshade lit by the scene's sun) is
  derived on the DEM's own grid and resampled bilinearly onto each window
  (:mod:`topoclear.engine.terrain.stack`; aspect through its sine and cosine). A terrain stack
  (the output of ``topoclear:terrainstack``, recognised by its band descriptions) given for the DEM is
  read as it is (:class:`StackTerrainSource`), not derived again.
* **Cloud masks**: the classes of the mask engine (:mod:`topoclear.engine.clouds.masks.engine`):
  the pretrained detector, a Sen2Cor SCL band (classes 3 shadow, 8/9 cloud, 10 cirrus), a mask
  raster (0 clear, 2 shadow, other values cloud, its nodata no data), or the DSen2-CR rules on
  the Level-1C bands; resampled by nearest neighbour. The detector is run once over the whole
  scene into a temporary class raster, read back window by window.

**Coverage.** Each source's extent is compared with the scene's: no overlap is always an error;
partial coverage is refused (``policy="refuse"``, the default) with the covered percentage in
the message, or accepted (``policy="fill"``): the missing cells are then filled with fixed
neutral values (:data:`S1_FILL_DB`, :data:`TERRAIN_FILL`; elevation: the DEM's median) and the
run reports how many pixels were filled. Nodata holes inside a covering source are filled the
same way under both policies and reported.

Reads are deterministic functions of the absolute window, so neighbouring tiles agree.
"""
from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import InputError
from ..io.raster import Grid, ThreadLocalDatasets, check_band, open_raster, overview, valid_mask
from ..io.warp import check_coverage, warp_window
from ..progress import SILENT, Monitor
from ..sentinel2.metadata import SunAngles
from .masks.engine import RULES_BANDS, SceneMask, choose_method, open_scene_mask, relay
from .masks.kinds import DETECTOR
from .tiling import take, tile_source

if TYPE_CHECKING:  # pragma: no cover
    from .scene import S2Scene

#: Values given to Sentinel-1 cells without data (dB): typical land backscatter.
S1_FILL_DB: Dict[str, float] = {"VV": -12.0, "VH": -19.0}
#: Terrain values for cells without DEM data: flat ground (elevation: the DEM's median).
TERRAIN_FILL: Dict[str, float] = {"slope": 0.0, "aspect": 0.0}
S1_UNITS = ("auto", "db", "linear")
#: Bands the DSen2-CR rule-based masks need (Level-1C, with B1 and B10).
COMPUTED_MASK_BANDS = RULES_BANDS

WindowTuple = Tuple[int, int, int, int]  # row0, col0, rows, cols (inside the scene)


def _window(w: WindowTuple) -> Window:
    return Window(w[1], w[0], w[3], w[2])


# --------------------------------------------------------------------------------------------
# Sentinel-1
# --------------------------------------------------------------------------------------------
_POL = re.compile(r"(?:^|[^A-Z])(VV|VH|HH|HV)(?:$|[^A-Z])", re.IGNORECASE)


def _pol_of(text: Optional[str]) -> Optional[str]:
    if not text:
        return None
    match = _POL.search(text)
    return match.group(1).upper() if match else None


def locate_s1(path: str, needed: Sequence[str] = ("VV", "VH"),
              bands: Optional[Dict[str, int]] = None) -> Tuple[Dict[str, Tuple[str, int]], str]:
    """Where each polarisation of ``needed`` lives: ``{"VV": (file, band), ...}`` and how it was found.

    ``bands`` gives band numbers of ``path`` explicitly (``{"VV": 1, "VH": 2}``).
    """
    with open_raster(path, "Sentinel-1 layer") as ds:
        count = ds.count
        descriptions = list(ds.descriptions)
    found: Dict[str, Tuple[str, int]] = {}
    how = ""
    if bands:
        for pol, index in bands.items():
            with open_raster(path, "Sentinel-1 layer") as ds:
                check_band(ds, int(index), f"Sentinel-1 {pol}")
            found[pol.upper()] = (path, int(index))
        how = "bands chosen explicitly"
    else:
        named = {}
        for i, text in enumerate(descriptions, start=1):
            pol = _pol_of(text)
            if pol and pol not in named:
                named[pol] = i
        if named:
            found = {pol: (path, i) for pol, i in named.items()}
            how = "band descriptions"
        elif count == 1 and _pol_of(Path(path).stem):
            own = _pol_of(Path(path).stem)
            found[own] = (path, 1)
            for other in ("VV", "VH"):
                if other == own:
                    continue
                name = Path(path).name
                matches = list(re.finditer(own, name, re.IGNORECASE))
                if matches:
                    m = matches[-1]
                    sibling = Path(path).with_name(name[:m.start()] + other + name[m.end():])
                    if sibling.exists():
                        found[other] = (str(sibling), 1)
            how = "file names (one polarisation per file)"
        elif count >= 2:
            found = {"VV": (path, 1), "VH": (path, 2)}
            how = "band order VV, VH (SEN12MS convention; the bands have no names)"
        elif count == 1:
            found = {"VV": (path, 1)}
            how = "single band taken as VV"
    missing = [p for p in needed if p not in found]
    if missing:
        raise InputError(f"Sentinel-1 layer {os.path.basename(path)}: no {', '.join(missing)} band found "
                         f"(found {', '.join(sorted(found)) or 'none'} by {how or 'nothing'}); the model needs "
                         f"{', '.join(needed)}. Choose the band numbers explicitly or give a file with both "
                         "polarisations")
    return {p: found[p] for p in needed}, how


def detect_s1_units(ds, band: int) -> str:
    """``"db"`` or ``"linear"`` from a decimated sample of the band's values."""
    sample = overview(ds, band, 256 * 256)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise InputError(f"Sentinel-1 layer {os.path.basename(ds.name)} band {band} holds only nodata or NaN")
    if np.mean(sample < 0) > 0.5:
        return "db"
    if np.median(sample) < 2.0:
        return "linear"
    raise InputError(f"Sentinel-1 layer {os.path.basename(ds.name)} band {band}: values (median "
                     f"{np.median(sample):.3g}) look neither like backscatter in dB (mostly negative) nor like "
                     "linear sigma0 (small positive values); choose the units explicitly")


class S1Source:
    """Sentinel-1 backscatter in dB on windows of the Sentinel-2 grid (NaN where missing)."""

    def __init__(self, path: str, grid: Grid, needed: Sequence[str] = ("VV", "VH"),
                 bands: Optional[Dict[str, int]] = None, units: str = "auto", policy: str = "refuse",
                 monitor: Monitor = SILENT) -> None:
        if units not in S1_UNITS:
            raise InputError(f"Sentinel-1 units {units!r} are not one of {', '.join(S1_UNITS)}")
        self.path = str(path)
        self.grid = grid
        self.needed = tuple(p.upper() for p in needed)
        self.where, how = locate_s1(self.path, self.needed, bands)
        self.units: Dict[str, str] = {}
        coverage = 1.0
        for pol, (file, index) in self.where.items():
            with open_raster(file, "Sentinel-1 layer") as ds:
                coverage = min(coverage, check_coverage(Grid.of(ds), grid, "Sentinel-1 layer", file, policy, monitor))
                self.units[pol] = detect_s1_units(ds, index) if units == "auto" else units
                self._check_has_data(ds, index, pol)
        self.coverage = coverage
        self.filled = 0
        self.pixels = 0
        self._datasets = ThreadLocalDatasets("Sentinel-1 layer")
        self._count_lock = threading.Lock()
        unit_text = ", ".join(f"{p} {'dB' if u == 'db' else 'linear'}" for p, u in self.units.items())
        self.summary = (f"Sentinel-1: {os.path.basename(self.path)}, "
                        + ", ".join(f"{p} = {os.path.basename(f)} band {i}" for p, (f, i) in self.where.items())
                        + f" ({how}); units {unit_text}"
                        + (" (detected)" if units == "auto" else " (given)")
                        + f"; covers {100 * coverage:.1f} % of the scene; bilinear resampling")

    def _check_has_data(self, ds, band: int, pol: str) -> None:
        # a decimated look inside the scene's footprint
        try:
            left, bottom, right, top = transform_bounds(self.grid.crs, ds.crs, *self.grid.bounds, densify_pts=21)
            win = rasterio.windows.from_bounds(left, bottom, right, top, transform=ds.transform)
            win = win.intersection(Window(0, 0, ds.width, ds.height))
        except Exception:  # no intersection: coverage was already checked
            return
        factor = max(1.0, math.sqrt(win.width * win.height / (256 * 256)))
        shape = (max(1, int(win.height / factor)), max(1, int(win.width / factor)))
        data = ds.read(band, window=win, out_shape=shape, resampling=Resampling.nearest, out_dtype=np.float32)
        if not valid_mask(data, ds.nodatavals[band - 1]).any():
            raise InputError(f"Sentinel-1 {pol} ({os.path.basename(ds.name)} band {band}) holds only nodata or NaN "
                             "over the Sentinel-2 scene")

    def read(self, window: WindowTuple) -> np.ndarray:
        """(len(needed), rows, cols) float32 in dB, missing cells filled (counted in ``filled``)."""
        out = np.empty((len(self.needed), window[2], window[3]), np.float32)
        missing = np.zeros(window[2:], bool)
        for k, pol in enumerate(self.needed):
            file, index = self.where[pol]
            values = warp_window(self._datasets.get(file), index, self.grid, _window(window), Resampling.bilinear)
            if self.units[pol] == "linear":
                with np.errstate(divide="ignore", invalid="ignore"):
                    values = np.where(values > 0, 10.0 * np.log10(values), np.nan).astype(np.float32)
            bad = ~np.isfinite(values)
            missing |= bad
            values[bad] = S1_FILL_DB.get(pol, -15.0)
            out[k] = values
        with self._count_lock:
            self.filled += int(missing.sum())
            self.pixels += missing.size
        return out

    def valid(self, window: WindowTuple) -> np.ndarray:
        """(rows, cols) True where every needed polarisation has a value (before the neutral fill)."""
        ok = np.ones(window[2:], bool)
        for pol in self.needed:
            file, index = self.where[pol]
            values = warp_window(self._datasets.get(file), index, self.grid, _window(window), Resampling.bilinear)
            ok &= np.isfinite(values) & ((values > 0) if self.units[pol] == "linear" else True)
        return ok

    def close(self) -> None:
        self._datasets.close()


# --------------------------------------------------------------------------------------------
# DEM -> terrain stack
# --------------------------------------------------------------------------------------------
class TerrainSource:
    """Terrain stack (elevation m, slope deg, aspect deg, hillshade 0-255) on windows of the S2 grid."""

    BANDS = ("elevation", "slope", "aspect", "hillshade")

    def __init__(self, dem_path: str, grid: Grid, band: int = 1, sun: Optional[SunAngles] = None,
                 policy: str = "refuse", monitor: Monitor = SILENT, needed: Sequence[str] = BANDS) -> None:
        from ..terrain.derivatives import DEFAULT_SUN, PixelMetrics, TerrainOptions, open_dem

        self.path = str(dem_path)
        self.band = int(band)
        self.grid = grid
        self.needed = tuple(needed)
        unknown = [b for b in self.needed if b not in self.BANDS]
        if unknown:
            raise InputError(f"terrain bands {unknown} are not among {', '.join(self.BANDS)}")
        with open_dem(self.path, self.band) as dem:
            self.dem_grid = Grid.of(dem)
            self.coverage = check_coverage(self.dem_grid, grid, "DEM", self.path, policy, monitor)
            sample = overview(dem, self.band)
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            raise InputError(f"DEM {os.path.basename(self.path)} band {self.band} holds only nodata or NaN")
        self.options = TerrainOptions(sun=sun or DEFAULT_SUN)
        self.metrics = PixelMetrics.of(self.dem_grid)
        flat_shade = 255.0 * math.cos(math.radians(self.options.sun.zenith))
        self.fill = {"elevation": float(np.median(sample)), "slope": TERRAIN_FILL["slope"],
                     "aspect": TERRAIN_FILL["aspect"], "hillshade": flat_shade}
        self.filled = 0
        self.pixels = 0
        self._count_lock = threading.Lock()
        self._local = threading.local()
        self._opened = []
        self._open = open_dem
        self.summary = (f"DEM: {os.path.basename(self.path)} band {self.band}, covers {100 * self.coverage:.1f} % of "
                        f"the scene; terrain computed on the DEM grid and resampled bilinearly; hillshade lit by "
                        f"sun zenith {self.options.sun.zenith:.2f} deg, azimuth {self.options.sun.azimuth:.2f} deg "
                        f"({self.options.sun.source or 'given'})")

    def _dem(self):
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = self._local.ds = self._open(self.path, self.band)
            self._opened.append(ds)
        return ds

    def read(self, window: WindowTuple) -> np.ndarray:
        """(len(needed), rows, cols) float32 in physical units, missing cells filled."""
        from ..terrain.stack import RESAMPLING_METHODS, terrain_stack_window

        bands = terrain_stack_window(self._dem(), self.band, self.dem_grid, self.metrics, self.grid, _window(window),
                                     self.options, RESAMPLING_METHODS["bilinear"])
        out = np.empty((len(self.needed), window[2], window[3]), np.float32)
        missing = np.zeros(window[2:], bool)
        for k, name in enumerate(self.needed):
            values = bands.get(name)
            if values is None:
                values = np.full(window[2:], np.nan, np.float32)
            bad = ~np.isfinite(values)
            if name in ("elevation", "slope", "hillshade"):
                missing |= bad
            values = np.where(bad, np.float32(self.fill[name]), values)
            out[k] = values
        with self._count_lock:
            self.filled += int(missing.sum())
            self.pixels += missing.size
        return out

    def close(self) -> None:
        for ds in self._opened:
            ds.close()
        self._opened = []
        self._local = threading.local()


def terrain_stack_bands(path: str) -> Optional[Dict[str, int]]:
    """The band of each terrain product when ``path`` is a terrain stack (as ``topoclear:terrainstack``
    writes it: four or more bands described ``elevation``, ``slope (...)``, ``aspect (...)``,
    ``hillshade (...)``), else None (a DEM)."""
    with open_raster(path, "DEM") as ds:
        descriptions = [(d or "").strip().lower() for d in ds.descriptions]
    found: Dict[str, int] = {}
    for index, text in enumerate(descriptions, start=1):
        word = re.split(r"[\s(,:]", text, maxsplit=1)[0] if text else ""
        if word in TerrainSource.BANDS and word not in found:
            found[word] = index
    return found if len(found) == len(TerrainSource.BANDS) else None


class StackTerrainSource:
    """A terrain stack (``topoclear:terrainstack``) given for the DEM: its bands read as they are (not
    derived again) on windows of the S2 grid, bilinearly (aspect: nearest, so 0/360 never averages to
    south); the same interface as :class:`TerrainSource`."""

    BANDS = TerrainSource.BANDS

    def __init__(self, path: str, grid: Grid, bands: Dict[str, int], sun: Optional[SunAngles] = None,
                 policy: str = "refuse", monitor: Monitor = SILENT, needed: Sequence[str] = BANDS) -> None:
        self.path = str(path)
        self.grid = grid
        self.where = dict(bands)
        self.needed = tuple(needed)
        unknown = [b for b in self.needed if b not in self.BANDS]
        if unknown:
            raise InputError(f"terrain bands {unknown} are not among {', '.join(self.BANDS)}")
        with open_raster(self.path, "DEM (terrain stack)") as ds:
            self.coverage = check_coverage(Grid.of(ds), grid, "DEM", self.path, policy, monitor)
            sample = overview(ds, self.where["elevation"])
            slope_text = (ds.descriptions[self.where["slope"] - 1] or "").lower()
            shade_text = (ds.descriptions[self.where["hillshade"] - 1] or "").lower()
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            raise InputError(f"DEM {os.path.basename(self.path)} (a terrain stack) holds only nodata or NaN in its "
                             f"elevation band {self.where['elevation']}")
        self.percent_slope = "percent" in slope_text
        pair = re.search(r"sun\s+([-\d.]+)/([-\d.]+)", shade_text)  # "hillshade (sun 45.0/315.0 deg)"
        zenith = pair or re.search(r"(?:zenith|suns at)\s+([-\d.]+)", shade_text)
        azimuth = re.search(r"azimuth\s+([-\d.]+)", shade_text)
        zenith_deg = float(zenith.group(1)) if zenith else 45.0
        self.fill = {"elevation": float(np.median(sample)), "slope": TERRAIN_FILL["slope"],
                     "aspect": TERRAIN_FILL["aspect"], "hillshade": 255.0 * math.cos(math.radians(zenith_deg))}
        self.filled = 0
        self.pixels = 0
        self._count_lock = threading.Lock()
        self._datasets = ThreadLocalDatasets("DEM (terrain stack)")
        azimuth_text = pair.group(2) if pair else (azimuth.group(1) if azimuth else None)
        lit = (f"sun zenith {zenith.group(1)} deg" + (f", azimuth {azimuth_text} deg" if azimuth_text else "")
               if zenith else "its own sun")
        self.summary = (f"DEM: {os.path.basename(self.path)} is a terrain stack (elevation band "
                        f"{self.where['elevation']}, slope {self.where['slope']}, aspect {self.where['aspect']}, "
                        f"hillshade {self.where['hillshade']}): its bands are used as they are, not derived again; "
                        f"covers {100 * self.coverage:.1f} % of the scene; resampled bilinearly (aspect: nearest); "
                        f"hillshade lit by {lit} as the stack was made"
                        + (" (the scene's sun angles are not used for it)" if sun is not None else ""))

    def read(self, window: WindowTuple) -> np.ndarray:
        """(len(needed), rows, cols) float32 in physical units (slope in degrees), missing cells filled."""
        ds = self._datasets.get(self.path)
        out = np.empty((len(self.needed), window[2], window[3]), np.float32)
        missing = np.zeros(window[2:], bool)
        for k, name in enumerate(self.needed):
            resampling = Resampling.nearest if name == "aspect" else Resampling.bilinear
            values = warp_window(ds, self.where[name], self.grid, _window(window), resampling)
            if name == "slope" and self.percent_slope:
                values = np.degrees(np.arctan(values / np.float32(100.0))).astype(np.float32)
            bad = ~np.isfinite(values)
            if name in ("elevation", "slope", "hillshade"):
                missing |= bad
            out[k] = np.where(bad, np.float32(self.fill[name]), values)
        with self._count_lock:
            self.filled += int(missing.sum())
            self.pixels += missing.size
        return out

    def close(self) -> None:
        self._datasets.close()


def open_terrain(dem_path: str, grid: Grid, band: int = 1, sun: Optional[SunAngles] = None, policy: str = "refuse",
                 monitor: Monitor = SILENT, needed: Sequence[str] = TerrainSource.BANDS):
    """The terrain of ``dem_path`` on ``grid``: a terrain stack's own bands (:class:`StackTerrainSource`,
    detected by :func:`terrain_stack_bands`), else derived from the DEM's band ``band``
    (:class:`TerrainSource`)."""
    bands = terrain_stack_bands(dem_path)
    if bands is not None:
        return StackTerrainSource(dem_path, grid, bands, sun, policy, monitor, needed)
    return TerrainSource(dem_path, grid, band, sun, policy, monitor, needed)


# --------------------------------------------------------------------------------------------
# Cloud masks
# --------------------------------------------------------------------------------------------
class MaskSource:
    """Cloud (and shadow) mask on windows of the S2 grid, True = cloud or shadow: the classes of a
    :class:`~topoclear.engine.clouds.masks.engine.SceneMask` (``classes`` gives them as 0 clear, 1 cloud,
    2 shadow, 255 nodata). ``kind``: the method decided; ``summary``: what was chosen and why."""

    def __init__(self, engine: SceneMask) -> None:
        self.engine = engine
        self.kind = engine.method.key
        self.grid = engine.grid
        self.summary = engine.summary()

    def read(self, window: WindowTuple) -> np.ndarray:
        """Boolean (rows, cols): True = cloud / shadow (nodata and pixels outside a mask raster: False)."""
        return self.engine.cloud_shadow(window)

    def classes(self, window: WindowTuple) -> np.ndarray:
        return self.engine.classes(window)

    def close(self) -> None:
        self.engine.close()


def padded_read(read, window: WindowTuple, halo: int, height: int, width: int) -> np.ndarray:
    """``read`` a window grown by ``halo`` px, the part outside the scene reflected (last two axes)."""
    source, rows, cols = tile_source(window[0] - halo, window[1] - halo, window[2] + 2 * halo, window[3] + 2 * halo,
                                     height, width)
    return take(read(source), rows, cols)


def resolve_mask_method(scene: "S2Scene", kind: str, mask: Optional[str], band: int
                        ) -> Tuple[str, Optional[str], int]:
    """(method, mask raster, band) with ``"auto"`` decided by the mask engine
    (:func:`~topoclear.engine.clouds.masks.engine.choose_method`): the given raster (SCL if its name says
    so), else the product's SCL band, else the pretrained detector when installed, else the DSen2-CR
    rules when the Level-1C bands are there, else none."""
    choice = choose_method(scene.product, kind, mask, band, "removal")
    return choice.key, choice.raster, choice.band


def scene_mask(scene: "S2Scene", kind: str, mask: Optional[str] = None, band: int = 1,
               monitor: Monitor = SILENT, say=None, buffer_m: float = 0.0) -> Optional[MaskSource]:
    """The cloud mask of ``scene`` for the mask method ``kind`` (see :func:`resolve_mask_method`); None
    for no mask. What was chosen and why goes to ``say`` (default: ``monitor.message``); the detector
    runs once over the whole scene here (progress through ``monitor``), into a temporary class raster
    removed by :meth:`MaskSource.close`."""
    engine = open_scene_mask(scene.product, scene.grid, kind, mask=mask, mask_band=band, consumer="removal",
                             buffer_m=buffer_m, monitor=relay(monitor, say=say, progress=False))
    if engine is None:
        return None
    try:
        if engine.method.key == DETECTOR.key:
            engine.prepare(monitor)
    except BaseException:
        engine.close()
        raise
    return MaskSource(engine)


__all__ = ["S1_UNITS", "COMPUTED_MASK_BANDS", "S1_FILL_DB", "TERRAIN_FILL", "locate_s1", "detect_s1_units", "S1Source", "TerrainSource",
           "StackTerrainSource", "terrain_stack_bands", "open_terrain",
           "MaskSource", "padded_read", "resolve_mask_method", "scene_mask"]

"""Snow mapping from Sentinel-2: NDSI, snow maps (single threshold or Let It Snow) and snow statistics.

Snow map classes (the Theia / Let It Snow coding): **100 snow, 0 no snow, 205 cloud** (cloud
shadow included), **255 nodata**.

Single threshold
    snow where the pixel is not cloud, NDSI > ``ndsi_threshold`` and (unless disabled) red >
    ``red_threshold``. The red test removes water, whose NDSI is often high but which is dark in
    the red band.

Let It Snow (LIS, Gascoin et al. 2019, ESSD 11; the CNES/Theia operational chain), as described
in its algorithm theoretical basis document:

1. *Cloud mask refinement.* A pixel of the input cloud mask stays cloud for pass 1 if it is
   cloud shadow, high cloud (cirrus), or a *bright* cloud: red reflectance averaged over
   ``darkcloud_scale`` (240 m, i.e. 12 x 12 pixels at 20 m) >= ``red_darkcloud`` (0.30). The
   other ("dark") cloud pixels are released and go through the snow tests. With an SCL band the
   shadow class is 3 and high cloud is 10 (thin cirrus); a generic mask raster has neither.
2. *Pass 1*: snow where not (pass-1) cloud, NDSI > ``ndsi_pass1`` (0.40) and red >
   ``red_pass1`` (0.20).
3. *Snowline*: the DEM is split into elevation bands of ``band_height`` (100 m) starting at the
   lowest elevation of the scene; scanning upward, the first band whose cloud-free fraction is
   > ``fclear_lim`` (0.10) and whose pass-1 snow fraction (of its cloud-free pixels) is >
   ``fsnow_lim`` (0.10) sets the snowline z_s = lower edge of the band two below it (the lowest
   band if there is none). Not computed when pass-1 snow covers no more than ``fsnow_total_lim``
   (0.001) of the valid pixels.
4. *Pass 2*: above z_s (elevation > z_s, strictly, as the reference implementation), snow where
   not cloud, NDSI > ``ndsi_pass2`` (0.15) and red > ``red_pass2`` (0.04). Snow = pass 1 OR pass 2.
5. *Back to cloud*: a pixel of the input cloud mask that is not snow is cloud if its full
   resolution red > ``red_backtocloud`` (0.10) (or if it stayed cloud in step 1), else no snow.

Where the published descriptions are silent or differ, TopoClear chooses (and says so here):

* released dark clouds go through pass 1 as the ATBD's flowchart shows (the reference code only
  tests them in pass 2); the elevation-band fractions use the pass-1 cloud mask, as the ATBD says;
* the dark-cloud red is the mean red reflectance of the ``darkcloud_scale`` block (aligned on the
  processing grid, cells without red data left out) holding the pixel (LIS: bilinear
  down-sampling then nearest up-sampling);
* only valid image pixels with a valid elevation enter the elevation bands; the top band may be
  partial (LIS merges it into the band below); pixels without elevation get pass 1 only;
* the snow fraction of step 3 is relative to the valid pixels (LIS divides by all pixels);
* with no DEM, the snowline and pass 2 are skipped (pass 1 with the cloud refinement remains);
* the DEM must be in metres; elevations beyond +-16000 m are taken as nodata.

Pixels are **nodata** where any of green, red, SWIR1 is nodata (DN 0 for Sentinel-2) or the SCL
says no data (class 0).

Fractional snow cover (FSC, 0-1, on snow pixels; 0 on no-snow pixels; nodata on cloud and
nodata): ``"salomonson"`` FSC = 1.45 NDSI - 0.01 (Salomonson & Appel 2004, MODIS) or
``"gascoin"`` FSC = 0.5 tanh(2.65 NDSI - 1.42) + 0.5 (Gascoin et al. 2020, Sentinel-2 / LIS),
both clipped to [0, 1].

Whole scenes are processed in windows: strips of whole rows, as many as the inputs' tile height
allows (so no compressed tile is decoded twice), the red band read over whole dark-cloud blocks.
Two worker threads compute while the main thread reads and writes. The snowline needs the
elevation-band counts of the whole scene before any pixel can be classified,
so LIS runs in two passes: the first reads every input once, classifies what it can, gathers
the counts (1 m elevation steps, any anchor can be derived later) and writes a compact 2-byte
code per pixel to a temporary file beside the output; the second reads only those codes, applies
the snowline and writes the map. Memory is bounded by the window size, not the scene size.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import InputError
from ..progress import SILENT, Monitor
from ..io.atomic import atomic_output
from ..io.windows import DEFAULT_WINDOW_PIXELS, iter_windows, run_windows
from ..io.atomic import AtomicRasterWriter, check_writable
from ..io.raster import Grid, bounded_gdal_cache, check_band, open_raster
from ..io.warp import warp_window
from ..sentinel2.reader import BandReader, read_native
from ..sentinel2.bands import Override, S2Product
from ..sentinel2.locate import locate_bands
from ..clouds.masks.scl import SCL_CIRRUS, SCL_CLOUDS, SCL_NODATA, SCL_SHADOW
from .indices import ndsi

SNOW, NO_SNOW, CLOUD, NODATA = 100, 0, 205, 255
CLASS_NAMES: Dict[int, str] = {SNOW: "snow", NO_SNOW: "no snow", CLOUD: "cloud", NODATA: "nodata"}
CLASS_COLOURS: Dict[int, Tuple[int, int, int, int]] = {
    SNOW: (0, 190, 255, 255), NO_SNOW: (214, 200, 170, 255), CLOUD: (140, 140, 140, 255), NODATA: (0, 0, 0, 0)}
CLASSES_TAG = "100=snow;0=no snow;205=cloud;255=nodata"
SNOWMAP_DESCRIPTION = "snow map: 100 snow, 0 no snow, 205 cloud, 255 nodata"
FLOAT_NODATA = -9999.0
METHODS = ("lis", "threshold")
CLOUD_KINDS = ("auto", "scl", "mask", "none")
FSC_FORMULAS = ("salomonson", "gascoin")
SNOW_BANDS = ("B3", "B4", "B11")

# Pass-1 codes of the LIS two-pass run (int16 per pixel). Pixels still waiting for the snowline
# (pass-2 candidates) hold 2 * ceil(elevation) + (1 if they fall back to cloud else 0).
_CODE_NODATA = np.int16(-32768)
_CODE_SNOW = np.int16(-32767)
_CODE_CLOUD = np.int16(-32766)
_CODE_NOSNOW = np.int16(-32765)
#: Elevations (m) beyond +-16000 m are nodata (they do not fit the 2-byte pass-1 codes, and no
#: terrain on Earth reaches them: give the DEM in metres).
_ELEVATION_VALID = 16000.0
#: GDAL block cache (MB) of snow runs: a few rows of tiles of every input.
SNOW_GDAL_CACHE_MB = 128


@dataclass(frozen=True)
class SnowParameters:
    """Thresholds of both methods (reflectances 0-1, NDSI -1..1); LIS operational defaults."""

    method: str = "lis"
    ndsi_threshold: float = 0.40
    red_threshold: Optional[float] = 0.20
    ndsi_pass1: float = 0.40
    red_pass1: float = 0.20
    ndsi_pass2: float = 0.15
    red_pass2: float = 0.04
    band_height: int = 100
    fsnow_lim: float = 0.10
    fclear_lim: float = 0.10
    fsnow_total_lim: float = 0.001
    red_darkcloud: float = 0.30
    red_backtocloud: float = 0.10
    darkcloud_scale: float = 240.0

    def validate(self) -> "SnowParameters":
        if self.method not in METHODS:
            raise InputError(f"snow method {self.method!r} is not one of {METHODS}")
        for name in ("ndsi_threshold", "ndsi_pass1", "ndsi_pass2"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise InputError(f"{name} = {value}: an NDSI threshold must lie in [-1, 1]")
        if int(self.band_height) != self.band_height or self.band_height < 1:
            raise InputError(f"elevation band height {self.band_height} m: give a whole number of metres >= 1")
        for name in ("fsnow_lim", "fclear_lim", "fsnow_total_lim"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} = {value}: a fraction must lie in [0, 1]")
        if self.darkcloud_scale < 0:
            raise InputError(f"dark-cloud scale {self.darkcloud_scale} m must be >= 0")
        return self


@dataclass(frozen=True)
class CloudInput:
    """Where the cloud mask comes from.

    ``kind``: ``"auto"`` (the product's own SCL band when one is found beside the bands, else no
    mask), ``"scl"`` (an L2A scene classification raster: 3 shadow, 8/9 cloud, 10 cirrus, 0 no
    data), ``"mask"`` (any raster: non-zero = cloud, its nodata = not cloud) or ``"none"``.
    """

    kind: str = "auto"
    path: Optional[str] = None
    band: int = 1


@dataclass
class ElevationBand:
    """Pixel counts of one elevation band [z_min, z_max)."""

    z_min: float
    z_max: float
    total: int
    snow: int
    no_snow: int
    cloud: int

    @property
    def centre(self) -> float:
        return 0.5 * (self.z_min + self.z_max)

    @property
    def clear(self) -> int:
        return self.snow + self.no_snow

    @property
    def snow_fraction(self) -> float:
        """Snow fraction of the cloud-free pixels (NaN without any)."""
        return self.snow / self.clear if self.clear else float("nan")


class ElevationCounts:
    """Counts of (no snow, snow, cloud) pixels per 1 m elevation step, grown as values arrive."""

    def __init__(self) -> None:
        self.lo: Optional[int] = None
        self.counts = np.zeros((0, 3), dtype=np.int64)

    def add(self, z: np.ndarray, category: np.ndarray, mask: Optional[np.ndarray] = None) -> None:
        """``z``: elevations; ``category``: 0 no snow, 1 snow, 2 cloud (same shape); only the
        cells where ``mask`` is True (all when None; they must have finite ``z``)."""
        if mask is not None and not mask.all():
            z, category = z[mask], category[mask]
        if z.size == 0:
            return
        zi = z.astype(np.int32) if z.dtype.kind in "iu" else np.floor(z).astype(np.int32)
        lo, hi = int(zi.min()), int(zi.max())
        zi -= np.int32(lo)
        zi *= np.int32(3)
        zi += category
        part = np.bincount(zi.ravel(), minlength=(hi - lo + 1) * 3)
        self.merge_counts(lo, part.reshape(-1, 3))

    def merge_counts(self, lo: int, counts: np.ndarray) -> None:
        if counts.size == 0:
            return
        if self.lo is None:
            self.lo, self.counts = lo, counts.astype(np.int64).copy()
            return
        new_lo = min(self.lo, lo)
        new_hi = max(self.lo + len(self.counts), lo + len(counts))
        if new_lo != self.lo or new_hi != self.lo + len(self.counts):
            grown = np.zeros((new_hi - new_lo, 3), dtype=np.int64)
            grown[self.lo - new_lo:self.lo - new_lo + len(self.counts)] = self.counts
            self.lo, self.counts = new_lo, grown
        self.counts[lo - self.lo:lo - self.lo + len(counts)] += counts

    def merge(self, other: "ElevationCounts") -> None:
        if other.lo is not None:
            self.merge_counts(other.lo, other.counts)

    @property
    def empty(self) -> bool:
        return self.lo is None or int(self.counts.sum()) == 0

    def bands(self, height: int, anchor: str = "minimum") -> List[ElevationBand]:
        """Bands ``height`` m high starting at the lowest elevation (``"minimum"``, LIS) or at a
        multiple of ``height`` (``"round"``: 1200-1300, 1300-1400... comparable between scenes)."""
        if self.empty:
            return []
        nonzero = np.nonzero(self.counts.sum(axis=1))[0]
        first, last = self.lo + int(nonzero[0]), self.lo + int(nonzero[-1])
        z0 = first if anchor == "minimum" else int(math.floor(first / height) * height)
        count = (last - z0) // height + 1
        out = []
        for i in range(count):
            a, b = z0 + i * height - self.lo, z0 + (i + 1) * height - self.lo
            block = self.counts[max(a, 0):max(b, 0)].sum(axis=0)
            no_snow, snow, cloud = (int(v) for v in block)
            out.append(ElevationBand(float(z0 + i * height), float(z0 + (i + 1) * height), no_snow + snow + cloud,
                                     snow, no_snow, cloud))
        return out


def find_snowline(bands: Sequence[ElevationBand], fsnow_lim: float = 0.10, fclear_lim: float = 0.10,
                  offset: int = 2) -> Optional[float]:
    """LIS snowline: lower edge of the band ``offset`` below the first band (scanning upward) whose
    cloud-free fraction > ``fclear_lim`` and snow fraction of the cloud-free pixels > ``fsnow_lim``."""
    for i, band in enumerate(bands):
        if band.total == 0 or band.clear == 0:
            continue
        if band.clear / band.total > fclear_lim and band.snow / band.clear > fsnow_lim:
            return bands[max(i - offset, 0)].z_min
    return None


class ClassAreas:
    """Areas and percentages of the snow classes, from ``areas_m2`` (class code -> m²)."""

    areas_m2: Dict[int, float]

    @property
    def snow_area_km2(self) -> float:
        return self.areas_m2.get(SNOW, 0.0) / 1e6

    @property
    def valid_area_km2(self) -> float:
        return sum(v for k, v in self.areas_m2.items() if k != NODATA) / 1e6

    @property
    def snow_percent(self) -> float:
        valid = self.valid_area_km2
        return 100.0 * self.snow_area_km2 / valid if valid > 0 else float("nan")

    @property
    def cloud_percent(self) -> float:
        valid = self.valid_area_km2
        return 100.0 * self.areas_m2.get(CLOUD, 0.0) / 1e6 / valid if valid > 0 else float("nan")


@dataclass
class SnowResult(ClassAreas):
    """What a snow map run produced and measured."""

    output: str
    method: str
    counts: Dict[int, int]
    pixel_area_m2: float
    areas_m2: Dict[int, float]
    snowline: Optional[float] = None
    snowline_note: str = ""
    pass1_bands: List[ElevationBand] = field(default_factory=list)
    pass1_snow_fraction: float = 0.0
    fsc_output: Optional[str] = None
    layout: str = ""
    messages: List[str] = field(default_factory=list)

    @property
    def valid_pixels(self) -> int:
        return sum(v for k, v in self.counts.items() if k != NODATA)

    def summary(self) -> str:
        line = (f"snow {self.snow_area_km2:.3f} km2 ({self.snow_percent:.2f} % of the valid area), "
                f"cloud {self.cloud_percent:.2f} %")
        if self.method == "lis":
            line += ", snowline " + (f"{self.snowline:.0f} m" if self.snowline is not None
                                     else f"none ({self.snowline_note or 'not found'})")
        return line


# -- grids, areas ------------------------------------------------------------------------------

def subgrid(grid: Grid, bounds: Optional[Tuple[float, float, float, float]]) -> Grid:
    """The part of ``grid`` covering ``bounds`` (left, bottom, right, top in the grid's CRS), snapped
    outward to whole pixels; the whole grid when ``bounds`` is None."""
    if bounds is None:
        return grid
    left, bottom, right, top = bounds
    inv = ~grid.transform
    cols, rows = zip(*(inv * (x, y) for x, y in ((left, top), (right, bottom), (left, bottom), (right, top))))
    col0, col1 = max(int(math.floor(min(cols) + 1e-9)), 0), min(int(math.ceil(max(cols) - 1e-9)), grid.width)
    row0, row1 = max(int(math.floor(min(rows) + 1e-9)), 0), min(int(math.ceil(max(rows) - 1e-9)), grid.height)
    if col1 <= col0 or row1 <= row0:
        raise InputError(f"the chosen extent {tuple(round(v, 3) for v in bounds)} does not overlap the image "
                         f"(image extent {tuple(round(v, 3) for v in grid.bounds)} in {grid.crs})")
    window = Window(col0, row0, col1 - col0, row1 - row0)
    return Grid(grid.crs, grid.window_transform(window), col1 - col0, row1 - row0)


def _row_areas_m2(grid: Grid, row0: int, rows: int) -> np.ndarray:
    """Area (m^2) of one pixel in each of ``rows`` rows starting at ``row0``."""
    crs = grid.crs
    px, py = grid.pixel_size
    if crs is not None and crs.is_geographic:
        radius = 6371008.8
        ys = grid.transform.f + grid.transform.e * (np.arange(row0, row0 + rows + 1, dtype=np.float64))
        band = np.abs(np.sin(np.radians(ys[:-1])) - np.sin(np.radians(ys[1:])))
        return radius ** 2 * np.radians(px) * band
    factor = 1.0
    if crs is not None:
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # CRS without linear units: take metres
            factor = 1.0
    return np.full(rows, px * py * factor * factor, dtype=np.float64)


def _pixel_size_m(grid: Grid) -> float:
    row_area = _row_areas_m2(grid, grid.height // 2, 1)[0]
    return math.sqrt(row_area)


# -- inputs ------------------------------------------------------------------------------------

@dataclass
class _Inputs:
    product: S2Product
    reader: BandReader
    grid: Grid
    cloud_ds: Optional[rasterio.DatasetReader] = None
    cloud_band: int = 1
    cloud_kind: str = "none"
    dem_ds: Optional[rasterio.DatasetReader] = None
    dem_band: int = 1
    messages: List[str] = field(default_factory=list)

    def close(self) -> None:
        self.reader.close()
        for ds in (self.cloud_ds, self.dem_ds):
            if ds is not None:
                ds.close()


def _overlap_fraction(src_grid: Grid, grid: Grid) -> float:
    left, bottom, right, top = transform_bounds(src_grid.crs, grid.crs, *src_grid.bounds, densify_pts=21)
    gl, gb, gr, gt = grid.bounds
    w = max(0.0, min(right, gr) - max(left, gl))
    h = max(0.0, min(top, gt) - max(bottom, gb))
    area = (gr - gl) * (gt - gb)
    return w * h / area if area > 0 else 0.0


def _open_aux(path: str, band: int, grid: Grid, role: str) -> rasterio.DatasetReader:
    ds = open_raster(path, role)
    try:
        check_band(ds, band, role)
        if ds.crs is None:
            raise InputError(f"{role}: {path} has no coordinate reference system")
        coverage = _overlap_fraction(Grid.of(ds), grid)
        if coverage <= 0.0:
            raise InputError(f"{role} {path} does not overlap the Sentinel-2 image (its extent {Grid.of(ds).bounds} "
                             f"in {ds.crs}; image extent {grid.bounds} in {grid.crs})")
    except Exception:
        ds.close()
        raise
    return ds


def _open_inputs(source, overrides, offset, quantification, resolution, bounds, cloud: CloudInput,
                 dem: Optional[str], dem_band: int, product: Optional[S2Product] = None,
                 names: Sequence[str] = SNOW_BANDS) -> _Inputs:
    if product is None:
        product = locate_bands(source, names, overrides, offset, quantification)
    reader = BandReader(product, names, resolution)
    inputs = _Inputs(product, reader, subgrid(reader.grid, bounds))
    try:
        kind = cloud.kind
        if kind not in CLOUD_KINDS:
            raise InputError(f"cloud mask kind {kind!r} is not one of {CLOUD_KINDS}")
        path = cloud.path
        if kind == "auto":
            if path:
                kind = "scl" if "SCL" in os.path.basename(path).upper() else "mask"
            elif product.scl is not None:
                kind, path = "scl", product.scl.path
                inputs.messages.append(f"Cloud mask: the product's SCL band {os.path.basename(path)}")
            else:
                kind = "none"
                inputs.messages.append("Cloud mask: none found (no SCL beside the bands); no pixel is cloud")
        elif kind == "scl" and not path:
            if product.scl is None:
                raise InputError("cloud mask: SCL chosen but no SCL raster was given and none was found "
                                 "beside the bands")
            path = product.scl.path
        elif kind == "mask" and not path:
            raise InputError("cloud mask: a mask raster was chosen but none was given")
        if kind != "none":
            inputs.cloud_ds = _open_aux(path, cloud.band, inputs.grid, "cloud mask")
            inputs.cloud_band, inputs.cloud_kind = cloud.band, kind
        if dem:
            inputs.dem_ds = _open_aux(dem, dem_band, inputs.grid, "DEM")
            inputs.dem_band = dem_band
            coverage = _overlap_fraction(Grid.of(inputs.dem_ds), inputs.grid)
            if coverage < 0.999:
                inputs.messages.append(f"The DEM covers {100 * coverage:.1f} % of the image; pixels without elevation "
                                       "get pass 1 only")
    except Exception:
        inputs.close()
        raise
    return inputs


def _strip_rows(width: int, window_rows: Optional[int], ds: Optional[rasterio.DatasetReader] = None) -> int:
    """Rows per window: ``window_rows``, else about ``DEFAULT_WINDOW_PIXELS`` pixels rounded to a
    multiple of the block (tile) height of ``ds`` so that no compressed tile is decoded twice."""
    if window_rows:
        return max(1, int(window_rows))
    rows = max(1, DEFAULT_WINDOW_PIXELS // max(1, width))
    if ds is not None:
        block_height = ds.block_shapes[0][0]
        if 1 < block_height <= 2 * rows:
            rows = max(1, int(round(rows / block_height))) * block_height
    return rows


def _darkcloud_block(grid: Grid, scale_m: float) -> int:
    return max(1, int(round(scale_m / _pixel_size_m(grid)))) if scale_m > 0 else 1


def _block_sums(values: np.ndarray, valid: Optional[np.ndarray], block: int) -> Tuple[np.ndarray, np.ndarray]:
    """(sum, count) of each ``block`` x ``block`` block of ``values`` (cells outside ``valid`` must
    hold 0; ``valid`` None: all valid); partial blocks at the right and bottom edges."""
    h, w = values.shape
    pad = (-h) % block
    if pad:
        values = np.concatenate([values, np.zeros((pad, w), values.dtype)])
        if valid is not None:
            valid = np.concatenate([valid, np.zeros((pad, w), bool)])
    rows = (h + pad) // block
    starts = np.arange(0, w, block)
    total = np.add.reduceat(values.reshape(rows, block, w).sum(axis=1, dtype=np.float64), starts, axis=1)
    if valid is None:
        row_count = np.full((rows, w), block, dtype=np.int32)
        if pad:
            row_count[-1] = block - pad
    else:
        row_count = valid.reshape(rows, block, w).sum(axis=1, dtype=np.int32)
    return total, np.add.reduceat(row_count, starts, axis=1)


def _block_means(values: np.ndarray, block: int) -> np.ndarray:
    """Mean of each ``block`` x ``block`` block (NaN left out; NaN for an empty block); blocks at
    the right and bottom edges may be partial. Shape: ceil(h / block) x ceil(w / block)."""
    valid = np.isfinite(values)
    total, count = _block_sums(np.where(valid, values, np.float32(0)), valid, block)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def _block_mean(values: np.ndarray, block: int) -> np.ndarray:
    """Mean over ``block`` x ``block`` blocks (NaN left out), spread back to every pixel of its block."""
    if block <= 1:
        return values
    h, w = values.shape
    return np.repeat(np.repeat(_block_means(values, block), block, axis=0), block, axis=1)[:h, :w]


def _read_window(inputs: _Inputs, window: Window, need_dem: bool, block: int = 1) -> dict:
    """Everything one window needs, as read (converted by :class:`_Spectra`, on a worker thread).

    With a cloud mask and dark-cloud blocks of ``block`` rows, the red band is read over the window
    grown to whole blocks (``"red_block"``: values, rows above the window), so the block means do
    not depend on where windows start.
    """
    grid = inputs.grid
    data = {name: inputs.reader.read_raw(name, window, grid) for name in ("B3", "B11")}
    row0, rows = int(window.row_off), int(window.height)
    if inputs.cloud_ds is not None and block > 1:
        top = (row0 // block) * block
        bottom = min(-(-(row0 + rows) // block) * block, grid.height)
        grown = inputs.reader.read_raw("B4", Window(window.col_off, top, window.width, bottom - top), grid)
        data["red_block"] = (grown, row0 - top)
        data["B4"] = grown[row0 - top:row0 - top + rows]
    else:
        data["B4"] = inputs.reader.read_raw("B4", window, grid)
    if inputs.cloud_ds is not None:
        native = read_native(inputs.cloud_ds, inputs.cloud_band, grid, window)
        data["cloud"] = (native, inputs.cloud_ds.nodatavals[inputs.cloud_band - 1]) if native is not None else \
            (warp_window(inputs.cloud_ds, inputs.cloud_band, grid, window, Resampling.nearest), None)
    if need_dem and inputs.dem_ds is not None:
        native = read_native(inputs.dem_ds, inputs.dem_band, grid, window)
        data["dem"] = (native, inputs.dem_ds.nodatavals[inputs.dem_band - 1]) if native is not None else \
            (warp_window(inputs.dem_ds, inputs.dem_band, grid, window, Resampling.bilinear), None)
    return data


def _nodata_cells(values: np.ndarray, nodata) -> Optional[np.ndarray]:
    """Cells of ``values`` equal to ``nodata``; None when there is no nodata value the data type can hold."""
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        return None
    if values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
            return None
        return values == values.dtype.type(nodata)
    return values == values.dtype.type(nodata)


def _as_float(values: np.ndarray, nodata) -> np.ndarray:
    """float32 copy of ``values`` with ``nodata`` (if the data type can hold it) as NaN."""
    out = values.astype(np.float32)
    missing = _nodata_cells(values, nodata)
    if missing is not None:
        out[missing] = np.nan
    return out


def _above(values: np.ndarray, threshold: float) -> np.ndarray:
    """``values > threshold`` without converting integer ``values`` to floating point."""
    if values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        limit = math.floor(threshold)
        if limit < info.min:
            return np.ones(values.shape, dtype=bool)
        if limit >= info.max:
            return np.zeros(values.shape, dtype=bool)
        return values > values.dtype.type(limit)
    return values > np.float32(threshold)


class _Spectra:
    """One window ready for the snow tests: NDSI, validity, the red band tested in its own units
    (no conversion of integer DN), cloud codes and elevations (NaN = nodata)."""

    def __init__(self, inputs: _Inputs, data: dict) -> None:
        reader = inputs.reader
        bands = reader.product.bands
        g, g_valid = reader.dn_and_valid("B3", data["B3"])
        s, s_valid = reader.dn_and_valid("B11", data["B11"])
        self._reader = reader
        self._red, r_valid = reader.dn_and_valid("B4", data["B4"], as_float=False)
        valid = None
        for mask in (g_valid, s_valid, r_valid):
            if mask is not None:
                valid = mask if valid is None else valid & mask
        self.valid = valid if valid is not None else np.ones(g.shape, dtype=bool)
        if bands["B3"].quantification != bands["B11"].quantification:
            s *= np.float32(bands["B3"].quantification / bands["B11"].quantification)
        total = g + s
        g -= s
        with np.errstate(invalid="ignore", divide="ignore"):
            g /= total
        # unsigned DN without a negative offset: the sum is 0 (0 / 0 = NaN) or positive
        unsigned = all(np.asarray(data[n]).dtype.kind == "u" and bands[n].offset >= 0 for n in ("B3", "B11"))
        if not unsigned:
            g[~(total > 0)] = np.nan
        self.ndsi = g
        self.cloud = data.get("cloud")  # (values as read, nodata)
        self._red_block = data.get("red_block") or (data["B4"], 0)
        self.dem = None  # elevations: int32 for integer DEMs read as they are, else float32
        self.dem_valid = None
        if "dem" in data:
            values, nodata = data["dem"]
            if values.dtype.kind in "iu" and values.dtype.itemsize <= 2:
                z = values.astype(np.int32)
                ok = np.abs(z) < int(_ELEVATION_VALID)
                missing = _nodata_cells(values, nodata)
                if missing is not None:
                    ok &= ~missing
            else:
                z = _as_float(values, nodata)
                ok = np.abs(z) < _ELEVATION_VALID  # NaN compares False
            self.dem, self.dem_valid = z, ok

    def red_above(self, reflectance: float) -> np.ndarray:
        return _above(self._red, self._reader.dn_threshold("B4", reflectance))

    def dark_clouds(self, clouds: np.ndarray, block: int, limit: float) -> np.ndarray:
        """Which of the ``clouds`` cells are dark: the mean red reflectance of their ``block`` x
        ``block`` block of the processing grid (cells without red data left out) is below ``limit``."""
        values, offset = self._red_block
        h, w = clouds.shape
        src = self._reader.product.bands["B4"]
        if values.dtype.kind in "iu" and block > 1:  # integer DN: block means of the DN themselves
            raw = values.view(np.ndarray)
            missing = _nodata_cells(raw, src.nodata)
            valid = None if missing is None or not missing.any() else ~missing
            if valid is not None and src.nodata != 0:
                raw = np.where(valid, raw, raw.dtype.type(0))
            total, count = _block_sums(raw, valid, block)
            with np.errstate(invalid="ignore", divide="ignore"):
                dark_blocks = (count > 0) & (total < self._reader.dn_threshold("B4", limit) * count)
        else:
            if values.dtype == np.float32:
                values = values.copy()  # converted in place: keep the window's own red intact
            red = self._reader.to_reflectance("B4", values)
            if block <= 1:
                return clouds & (red[offset:offset + h] < limit)
            dark_blocks = _block_means(red, block) < limit  # NaN (no red at all) is not dark
        rows = (np.arange(h) + offset) // block
        cols = np.arange(w) // block
        return clouds & dark_blocks[rows][:, cols]


def _read_dem(ds, band: int, grid: Grid, window: Window) -> np.ndarray:
    """DEM aligned bilinearly onto ``window`` of ``grid``; elevations beyond the valid range are nodata."""
    z = warp_window(ds, band, grid, window, Resampling.bilinear)
    z[~(np.abs(z) < _ELEVATION_VALID)] = np.nan
    return z


def _cloud_masks(data: "_Spectra", kind: str) -> Tuple[Optional[np.ndarray], Optional[np.ndarray],
                                                       Optional[np.ndarray]]:
    """(all clouds, shadow-or-cirrus, SCL nodata) from the aligned cloud raster."""
    if data.cloud is None:
        return None, None, None
    values, nodata = data.cloud
    if values.dtype == np.uint8:  # lookup tables: one pass per mask, no conversion
        codes = np.arange(256)
        missing = _nodata_cells(codes.astype(np.uint8), nodata)
        if kind == "scl":
            return (_CLOUD_LUT[values], _HARD_LUT[values], values == SCL_NODATA)
        lut = codes != 0
        if missing is not None:
            lut &= ~missing
        return lut[values], None, None
    values = _as_float(values, nodata)
    if kind == "scl":
        all_cloud = np.isin(values, SCL_CLOUDS)
        hard = (values == SCL_SHADOW) | (values == SCL_CIRRUS)
        return all_cloud, hard, values == SCL_NODATA
    return np.isfinite(values) & (values != 0), None, None


_CLOUD_LUT = np.isin(np.arange(256), SCL_CLOUDS)
_HARD_LUT = np.isin(np.arange(256), (SCL_SHADOW, SCL_CIRRUS))


def _valid(data: "_Spectra", scl_nodata: Optional[np.ndarray]) -> np.ndarray:
    valid = data.valid
    if scl_nodata is not None:
        valid &= ~scl_nodata
    return valid


def _fsc(nd: np.ndarray, formula: str) -> np.ndarray:
    if formula == "salomonson":
        value = 1.45 * nd - 0.01
    elif formula == "gascoin":
        value = 0.5 * np.tanh(2.65 * nd - 1.42) + 0.5
    else:
        raise InputError(f"FSC formula {formula!r} is not one of {FSC_FORMULAS}")
    return np.clip(value, 0.0, 1.0).astype(np.float32)


# -- NDSI --------------------------------------------------------------------------------------

def compute_ndsi(source, output: str, overrides: Optional[Dict[str, Override]] = None,
                 offset: Optional[float] = None, quantification: Optional[float] = None,
                 resolution: str = "coarsest", bounds=None, monitor: Monitor = SILENT,
                 window_rows: Optional[int] = None, product: Optional[S2Product] = None) -> Tuple[str, S2Product]:
    """Write NDSI = (green - SWIR1) / (green + SWIR1) (Float32, nodata -9999) of a Sentinel-2 product."""
    check_writable(output)
    if product is None:
        product = locate_bands(source, ("B3", "B11"), overrides, offset, quantification)
    monitor.message(product.describe())
    with bounded_gdal_cache(SNOW_GDAL_CACHE_MB), BandReader(product, ("B3", "B11"), resolution) as reader:
        grid = subgrid(reader.grid, bounds)
        rows = _strip_rows(grid.width, window_rows, reader.dataset("B3"))
        with AtomicRasterWriter(output, grid, 1, "float32", FLOAT_NODATA,
                                ["NDSI = (B3 - B11) / (B3 + B11)"]) as dst:
            def read(window):
                return reader.read("B3", window, grid), reader.read("B11", window, grid)

            def compute(window, data):
                out = ndsi(*data)
                out[~np.isfinite(out)] = FLOAT_NODATA
                return out

            run_windows(iter_windows(grid.width, grid.height, rows), read, compute,
                        lambda window, out: dst.write(out, 1, window=window), monitor)
            dst.update_tags(SOURCE_LAYOUT=product.layout, REFLECTANCE=product.radiometry)
    return str(output), product


# -- snow map ----------------------------------------------------------------------------------

def snow_map(source, output: str, params: SnowParameters = SnowParameters(), dem: Optional[str] = None,
             dem_band: int = 1, cloud: CloudInput = CloudInput(), fsc_output: Optional[str] = None,
             fsc_formula: str = "gascoin", overrides: Optional[Dict[str, Override]] = None,
             offset: Optional[float] = None, quantification: Optional[float] = None,
             resolution: str = "coarsest", bounds=None, monitor: Monitor = SILENT,
             window_rows: Optional[int] = None, product: Optional[S2Product] = None) -> SnowResult:
    """Write the snow map (uint8 GeoTIFF, classes 100/0/205/255) of a Sentinel-2 product.

    ``source``: a stack, a band file, a SAFE folder... (see :mod:`.s2_bands`); ``dem``: any
    raster overlapping the image, in any CRS and resolution (aligned bilinearly onto the image
    grid window by window); ``bounds``: process only this extent (image CRS). Returns a
    :class:`SnowResult` with the class areas, percentages and (LIS) the snowline.
    """
    params = params.validate()
    check_writable(output)
    if fsc_output:
        check_writable(fsc_output)
        if fsc_formula not in FSC_FORMULAS:
            raise InputError(f"FSC formula {fsc_formula!r} is not one of {FSC_FORMULAS}")
        if os.path.abspath(fsc_output) == os.path.abspath(output):
            raise InputError("the FSC output must be a different file from the snow map")
    lis = params.method == "lis"
    with bounded_gdal_cache(SNOW_GDAL_CACHE_MB):
        return _snow_map(source, output, params, dem if lis else None, dem_band, cloud, fsc_output, fsc_formula,
                         overrides, offset, quantification, resolution, bounds, monitor, window_rows, product)


def _snow_map(source, output, params, dem, dem_band, cloud, fsc_output, fsc_formula, overrides, offset,
              quantification, resolution, bounds, monitor, window_rows, product) -> SnowResult:
    lis = params.method == "lis"
    inputs = _open_inputs(source, overrides, offset, quantification, resolution, bounds, cloud, dem, dem_band,
                          product)
    try:
        monitor.message(inputs.product.describe())
        for text in inputs.messages:
            monitor.message(text)
        if lis and inputs.dem_ds is None:
            monitor.message("No DEM given: the snowline and pass 2 of Let It Snow are skipped (pass 1 only).")
        if lis:
            result = _lis(inputs, output, params, fsc_output, fsc_formula, monitor, window_rows)
        else:
            result = _threshold(inputs, output, params, fsc_output, fsc_formula, monitor, window_rows)
        result.layout = inputs.product.layout
        result.messages = list(inputs.messages)
        monitor.message(result.summary())
        return result
    finally:
        inputs.close()


def _tags(params: SnowParameters, result: SnowResult, layout: str, radiometry: str) -> Dict[str, str]:
    tags = {"CLASSES": CLASSES_TAG, "CLASS_100": "snow", "CLASS_0": "no snow", "CLASS_205": "cloud",
            "CLASS_255": "nodata",
            "METHOD": "Let It Snow two-pass" if params.method == "lis" else "single NDSI threshold",
            "SNOW_AREA_KM2": f"{result.snow_area_km2:.6f}", "SNOW_PERCENT": f"{result.snow_percent:.4f}",
            "CLOUD_PERCENT": f"{result.cloud_percent:.4f}", "SOURCE_LAYOUT": layout, "REFLECTANCE": radiometry}
    if params.method == "lis":
        tags["SNOWLINE_M"] = "none" if result.snowline is None else f"{result.snowline:.0f}"
        tags["PARAMETERS"] = (f"ndsi_pass1={params.ndsi_pass1} red_pass1={params.red_pass1} "
                              f"ndsi_pass2={params.ndsi_pass2} red_pass2={params.red_pass2} dz={params.band_height} "
                              f"fsnow_lim={params.fsnow_lim} fclear_lim={params.fclear_lim} "
                              f"fsnow_total_lim={params.fsnow_total_lim} red_darkcloud={params.red_darkcloud} "
                              f"darkcloud_scale={params.darkcloud_scale} red_backtocloud={params.red_backtocloud}")
    else:
        tags["PARAMETERS"] = f"ndsi_threshold={params.ndsi_threshold} red_threshold={params.red_threshold}"
    return tags


def _class_stats(classes: np.ndarray, areas_row: np.ndarray, counts: np.ndarray, areas: np.ndarray) -> None:
    """Add the pixel counts (and, for rows of different pixel areas, the areas) of the four classes."""
    constant = bool(np.all(areas_row == areas_row[0]))
    for value in (SNOW, NO_SNOW, CLOUD, NODATA):
        hits = classes == value
        if constant:
            counts[value] += int(np.count_nonzero(hits))
        else:
            per_row = np.count_nonzero(hits, axis=1)
            counts[value] += int(per_row.sum())
            areas[value] += float((per_row * areas_row).sum())


def _finish_result(output: str, method: str, counts: np.ndarray, areas: np.ndarray, grid: Grid,
                   **extra) -> SnowResult:
    pixel_area = float(_row_areas_m2(grid, grid.height // 2, 1)[0])
    constant = grid.crs is None or not grid.crs.is_geographic
    keys = (SNOW, NO_SNOW, CLOUD, NODATA)
    area = {k: (float(counts[k]) * pixel_area if constant else float(areas[k])) for k in keys}
    return SnowResult(output=str(output), method=method, counts={k: int(counts[k]) for k in keys},
                      pixel_area_m2=pixel_area, areas_m2=area, **extra)


def _class_lookup(zs: Optional[int]) -> np.ndarray:
    """Snow map class of every 2-byte pass-1 code (indexed by the code's bits as uint16), given the
    snowline ``zs`` (None: no pass 2)."""
    codes = np.arange(-32768, 32768, dtype=np.int32)
    elevation, falls_back_to_cloud = codes >> 1, (codes & 1) == 1
    above = elevation > zs if zs is not None else np.zeros(codes.shape, bool)
    lut = np.where(above, SNOW, np.where(falls_back_to_cloud, CLOUD, NO_SNOW)).astype(np.uint8)
    for code, value in ((_CODE_NODATA, NODATA), (_CODE_SNOW, SNOW), (_CODE_CLOUD, CLOUD), (_CODE_NOSNOW, NO_SNOW)):
        lut[int(code) + 32768] = value
    return np.ascontiguousarray(np.concatenate([lut[32768:], lut[:32768]]))  # uint16 view order


def _write_fsc_header(path: str, grid: Grid, formula: str):
    text = ("FSC = 0.5 tanh(2.65 NDSI - 1.42) + 0.5 (Gascoin et al. 2020)" if formula == "gascoin"
            else "FSC = 1.45 NDSI - 0.01 (Salomonson & Appel 2004)")
    return AtomicRasterWriter(path, grid, 1, "float32", FLOAT_NODATA, [f"fractional snow cover 0-1: {text}"])


def _threshold(inputs: _Inputs, output: str, params: SnowParameters, fsc_output, fsc_formula,
               monitor: Monitor, window_rows) -> SnowResult:
    grid = inputs.grid
    rows = _strip_rows(grid.width, window_rows, inputs.reader.dataset("B3"))
    counts = np.zeros(256, dtype=np.int64)
    areas = np.zeros(256, dtype=np.float64)
    fsc_writer = _write_fsc_header(fsc_output, grid, fsc_formula) if fsc_output else None

    def compute(window, data):
        data = _Spectra(inputs, data)
        all_cloud, _, scl_nodata = _cloud_masks(data, inputs.cloud_kind)
        valid = _valid(data, scl_nodata)
        nd = data.ndsi
        snow = nd > params.ndsi_threshold
        if params.red_threshold is not None:
            snow &= data.red_above(params.red_threshold)
        classes = np.full(nd.shape, NO_SNOW, dtype=np.uint8)
        if all_cloud is not None:
            snow &= ~all_cloud
            classes[all_cloud] = CLOUD
        classes[snow] = SNOW
        classes[~valid] = NODATA
        fsc = None
        if fsc_writer is not None:
            fsc = np.where(classes == SNOW, _fsc(nd, fsc_formula), np.float32(0.0)).astype(np.float32)
            fsc[(classes == CLOUD) | (classes == NODATA)] = FLOAT_NODATA
        return classes, fsc

    with contextlib.ExitStack() as stack:
        dst = stack.enter_context(AtomicRasterWriter(output, grid, 1, "uint8", NODATA, [SNOWMAP_DESCRIPTION]))
        fsc_ds = stack.enter_context(fsc_writer) if fsc_writer is not None else None

        def write(window, result):
            classes, fsc = result
            dst.write(classes, 1, window=window)
            if fsc_ds is not None:
                fsc_ds.write(fsc, 1, window=window)
            _class_stats(classes, _row_areas_m2(grid, int(window.row_off), int(window.height)), counts, areas)

        run_windows(iter_windows(grid.width, grid.height, rows), lambda w: _read_window(inputs, w, False),
                    compute, write, monitor)
        result = _finish_result(output, "threshold", counts, areas, grid, fsc_output=fsc_output)
        dst.write_colormap(1, CLASS_COLOURS)
        dst.update_tags(**_tags(params, result, inputs.product.layout, inputs.product.radiometry))
    return result


def _lis(inputs: _Inputs, output: str, params: SnowParameters, fsc_output, fsc_formula,
         monitor: Monitor, window_rows) -> SnowResult:
    grid = inputs.grid
    block = _darkcloud_block(grid, params.darkcloud_scale)
    rows = _strip_rows(grid.width, window_rows, inputs.reader.dataset("B3"))
    windows = list(iter_windows(grid.width, grid.height, rows))
    elevation = ElevationCounts()
    valid_total = [0, 0]  # valid pixels, pass-1 snow pixels
    folder = os.path.dirname(os.path.abspath(output))
    fd, code_path = tempfile.mkstemp(prefix=f".{Path(output).stem}.", suffix=".snowcodes", dir=folder)
    os.close(fd)
    ndsi_path = None
    if fsc_output:
        fd, ndsi_path = tempfile.mkstemp(prefix=f".{Path(output).stem}.", suffix=".snowndsi", dir=folder)
        os.close(fd)
    try:
        # ---- pass 1: read everything once, classify what can be, gather elevation-band counts
        def compute1(window, data):
            data = _Spectra(inputs, data)
            all_cloud, hard, scl_nodata = _cloud_masks(data, inputs.cloud_kind)
            valid = _valid(data, scl_nodata)
            nd = data.ndsi
            z = data.dem
            if all_cloud is not None and all_cloud.any():
                dark = data.dark_clouds(all_cloud, block, params.red_darkcloud)
                if hard is not None:
                    dark &= ~hard
                cloud_p1 = all_cloud & ~dark
                fallback_cloud = cloud_p1 | (all_cloud & data.red_above(params.red_backtocloud))
            else:
                cloud_p1 = fallback_cloud = None
            clear = valid if cloud_p1 is None else valid & ~cloud_p1
            test1 = clear & (nd > params.ndsi_pass1) & data.red_above(params.red_pass1)
            code = np.full(nd.shape, _CODE_NOSNOW, dtype=np.int16)
            if fallback_cloud is not None:
                code[fallback_cloud] = _CODE_CLOUD
            code[test1] = _CODE_SNOW
            counts = ElevationCounts()
            if z is not None:
                has_z = valid & data.dem_valid
                cand = clear & ~test1 & has_z & (nd > params.ndsi_pass2) & data.red_above(params.red_pass2)
                if cand.any():
                    zc = (z[cand] if z.dtype.kind == "i" else np.ceil(z[cand])).astype(np.int16)
                    fb = fallback_cloud[cand].astype(np.int16) if fallback_cloud is not None else np.int16(0)
                    code[cand] = zc * np.int16(2) + fb
                category = test1.view(np.uint8)
                if cloud_p1 is not None:
                    category = category.copy()
                    category[cloud_p1] = 2
                counts.add(z, category, has_z)
            code[~valid] = _CODE_NODATA
            nd16 = None
            if ndsi_path is not None:
                nd16 = np.where(np.isfinite(nd), np.round(np.clip(nd, -1, 1) * 10000), -32768).astype(np.int16)
            return code, nd16, counts, int(np.count_nonzero(valid)), int(np.count_nonzero(test1))

        with open(code_path, "wb") as codes_file, contextlib.ExitStack() as stack:
            nd_file = stack.enter_context(open(ndsi_path, "wb")) if ndsi_path else None

            def write1(window, result):
                code, nd16, counts, n_valid, n_snow = result
                codes_file.write(code.tobytes())
                if nd16 is not None:
                    nd_file.write(nd16.tobytes())
                elevation.merge(counts)
                valid_total[0] += n_valid
                valid_total[1] += n_snow

            run_windows(windows, lambda w: _read_window(inputs, w, True, block), compute1, write1, monitor.sub(0, 75))

        # ---- snowline from the whole-scene elevation-band counts
        bands = elevation.bands(int(params.band_height), "minimum")
        snow_fraction = valid_total[1] / valid_total[0] if valid_total[0] else 0.0
        snowline, note = None, "no DEM"
        if inputs.dem_ds is not None:
            if snow_fraction > params.fsnow_total_lim:
                snowline = find_snowline(bands, params.fsnow_lim, params.fclear_lim)
                note = "" if snowline is not None else "no elevation band meets the conditions"
            else:
                note = (f"pass-1 snow {100 * snow_fraction:.3f} % of the valid pixels, not above "
                        f"{100 * params.fsnow_total_lim:.3f} %")
            if snowline is None:
                monitor.message(f"Snowline not found ({note}): pass 2 skipped.")
        zs = None if snowline is None else int(snowline)

        # ---- pass 2: codes -> classes with the snowline
        counts = np.zeros(256, dtype=np.int64)
        areas = np.zeros(256, dtype=np.float64)
        fsc_writer = _write_fsc_header(fsc_output, grid, fsc_formula) if fsc_output else None
        mon2 = monitor.sub(75, 100)
        lut = _class_lookup(zs)
        with contextlib.ExitStack() as stack:
            dst = stack.enter_context(AtomicRasterWriter(output, grid, 1, "uint8", NODATA, [SNOWMAP_DESCRIPTION]))
            fsc_ds = stack.enter_context(fsc_writer) if fsc_writer is not None else None
            codes_file = stack.enter_context(open(code_path, "rb"))
            nd_file = stack.enter_context(open(ndsi_path, "rb")) if ndsi_path else None
            for n, window in enumerate(windows):
                mon2.check()
                h, w = int(window.height), int(window.width)
                code = np.fromfile(codes_file, dtype=np.int16, count=h * w).reshape(h, w)
                classes = lut[code.view(np.uint16)]
                dst.write(classes, 1, window=window)
                if fsc_ds is not None:
                    nd16 = np.fromfile(nd_file, dtype=np.int16, count=h * w).reshape(h, w)
                    nd = nd16.astype(np.float32) / 10000.0
                    fsc = np.where(classes == SNOW, _fsc(nd, fsc_formula), np.float32(0.0)).astype(np.float32)
                    fsc[(classes == CLOUD) | (classes == NODATA)] = FLOAT_NODATA
                    fsc_ds.write(fsc, 1, window=window)
                _class_stats(classes, _row_areas_m2(grid, int(window.row_off), h), counts, areas)
                mon2.progress(100.0 * (n + 1) / len(windows))
            mon2.check()
            result = _finish_result(output, "lis", counts, areas, grid, snowline=snowline, snowline_note=note,
                                    pass1_bands=bands,
                                    pass1_snow_fraction=snow_fraction, fsc_output=fsc_output)
            dst.write_colormap(1, CLASS_COLOURS)
            dst.update_tags(**_tags(params, result, inputs.product.layout, inputs.product.radiometry))
        return result
    finally:
        for path in (code_path, ndsi_path):
            if path and os.path.exists(path):
                os.remove(path)


# -- statistics --------------------------------------------------------------------------------

@dataclass
class SnowStatistics(ClassAreas):
    """Areas and percentages of a snow map, and its per-elevation-band table."""

    counts: Dict[int, int]
    areas_m2: Dict[int, float]
    bands: List[ElevationBand]
    band_height: int
    snowline: Optional[float]
    snowline_source: str

    @property
    def no_snow_percent(self) -> float:
        valid = self.valid_area_km2
        return 100.0 * self.areas_m2.get(NO_SNOW, 0.0) / 1e6 / valid if valid > 0 else float("nan")

    #: Columns of the elevation-band table (after the ``band`` label column).
    TABLE_FIELDS = ("band_min_m", "band_max_m", "band_centre_m", "total", "snow", "no_snow", "cloud",
                    "snow_fraction")

    def rows(self) -> List[Tuple]:
        """One row per elevation band, then an ``all`` row for the whole map:
        (label, min, max, centre, total, snow, no snow, cloud, snow fraction of the cloud-free pixels)."""
        def fraction(snow: int, clear: int) -> Optional[float]:
            return round(snow / clear, 6) if clear else None

        out = [(f"{b.z_min:.0f}-{b.z_max:.0f} m", b.z_min, b.z_max, b.centre, b.total, b.snow, b.no_snow, b.cloud,
                fraction(b.snow, b.clear)) for b in self.bands]
        snow, no_snow, cloud = self.counts[SNOW], self.counts[NO_SNOW], self.counts[CLOUD]
        out.append(("all", None, None, None, snow + no_snow + cloud, snow, no_snow, cloud,
                    fraction(snow, snow + no_snow)))
        return out

    def write_csv(self, path: str) -> str:
        check_writable(path)
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(("band",) + self.TABLE_FIELDS)
            for row in self.rows():
                out.writerow(["" if v is None else v for v in row])
        return path


def read_snowline_tag(path: str) -> Optional[float]:
    """The snowline a LIS run stored in its snow map (``SNOWLINE_M`` tag), or None."""
    with open_raster(path, "snow map") as ds:
        value = ds.tags().get("SNOWLINE_M")
    try:
        return float(value) if value not in (None, "", "none") else None
    except ValueError:
        return None


def snow_statistics(snow_map_path: str, dem: Optional[str] = None, dem_band: int = 1, band_height: int = 100,
                    band: int = 1, fsnow_lim: float = 0.10, fclear_lim: float = 0.10,
                    monitor: Monitor = SILENT, window_rows: Optional[int] = None) -> SnowStatistics:
    """Snow area (km^2), snow / cloud percentages of the valid area, snowline and elevation-band table.

    The table has bands ``band_height`` m high at multiples of it (1200-1300 m, ...), so tables of
    different dates line up. The snowline is the one the LIS run stored in the map (``SNOWLINE_M``);
    for other maps it is derived from this table with the LIS rule (first band with cloud-free
    fraction > ``fclear_lim`` and snow fraction > ``fsnow_lim``, lower edge two bands below).
    """
    if int(band_height) != band_height or band_height < 1:
        raise InputError(f"elevation band height {band_height} m: give a whole number of metres >= 1")
    with bounded_gdal_cache(SNOW_GDAL_CACHE_MB), open_raster(snow_map_path, "snow map") as ds:
        check_band(ds, band, "snow map")
        if ds.dtypes[band - 1] not in ("uint8", "int16", "uint16", "int32"):
            raise InputError(f"snow map {snow_map_path}: expected an integer class raster (100 snow, 0 no snow, "
                             f"205 cloud, 255 nodata), got {ds.dtypes[band - 1]}")
        grid = Grid.of(ds)
        tag_line = ds.tags().get("SNOWLINE_M")
        dem_ds = _open_aux(dem, dem_band, grid, "DEM") if dem else None
        try:
            counts = np.zeros(256, dtype=np.int64)
            areas = np.zeros(256, dtype=np.float64)
            elevation = ElevationCounts()
            rows = _strip_rows(grid.width, window_rows, ds)
            windows = list(iter_windows(grid.width, grid.height, rows))
            for n, window in enumerate(windows):
                monitor.check()
                classes = ds.read(band, window=window)
                unknown = ~np.isin(classes, (SNOW, NO_SNOW, CLOUD, NODATA))
                if unknown.any():
                    values = np.unique(classes[unknown])[:5]
                    raise InputError(f"snow map {snow_map_path}: values {values.tolist()} are not snow map classes "
                                     "(100 snow, 0 no snow, 205 cloud, 255 nodata)")
                classes = classes.astype(np.uint8)
                _class_stats(classes, _row_areas_m2(grid, int(window.row_off), int(window.height)), counts, areas)
                if dem_ds is not None:
                    z = _read_dem(dem_ds, dem_band, grid, window)
                    use = np.isfinite(z) & (classes != NODATA)
                    category = np.select([classes == SNOW, classes == CLOUD], [1, 2], 0).astype(np.uint8)
                    elevation.add(z, category, use)
                monitor.progress(100.0 * (n + 1) / len(windows))
        finally:
            if dem_ds is not None:
                dem_ds.close()
    bands = elevation.bands(int(band_height), "round")
    if tag_line not in (None, "", "none"):
        snowline, source = float(tag_line), "stored by the Let It Snow run"
    elif tag_line == "none":
        snowline, source = None, "the Let It Snow run found no snowline"
    elif bands:
        snowline = find_snowline(bands, fsnow_lim, fclear_lim)
        source = "from this map's elevation bands (Let It Snow rule)" if snowline is not None else "not found"
    else:
        snowline, source = None, "no DEM given"
    result = _finish_result(snow_map_path, "", counts, areas, grid)
    return SnowStatistics(counts=result.counts, areas_m2=result.areas_m2, bands=bands, band_height=int(band_height),
                          snowline=snowline, snowline_source=source)

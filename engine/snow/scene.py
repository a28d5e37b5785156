"""The inputs of a snow map opened on the image grid: the Sentinel-2 bands, the cloud mask and the DEM.

The bands are located and read through :mod:`~topoclear.engine.sentinel2` (band files that do not
overlap are refused, partial cover is reported in the messages); the cloud mask and the
DEM may be on any grid and CRS that overlaps the image: they are aligned onto the image grid
window by window (nearest for the mask, bilinear for the DEM), or read as they are when their
grid lines up with it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import InputError
from ..io.raster import Grid, check_band, open_raster
from ..io.warp import FULL_COVERAGE, footprint_coverage, warp_window
from ..sentinel2.bands import S2Product, is_scl_name
from ..sentinel2.reader import BandReader, read_native
from .grid import subgrid
from .parameters import CloudInput
from .requests import Sentinel2Input

#: The bands of the snow map: green, red, SWIR1.
SNOW_BANDS = ("B3", "B4", "B11")


@dataclass
class SnowScene:
    """The opened inputs of a snow map and the grid it is computed on. Use as a context manager."""

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

    def __enter__(self) -> "SnowScene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_overlapping(path: str, band: int, grid: Grid, role: str) -> Tuple[rasterio.DatasetReader, float]:
    """(``path`` opened, the fraction of ``grid``'s extent it covers); :class:`InputError` naming
    ``role`` when the band is missing, the raster has no CRS or it does not overlap ``grid``."""
    ds = open_raster(path, role)
    try:
        check_band(ds, band, role)
        if ds.crs is None:
            raise InputError(f"{role}: {path} has no coordinate reference system")
        coverage = footprint_coverage(Grid.of(ds), grid)
        if coverage <= 0.0:
            raise InputError(f"{role} {path} does not overlap the Sentinel-2 image (its extent {Grid.of(ds).bounds} "
                             f"in {ds.crs}; image extent {grid.bounds} in {grid.crs})")
    except Exception:
        ds.close()
        raise
    return ds, coverage


def resolve_cloud(cloud: CloudInput, product: S2Product, messages: List[str]) -> Tuple[str, Optional[str]]:
    """(``"scl"``, ``"raster"`` or ``"none"``, the raster to read) for ``cloud``; what was chosen
    automatically is added to ``messages``."""
    kind, path = cloud.method.key, cloud.path
    if kind == "auto":
        if path:
            kind = "scl" if is_scl_name(path) else "raster"
        elif product.scl is not None:
            kind, path = "scl", product.scl.path
            messages.append(f"Cloud mask: the product's SCL band {os.path.basename(path)}")
        else:
            kind = "none"
            messages.append("Cloud mask: none found (no SCL beside the bands); no pixel is cloud")
    elif kind == "scl" and not path:
        if product.scl is None:
            raise InputError("cloud mask: SCL chosen but no SCL raster was given and none was found "
                             "beside the bands")
        path = product.scl.path
    elif kind == "raster" and not path:
        raise InputError("cloud mask: a mask raster was chosen but none was given")
    return kind, path


def open_scene(image: Sentinel2Input, cloud: CloudInput, dem: Optional[str], dem_band: int = 1,
               names: Sequence[str] = SNOW_BANDS) -> SnowScene:
    """Locate and open the bands ``names`` of ``image``, its cloud mask and ``dem`` (None: no DEM)."""
    product = image.locate(names)
    reader = BandReader(product, names, image.resolution)
    try:
        scene = SnowScene(product, reader, subgrid(reader.grid, image.bounds))
        scene.messages.extend(reader.coverage_messages(scene.grid))
    except Exception:
        reader.close()
        raise
    try:
        kind, path = resolve_cloud(cloud, product, scene.messages)
        if kind != "none":
            scene.cloud_ds, _ = open_overlapping(path, cloud.band, scene.grid, "cloud mask")
            scene.cloud_band, scene.cloud_kind = cloud.band, kind
        if dem:
            scene.dem_ds, coverage = open_overlapping(dem, dem_band, scene.grid, "DEM")
            scene.dem_band = dem_band
            if coverage < FULL_COVERAGE:
                scene.messages.append(f"The DEM covers {100 * coverage:.1f} % of the image; pixels without "
                                      "elevation get pass 1 only")
    except Exception:
        scene.close()
        raise
    return scene


def _aligned(ds: rasterio.DatasetReader, band: int, grid: Grid, window: Window, resampling: Resampling):
    """(values, their nodata): as read when ``ds`` lines up with ``grid``, else warped (nodata NaN, None)."""
    native = read_native(ds, band, grid, window)
    if native is not None:
        return native, ds.nodatavals[band - 1]
    return warp_window(ds, band, grid, window, resampling), None


def read_window(scene: SnowScene, window: Window, need_dem: bool, block: int = 1) -> dict:
    """Everything one window needs, as read (the main thread's part; see :class:`~.spectra.Spectra`).

    Keys: ``"B3"``, ``"B4"``, ``"B11"`` (as :meth:`BandReader.read_raw`), ``"cloud"`` and ``"dem"``
    ((values, nodata)) when there are such inputs (the DEM only with ``need_dem``). With a cloud
    mask and dark-cloud blocks of ``block`` rows, the red band is read over the window grown to
    whole blocks (``"red_block"``: values, rows above the window).
    """
    grid = scene.grid
    data = {name: scene.reader.read_raw(name, window, grid) for name in ("B3", "B11")}
    row0, rows = int(window.row_off), int(window.height)
    if scene.cloud_ds is not None and block > 1:
        top = (row0 // block) * block
        bottom = min(-(-(row0 + rows) // block) * block, grid.height)
        grown = scene.reader.read_raw("B4", Window(window.col_off, top, window.width, bottom - top), grid)
        data["red_block"] = (grown, row0 - top)
        data["B4"] = grown[row0 - top:row0 - top + rows]
    else:
        data["B4"] = scene.reader.read_raw("B4", window, grid)
    if scene.cloud_ds is not None:
        data["cloud"] = _aligned(scene.cloud_ds, scene.cloud_band, grid, window, Resampling.nearest)
    if need_dem and scene.dem_ds is not None:
        data["dem"] = _aligned(scene.dem_ds, scene.dem_band, grid, window, Resampling.bilinear)
    return data

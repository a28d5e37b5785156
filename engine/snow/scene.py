"""The inputs of a snow map opened on the image grid: the Sentinel-2 bands, the cloud mask and the DEM.

The bands are located and read through :mod:`~topoclear.engine.sentinel2` (band files that do not
overlap are refused, partial cover is reported in the messages); the DEM may be on any grid and
CRS that overlaps the image: it is aligned onto the image grid window by window (bilinear), or
read as it is when its grid lines up with it.

**The cloud mask** comes from the cloud mask engine (:mod:`~topoclear.engine.clouds.masks.engine`),
as for cloud removal: :func:`~topoclear.engine.clouds.masks.choice.choose_method` decides the
method for the ``"snow"`` consumer and a :class:`~topoclear.engine.clouds.masks.engine.SceneMask`
gives the classes (0 clear, 1 cloud, 2 shadow, 255 nodata) of every window on the snow map's grid.
``"auto"``: the given mask raster (read as SCL when its name says SCL), else the product's SCL
band, else the pretrained detector (when installed and the bands B2, B3, B4, B8 are there), else
none. The snow map never uses the DSen2-CR rules: the engine sees only the bands the snow map and
the detector read, and a detector that cannot start under ``"auto"`` gives way to no mask (said in
the log). The detector runs on the snow map's grid (20 m on the coarsest grid; 30 m from the
finest 10 m grid) in one whole-scene pass (:meth:`SnowScene.prepare_mask`) before the snow tests;
the bands it needs besides the snow map's are located beside them (B2, B8, B12; B10 only tells a
Level-1C stack). With SCL the raw codes are read as well, on the same windows, for what the classes
do not keep: cirrus (class 10, "hard" cloud for Let It Snow) and SCL nodata (class 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..clouds.masks.choice import DETECTOR_BANDS, MaskChoice, choose_method
from ..clouds.masks.engine import SceneMask
from ..clouds.masks.kinds import AUTO, DETECTOR, NONE, RASTER, SCL
from ..errors import InputError, TopoClearError
from ..io.raster import Grid, check_band, open_raster
from ..io.warp import FULL_COVERAGE, footprint_coverage, warp_window
from ..progress import SILENT, Monitor
from ..sentinel2.bands import S2Product
from ..sentinel2.locate import locate_bands
from ..sentinel2.reader import BandReader, read_native
from .grid import subgrid
from .parameters import CloudInput
from .requests import Sentinel2Input

#: The bands of the snow map: green, red, SWIR1.
SNOW_BANDS = ("B3", "B4", "B11")
#: The bands the cloud mask engine may read besides the snow map's: the detector's, and B10, which
#: only tells the detector's model a Level-1C stack (never B1: the snow map uses no DSen2-CR rules).
DETECTOR_EXTRA_BANDS = tuple(b for b in DETECTOR_BANDS if b not in SNOW_BANDS) + ("B10",)


@dataclass
class SnowScene:
    """The opened inputs of a snow map and the grid it is computed on. Use as a context manager.

    ``mask``: the cloud mask engine's classes of the scene (None: no cloud mask); ``cloud_kind``:
    its method (``"scl"``, ``"raster"``, ``"detector"`` or ``"none"``); ``scl_ds`` / ``scl_band``:
    the SCL raster read for its raw codes (SCL only).
    """

    product: S2Product
    reader: BandReader
    grid: Grid
    mask: Optional[SceneMask] = None
    cloud_kind: str = NONE.key
    scl_ds: Optional[rasterio.DatasetReader] = None
    scl_band: int = 1
    dem_ds: Optional[rasterio.DatasetReader] = None
    dem_band: int = 1
    messages: List[str] = field(default_factory=list)

    def prepare_mask(self, monitor: Monitor = SILENT) -> None:
        """Run the detector over the whole scene once (nothing for the other methods, or when done):
        every window is then a plain read. Its messages go to ``monitor`` and :attr:`messages`."""
        if self.mask is None or self.mask.method.key != DETECTOR.key or self.mask.cache_path is not None:
            return
        seen = len(self.mask.messages)
        self.mask.prepare(monitor)
        for text in self.mask.messages[seen:]:
            self.messages.append(text)
            monitor.message(text)

    def close(self) -> None:
        self.reader.close()
        if self.mask is not None:
            self.mask.close()
        for ds in (self.scl_ds, self.dem_ds):
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


def _may_use_detector(cloud: CloudInput, product: S2Product) -> bool:
    kind = cloud.method.key
    return kind == DETECTOR.key or (kind == AUTO.key and not cloud.path and product.scl is None)


def mask_product(image: Sentinel2Input, product: S2Product, cloud: CloudInput, names: Sequence[str]) -> S2Product:
    """The bands the cloud mask engine sees. When the detector may be chosen: the snow map's ``names``
    of ``product`` and the bands the detector reads (:data:`DETECTOR_EXTRA_BANDS`), located beside
    them (the snow map's own bands kept as located). Else none: SCL and mask rasters read no band,
    and without one the engine does not read a band again for its nodata (the snow map's own
    valid pixels decide that)."""
    if not _may_use_detector(cloud, product):
        return replace(product, bands={})
    keep = set(names) | set(DETECTOR_EXTRA_BANDS)
    bands = dict(product.bands)
    if image.source is not None and any(b not in bands for b in DETECTOR_EXTRA_BANDS):
        try:
            found = locate_bands(image.source, tuple(b for b in names if b in bands), image.overrides,
                                 image.offset, image.quantification, optional=DETECTOR_EXTRA_BANDS)
            bands = {**found.bands, **bands}
        except InputError:
            pass  # the detector then says which bands it lacks
    return replace(product, bands={k: v for k, v in bands.items() if k in keep})


def _no_mask_message(choice: MaskChoice, product: S2Product, problem: Optional[str] = None) -> str:
    """The log line of a snow map without cloud mask (``problem``: why the detector could not start)."""
    if choice.asked != AUTO.key:
        return choice.describe()
    if problem is None:
        try:
            choose_method(product, DETECTOR.key, consumer="snow")
            problem = "the pretrained detector cannot run"
        except TopoClearError as exc:
            problem = str(exc)
    return (f"Cloud mask: {AUTO.title} -> {NONE.title} (no mask raster given, no SCL band beside the bands, and "
            f"{problem}): no pixel is cloud")


def open_cloud_mask(scene: SnowScene, image: Sentinel2Input, cloud: CloudInput, names: Sequence[str]) -> None:
    """Open the cloud mask of ``cloud`` for ``scene`` (:attr:`SnowScene.mask`, ``cloud_kind``, the SCL
    raster); what was chosen and why goes to :attr:`SnowScene.messages`.

    The choice is the engine's (:func:`~topoclear.engine.clouds.masks.choice.choose_method`, consumer
    ``"snow"``) and so are the classes; the :class:`SceneMask` is opened here rather than through
    :func:`~topoclear.engine.clouds.masks.engine.open_scene_mask` because under ``"auto"`` a detector
    that cannot start gives way to no mask, never to the DSen2-CR rules.
    """
    product = mask_product(image, scene.product, cloud, names)
    choice = choose_method(product, cloud.method.key, cloud.path, cloud.band, "snow")
    if choice.key not in (SCL.key, RASTER.key, DETECTOR.key):  # none (the rules cannot be chosen: no B1)
        scene.messages.append(_no_mask_message(choice, product))
        return
    try:
        mask = SceneMask(product, scene.grid, choice)
    except TopoClearError as exc:
        if choice.key != DETECTOR.key or choice.asked != AUTO.key or not isinstance(exc, ImportError):
            raise
        scene.messages.append(_no_mask_message(choice, product, str(exc)))  # DetectorUnavailable
        return
    scene.mask, scene.cloud_kind = mask, choice.key
    scene.messages.extend(mask.messages)
    if choice.key == SCL.key:
        scene.scl_ds, _ = open_overlapping(choice.raster, choice.band, scene.grid, "cloud mask")
        scene.scl_band = choice.band


def open_scene(image: Sentinel2Input, cloud: CloudInput, dem: Optional[str], dem_band: int = 1,
               names: Sequence[str] = SNOW_BANDS) -> SnowScene:
    """Locate and open the bands ``names`` of ``image``, its cloud mask and ``dem`` (None: no DEM).

    The detector, when chosen, runs at :meth:`SnowScene.prepare_mask` (the snow map methods call it)."""
    product = image.locate(names)
    reader = BandReader(product, names, image.resolution)
    try:
        scene = SnowScene(product, reader, subgrid(reader.grid, image.bounds))
        scene.messages.extend(reader.coverage_messages(scene.grid))
    except Exception:
        reader.close()
        raise
    try:
        open_cloud_mask(scene, image, cloud, names)
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

    Keys: ``"B3"``, ``"B4"``, ``"B11"`` (as :meth:`BandReader.read_raw`), ``"classes"`` (the cloud
    mask engine's uint8 classes) when there is a cloud mask, ``"scl"`` ((raw codes, nodata)) with
    SCL, and ``"dem"`` ((values, nodata)) with a DEM and ``need_dem``. With a cloud mask and
    dark-cloud blocks of ``block`` rows, the red band is read over the window grown to whole blocks
    (``"red_block"``: values, rows above the window).
    """
    grid = scene.grid
    data = {name: scene.reader.read_raw(name, window, grid) for name in ("B3", "B11")}
    row0, rows = int(window.row_off), int(window.height)
    if scene.mask is not None and block > 1:
        top = (row0 // block) * block
        bottom = min(-(-(row0 + rows) // block) * block, grid.height)
        grown = scene.reader.read_raw("B4", Window(window.col_off, top, window.width, bottom - top), grid)
        data["red_block"] = (grown, row0 - top)
        data["B4"] = grown[row0 - top:row0 - top + rows]
    else:
        data["B4"] = scene.reader.read_raw("B4", window, grid)
    if scene.mask is not None:
        data["classes"] = scene.mask.classes(window)
    if scene.scl_ds is not None:
        data["scl"] = _aligned(scene.scl_ds, scene.scl_band, grid, window, Resampling.nearest)
    if need_dem and scene.dem_ds is not None:
        data["dem"] = _aligned(scene.dem_ds, scene.dem_band, grid, window, Resampling.bilinear)
    return data

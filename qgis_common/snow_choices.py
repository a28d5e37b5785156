"""The snow tools' choices, and the one way a user's choices become snow requests: Processing and the dock alike.

The menus (method, cloud mask, fractional snow cover formula, output grid), the tunable thresholds
with their ranges and labels, and the builders of
:class:`~topoclear.engine.snow.requests.NdsiRequest`,
:class:`~topoclear.engine.snow.requests.SnowMapRequest`,
:class:`~topoclear.engine.snow.requests.SnowStatisticsRequest` and (a season of several dates)
:class:`~topoclear.engine.snow.series.SnowSeriesRequest` from plain values (file paths,
numbers, keys): ``processing_provider/snow.py`` reads them from its parameters, ``ui/snow_dock.py``
from its widgets. Menus are in a fixed order: a Processing enum index means the same choice in
every version. Failures are :class:`~topoclear.engine.errors.InputError` with a message for the user.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..engine.clouds.masks.kinds import MaskMethod, mask_method, mask_methods
from ..engine.errors import InputError
from ..engine.sentinel2.bands import Override
from ..engine.snow.parameters import AUTO_CLOUD_DESCRIPTION, CloudInput, SnowParameters
from ..engine.snow.dates import parse_date, parse_date_list
from ..engine.snow.requests import Bounds, NdsiRequest, Sentinel2Input, SnowMapRequest, SnowStatisticsRequest
from ..engine.snow.series import SeriesScene, SnowSeriesRequest
from ..models.bands import ROLE_LABELS


@dataclass(frozen=True)
class Choice:
    """One entry of a menu: the engine's ``key`` and what the user reads."""

    key: str
    label: str


def labels(choices: Sequence[Choice]) -> List[str]:
    """The labels of a menu, in order (a Processing enum's options)."""
    return [c.label for c in choices]


def key_at(choices: Sequence[Choice], index: int) -> str:
    """The key of entry ``index`` of a menu (a Processing enum's value)."""
    if not 0 <= index < len(choices):
        raise InputError(f"choice {index} is not one of 0..{len(choices) - 1}")
    return choices[index].key


def _cloud_label(method: MaskMethod) -> str:
    description = AUTO_CLOUD_DESCRIPTION if method.key == "auto" else method.description
    return f"{method.title}: {description}"


METHOD_CHOICES: Tuple[Choice, ...] = (
    Choice("lis", "Let It Snow: two passes with the DEM snowline and dark-cloud release"),
    Choice("threshold", "Single NDSI threshold (plus the red-band test)"))
#: The cloud masks the snow map offers (:func:`~topoclear.engine.clouds.masks.kinds.mask_methods`).
CLOUD_CHOICES: Tuple[Choice, ...] = tuple(Choice(m.key, _cloud_label(m)) for m in mask_methods("snow"))
FSC_CHOICES: Tuple[Choice, ...] = (
    Choice("gascoin", "Gascoin et al. 2020 (Sentinel-2, LIS): 0.5 tanh(2.65 NDSI - 1.42) + 0.5"),
    Choice("salomonson", "Salomonson & Appel 2004 (MODIS): 1.45 NDSI - 0.01"))
RESOLUTION_CHOICES: Tuple[Choice, ...] = (
    Choice("coarsest", "Coarsest band grid (20 m, as Let It Snow)"),
    Choice("finest", "Finest band grid (10 m)"))
#: The bands of each snow tool.
NDSI_ROLES = ("B3", "B11")
SNOW_MAP_ROLES = ("B3", "B4", "B11")


def band_label(name: str) -> str:
    """How band ``name`` is named to a user by the snow tools: ``"Green (B3)"``."""
    text = ROLE_LABELS.get(name, name)
    return text[:1].upper() + text[1:]


def cloud_uses_raster(key: str) -> bool:
    """Whether cloud mask ``key`` reads a raster the user may give."""
    return mask_method(key, "snow").uses_raster


@dataclass(frozen=True)
class Threshold:
    """A tunable of :class:`~topoclear.engine.snow.parameters.SnowParameters`: its field ``key``,
    its Processing parameter ``name``, its labels (``label`` in Processing, ``short_label`` in the
    dock's group of its method), its range and how it is stepped and shown."""

    key: str
    name: str
    label: str
    short_label: str
    minimum: float
    maximum: float
    step: float = 0.01
    decimals: int = 3
    integer: bool = False

    @property
    def default(self) -> float:
        return getattr(SnowParameters(), self.key)


#: The single-threshold method's thresholds (the red test can be switched off: ``red_test``).
THRESHOLD_FIELDS: Tuple[Threshold, ...] = (
    Threshold("ndsi_threshold", "NDSI_THRESHOLD", "Single threshold: NDSI above", "NDSI above", -1.0, 1.0),
    Threshold("red_threshold", "RED_THRESHOLD", "Single threshold: red reflectance above", "require red above",
              0.0, 2.0))
#: Let It Snow's thresholds, in the order the algorithm uses them.
LIS_FIELDS: Tuple[Threshold, ...] = (
    Threshold("ndsi_pass1", "NDSI_PASS1", "Let It Snow pass 1: NDSI above", "Pass 1: NDSI above", -1.0, 1.0),
    Threshold("red_pass1", "RED_PASS1", "Let It Snow pass 1: red reflectance above", "Pass 1: red above", 0.0, 2.0),
    Threshold("ndsi_pass2", "NDSI_PASS2", "Let It Snow pass 2: NDSI above", "Pass 2: NDSI above", -1.0, 1.0),
    Threshold("red_pass2", "RED_PASS2", "Let It Snow pass 2: red reflectance above", "Pass 2: red above", 0.0, 2.0),
    Threshold("fsnow_lim", "FSNOW_LIM", "Let It Snow snowline: band snow fraction above",
              "Snowline: band snow fraction above", 0.0, 1.0),
    Threshold("fclear_lim", "FCLEAR_LIM", "Let It Snow snowline: band cloud-free fraction above",
              "Snowline: band cloud-free above", 0.0, 1.0),
    Threshold("fsnow_total_lim", "FSNOW_TOTAL_LIM", "Let It Snow snowline: scene snow fraction above",
              "Snowline: scene snow fraction above", 0.0, 1.0, 0.001, 4),
    Threshold("red_darkcloud", "RED_DARKCLOUD", "Let It Snow dark cloud: block mean red below",
              "Dark cloud: mean red below", 0.0, 2.0),
    Threshold("darkcloud_scale", "DARKCLOUD_SCALE", "Let It Snow dark cloud: block size (m; 0 = pixel)",
              "Dark cloud: block (m)", 0.0, 100000.0, 20.0, 0),
    Threshold("red_backtocloud", "RED_BACKTOCLOUD", "Let It Snow back to cloud: red above",
              "Back to cloud: red above", 0.0, 2.0),
    Threshold("band_height", "BAND_HEIGHT", "Let It Snow snowline: elevation band (m)", "Elevation band (m)",
              1, 10000, 1, 0, integer=True))


# -- what the user chose -> requests ---------------------------------------------------------------

def band_overrides(layer: Optional[str], bands: Mapping[str, int], files: Mapping[str, Optional[str]],
                   roles: Sequence[str]) -> Dict[str, Override]:
    """The bands chosen by hand: for each of ``roles``, a separate file (its band 1) from ``files``,
    else a band number (> 0) of the file ``layer`` from ``bands``; the others stay automatic."""
    overrides: Dict[str, Override] = {}
    for role in roles:
        path, band = files.get(role), int(bands.get(role) or 0)
        if path:
            overrides[role] = (path, 1)
        elif band > 0:
            if not layer:
                raise InputError(f"{band_label(role)}: a band of the layer was chosen but no layer was given")
            overrides[role] = (layer, band)
    return overrides


@dataclass(frozen=True)
class ImageChoice:
    """The Sentinel-2 image as chosen: the file behind a layer and/or a product folder (the folder
    wins), band choices (see :func:`band_overrides`), radiometry (None: from the product), grid and extent."""

    layer: Optional[str] = None
    folder: Optional[str] = None
    bands: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[str, Optional[str]] = field(default_factory=dict)
    offset: Optional[float] = None
    quantification: Optional[float] = None
    resolution: str = "coarsest"
    bounds: Optional[Bounds] = None


def sentinel2_input(choice: ImageChoice, roles: Sequence[str]) -> Sentinel2Input:
    """The image to read for a tool using the bands ``roles`` (its bands are located by the engine)."""
    overrides = band_overrides(choice.layer, choice.bands, choice.files, roles)
    source = choice.folder or choice.layer
    if not source and len(overrides) < len(roles):
        raise InputError("Choose a Sentinel-2 layer or a product folder (or every band as a file)")
    return Sentinel2Input(source or None, overrides or None, choice.offset, choice.quantification,
                          choice.resolution, choice.bounds)


def ndsi_request(image: Sentinel2Input, output: str) -> NdsiRequest:
    """The NDSI request of ``image`` into ``output``."""
    return NdsiRequest(image, output)


@dataclass(frozen=True)
class SnowMapChoice:
    """A snow map as chosen: ``method`` and ``cloud`` are keys of :data:`METHOD_CHOICES` and
    :data:`CLOUD_CHOICES`; ``values``: :class:`Threshold` key -> value (missing: the default);
    ``red_test``: the single threshold's red test; ``dem`` / ``cloud_raster``: files or None."""

    image: Sentinel2Input
    output: str
    method: str = "lis"
    values: Mapping[str, float] = field(default_factory=dict)
    red_test: bool = True
    dem: Optional[str] = None
    dem_band: int = 1
    cloud: str = "auto"
    cloud_raster: Optional[str] = None
    fsc_output: Optional[str] = None
    fsc_formula: str = "gascoin"
    window_rows: Optional[int] = None


def snow_parameters(method: str, values: Mapping[str, float], red_test: bool = True) -> SnowParameters:
    """Validated :class:`SnowParameters` of ``method`` with the thresholds ``values``."""
    known = {t.key: t for t in THRESHOLD_FIELDS + LIS_FIELDS}
    chosen = {}
    for key, value in values.items():
        if key not in known:
            raise InputError(f"{key!r} is not a snow map threshold")
        value = float(value)
        chosen[key] = int(value) if known[key].integer and value.is_integer() else value
    if not red_test:
        chosen["red_threshold"] = None
    return SnowParameters(method=method, **chosen).validate()


def snow_map_request(choice: SnowMapChoice) -> Tuple[SnowMapRequest, List[str]]:
    """(the snow map request, notes for the run's log about choices it does not use)."""
    notes: List[str] = []
    params = snow_parameters(choice.method, choice.values, choice.red_test)
    method = mask_method(choice.cloud, "snow")
    raster = choice.cloud_raster or None
    if method.key == "raster" and not raster:
        raise InputError(f"Cloud mask: '{method.title}' was chosen but no raster was given: choose the raster "
                         "or another cloud mask option")
    if raster and not method.uses_raster:
        notes.append(f"A cloud mask raster was given but the cloud mask chosen is '{method.title}': it is not used.")
        raster = None
    dem = choice.dem or None
    if dem and params.method != "lis":
        notes.append("The single-threshold method does not use the DEM.")
        dem = None
    request = SnowMapRequest(choice.image, choice.output, params, dem=dem, dem_band=choice.dem_band or 1,
                             cloud=CloudInput(method.key, raster), fsc_output=choice.fsc_output or None,
                             fsc_formula=choice.fsc_formula, window_rows=choice.window_rows)
    return request, notes


def snow_statistics_request(snow_map: str, dem: Optional[str] = None, band: int = 1, dem_band: int = 1,
                            band_height: int = 100) -> SnowStatisticsRequest:
    """The statistics request of the snow map file ``snow_map`` (band numbers 0 or None: band 1)."""
    return SnowStatisticsRequest(snow_map, dem or None, dem_band or 1, band_height, band or 1).validate()


# -- a season: several dates -> snow maps and snow cover duration ---------------------------------

#: What to do with a date on another grid than the first date's (:data:`~topoclear.engine.snow.series.GRID_POLICIES`).
GRID_CHOICES: Tuple[Choice, ...] = (
    Choice("align", "Align them onto the first date's grid (snow maps resampled, nearest neighbour)"),
    Choice("refuse", "Refuse them (every date must be on the first date's grid)"))


@dataclass(frozen=True)
class SeasonChoice:
    """A snow season as chosen: ``images`` (files, any order), ``dates`` typed by the user (one per
    image in input order, empty entries read from the metadata or file name), ``cloud_rasters``
    (one per image, or none), ``start`` / ``end`` (text; empty: the first / last date), and the
    snow map settings of :class:`SnowMapChoice`."""

    images: Sequence[str]
    output: str
    dates: str = ""
    method: str = "lis"
    values: Mapping[str, float] = field(default_factory=dict)
    red_test: bool = True
    dem: Optional[str] = None
    dem_band: int = 1
    cloud: str = "auto"
    cloud_rasters: Sequence[str] = ()
    resolution: str = "coarsest"
    start: str = ""
    end: str = ""
    max_gap_days: int = 15
    grids: str = "align"
    snow_map_folder: Optional[str] = None
    statistics_csv: Optional[str] = None
    chart_html: Optional[str] = None
    window_rows: Optional[int] = None


def season_request(choice: SeasonChoice) -> Tuple[SnowSeriesRequest, List[str]]:
    """(the :class:`~topoclear.engine.snow.series.SnowSeriesRequest`, notes for the run's log)."""
    images = [str(p) for p in choice.images if p]
    if not images:
        raise InputError("Choose the Sentinel-2 images of the season (one per date)")
    notes: List[str] = []
    params = snow_parameters(choice.method, choice.values, choice.red_test)
    method = mask_method(choice.cloud, "snow")
    rasters = [r for r in choice.cloud_rasters if r]
    if rasters and not method.uses_raster:
        notes.append(f"Cloud mask rasters were given but the cloud mask chosen is '{method.title}': they are not used.")
        rasters = []
    if rasters and len(rasters) != len(images):
        raise InputError(f"Cloud masks: {len(rasters)} raster(s) for {len(images)} image(s): give one per image, in "
                         "the order of the images, or none")
    if method.key == "raster" and not rasters:
        raise InputError(f"Cloud mask: '{method.title}' was chosen but no rasters were given: give one per image, "
                         "or choose another cloud mask option")
    dem = choice.dem or None
    if dem and params.method != "lis":
        notes.append("The single-threshold method does not use the DEM.")
        dem = None
    dates = parse_date_list(choice.dates, len(images), "Dates")
    scenes = [SeriesScene(image=Sentinel2Input(path, resolution=choice.resolution), date=dates[i],
                          cloud=CloudInput(method.key, rasters[i]) if rasters else None)
              for i, path in enumerate(images)]
    request = SnowSeriesRequest(
        scenes, choice.output, params, dem=dem, dem_band=choice.dem_band or 1, cloud=CloudInput(method.key),
        start=parse_date(choice.start, "Start date") if str(choice.start or "").strip() else None,
        end=parse_date(choice.end, "End date") if str(choice.end or "").strip() else None,
        max_gap_days=int(choice.max_gap_days), grids=choice.grids, snow_map_folder=choice.snow_map_folder or None,
        statistics_csv=choice.statistics_csv or None, chart_html=choice.chart_html or None,
        window_rows=choice.window_rows)
    return request.validate(), notes

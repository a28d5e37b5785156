"""Cloud removal as a user chooses it: the choices the removeclouds algorithm and the Cloud removal dock
offer, and :class:`CloudChoices`, the one adapter from what was chosen to a
:class:`~topoclear.engine.clouds.request.CloudRemovalRequest`.

Methods come from the one catalogue of single-image cloud removal
(:func:`topoclear.engine.clouds.methods.catalogue.removal_methods`: automatic, the fill, the
networks of :func:`topoclear.models.registry.removal_models`), cloud-mask methods from
:mod:`topoclear.engine.clouds.masks.kinds`; the other choices are defined here once.
Layers are turned into their files by :func:`~topoclear.qgis_common.layers.file_behind_layer`.
Errors are :class:`ChoiceError`, naming the parameter at fault. No ``qgis`` import is needed here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..engine.errors import InputError
from ..engine.clouds.masks.kinds import MaskMethod, mask_method, mask_methods
from ..engine.clouds.methods.fill import DEFAULT_DISTANCE, DEFAULT_SMOOTHING, FillParameters
from ..engine.clouds.request import CloudRemovalRequest, InferenceOptions
from ..engine.clouds.writer import parse_creation_options
from .layers import LayerError, file_behind_layer


class ChoiceError(InputError):
    """A choice that cannot make a run; ``parameter`` names it (a removeclouds parameter name)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Choice:
    """One entry of a menu: the value the engine takes, the label a user reads, a longer explanation."""

    key: Any
    label: str
    tooltip: str = ""


# --------------------------------------------------------------------------------------------
# what the tools offer
# --------------------------------------------------------------------------------------------
COVERAGE_CHOICES = (
    Choice("refuse", "Refuse (they must cover the whole scene)"),
    Choice("fill", "Fill the uncovered part with neutral values"),
)
S1_UNIT_CHOICES = (Choice("auto", "Automatic (from the values)"), Choice("db", "dB"),
                   Choice("linear", "Linear sigma0"))
BLEND_CHOICES = (
    Choice(None, "Automatic (as the network allows)"),
    Choice("blend", "Blend overlaps with cosine ramps"),
    Choice("crop", "Crop tile margins (keep each tile's centre)"),
)
AMP_CHOICES = (Choice("auto", "Automatic (float16 on CUDA if as accurate)"),
               Choice("off", "Off (float32)"), Choice("on", "On (CUDA float16)"))


def model_choices(has_s1: Optional[bool] = None, has_dem: Optional[bool] = None) -> List[Choice]:
    """The methods single-image cloud removal offers (automatic, the fill, the networks), in menu order; with
    ``has_s1`` / ``has_dem`` given, only those that can run on such inputs (terrain models need a DEM, models
    without an optical-only variant need Sentinel-1)."""
    from ..engine.clouds.methods.catalogue import removal_methods

    return [Choice(m.key, m.title, m.description) for m in removal_methods(has_s1, has_dem)]


def method_inputs(model: Optional[str], series: bool = False) -> Dict[str, bool]:
    """Which auxiliary inputs a method reads, from the catalogue: ``{"s1": ..., "dem": ...}``. A network reads
    what its spec takes; the classic methods read neither; automatic reads what any method it may choose reads.
    ``series``: ``model`` is a multi-temporal method (:mod:`topoclear.engine.clouds.timeseries_methods`)."""
    from ..models.registry import get_spec

    if series:
        from ..engine.clouds.timeseries_methods import AUTOMATIC, SERIES_METHODS, series_method

        chosen = series_method(model)
        specs = [get_spec(m.network) for m in (SERIES_METHODS if chosen is AUTOMATIC else (chosen,)) if m.network]
    else:
        from ..engine.clouds.methods.catalogue import get_method, removal_methods

        chosen = get_method(model)
        methods = removal_methods() if chosen.kind == "automatic" else [chosen]
        specs = [m.spec for m in methods if m.kind == "network"]
    return {"s1": any(s.needs_s1 for s in specs), "dem": any(s.needs_terrain for s in specs)}


def _needs(method) -> str:
    from ..engine.clouds.weights import describe_needs

    if method.kind != "network":
        return "Sentinel-2 and a cloud mask" + (" (and whatever the chosen method reads)"
                                                 if method.kind == "automatic" else "")
    try:
        return describe_needs(method.key)
    except InputError:  # an unreadable model card: the spec's own bands
        return method.spec.describe_needs()


def model_help() -> str:
    """An HTML list of the methods and what each needs (the bands of a network's shipped weights)."""
    from ..engine.clouds.methods.catalogue import removal_methods

    items = [f"<li><b>{m.title}</b> ({m.key}): needs {_needs(m)}</li>" for m in removal_methods()]
    return "<ul>" + "".join(items) + "</ul>"


def automatic_info(has_s1: bool, has_dem: bool) -> str:
    """What automatic will run for these inputs, and why (the held-out scores), for the dock."""
    from ..engine.clouds.methods.selection import choose_automatic

    try:
        choice = choose_automatic(has_s1, has_dem)
    except InputError as exc:
        return f"The shipped cards cannot be read: {exc}"
    fill = choice.candidates[0] if choice.candidates else None
    chosen = next((c for c in choice.candidates if c.weights == choice.weights and c.method == choice.method), None)
    if fill is None or chosen is None or fill.mask_psnr is None:
        return " ".join(choice.notes)
    if chosen is fill:
        return (f"Automatic runs the fill from the surroundings: no shipped network beats it inside the cloud mask "
                f"on the held-out pairs for these inputs ({fill.mask_psnr:.2f} dB, {fill.pairs} pairs). The log "
                "lists every score.")
    return (f"Automatic runs {chosen.title}: {chosen.mask_psnr - fill.mask_psnr:+.2f} dB over the fill inside the "
            f"cloud mask on {fill.pairs} held-out pairs ({chosen.mask_psnr:.2f} against {fill.mask_psnr:.2f} dB). "
            "The log lists every score.")


def model_info(model: str, has_s1: bool, has_dem: bool = False) -> str:
    """What the chosen method needs and what will run, for the dock."""
    from ..engine.clouds.methods.catalogue import get_method
    from ..engine.clouds.weights import describe_needs, shipped_weights
    from ..models.registry import get_spec

    method = get_method(model)
    if method.kind == "automatic":
        return automatic_info(has_s1, has_dem)
    if method.kind == "classic":
        return f"Needs: {_needs(method)}. {method.description}"
    spec = get_spec(model)
    try:
        text = f"Needs: {describe_needs(model)}."
        shipped = shipped_weights(model, has_s1 or not spec.needs_s1)
    except InputError as exc:  # an unreadable model card
        return f"Needs: {spec.describe_needs()}. The shipped weights cannot be read: {exc}"
    if spec.needs_s1 and spec.needs_s2 and not has_s1:
        text += " No Sentinel-1 layer: the optical-only variant (trained without SAR) will run."
    if shipped:
        return text + " Shipped weights: " + os.path.basename(shipped)
    return text + " No weights are shipped for it yet: choose a weights file."


def terrain_models() -> str:
    """The short titles of the offered models that need a DEM, for labels: ``"CRT-UNet"``."""
    from ..models.registry import removal_models

    return ", ".join(s.short_title for s in removal_models() if s.needs_terrain)


def mask_choices(consumer: str = "removal") -> List[Choice]:
    """The cloud-mask methods ``consumer`` (``"removal"``, ``"evaluate"``, ``"cloudmask"``) offers, in menu
    order."""
    return [Choice(m.key, m.title, m.description) for m in mask_methods(consumer)]


def mask_reads_raster(key: str, consumer: str = "removal") -> bool:
    """Whether the cloud-mask method ``key`` reads the mask raster the user gives."""
    return any(m.key == key and m.uses_raster for m in mask_methods(consumer))


#: The detector's model level (the cloud mask tool): automatic from the product, or forced.
LEVEL_CHOICES = (
    Choice(None, "Automatic (product metadata or name, SCL band, B10 = Level-1C, 12-band stack = Level-2A)"),
    Choice("l1c", "Level-1C model (top-of-atmosphere reflectance)"),
    Choice("l2a", "Level-2A model (surface reflectance)"),
)


def keys(choices: Sequence[Choice]) -> List[Any]:
    return [c.key for c in choices]


# --------------------------------------------------------------------------------------------
# text parameters
# --------------------------------------------------------------------------------------------
def parse_band_list(text: str, name: str = "BANDS"):
    """``"B2,B3,B4"`` -> overrides {name: (None, index)} in that order of the input's bands (``-`` skips one);
    errors name the parameter ``name``."""
    from ..engine.sentinel2.bands import canonical_band

    overrides = {}
    for index, item in enumerate([t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()], start=1):
        if item in ("-", "_", "x", "skip"):
            continue
        band = canonical_band(item)
        if band is None:
            raise ChoiceError("BANDS", f"{name}: {item!r} is not a Sentinel-2 band name (B1..B12, B8A; use - for a "
                                       "band to ignore)")
        overrides[band] = (None, index)
    return overrides


def parse_s1_bands(text: str, name: str = "S1_BANDS") -> Optional[Dict[str, int]]:
    """``"VV=1,VH=2"`` or ``"1,2"`` (VV, VH) -> {"VV": 1, "VH": 2}; None for an empty text; errors name the
    parameter ``name``."""
    if not text or not str(text).strip():
        return None
    out = {}
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    for k, item in enumerate(items):
        if "=" in item:
            pol, number = item.split("=", 1)
        else:
            pol, number = ("VV", "VH")[k] if k < 2 else "", item
        try:
            out[pol.strip().upper()] = int(number)
        except ValueError:
            raise ChoiceError("S1_BANDS", f"{name}: {item!r} is not POL=number (e.g. VV=1,VH=2)") from None
    return out


# --------------------------------------------------------------------------------------------
# the adapter
# --------------------------------------------------------------------------------------------
@dataclass
class CloudChoices:
    """What a user chose, by removeclouds parameter, as plain values.

    Rasters (``s2``, ``s1``, ``dem``, ``mask``) are map layers or file paths; numbers use the
    parameters' conventions (``tile_size`` 0, ``overlap`` -1, ``batch_size`` 0: the model's
    defaults). ``names`` says how errors name each parameter (default: its removeclouds name;
    the dock passes its own labels).
    """

    s2: Any = None                       # INPUT
    safe: str = ""                       # SAFE
    s1: Any = None                       # S1
    dem: Any = None                      # DEM
    metadata: str = ""                   # METADATA
    mask: Any = None                     # CLOUD_MASK
    mask_method: str = "auto"            # MASK_TYPE
    model: Optional[str] = "auto"        # MODEL
    fill_distance: int = DEFAULT_DISTANCE    # FILL_DISTANCE
    fill_smoothing: int = DEFAULT_SMOOTHING  # FILL_SMOOTHING
    observed: str = ""                   # OBSERVED
    weights: str = ""                    # WEIGHTS
    device: str = "auto"                 # DEVICE
    tile_size: int = 0                   # TILE_SIZE
    overlap: int = -1                    # OVERLAP
    batch_size: int = 0                  # BATCH_SIZE
    keep_clear: bool = True              # KEEP_CLEAR
    coverage: str = "refuse"             # COVERAGE
    bands: str = ""                      # BANDS
    s1_bands: str = ""                   # S1_BANDS
    s1_units: str = "auto"               # S1_UNITS
    dem_band: int = 1                    # DEM_BAND
    blend: Optional[str] = None          # BLEND
    amp: str = "auto"                    # AMP
    output: str = ""                     # OUTPUT
    creation_options: str = ""           # CREATION_OPTIONS
    names: Mapping[str, str] = field(default_factory=dict)

    def _name(self, parameter: str) -> str:
        return self.names.get(parameter, parameter)

    def _error(self, parameter: str, text: str) -> ChoiceError:
        return ChoiceError(parameter, f"{self._name(parameter)}: {text}")

    def _file(self, parameter: str, value) -> Optional[str]:
        if value is None or value == "":
            return None
        if isinstance(value, (str, os.PathLike)):
            return str(value)
        try:
            return file_behind_layer(value, self._name(parameter))
        except LayerError as exc:
            raise ChoiceError(parameter, str(exc)) from None

    def mask_choice(self) -> MaskMethod:
        try:
            return mask_method(self.mask_method, "removal")
        except InputError as exc:
            raise self._error("MASK_TYPE", str(exc)) from None

    def notes(self) -> List[str]:
        """What the run will leave aside of what was chosen, for the log."""
        if self.mask is not None and self.mask != "" and not self.mask_choice().uses_raster:
            return ["A cloud mask raster was given but the cloud mask choice does not use it."]
        return []

    def request(self) -> CloudRemovalRequest:
        """The engine request; :class:`ChoiceError` naming the parameter when a choice cannot run."""
        s2 = self.safe or self._file("INPUT", self.s2)
        if not s2:
            raise self._error("INPUT", "choose a Sentinel-2 layer or a product folder")
        if not self.model:
            raise self._error("MODEL", "no method fits the inputs: add a Sentinel-1 layer or a DEM")
        output = str(self.output or "")
        if not output.lower().endswith((".tif", ".tiff")):
            raise self._error("OUTPUT", f"the cloud-free image is written as GeoTIFF; got {output or 'nothing'}")
        observed = str(self.observed or "")
        if observed and not observed.lower().endswith((".tif", ".tiff")):
            raise self._error("OBSERVED", f"the observed codes are written as GeoTIFF; got {observed}")
        try:
            fill = FillParameters(int(self.fill_distance), int(self.fill_smoothing))
        except InputError as exc:
            raise self._error("FILL_DISTANCE", str(exc)) from None
        method = self.mask_choice()
        mask = self._file("CLOUD_MASK", self.mask) if method.uses_raster else None
        if method.key in ("scl", "raster") and mask is None:
            raise self._error("CLOUD_MASK", f"the cloud mask method '{method.title}' reads a raster: choose it, or "
                                            "another cloud mask method")
        try:
            creation = parse_creation_options(self.creation_options, self._name("CREATION_OPTIONS"))
        except InputError as exc:
            raise ChoiceError("CREATION_OPTIONS", str(exc)) from None
        return CloudRemovalRequest(
            s2=s2, output=output, model=self.model, weights=self.weights or None,
            s1=self._file("S1", self.s1), dem=self._file("DEM", self.dem), mask=mask, mask_kind=method.key,
            metadata=self.metadata or None,
            s2_overrides=parse_band_list(self.bands, self._name("BANDS")) if str(self.bands).strip() else None,
            s1_bands=parse_s1_bands(self.s1_bands, self._name("S1_BANDS")), s1_units=self.s1_units,
            dem_band=int(self.dem_band or 1), options=self.options(), fill=fill, observed=observed or None,
            creation_options=creation or None)

    def options(self) -> InferenceOptions:
        return InferenceOptions(
            tile=self.tile_size or None, overlap=None if self.overlap < 0 else self.overlap, mode=self.blend,
            batch_size=self.batch_size or None, device=(self.device or "auto").strip() or "auto", amp=self.amp,
            keep_clear=bool(self.keep_clear), policy=self.coverage)

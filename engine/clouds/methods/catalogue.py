"""The methods of single-image cloud removal, in one catalogue: automatic, classic and the networks.

A :class:`RemovalMethod` is what a user picks in ``topoclear:removeclouds`` (its ``MODEL`` enum),
in the Cloud removal dock's combo box and what the help lists, all generated from
:func:`removal_methods`:

* ``kind="automatic"``: :data:`AUTOMATIC` (``auto``, the default) runs, for the inputs given, the
  method with the best held-out score recorded in the shipped cards (:mod:`.selection`);
* ``kind="classic"``: methods without weights, registered here with :func:`register_classic`:
  :data:`FILL` (``fill``, GDAL FillNodata inside the mask, :mod:`.fill` / :mod:`.classic`), whose
  card (held-out metrics, no weights) is ``models/weights/fill.json``;
* ``kind="network"``: every model of the network catalogue that whole-scene removal offers
  (:func:`topoclear.models.registry.removal_models`), the key being its registry name.

Menu order: :attr:`RemovalMethod.menu_order` (the networks' from their specs), ties by key. New
classic methods register with a ``menu_order`` (keep the enum indices of existing methods: add
at the end of the order, after the networks, or between automatic and the fill only with care).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ...errors import InputError

__all__ = ["RemovalMethod", "AUTOMATIC", "FILL", "register_classic", "removal_methods", "get_method",
           "method_parameters"]


@dataclass(frozen=True)
class RemovalMethod:
    """One choice of single-image cloud removal.

    ``key``: ``"auto"``, a classic method's key or a network's registry name; ``parameters``:
    names of the method's tunable parameters (the fill's ``distance``, ``smoothing``); ``card``:
    the method card in ``models/weights`` of a classic method (held-out metrics, no weights);
    ``needs_s1`` / ``needs_dem`` / ``optical_variant``: what a network needs (from its spec).
    """

    key: str
    kind: str
    title: str
    description: str
    menu_order: int
    needs_s1: bool = False
    needs_dem: bool = False
    optical_variant: bool = False
    parameters: Tuple[str, ...] = ()
    card: Optional[str] = None

    def runs_with(self, has_s1: bool, has_dem: bool) -> bool:
        """Whether the method can run on a scene with (or without) a Sentinel-1 layer and a DEM."""
        if self.kind != "network":
            return True
        from ....models.registry import get_spec

        return get_spec(self.key).runs_with(has_s1, has_dem)

    @property
    def spec(self):
        """The network's :class:`~topoclear.models.spec.ModelSpec` (None for the other kinds)."""
        if self.kind != "network":
            return None
        from ....models.registry import get_spec

        return get_spec(self.key)


AUTOMATIC = RemovalMethod(
    "auto", "automatic", "Automatic (best held-out score)",
    "For the inputs given (Sentinel-2 only; with Sentinel-1; with a DEM), runs the method whose shipped card records "
    "the best held-out score (mean PSNR inside the cloud mask on real held-out data), the fill included; the log says "
    "which and why.", 0, parameters=("distance", "smoothing"))
FILL = RemovalMethod(
    "fill", "classic", "Fill from the surroundings (GDAL FillNodata)",
    "Fills the cloud / shadow mask from the clear pixels around it (GDAL FillNodata: inverse-distance weighting of "
    "the clear pixels a conic search finds within the search distance, then optional smoothing passes); clear "
    "pixels unchanged. Needs only Sentinel-2 and a cloud mask; robust whatever the inputs, but it cannot see under a "
    "thick cloud.", 1, parameters=("distance", "smoothing"), card="fill.json")

_CLASSIC: Dict[str, RemovalMethod] = {FILL.key: FILL}


def register_classic(method: RemovalMethod, replace: bool = False) -> RemovalMethod:
    """Add a classic method (``kind="classic"``) to the catalogue."""
    if method.kind != "classic":
        raise ValueError(f"method {method.key!r}: only classic methods register here (networks register in "
                         "topoclear.models.registry)")
    if method.key in _CLASSIC and not replace:
        raise ValueError(f"a classic method named {method.key!r} is already registered")
    _CLASSIC[method.key] = method
    return method


def _network(spec) -> RemovalMethod:
    return RemovalMethod(spec.name, "network", spec.title, spec.description, 100 + spec.menu_order,
                         needs_s1=spec.needs_s1, needs_dem=spec.needs_terrain, optical_variant=spec.optical_variant,
                         parameters=("distance", "smoothing") if spec.prior == "fill" else ())


def removal_methods(has_s1: Optional[bool] = None, has_dem: Optional[bool] = None) -> List[RemovalMethod]:
    """Every method, in menu order; with ``has_s1`` / ``has_dem`` given, only those that can run on such inputs."""
    from ....models.registry import removal_models

    methods = [AUTOMATIC, *_CLASSIC.values(), *(_network(s) for s in removal_models())]
    if has_s1 is not None or has_dem is not None:
        methods = [m for m in methods if m.runs_with(bool(has_s1), bool(has_dem))]
    return sorted(methods, key=lambda m: (m.menu_order, m.key))


def get_method(key: Optional[str]) -> RemovalMethod:
    """The method ``key`` (None: automatic); :class:`InputError` naming the choices otherwise."""
    key = key or AUTOMATIC.key
    for method in removal_methods():
        if method.key == key:
            return method
    raise InputError(f"unknown cloud-removal method {key!r}; methods: {', '.join(m.key for m in removal_methods())}")


def method_parameters(key: Optional[str]) -> Tuple[str, ...]:
    """The tunable parameters of a method (the fill's for the fill, the fill-prior networks and automatic)."""
    return get_method(key).parameters

"""The tiling a network runs with when the user leaves it open: from the catalogue's receptive field
and tile sizes of the network's :class:`~topoclear.models.spec.ModelSpec`."""
from __future__ import annotations

from typing import Optional, Tuple

from ...models.spec import ModelSpec, TileDefaults
from ..errors import InputError
from .request import InferenceOptions
from .tiling import round_up

#: Overlap (blended) of networks whose receptive field is not known exactly (the GANs).
DEFAULT_OVERLAP = 128


class TilingError(InputError):
    """A tile size or overlap a network cannot run with; ``option`` names the option at fault
    (``"tile"`` or ``"overlap"`` of :class:`~.request.InferenceOptions`), so that callers can name the
    parameter that set it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def spec_of(model) -> Optional[ModelSpec]:
    """The catalogue entry of a network built by :func:`topoclear.models.build_model`, else None."""
    from ...models.registry import REGISTRY

    return REGISTRY.get(getattr(model, "spec_name", None))


def receptive_radius(model) -> Optional[int]:
    """How far (px) an output pixel's inputs can lie from it, where the catalogue knows it
    (:attr:`ModelSpec.receptive_field`: DSen2-CR ``2 + 2 * blocks``, UNet / CRT-UNet
    ``7 * 2**(L-1) - 5`` for ``L`` levels); None otherwise (the GANs).

    With a dead margin (half the overlap in ``"crop"`` mode) at least this wide, every output
    pixel is computed from real context only and the result does not depend on the tiling.
    """
    spec = spec_of(model)
    return spec.receptive_radius(model) if spec is not None else None


def default_tiling(model, multiple: int, options: InferenceOptions, device_type: str = "cpu") -> Tuple[int, int, str]:
    """(tile, overlap, mode) with the defaults filled in where ``options`` leaves them None.

    Overlap: twice :func:`receptive_radius` (rounded up to the size multiple), cropped, so the
    result is exactly independent of the tiling; for networks without a known radius
    :data:`DEFAULT_OVERLAP`, blended. Tile: the spec's tile size for the device type, at least
    the overlap plus a quarter of it.
    """
    radius = receptive_radius(model)
    spec = spec_of(model)
    tiles = spec.tiles if spec is not None else TileDefaults()
    check_requested_tiling(options, multiple, spec.title if spec is not None else "the network")
    if options.overlap is not None and options.overlap >= 0:
        overlap = int(options.overlap)
    elif radius is not None:
        overlap = round_up(2 * radius, max(multiple, 8))
    else:
        overlap = DEFAULT_OVERLAP
    overlap = round_up(overlap, multiple) if overlap else 0
    tile = options.tile or max(tiles.for_device(device_type), round_up(overlap + max(overlap // 4, 64), multiple))
    mode = options.mode or ("crop" if radius is not None and overlap >= 2 * radius else "blend")
    tile = round_up(tile, multiple)
    if options.tile and tile - overlap < multiple:
        user_overlap = options.overlap is not None and options.overlap >= 0
        whose = (f"the overlap of {options.overlap} px" if user_overlap else
                 f"the default overlap of {overlap} px for {spec.title if spec is not None else 'the network'}")
        rounded = f" (tiles are rounded up to a multiple of {multiple} px)" if multiple > 1 else ""
        raise TilingError("tile", f"a tile size of {options.tile} px is too small: with {whose} a tile must be "
                                  f"at least {overlap + multiple} px{rounded}; choose a larger tile, 0 for the "
                                  "model's default, or a smaller overlap")
    return tile, overlap, mode


def check_requested_tiling(options: InferenceOptions, multiple: int, title: str = "the network") -> None:
    """A :class:`TilingError` naming the value as given when the tile size or overlap of ``options``
    cannot work, whatever the rounding to the size ``multiple``: a negative tile size (None or 0: the
    model's default), an overlap not smaller than the tile (after rounding, tile and overlap must
    differ by at least ``multiple`` px). A negative overlap is the model's default."""
    tile, overlap = options.tile, options.overlap
    if tile is not None and int(tile) < 0:
        raise TilingError("tile", f"a tile size of {tile} px is too small: expected at least 1 px (or 0 for the "
                                  "model's default)")
    if not tile or overlap is None or overlap < 0:
        return
    rounded_tile, rounded_overlap = round_up(tile, multiple), round_up(overlap, multiple) if overlap else 0
    if overlap >= tile or rounded_tile - rounded_overlap < multiple:
        largest = rounded_tile - multiple
        why = ["the overlap must be smaller than the tile size"] if overlap >= tile else []
        if multiple > 1 and largest >= 0:
            why.append(f"{title} takes tiles and overlaps in multiples of {multiple} px, so with tiles of {tile} px "
                       f"the overlap can be at most {largest} px")
        raise TilingError("overlap", f"an overlap of {overlap} px leaves no room in a tile of {tile} px: "
                                     f"{'; '.join(why)}; choose a smaller overlap or a larger tile")

"""The tiling a network runs with when the user leaves it open: from the catalogue's receptive field
and tile sizes of the network's :class:`~topoclear.models.spec.ModelSpec`."""
from __future__ import annotations

from typing import Optional, Tuple

from ...models.spec import ModelSpec, TileDefaults
from .request import InferenceOptions
from .tiling import round_up

#: Overlap (blended) of networks whose receptive field is not known exactly (the GANs).
DEFAULT_OVERLAP = 128


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
    if options.overlap is not None and options.overlap >= 0:
        overlap = int(options.overlap)
    elif radius is not None:
        overlap = round_up(2 * radius, max(multiple, 8))
    else:
        overlap = DEFAULT_OVERLAP
    overlap = round_up(overlap, multiple) if overlap else 0
    tile = options.tile or max(tiles.for_device(device_type), round_up(overlap + max(overlap // 4, 64), multiple))
    mode = options.mode or ("crop" if radius is not None and overlap >= 2 * radius else "blend")
    return round_up(tile, multiple), overlap, mode

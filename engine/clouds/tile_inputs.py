"""The network inputs of tiles: Sentinel-2, Sentinel-1 and terrain read on a tile, padded by
reflection at the scene border and scaled with the network's scaling, batched for the runner;
for networks that start from the fill also the fill (``prior``) and its mask (``mask``)."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from ...models.scaling import scale_s1, scale_s2, scale_terrain
from .inputs import S1Source, TerrainSource
from .scene import S2Scene
from .tiling import take, tile_source


class TileInputs:
    """Everything a tile read needs, shared by the reader threads.

    ``layout`` is the network's :class:`~topoclear.models.spec.InputLayout`; ``needs_s2`` is False
    for networks that read no optical input (their Sentinel-2 bands are only checked for nodata).
    """

    def __init__(self, scene: S2Scene, layout, scaling: str, s1: Optional[S1Source],
                 terrain: Optional[TerrainSource], needs_s2: bool, prior=None) -> None:
        self.scene = scene
        self.prior = prior
        self.layout = layout
        self.scaling = scaling
        self.s1 = s1
        self.terrain = terrain
        self.needs_s2 = needs_s2

    def read_tile(self, tile) -> Tuple[Dict[str, np.ndarray], bool]:
        """Scaled inputs of one tile, and whether it holds any valid Sentinel-2 pixel."""
        scene = self.scene
        window, rows, cols = tile_source(tile.row_off, tile.col_off, tile.height, tile.width, scene.height,
                                         scene.width)
        s2 = scene.read_reflectance(self.layout.s2 if self.needs_s2 else self.layout.output, window)
        valid = np.isfinite(s2).all(axis=0)
        inside = (tile.row_off < scene.height and tile.col_off < scene.width
                  and tile.row_off + tile.height > 0 and tile.col_off + tile.width > 0)
        if not inside or not valid.any():
            return {}, False
        out: Dict[str, np.ndarray] = {}
        if self.needs_s2:
            s2 = np.where(np.isfinite(s2), s2, 0.0).astype(np.float32)
            out["s2"] = scale_s2(take(s2, rows, cols), self.scaling).astype(np.float32)
        if self.s1 is not None:
            s1 = self.s1.read(window)
            out["s1"] = scale_s1(take(s1, rows, cols), self.scaling, bands=self.layout.s1).astype(np.float32)
        if self.prior is not None:
            fill = np.nan_to_num(self.prior.read_prior(self.layout.s2, window))
            out["prior"] = scale_s2(take(fill, rows, cols), self.scaling).astype(np.float32)
            out["mask"] = take(self.prior.read_mask(window)[None].astype(np.float32), rows, cols)
        if self.terrain is not None:
            t = self.terrain.read(window)
            out["terrain"] = scale_terrain(take(t, rows, cols), self.scaling,
                                           bands=self.layout.terrain).astype(np.float32)
        return out, True

    def read_batch(self, tiles) -> Tuple[Optional[Dict[str, np.ndarray]], List[bool]]:
        """The stacked inputs of the tiles holding valid pixels (None when none does), and a flag per tile."""
        items, flags = [], []
        for tile in tiles:
            data, ok = self.read_tile(tile)
            flags.append(ok)
            if ok:
                items.append(data)
        if not items:
            return None, flags
        return {k: np.stack([d[k] for d in items]) for k in items[0]}, flags

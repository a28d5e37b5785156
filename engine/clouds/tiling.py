"""Tile plans and seamless blending for fully convolutional networks run over whole scenes.

A network sees a scene through tiles of ``tile`` x ``tile`` pixels that overlap their neighbours
by ``overlap`` pixels. Each tile's prediction is weighted by a window that is

* **zero** in a *dead margin* along the tile border, where the network's own zero padding
  makes its output unreliable (the prediction there is thrown away, as CNES decloud crops it),
* a **cosine ramp** (``sin^2``) across the middle of the overlap,
* **one** in the tile's interior,

and the output pixel is the weighted mean of every tile covering it. Two neighbouring tiles'
ramps add up to exactly one (``sin^2 + cos^2``), so the weights are a partition of unity:
there are no seams, and wherever a single tile covers a pixel its prediction is kept as is.

Modes (``mode``):

``"blend"`` (default)
    dead margin ``overlap // 4`` on each side, ramp over the remaining middle half of the overlap.
``"crop"``
    dead margin ``overlap // 2``, no ramp: each pixel comes from exactly one tile, the one whose
    centre is nearest (margin cropping). With ``overlap // 2`` at least the network's receptive
    field radius the result is exactly independent of the tiling (DSen2-CR: 34 px).

**Scene edges.** The first tile starts ``pad`` pixels before the scene (``pad`` = dead margin +
ramp, rounded up to ``multiple``), tiles follow at the regular stride ``tile - overlap`` and the
last ends at least ``pad`` pixels after the scene, so every
scene pixel is in some tile's interior. Callers fill the part of a tile outside the scene by
reflecting the scene about its border (:func:`tile_source`, :func:`take`), a function of the
absolute pixel position only, so the padding does not depend on where the tiles fall.

**Size multiples.** Networks with ``n`` 2x poolings need tile sizes that are multiples of
``2**n`` (``ModelSpec.size_multiple``). Tile size and overlap are rounded up to that multiple,
and every tile origin lies on the lattice ``-pad + k * multiple``: the pooling cells of every
tile line up with the same scene grid, whatever the tile size, which is what keeps UNet
results independent of the tiling.

**Bounded memory.** :class:`Blender` accumulates predictions in *cells* (the pieces of the
scene between consecutive dead-margin and ramp boundaries, each covered by a fixed set of
tiles). Tiles must be added in row-major order; as soon as the last tile covering a cell has
been added the cell is complete. The complete cells a tile *owns* (from its own start to its
right/lower neighbour's start) form one rectangle, handed back for writing and freed. At any
time the blender holds about one row of overlap strips (``ramp`` rows x scene width) plus two
tiles' worth of cells, whatever the scene height.

This module needs only numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

MODES = ("blend", "crop")


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    multiple = max(1, int(multiple))
    return int(math.ceil(int(value) / multiple)) * multiple


def weight_profile(size: int, dead: int, ramp: int) -> np.ndarray:
    """1-D window of ``size`` taps: 0 over ``dead`` px at each end, a sin^2 ramp over ``ramp`` px, then 1.

    ``w(x) = sin^2(pi/2 * (d - dead) / ramp)`` with ``d = min(x, size-1-x) + 0.5``, the distance of
    the pixel centre from the nearer tile edge. Two windows offset by ``size - (2 dead + ramp)``
    sum to exactly 1 across their overlap.
    """
    x = np.arange(size, dtype=np.float64)
    d = np.minimum(x, size - 1 - x) + 0.5
    if ramp > 0:
        w = np.sin(0.5 * np.pi * np.clip((d - dead) / ramp, 0.0, 1.0)) ** 2
    else:
        w = np.ones(size)
    w[d < dead] = 0.0
    return w.astype(np.float32)


@dataclass(frozen=True)
class AxisPlan:
    """Tiles along one axis of a scene of ``size`` pixels.

    ``origins`` are the tiles' first pixels in scene coordinates (the first is negative: the
    tile starts in the padding). ``segments`` cut ``[0, size)`` where some tile's weight starts
    or stops being positive; ``contributors[s]`` lists the tiles with positive weight on
    segment ``s``; ``owner[s]`` is the last of them.
    """

    size: int
    tile: int
    dead: int
    ramp: int
    pad: int
    origins: Tuple[int, ...]
    segments: Tuple[Tuple[int, int], ...]
    contributors: Tuple[Tuple[int, ...], ...]

    @property
    def count(self) -> int:
        return len(self.origins)

    @property
    def owner(self) -> Tuple[int, ...]:
        return tuple(max(c) for c in self.contributors)

    def segments_of(self, k: int) -> List[int]:
        """Indices of the segments tile ``k`` contributes to."""
        return [s for s, c in enumerate(self.contributors) if k in c]

    def owned(self, k: int) -> Optional[Tuple[int, int]]:
        """``(start, stop)`` of the scene pixels complete once tile ``k`` is in (None if none)."""
        idx = [s for s, o in enumerate(self.owner) if o == k]
        if not idx:
            return None
        return self.segments[idx[0]][0], self.segments[idx[-1]][1]

    @classmethod
    def build(cls, size: int, tile: int, overlap: int, multiple: int = 1, mode: str = "blend") -> "AxisPlan":
        if mode not in MODES:
            raise ValueError(f"blending mode {mode!r} is not one of {', '.join(MODES)}")
        if size < 1:
            raise ValueError(f"the scene must have at least one pixel along each axis, got {size}")
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        if mode == "crop":
            dead, ramp = overlap // 2, overlap - 2 * (overlap // 2)
        else:
            dead = overlap // 4
            ramp = overlap - 2 * dead
        pad = round_up(dead + ramp, multiple)
        stride = tile - overlap
        if stride < 1:
            raise ValueError(f"tile size {tile} px must be larger than the overlap {overlap} px")
        # tiles at the regular stride until one's interior reaches the scene end (the last one may
        # reach further into the padding; shifting it back would not save a tile)
        origins = [-pad]
        while origins[-1] + tile - pad < size:
            origins.append(origins[-1] + stride)
        # segments: the scene cut wherever a weight becomes positive or falls back to zero
        cuts = {0, size}
        for o in origins:
            for c in (o + dead, o + tile - dead):
                if 0 < c < size:
                    cuts.add(c)
        edges = sorted(cuts)
        segments, contributors = [], []
        for a, b in zip(edges[:-1], edges[1:]):
            tiles = tuple(k for k, o in enumerate(origins) if o + dead <= a and b <= o + tile - dead)
            if not tiles:  # cannot happen with the construction above; guard the invariant
                raise AssertionError(f"scene pixels {a}-{b} are covered by no tile")
            segments.append((a, b))
            contributors.append(tiles)
        return cls(size=size, tile=tile, dead=dead, ramp=ramp, pad=pad, origins=tuple(origins),
                   segments=tuple(segments), contributors=tuple(contributors))

    def useful(self) -> List[int]:
        """Tiles that give weight to at least one scene pixel."""
        used = sorted({k for c in self.contributors for k in c})
        return used


@dataclass(frozen=True)
class Tile:
    """One tile: indices in the plan and its window in scene coordinates (may reach outside the scene)."""

    index: int
    row: int
    col: int
    row_off: int
    col_off: int
    height: int
    width: int


class TilePlan:
    """Tiles covering a ``height`` x ``width`` scene (see the module docstring).

    ``tile`` and ``overlap`` are rounded up to ``multiple``. A scene smaller than a tile gets
    one smaller tile per axis (the scene plus its padding, rounded up to ``multiple``), so tiny
    scenes do not pay for a large tile.
    """

    def __init__(self, height: int, width: int, tile: int, overlap: int = 64, multiple: int = 1,
                 mode: str = "blend") -> None:
        multiple = max(1, int(multiple))
        if tile < 1:
            raise ValueError(f"tile size must be positive, got {tile}")
        self.requested_tile = int(tile)
        tile = round_up(tile, multiple)
        overlap = round_up(overlap, multiple) if overlap > 0 else 0
        if tile - overlap < multiple:
            raise ValueError(f"tile size {tile} px leaves no room beside the overlap of {overlap} px; "
                             f"use a tile of at least {overlap + multiple} px or a smaller overlap")
        self.multiple = multiple
        self.overlap = overlap
        self.mode = mode
        self.height, self.width = int(height), int(width)
        self.rows = self._axis(self.height, tile)
        self.cols = self._axis(self.width, tile)
        self.tile_height, self.tile_width = self.rows.tile, self.cols.tile
        self._row_ids = self.rows.useful()
        self._col_ids = self.cols.useful()
        self._wy = weight_profile(self.rows.tile, self.rows.dead, self.rows.ramp)
        self._wx = weight_profile(self.cols.tile, self.cols.dead, self.cols.ramp)

    def _axis(self, size: int, tile: int) -> AxisPlan:
        plan = AxisPlan.build(size, tile, self.overlap, self.multiple, self.mode)
        small = round_up(size + 2 * plan.pad, self.multiple)
        if small < tile and small - self.overlap >= self.multiple:
            plan = AxisPlan.build(size, small, self.overlap, self.multiple, self.mode)
        return plan

    @property
    def tile_size(self) -> Tuple[int, int]:
        return self.tile_height, self.tile_width

    def __len__(self) -> int:
        return len(self._row_ids) * len(self._col_ids)

    def __iter__(self) -> Iterator[Tile]:
        n = 0
        for i in self._row_ids:
            for j in self._col_ids:
                yield Tile(n, i, j, self.rows.origins[i], self.cols.origins[j], self.tile_height, self.tile_width)
                n += 1

    def weights(self) -> np.ndarray:
        """The 2-D weight window of every tile (tile_height x tile_width, float32)."""
        return np.outer(self._wy, self._wx)

    def describe(self) -> str:
        return (f"{len(self)} tiles of {self.tile_height}x{self.tile_width} px "
                f"({len(self._row_ids)} rows x {len(self._col_ids)} columns), overlap {self.overlap} px, "
                f"{self.mode} (dead margin {self.rows.dead} px, ramp {self.rows.ramp} px)")


def reflect_index(start: int, size: int, n: int) -> np.ndarray:
    """Scene indices of positions ``start .. start+size-1`` along an axis of ``n`` pixels, mirrored at the border.

    Position ``-k`` reads pixel ``k`` and position ``n-1+k`` reads ``n-1-k`` (reflection about the
    border pixel, as ``numpy.pad(mode="reflect")``), repeating with period ``2 (n - 1)`` when the
    padding is wider than the scene. A one-pixel axis repeats its pixel.
    """
    i = np.arange(start, start + size)
    if n <= 1:
        return np.zeros(size, dtype=np.int64)
    period = 2 * (n - 1)
    m = np.mod(i, period)
    return np.where(m < n, m, period - m).astype(np.int64)


def tile_source(row_off: int, col_off: int, height: int, width: int, scene_height: int, scene_width: int
                ) -> Tuple[Tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The scene window to read for a tile (or any window reaching outside the scene).

    Returns ``((row0, col0, rows, cols), row_index, col_index)``: read that window, then
    :func:`take` ``(data, row_index, col_index)`` gives the tile with the part outside the scene
    filled by reflection (:func:`reflect_index`), a function of the absolute position only.
    """
    rows = reflect_index(row_off, height, scene_height)
    cols = reflect_index(col_off, width, scene_width)
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    return (r0, c0, r1 - r0, c1 - c0), rows - r0, cols - c0


def take(data: np.ndarray, row_index: np.ndarray, col_index: np.ndarray) -> np.ndarray:
    """``data[..., row_index, :][..., col_index]`` (a view-free copy; the data itself when nothing moves)."""
    if (row_index.size == data.shape[-2] and col_index.size == data.shape[-1]
            and (row_index == np.arange(row_index.size)).all() and (col_index == np.arange(col_index.size)).all()):
        return data
    return data[..., row_index[:, None], col_index[None, :]]


@dataclass
class _Cell:
    total: np.ndarray  # (C, h, w) weighted sum
    weight: np.ndarray  # (h, w) sum of weights
    waiting: int  # tiles still to come


class Blender:
    """Weighted accumulation of tile predictions into finished scene rectangles (bounded memory).

    >>> plan = TilePlan(1000, 800, tile=256, overlap=64)
    >>> blender = Blender(plan, channels=10)
    >>> for tile in plan:
    ...     for (row0, col0, values) in blender.add(tile, predict(tile)):
    ...         write(values, row0, col0)        # values: (10, h, w), weighted mean

    Tiles must come in the plan's (row-major) order. ``skip`` instead of ``add`` stands for a
    tile whose prediction is irrelevant (all its pixels are nodata): it contributes nothing.
    """

    def __init__(self, plan: TilePlan, channels: int) -> None:
        self.plan = plan
        self.channels = int(channels)
        self._w = plan.weights()
        self._cells: Dict[Tuple[int, int], _Cell] = {}
        rows, cols = plan.rows, plan.cols
        self._row_segs = {i: rows.segments_of(i) for i in set(rows.useful())}
        self._col_segs = {j: cols.segments_of(j) for j in set(cols.useful())}
        self._row_waiting = [len(c) for c in rows.contributors]
        self._col_waiting = [len(c) for c in cols.contributors]
        self.peak_cells_bytes = 0

    def _cell(self, rs: int, cs: int) -> _Cell:
        cell = self._cells.get((rs, cs))
        if cell is None:
            (a, b), (c, d) = self.plan.rows.segments[rs], self.plan.cols.segments[cs]
            cell = _Cell(np.zeros((self.channels, b - a, d - c), np.float32), np.zeros((b - a, d - c), np.float32),
                         self._row_waiting[rs] * self._col_waiting[cs])
            self._cells[(rs, cs)] = cell
        return cell

    def add(self, tile: Tile, prediction: Optional[np.ndarray]) -> List[Tuple[int, int, np.ndarray]]:
        """Add one tile's prediction ``(channels, tile_h, tile_w)`` (None: skip it).

        Returns the rectangles completed by this tile as ``(row0, col0, values)`` with values
        ``(channels, h, w)`` float32, the weighted mean (NaN where no tile had any weight,
        which only happens next to skipped tiles).
        """
        rows, cols = self.plan.rows, self.plan.cols
        if prediction is not None and prediction.shape != (self.channels, tile.height, tile.width):
            raise ValueError(f"prediction of shape {prediction.shape} for a tile of "
                             f"{(self.channels, tile.height, tile.width)}")
        for rs in self._row_segs[tile.row]:
            a, b = rows.segments[rs]
            y0, y1 = a - tile.row_off, b - tile.row_off
            for cs in self._col_segs[tile.col]:
                c, d = cols.segments[cs]
                x0, x1 = c - tile.col_off, d - tile.col_off
                cell = self._cell(rs, cs)
                if prediction is not None:
                    w = self._w[y0:y1, x0:x1]
                    cell.total += prediction[:, y0:y1, x0:x1] * w
                    cell.weight += w
                cell.waiting -= 1
        held = sum(c.total.nbytes + c.weight.nbytes for c in self._cells.values())
        self.peak_cells_bytes = max(self.peak_cells_bytes, held)
        own_r, own_c = rows.owned(tile.row), cols.owned(tile.col)
        if own_r is None or own_c is None:
            return []
        r_ids = [s for s, o in enumerate(rows.owner) if o == tile.row]
        c_ids = [s for s, o in enumerate(cols.owner) if o == tile.col]
        out = np.empty((self.channels, own_r[1] - own_r[0], own_c[1] - own_c[0]), np.float32)
        for rs in r_ids:
            a, b = rows.segments[rs]
            for cs in c_ids:
                c, d = cols.segments[cs]
                cell = self._cells.pop((rs, cs))
                if cell.waiting != 0:
                    raise AssertionError("tiles were not added in the plan's order")
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[:, a - own_r[0]:b - own_r[0], c - own_c[0]:d - own_c[0]] = np.where(
                        cell.weight > 0, cell.total / cell.weight, np.nan)
        return [(own_r[0], own_c[0], out)]

    @property
    def pending(self) -> int:
        """Cells still waiting for tiles (0 once every tile was added)."""
        return len(self._cells)

"""Tile plans and blending: coverage, partition of unity, size multiples, bounded memory (numpy only)."""
from __future__ import annotations

import numpy as np
import pytest

from topoclear.engine.clouds.tiling import Blender, TilePlan, reflect_index, round_up, take, tile_source, weight_profile


def blend_positions(plan: TilePlan):
    """Blend predictions that are the absolute (row, col) of each pixel; returns output and write counts."""
    blender = Blender(plan, 2)
    out = np.full((2, plan.height, plan.width), np.nan, np.float64)
    writes = np.zeros((plan.height, plan.width), int)
    for tile in plan:
        rows, cols = np.mgrid[tile.row_off:tile.row_off + tile.height, tile.col_off:tile.col_off + tile.width]
        prediction = np.stack([rows, cols]).astype(np.float32)
        for row0, col0, values in blender.add(tile, prediction):
            h, w = values.shape[1:]
            out[:, row0:row0 + h, col0:col0 + w] = values
            writes[row0:row0 + h, col0:col0 + w] += 1
    assert blender.pending == 0
    return out, writes, blender


@pytest.mark.parametrize("height,width,tile,overlap,multiple,mode", [
    (300, 200, 64, 16, 1, "blend"), (300, 200, 96, 64, 32, "blend"), (1000, 777, 256, 64, 32, "crop"),
    (5, 3, 64, 16, 8, "blend"), (200, 300, 128, 32, 32, "blend"), (97, 131, 40, 24, 8, "crop"),
    (256, 256, 256, 0, 1, "blend"), (1, 500, 64, 32, 1, "blend"),
])
def test_every_pixel_written_once_with_weights_summing_to_one(height, width, tile, overlap, multiple, mode):
    plan = TilePlan(height, width, tile, overlap, multiple, mode)
    out, writes, _ = blend_positions(plan)
    assert (writes == 1).all()  # each pixel belongs to exactly one finished rectangle
    rows, cols = np.mgrid[0:height, 0:width]
    # a weighted mean of identical values gives the value back: the weights are normalised everywhere
    assert np.abs(out[0] - rows).max() < 1e-3 and np.abs(out[1] - cols).max() < 1e-3
    # tiles and overlaps are multiples of the size multiple; origins on the -pad + k * multiple lattice
    assert plan.tile_height % multiple == 0 and plan.tile_width % multiple == 0 and plan.overlap % multiple == 0
    for tile_ in plan:
        assert (tile_.row_off + plan.rows.pad) % multiple == 0 and (tile_.col_off + plan.cols.pad) % multiple == 0


def test_cosine_ramps_are_a_partition_of_unity():
    tile, overlap = 128, 64
    for mode in ("blend", "crop"):
        plan = TilePlan(1000, 1000, tile, overlap, 1, mode)
        w = weight_profile(tile, plan.rows.dead, plan.rows.ramp).astype(np.float64)
        stride = tile - overlap
        total = np.zeros(tile + 4 * stride)
        for k in range(5):
            total[k * stride:k * stride + tile] += w
        inner = total[tile:4 * stride]  # where the tiles follow each other at the regular stride
        assert np.abs(inner - 1).max() < 1e-6
    # blend: zero weight in the dead margin, then a smooth ramp; crop: a step at half the overlap
    w = weight_profile(128, 16, 32)
    assert (w[:16] == 0).all() and (np.diff(w[:64]) >= 0).all() and 0 < w[16] < w[47] < 1 and (w[48:80] == 1).all()
    assert (weight_profile(128, 32, 0)[:32] == 0).all() and (weight_profile(128, 32, 0)[32:96] == 1).all()


def test_scene_edges_are_padded_and_small_scenes_get_one_small_tile():
    plan = TilePlan(200, 300, 512, 64, 32, "blend")
    # one tile: the scene plus its padding on both sides, rounded up to the multiple (200 + 2 x 64 -> 352)
    assert len(plan) == 1 and plan.tile_size == (352, 448)
    tile = next(iter(plan))
    assert tile.row_off == -plan.rows.pad and tile.col_off == -plan.cols.pad
    assert tile.row_off + tile.height >= 200 + plan.rows.dead and tile.col_off + tile.width >= 300 + plan.cols.dead


def test_tile_source_reflects_about_the_scene_border():
    plan = TilePlan(50, 40, 32, 16, 8, "blend")
    scene = np.arange(50 * 40, dtype=np.float32).reshape(1, 50, 40)
    for tile in plan:
        (r0, c0, h, w), rows, cols = tile_source(tile.row_off, tile.col_off, tile.height, tile.width, 50, 40)
        assert 0 <= r0 and r0 + h <= 50 and 0 <= c0 and c0 + w <= 40 and h <= tile.height
        data = take(scene[:, r0:r0 + h, c0:c0 + w], rows, cols)
        assert data.shape == (1, tile.height, tile.width)
        # the reflection of the scene about its border pixels: a function of absolute position only
        ar = np.abs(np.arange(tile.row_off, tile.row_off + tile.height))
        ar = np.where(ar > 49, 98 - ar, ar)
        ac = np.abs(np.arange(tile.col_off, tile.col_off + tile.width))
        ac = np.where(ac > 39, 78 - ac, ac)
        assert np.array_equal(data[0], scene[0][np.ix_(ar, ac)])
    # padding wider than the scene reflects back and forth; one-pixel axes repeat
    assert reflect_index(-5, 12, 3).tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]
    assert reflect_index(-2, 4, 1).tolist() == [0, 0, 0, 0]


def test_errors():
    with pytest.raises(ValueError, match="larger than the overlap|no room"):
        TilePlan(100, 100, 64, 64, 1)
    with pytest.raises(ValueError, match="blending mode"):
        TilePlan(100, 100, 64, 16, 1, mode="median")
    plan = TilePlan(100, 100, 64, 16, 1)
    blender = Blender(plan, 3)
    with pytest.raises(ValueError, match="prediction of shape"):
        blender.add(next(iter(plan)), np.zeros((2, 64, 64), np.float32))
    assert round_up(33, 32) == 64 and round_up(0, 32) == 0


def test_blender_memory_does_not_grow_with_scene_height():
    peaks = {}
    for height in (1024, 4096):
        plan = TilePlan(height, 1024, 256, 64, 32, "blend")
        blender = Blender(plan, 10)
        for tile in plan:
            for _ in blender.add(tile, np.ones((10, tile.height, tile.width), np.float32)):
                pass
        peaks[height] = blender.peak_cells_bytes
    assert peaks[4096] == peaks[1024]
    # the held cells: about one overlap strip across the width plus two tiles, far below the scene
    assert peaks[4096] < 0.1 * 10 * 4 * 4096 * 1024

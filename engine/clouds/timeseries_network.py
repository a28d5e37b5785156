"""CA-MTCR over whole scenes: the network's pass of a multi-temporal cloud removal (:mod:`.timeseries`).

The time-series fill has already written every band of the target (:mod:`.timeseries`, step 3).
This pass runs the network over the scene in overlapping tiles with the tiling and blending of
single-image removal (:class:`~.tiling.TilePlan`, :class:`~.tiling.Blender`: ``blend`` mode, tiles
of ``inference.tile`` px, 256 by default as in the paper, multiples of 4; the part of a tile
outside the scene filled by reflection). Each tile stacks every other date (sorted by date) and
the target last, each scaled to [0, 1] (``"unit"``: reflectance clipped; Sentinel-1 dB clipped
to [-25, 0]), with every date's cloud mask (nodata counts as cloudy). The blended prediction
replaces the target's cloudy pixels in the bands the network predicts; the other bands (e.g.
the 60 m B1, B9, B10 of a 13-band stack, which the shipped weights do not predict) keep the
time-series fill. Clear pixels are never changed.

The network attends over the whole tile (global self-attention): tiles see different context,
so, unlike the time-series fill, the result changes slightly with the tile size; the blending
hides the tile borders.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np
from rasterio.windows import Window

from ..errors import InputError
from ..io.atomic import AtomicRasterWriter
from ..io.raster import bounded_gdal_cache, open_raster
from ..progress import Monitor
from .tiling import Blender, TilePlan, take, tile_source
from .timeseries_fill import SOURCE_NETWORK, SOURCE_NODATA

__all__ = ["SeriesNetwork", "open_network", "network_title"]


def network_title(network: "SeriesNetwork") -> str:
    return network.title


def open_network(choice, request, target, sources, s1: Dict[str, str], log) -> "SeriesNetwork":
    """The CA-MTCR network of a run: the weights given, else the shipped ones for the inputs."""
    from .. import checkpoints
    from .timeseries_methods import series_cards

    path = choice.weights or request.weights
    if not path:
        cards = series_cards(bool(s1)) or (series_cards(False) if s1 else [])
        if not cards:
            raise InputError("no CA-MTCR weights are shipped for these inputs (models/weights); give a weights file "
                             "(.safetensors with its .json model card) or choose the time-series fill")
        path = cards[0][0]
    model, card = checkpoints.load_model(path, expect_model="ca_mtcr")
    layout = model.input_layout
    missing = [b for b in layout.s2 if b not in target.bands]
    if missing:
        raise InputError(f"the CA-MTCR weights {os.path.basename(path)} read the bands {', '.join(layout.s2)}; the "
                         f"target lacks {', '.join(missing)}")
    uses_s1 = "s1" in layout.inputs
    if uses_s1:
        dated = [target.dated] + [s.dated for s in sources]
        lacking = [d.label for d in dated if d.path not in s1]
        if lacking:
            raise InputError(f"the CA-MTCR weights {os.path.basename(path)} need a Sentinel-1 layer for every date; "
                             f"none matches {', '.join(lacking)}")
    elif s1:
        log.say(f"Sentinel-1: the weights {os.path.basename(path)} are the optical-only variant (trained without "
                "SAR): the Sentinel-1 layers are not used")
    else:
        log.say("No Sentinel-1: CA-MTCR runs as its optical-only variant (change maps from the optical features of "
                "the clear pixels)")
    other = [b for b in target.bands if b not in layout.output]
    log.say(f"CA-MTCR: {os.path.basename(path)} ({card['architecture'].get('parameters', 0):,} parameters), predicts "
            f"{', '.join(layout.output)}" + (f"; {', '.join(other)} keep the time-series fill" if other else ""))
    return SeriesNetwork(model, path, card, request, target, sources, s1 if uses_s1 else {}, log)


class SeriesNetwork:
    """The network, its inputs and how it runs over the scene."""

    def __init__(self, model, path: str, card: dict, request, target, sources, s1: Dict[str, str], log) -> None:
        from .device import select_device

        self.model = model
        self.path = path
        self.card = card
        self.title = "CA-MTCR (" + ("S2 + S1" if s1 else "optical-only") + ")"
        self.target = target
        self.sources = sorted(sources, key=lambda s: s.dated.date)
        self.layout = model.input_layout
        self.log = log
        opts = request.inference
        self.device, self.device_name = select_device(opts.device)
        self.model = model.to(self.device).eval()
        multiple = 4
        self.tile = int(opts.tile or 256)
        self.overlap = int(opts.overlap if opts.overlap is not None else 64)
        self.multiple = multiple
        self.band_index = [target.bands.index(b) for b in self.layout.s2]
        self.out_index = [target.bands.index(b) for b in self.layout.output]
        self.s1 = {}
        if s1:
            from .inputs import S1Source

            for dated in [target.dated] + [s.dated for s in sources]:
                self.s1[dated.path] = S1Source(s1[dated.path], target.scene.grid, self.layout.s1, policy="fill")
        log.say(f"CA-MTCR on {self.device_name}; tiles of {self.tile} px, overlap {self.overlap} px (blend)")

    # -- inputs --------------------------------------------------------------------------------
    def _tile_inputs(self, tile) -> Optional[Dict[str, np.ndarray]]:
        from ...models.scaling import scale_s1

        scene = self.target.scene
        window, rows, cols = tile_source(tile.row_off, tile.col_off, tile.height, tile.width, scene.height,
                                         scene.width)
        refl, _, valid, cloud = self.target.read(window)
        if not valid.all(axis=0).any():
            return None
        s2, masks, s1 = [], [], []
        dates = [(src, src.read(window)) for src in self.sources]
        for src, (img, m) in dates:
            sub = img[self.band_index]
            masks.append(m | ~np.isfinite(sub).all(axis=0))
            s2.append(sub)
            if self.s1:
                s1.append(self.s1[src.dated.path].read(window))
        sub = refl[self.band_index]
        s2.append(sub)
        masks.append(cloud | ~np.isfinite(sub).all(axis=0))
        if self.s1:
            s1.append(self.s1[self.target.dated.path].read(window))
        x = np.clip(np.nan_to_num(np.stack(s2), nan=0.0), 0.0, 1.0).astype(np.float32)
        m = np.stack(masks)[:, None].astype(np.float32)
        out = {"s2": take(x, rows, cols)[None], "mask": take(m, rows, cols)[None]}
        if self.s1:
            out["s1"] = scale_s1(take(np.stack(s1), rows, cols), "unit", bands=self.layout.s1)[None].astype(np.float32)
        return out

    def _predict(self, inputs: Dict[str, np.ndarray]) -> np.ndarray:
        import torch

        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(tensors["s2"], tensors.get("s1"), tensors["mask"])
        return out[0].float().cpu().numpy()

    # -- the pass ------------------------------------------------------------------------------
    def run(self, fill_path: str, fill_source: str, output: str, source_output: Optional[str], legend, counts,
            monitor: Monitor) -> dict:
        scene = self.target.scene
        plan = TilePlan(scene.height, scene.width, self.tile, self.overlap, self.multiple, "blend")
        blender = Blender(plan, len(self.layout.output))
        self.log.say(f"CA-MTCR tiling: {plan.describe()}")
        from .timeseries_outputs import SourceWriter

        with open_raster(fill_path, "time-series fill") as fill_ds:
            descriptions = list(fill_ds.descriptions)
            for k in self.out_index:
                descriptions[k] = f"{self.target.bands[k]}, cloud removed ({self.title}, {len(self.sources) + 1} dates)"
            src_ds = open_raster(fill_source, "time-series fill source") if os.path.exists(fill_source) else None
            try:
                with bounded_gdal_cache(), AtomicRasterWriter(output, scene.grid, len(self.target.bands), scene.dtype,
                                                              scene.declared_nodata, descriptions) as dst, \
                        SourceWriter(source_output, scene.grid, legend) as sdst:
                    tiles = list(plan)
                    for n, tile in enumerate(tiles):
                        monitor.check()
                        inputs = self._tile_inputs(tile)
                        prediction = self._predict(inputs) if inputs is not None else None
                        for row0, col0, values in blender.add(tile, prediction):
                            self._write(row0, col0, values, fill_ds, src_ds, dst, sdst, counts)
                        monitor.progress(100.0 * (n + 1) / len(tiles))
                    dst.update_tags(TOPOCLEAR_METHOD="ca_mtcr", TOPOCLEAR_WEIGHTS=os.path.basename(self.path),
                                    TOPOCLEAR_TARGET_DATE=str(self.target.dated.date),
                                    TOPOCLEAR_DATES=";".join(str(s.dated.date) for s in self.sources))
            finally:
                if src_ds is not None:
                    src_ds.close()
        for src in self.s1.values():
            src.close()
        return {"weights": self.path, "tiles": len(plan), "tile": self.tile, "overlap": self.overlap,
                "device": self.device_name}

    def _write(self, row0: int, col0: int, values: np.ndarray, fill_ds, src_ds, dst, sdst, counts) -> None:
        rows, cols = values.shape[1:]
        win = Window(col0, row0, cols, rows)
        window = (row0, col0, rows, cols)
        out = fill_ds.read(window=win)
        _, raw, valid, cloud = self.target.read(window)
        replace = cloud & valid.all(axis=0) & np.isfinite(values).all(axis=0)
        refl = np.full((len(self.target.bands), rows, cols), np.nan, np.float32)
        refl[self.out_index] = np.clip(values, 0.0, 1.0)
        converted = self.target.to_output(refl, raw, valid, replace)
        for k in self.out_index:
            out[k] = np.where(replace, converted[k], out[k])
        dst.write(out, window=win)
        counts.network += int(replace.sum())
        if sdst is not None:
            code = src_ds.read(1, window=win) if src_ds is not None else np.full((rows, cols), SOURCE_NODATA, np.uint8)
            code = np.where(replace, SOURCE_NETWORK, code).astype(np.uint8)
            sdst.write(code[None], window=win)

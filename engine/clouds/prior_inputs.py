"""The first pass of the networks that start from the fill, read back by the second.

Whole-scene removal with a network whose spec has ``prior="fill"`` first fills the scene
(:func:`~topoclear.engine.clouds.methods.classic.fill_scene`) into a temporary image and a
temporary observed-codes raster beside the output; :class:`PriorSource` then reads, on the
network's tiles, the fill of the network's bands (reflectance x 10000, as the scene reads its
own), the mask the fill used (codes 2 and 5) and the codes, and gives the output writer the
filled image as the base of the bands the network does not predict. The temporary files are
removed when the run ends, whatever happens.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from rasterio.windows import Window

from ..io.raster import ThreadLocalDatasets
from .observed import FILLED_NEIGHBOURHOOD, NO_INFORMATION
from .scene import S2Scene, WindowTuple

__all__ = ["PriorSource"]


def _window(window: WindowTuple) -> Window:
    return Window(window[1], window[0], window[3], window[2])


class PriorSource:
    """The fill (``fill_path``, the scene's output layout) and its codes (``codes_path``) on windows."""

    def __init__(self, scene: S2Scene, fill_path: str, codes_path: str) -> None:
        self.scene = scene
        self.fill_path = str(fill_path)
        self.codes_path = str(codes_path)
        self._datasets = ThreadLocalDatasets("fill of the first pass")

    def read_prior(self, names: Sequence[str], window: WindowTuple) -> np.ndarray:
        """(len(names), rows, cols) float32 reflectance x 10000 of the fill (offsets applied)."""
        ds = self._datasets.get(self.fill_path)
        scene = self.scene
        index = [scene.output_names.index(n) + 1 for n in names]
        raw = ds.read(index, window=_window(window)).astype(np.float32)
        out = np.empty(raw.shape, np.float32)
        for k, name in enumerate(names):
            src = scene.bands[name]
            out[k] = (raw[k] + np.float32(src.offset)) * np.float32(10000.0 / src.quantification)
        return out

    def read_codes(self, window: WindowTuple) -> np.ndarray:
        """(rows, cols) uint8 observed codes of the fill."""
        return self._datasets.get(self.codes_path).read(1, window=_window(window))

    def read_mask(self, window: WindowTuple) -> np.ndarray:
        """(rows, cols) True where the fill filled (the mask it used)."""
        codes = self.read_codes(window)
        return (codes == FILLED_NEIGHBOURHOOD) | (codes == NO_INFORMATION)

    read = read_mask  # the mask-source interface of the output writer

    def read_output_raw(self, window: WindowTuple) -> Tuple[np.ndarray, np.ndarray]:
        """The filled image's values of every output band, and the input's validity (as the scene's)."""
        raw, valid = self.scene.read_output_raw(window)
        filled = self._datasets.get(self.fill_path).read(window=_window(window)).astype(raw.dtype, copy=False)
        return filled, valid

    def close(self) -> None:
        self._datasets.close()

"""Turning predictions into the output: reflectance back to the input's digital numbers, clear pixels
kept, nodata written where the input has none, band descriptions, one rectangle at a time; and the
observed codes of each rectangle (:mod:`.observed`) into the companion raster."""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import numpy as np
from rasterio.windows import Window

from ...models.scaling import unscale_s2
from ..errors import InputError
from ..io.raster import DEFAULT_CREATION_OPTIONS, declared_nodata
from .inputs import MaskSource
from .observed import ObservedCounts, single_image_codes
from .report import TileStats
from .scene import S2Scene


def to_output_dtype(values: np.ndarray, dtype: str, fill_value) -> np.ndarray:
    """``values`` (float DN) in the output data type: integers rounded and clipped, never equal to the
    nodata value ``fill_value`` (a prediction must not read as nodata); NaN only where nodata is written."""
    dt = np.dtype(dtype)
    if dt.kind not in "iu":
        return values.astype(dt)
    info = np.iinfo(dt)
    values = np.where(np.isfinite(values), values, 0.0)
    out = np.clip(np.rint(values), info.min, info.max).astype(dt)
    if declared_nodata(fill_value) is not None:
        nod = np.asarray(fill_value).astype(dt)
        clash = out == nod
        if clash.any():
            out[clash] = nod + 1 if nod < info.max else nod - 1
    return out


def default_compression(dtype: str) -> Dict[str, str]:
    """DEFLATE with the predictor that suits ``dtype``: horizontal differencing (2) for integers, the
    floating-point predictor (3) for floats."""
    kind = np.dtype(dtype).kind
    return {"COMPRESS": "DEFLATE", "ZLEVEL": "6", "PREDICTOR": "3" if kind == "f" else "2"}


def parse_creation_options(text: str, name: str = "CREATION_OPTIONS") -> Dict[str, str]:
    """``"COMPRESS=DEFLATE|PREDICTOR=2"`` (GDAL GTiff creation options separated by ``|``, as QGIS writes
    them; spaces, commas and semicolons also separate) -> {"COMPRESS": "DEFLATE", "PREDICTOR": "2"};
    an error naming ``name`` for an item that is not KEY=VALUE."""
    options: Dict[str, str] = {}
    for item in (t.strip() for t in str(text or "").replace(";", "|").replace(",", "|").replace(" ", "|").split("|")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{name}: {item!r} is not KEY=VALUE (GDAL GeoTIFF creation options separated by |, "
                             "e.g. COMPRESS=DEFLATE|PREDICTOR=2|ZLEVEL=9)")
        options[key.strip().upper()] = value.strip()
    return options


def output_options(dtype: str, given: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The GeoTIFF creation options of a cloud-removal output of ``dtype``: tiled 512 x 512 (BigTIFF when
    needed) and DEFLATE-compressed with the predictor of the type (:func:`default_compression`), or, when
    ``given``, the tiling with the options given (a given COMPRESS replaces the default compression;
    ``COMPRESS=NONE`` writes uncompressed)."""
    options = dict(DEFAULT_CREATION_OPTIONS)
    given = {str(k).upper(): str(v) for k, v in (given or {}).items()}
    if "COMPRESS" not in given:
        options.update(default_compression(dtype))
    options.update(given)
    if options.get("COMPRESS", "").upper() == "NONE":
        for key in ("COMPRESS", "PREDICTOR", "ZLEVEL"):
            options.pop(key, None)
    return options


def band_descriptions(scene: S2Scene, layout, spec_name: str, from_fill: bool = False) -> List[str]:
    """One description per output band: predicted by ``spec_name``, or copied from the input (``from_fill``:
    from the fill, for the networks that start from it). Short: QGIS's band menus are as wide as they are."""
    predicted = set(layout.output)
    out = []
    for i, name in enumerate(scene.output_names):
        if name in predicted:
            out.append(f"{name}, cloud removed ({spec_name})")
        else:
            original = scene.input_descriptions[i] if i < len(scene.input_descriptions) else None
            label = original or name
            out.append(f"{label}, {'filled (not predicted)' if from_fill else 'copied from the input'}")
    return out


class OutputWriter:
    """Writes blended predictions (the network's scaling) into ``dst`` and counts pixels in ``stats``.

    Bands the network predicts are converted back to the input's digital numbers; the others are
    copied from the input. With ``keep_clear`` and a mask, pixels the mask calls clear are copied
    too. Pixels invalid in the input (or not predicted) get the scene's fill value.
    """

    def __init__(self, scene: S2Scene, layout, scaling: str, mask_source: Optional[MaskSource], keep_clear: bool,
                 dst, stats: TileStats, observed=None, coder=None, base=None) -> None:
        """``observed``: the dataset of the observed codes (None: not written); ``coder(window, valid,
        cloud) -> codes`` computes them (:func:`~.observed.single_image_codes` without one); ``base``: where
        bands the network does not predict come from (default the scene; the fill for fill-prior networks)."""
        self.scene = scene
        self.observed = observed
        self.coder = coder
        self.base = base if base is not None else scene
        self.counts = ObservedCounts()
        self.scaling = scaling
        self.mask_source = mask_source
        self.keep_clear = keep_clear
        self.dst = dst
        self.stats = stats
        self.out_index = [scene.output_names.index(b) for b in layout.output]
        checked = layout.s2 if "s2" in layout.inputs else layout.output
        self.checked_index = [scene.output_names.index(b) for b in checked]
        self.fill = np.asarray(scene.fill_value).astype(scene.dtype)

    def write(self, row0: int, col0: int, values: np.ndarray) -> None:
        """Write the prediction ``values`` (bands, rows, cols) at (row0, col0) of the scene."""
        scene = self.scene
        rows, cols = values.shape[1], values.shape[2]
        window = (row0, col0, rows, cols)
        raw, valid_bands = self.base.read_output_raw(window)
        valid = valid_bands[self.checked_index].all(axis=0) & np.isfinite(values).all(axis=0)
        cloud = self.mask_source.read(window) if self.mask_source is not None else None
        keep = (valid & ~cloud) if (self.keep_clear and cloud is not None) else None
        refl = unscale_s2(values, self.scaling)  # reflectance x 10000
        out = np.where(valid_bands, raw, self.fill)  # pixels invalid in the input (NaN, inf, nodata) are nodata
        for k, b in enumerate(self.out_index):
            src = scene.bands[scene.output_names[b]]
            dn = refl[k] * np.float32(src.quantification / 10000.0) - np.float32(src.offset)
            band = to_output_dtype(dn, scene.dtype, scene.fill_value)
            if keep is not None:
                band = np.where(keep, raw[b], band)
            out[b] = np.where(valid, band, self.fill)
        self.stats.valid += int(valid.sum())
        if cloud is not None:
            self.stats.cloud += int((cloud & valid).sum())
        if keep is not None:
            self.stats.kept += int(keep.sum())
        self.dst.write(out, window=Window(col0, row0, cols, rows))
        if self.observed is not None:
            masked = (cloud & valid) if cloud is not None else None
            codes = (self.coder(window, valid, masked) if self.coder is not None
                     else single_image_codes(valid, masked))
            self.counts.add(codes)
            self.observed.write(codes[None], window=Window(col0, row0, cols, rows))

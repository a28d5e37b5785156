"""The Let It Snow snow map (LIS, Gascoin et al. 2019, ESSD 11; the CNES/Theia operational chain).

As described in its algorithm theoretical basis document:

1. *Cloud mask refinement.* A pixel of the input cloud mask stays cloud for pass 1 if it is
   cloud shadow, high cloud (cirrus), or a *bright* cloud: red reflectance averaged over
   ``darkcloud_scale`` (240 m, i.e. 12 x 12 pixels at 20 m) >= ``red_darkcloud`` (0.30). The
   other ("dark") cloud pixels are released and go through the snow tests. With an SCL band the
   shadow class is 3 and high cloud is 10 (thin cirrus); with the pretrained detector or a mask
   raster the shadow class (2) stays cloud and every other cloud may be released: a shadow is not
   a cloud that can be snow, a cloud can (see :mod:`.cloudmask`).
2. *Pass 1*: snow where not (pass-1) cloud, NDSI > ``ndsi_pass1`` (0.40) and red >
   ``red_pass1`` (0.20).
3. *Snowline*: the DEM is split into elevation bands of ``band_height`` (100 m) starting at the
   lowest elevation of the scene; scanning upward, the first band whose cloud-free fraction is
   > ``fclear_lim`` (0.10) and whose pass-1 snow fraction (of its cloud-free pixels) is >
   ``fsnow_lim`` (0.10) sets the snowline z_s = lower edge of the band two below it (the lowest
   band if there is none). Not computed when pass-1 snow covers no more than ``fsnow_total_lim``
   (0.001) of the valid pixels.
4. *Pass 2*: above z_s (elevation > z_s, strictly, as the reference implementation), snow where
   not cloud, NDSI > ``ndsi_pass2`` (0.15) and red > ``red_pass2`` (0.04). Snow = pass 1 OR pass 2.
5. *Back to cloud*: a pixel of the input cloud mask that is not snow is cloud if its full
   resolution red > ``red_backtocloud`` (0.10) (or if it stayed cloud in step 1), else no snow.

Where the published descriptions are silent or differ, TopoClear chooses (and says so here):

* released dark clouds go through pass 1 as the ATBD's flowchart shows (the reference code only
  tests them in pass 2); the elevation-band fractions use the pass-1 cloud mask, as the ATBD says;
* the dark-cloud red is a block mean (see :mod:`.darkclouds`);
* only valid image pixels with a valid elevation enter the elevation bands; the top band may be
  partial (LIS merges it into the band below); pixels without elevation get pass 1 only;
* the snow fraction of step 3 is relative to the valid pixels (LIS divides by all pixels);
* with no DEM, the snowline and pass 2 are skipped (pass 1 with the cloud refinement remains);
* the DEM must be in metres; elevations beyond +-16000 m are taken as nodata.

The snowline needs the elevation-band counts of the whole scene before any pixel can be
classified, so the map is made in two windowed passes: the first reads every input once,
classifies what it can, gathers the counts (1 m elevation steps, any anchor can be derived later)
and writes a compact 2-byte code per pixel to a temporary file beside the output; the second reads
only those codes, applies the snowline and writes the map.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
from rasterio.windows import Window

from ..clouds.masks.kinds import DETECTOR
from ..io.windows import run_windows
from ..progress import Monitor
from .classes import CLOUD, NO_SNOW, NODATA, SNOW
from .darkclouds import darkcloud_block
from .elevation import ElevationBand, ElevationCounts, find_snowline
from .fsc import fsc_of_map
from .grid import strip_windows
from .output import SnowMapOutput
from .parameters import SnowParameters
from .requests import SnowMapRequest
from .results import SnowResult
from .scene import SnowScene, read_window
from .spectra import Spectra

# Pass-1 codes (int16 per pixel). Pixels still waiting for the snowline (pass-2 candidates) hold
# 2 * ceil(elevation) + (1 if they fall back to cloud else 0).
CODE_NODATA = np.int16(-32768)
CODE_SNOW = np.int16(-32767)
CODE_CLOUD = np.int16(-32766)
CODE_NOSNOW = np.int16(-32765)
#: Stored NDSI (int16, NDSI x 10000) of a pixel without NDSI.
NDSI_MISSING = -32768


def class_lookup(zs: Optional[int]) -> np.ndarray:
    """Snow map class of every 2-byte pass-1 code (indexed by the code's bits as uint16), given the
    snowline ``zs`` (None: no pass 2)."""
    codes = np.arange(-32768, 32768, dtype=np.int32)
    elevation, falls_back_to_cloud = codes >> 1, (codes & 1) == 1
    above = elevation > zs if zs is not None else np.zeros(codes.shape, bool)
    lut = np.where(above, SNOW, np.where(falls_back_to_cloud, CLOUD, NO_SNOW)).astype(np.uint8)
    for code, value in ((CODE_NODATA, NODATA), (CODE_SNOW, SNOW), (CODE_CLOUD, CLOUD), (CODE_NOSNOW, NO_SNOW)):
        lut[int(code) + 32768] = value
    return np.ascontiguousarray(np.concatenate([lut[32768:], lut[:32768]]))  # uint16 view order


# -- pass 1 --------------------------------------------------------------------------------------

class Pass1Window(NamedTuple):
    """Pass 1 of one window: codes, stored NDSI (or None), elevation counts, valid and snow pixels."""

    code: np.ndarray
    ndsi: Optional[np.ndarray]
    counts: ElevationCounts
    valid: int
    snow: int


@dataclass
class Pass1Totals:
    """What pass 1 gathered over the whole scene."""

    elevation: ElevationCounts
    valid: int = 0
    snow: int = 0

    @property
    def snow_fraction(self) -> float:
        """Pass-1 snow pixels / valid pixels (0 without valid pixels)."""
        return self.snow / self.valid if self.valid else 0.0


def pass1_clouds(data: Spectra, params: SnowParameters, block: int
                 ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(clouds of pass 1: the mask less the released dark clouds (hard clouds are never released),
    the clouds a pixel falls back to when it is not snow); (None, None) without clouds in the window."""
    all_cloud, held, _ = data.cloud_masks()
    if all_cloud is None or not all_cloud.any():
        return None, None
    dark = data.dark_clouds(all_cloud, block, params.red_darkcloud)
    if held is not None:
        dark &= ~held
    cloud_p1 = all_cloud & ~dark
    return cloud_p1, cloud_p1 | (all_cloud & data.red_above(params.red_backtocloud))


def pass1_window(data: Spectra, params: SnowParameters, block: int, keep_ndsi: bool) -> Pass1Window:
    """Pass 1 of one window: the codes of what is decided, pass-2 candidates with their elevation."""
    cloud_p1, fallback_cloud = pass1_clouds(data, params, block)
    valid, nd, z = data.valid, data.ndsi, data.dem
    clear = valid if cloud_p1 is None else valid & ~cloud_p1
    test1 = clear & (nd > params.ndsi_pass1) & data.red_above(params.red_pass1)
    code = np.full(nd.shape, CODE_NOSNOW, dtype=np.int16)
    if fallback_cloud is not None:
        code[fallback_cloud] = CODE_CLOUD
    code[test1] = CODE_SNOW
    counts = ElevationCounts()
    if z is not None:
        has_z = valid & data.dem_valid
        cand = clear & ~test1 & has_z & (nd > params.ndsi_pass2) & data.red_above(params.red_pass2)
        if cand.any():
            zc = (z[cand] if z.dtype.kind == "i" else np.ceil(z[cand])).astype(np.int16)
            fb = fallback_cloud[cand].astype(np.int16) if fallback_cloud is not None else np.int16(0)
            code[cand] = zc * np.int16(2) + fb
        category = test1.view(np.uint8)
        if cloud_p1 is not None:
            category = category.copy()
            category[cloud_p1] = 2
        counts.add(z, category, has_z)
    code[~valid] = CODE_NODATA
    nd16 = None
    if keep_ndsi:
        nd16 = np.where(np.isfinite(nd), np.round(np.clip(nd, -1, 1) * 10000), NDSI_MISSING).astype(np.int16)
    return Pass1Window(code, nd16, counts, int(np.count_nonzero(valid)), int(np.count_nonzero(test1)))


class _Scratch(NamedTuple):
    codes: str
    ndsi: Optional[str]


@contextlib.contextmanager
def _scratch_files(output, keep_ndsi: bool) -> Iterator[_Scratch]:
    """Temporary files beside ``output`` for the pass-1 codes (and NDSI), removed afterwards."""
    folder = os.path.dirname(os.path.abspath(output))
    paths: List[str] = []
    try:
        for suffix in (".snowcodes", ".snowndsi")[:2 if keep_ndsi else 1]:
            fd, path = tempfile.mkstemp(prefix=f".{Path(output).stem}.", suffix=suffix, dir=folder)
            os.close(fd)
            paths.append(path)
        yield _Scratch(paths[0], paths[1] if keep_ndsi else None)
    finally:
        for path in paths:
            if os.path.exists(path):
                os.remove(path)


def run_pass1(scene: SnowScene, params: SnowParameters, windows: List[Window], block: int, scratch: _Scratch,
              monitor: Monitor) -> Pass1Totals:
    """Read every input once, write the codes (and NDSI) to ``scratch``, gather the elevation counts."""
    totals = Pass1Totals(ElevationCounts())
    keep_ndsi = scratch.ndsi is not None
    with open(scratch.codes, "wb") as codes_file, contextlib.ExitStack() as stack:
        ndsi_file = stack.enter_context(open(scratch.ndsi, "wb")) if keep_ndsi else None

        def compute(window, raw) -> Pass1Window:
            return pass1_window(Spectra(scene, raw), params, block, keep_ndsi)

        def write(window, result: Pass1Window) -> None:
            codes_file.write(result.code.tobytes())
            if ndsi_file is not None:
                ndsi_file.write(result.ndsi.tobytes())
            totals.elevation.merge(result.counts)
            totals.valid += result.valid
            totals.snow += result.snow

        run_windows(windows, lambda window: read_window(scene, window, True, block), compute, write, monitor)
    return totals


# -- snowline and pass 2 -------------------------------------------------------------------------

def decide_snowline(totals: Pass1Totals, params: SnowParameters, has_dem: bool
                    ) -> Tuple[List[ElevationBand], Optional[float], str]:
    """(pass-1 elevation bands, the snowline or None, why there is none)."""
    bands = totals.elevation.bands(int(params.band_height), "minimum")
    if not has_dem:
        return bands, None, "no DEM"
    fraction = totals.snow_fraction
    if fraction > params.fsnow_total_lim:
        snowline = find_snowline(bands, params.fsnow_lim, params.fclear_lim)
        return bands, snowline, "" if snowline is not None else "no elevation band meets the conditions"
    return bands, None, (f"pass-1 snow {100 * fraction:.3f} % of the valid pixels, not above "
                         f"{100 * params.fsnow_total_lim:.3f} %")


def run_pass2(scene: SnowScene, request: SnowMapRequest, windows: List[Window], scratch: _Scratch,
              snowline: Optional[float], monitor: Monitor, **extra) -> SnowResult:
    """Turn the pass-1 codes into the snow map with ``snowline``; ``extra``: fields of the result."""
    lut = class_lookup(None if snowline is None else int(snowline))
    with SnowMapOutput(request, scene.grid) as output, open(scratch.codes, "rb") as codes_file, \
            contextlib.ExitStack() as stack:
        ndsi_file = stack.enter_context(open(scratch.ndsi, "rb")) if output.wants_fsc else None

        def read(window):
            h, w = int(window.height), int(window.width)
            code = np.fromfile(codes_file, dtype=np.int16, count=h * w).reshape(h, w)
            nd16 = np.fromfile(ndsi_file, dtype=np.int16, count=h * w).reshape(h, w) if ndsi_file else None
            return code, nd16

        def compute(window, data):
            code, nd16 = data
            classes = lut[code.view(np.uint16)]
            if nd16 is None:
                return classes, None
            return classes, fsc_of_map(classes, nd16.astype(np.float32) / 10000.0, request.fsc_formula)

        run_windows(windows, read, compute, lambda window, result: output.write(window, *result), monitor)
        return output.finish(scene.product, snowline=snowline, **extra)


def lis_snow_map(scene: SnowScene, request: SnowMapRequest, monitor: Monitor) -> SnowResult:
    """Write the Let It Snow snow map of ``scene`` (two windowed passes; progress 0-75 % and 75-100 %, after
    the detector's whole-scene pass (0-30 %) when it is the cloud mask)."""
    params = request.params
    block = darkcloud_block(scene.grid, params.darkcloud_scale)
    windows = strip_windows(scene.grid, request.window_rows, scene.reader.dataset("B3"))
    start = 0.0
    if scene.cloud_kind == DETECTOR.key:
        start = 30.0
        scene.prepare_mask(monitor.sub(0, start))
    with _scratch_files(request.output, bool(request.fsc_output)) as scratch:
        split = start + 0.75 * (100.0 - start)
        totals = run_pass1(scene, params, windows, block, scratch, monitor.sub(start, split))
        bands, snowline, note = decide_snowline(totals, params, scene.dem_ds is not None)
        if scene.dem_ds is not None and snowline is None:
            monitor.message(f"Snowline not found ({note}): pass 2 skipped.")
        return run_pass2(scene, request, windows, scratch, snowline, monitor.sub(split, 100), snowline_note=note,
                         pass1_bands=bands, pass1_snow_fraction=totals.snow_fraction)

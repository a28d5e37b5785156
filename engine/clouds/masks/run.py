"""The cloud mask tool's engine entry point: :func:`run_cloud_mask` takes a :class:`CloudMaskRequest` (a
Sentinel-2 scene, a method, options), writes the class GeoTIFF (0 clear, 1 cloud, 2 shadow, 255 nodata)
through the mask engine (:mod:`.engine`) and returns a :class:`CloudMaskReport`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ...errors import InputError
from ...io.raster import Grid
from ...progress import SILENT, Monitor
from ...sentinel2.bands import S2Product
from ...sentinel2.locate import locate_bands
from ...sentinel2.reader import BandReader
from ....models.bands import S2_BANDS_L1C
from .choice import DETECTOR_BANDS_4, choose_method, method_bands
from .detector import CLEAR, CLOUD, DETECTOR_RESOLUTION_M, NODATA, SHADOW
from .engine import open_scene_mask, relay
from .kinds import AUTO

__all__ = ["CloudMaskRequest", "CloudMaskReport", "run_cloud_mask", "locate_product", "scene_grid"]


@dataclass
class CloudMaskRequest:
    """One whole-scene cloud / shadow mask (topoclear:cloudmask).

    s2: the Sentinel-2 scene: a band stack, one band file of a product whose bands are separate files, or a
        product folder (.SAFE); bands are found by :func:`~topoclear.engine.sentinel2.locate.locate_bands`.
    output: the Byte GeoTIFF to write (0 clear, 1 cloud, 2 shadow, 255 nodata) on the scene's grid (a stack's
        own grid; for band files the finest grid of the bands the method reads).
    method: a key of :func:`~.kinds.mask_methods` ``("cloudmask")`` (``"auto"``, ``"detector"``, ``"scl"``,
        ``"computed"``, ``"raster"``); mask / mask_band: the mask raster (``"raster"``, ``"scl"``; ``"auto"``
        uses it when given).
    buffer_m: grow clouds and shadows by this many metres; scl_cirrus / scl_shadow: SCL class 10 as cloud,
        class 3 as shadow (else clear).
    product_level: ``"l1c"`` / ``"l2a"`` to override the detector's model choice; resolution_m: the
        detector's working resolution (None or 0: the native grid); threads / batch_size / window_px: how it runs.
    s2_overrides / s2_offset / s2_quantification: explicit band choices and radiometry, as for cloud removal.
    """

    s2: str
    output: str
    method: str = AUTO.key
    mask: Optional[str] = None
    mask_band: int = 1
    buffer_m: float = 0.0
    scl_cirrus: bool = True
    scl_shadow: bool = True
    product_level: Optional[str] = None
    resolution_m: Optional[float] = DETECTOR_RESOLUTION_M
    threads: Optional[int] = None
    batch_size: Optional[int] = None
    window_px: Optional[int] = None
    s2_overrides: Optional[Dict[str, Tuple[Optional[str], int]]] = None
    s2_offset: Optional[float] = None
    s2_quantification: Optional[float] = None


@dataclass
class CloudMaskReport:
    """What a cloud mask run did."""

    output: str
    method: str
    method_title: str
    reason: str
    width: int
    height: int
    counts: Dict[int, int]
    seconds: float
    provider: Optional[str] = None
    model: Optional[str] = None
    level: Optional[str] = None
    messages: List[str] = field(default_factory=list)

    @property
    def valid_pixels(self) -> int:
        return sum(self.counts.get(k, 0) for k in (CLEAR, CLOUD, SHADOW))

    def _percent(self, cls: int) -> Optional[float]:
        return 100.0 * self.counts.get(cls, 0) / self.valid_pixels if self.valid_pixels else None

    @property
    def cloud_percent(self) -> Optional[float]:
        """Cloud as a percentage of the valid pixels (None when none is valid)."""
        return self._percent(CLOUD)

    @property
    def shadow_percent(self) -> Optional[float]:
        """Shadow as a percentage of the valid pixels (None when none is valid)."""
        return self._percent(SHADOW)

    def summary(self) -> str:
        def pct(v):
            return "n/a" if v is None else f"{v:.2f} %"

        lines = [f"Cloud mask ({self.method_title}) of {self.width} x {self.height} px in {self.seconds:.1f} s "
                 f"({self.width * self.height / 1e6 / max(self.seconds, 1e-9):.2f} Mpx/s)",
                 f"  cloud {pct(self.cloud_percent)}, shadow {pct(self.shadow_percent)} of the "
                 f"{self.valid_pixels} valid pixels; {self.counts.get(NODATA, 0)} nodata pixels",
                 f"  output: {self.output} (0 clear, 1 cloud, 2 shadow, 255 nodata)"]
        return "\n".join(lines)


def locate_product(s2: str, overrides=None, offset: Optional[float] = None,
                   quantification: Optional[float] = None) -> S2Product:
    """Every Sentinel-2 band :func:`~topoclear.engine.sentinel2.locate.locate_bands` finds in ``s2`` (none
    required), 10 m files first, and its SCL band."""
    return locate_bands(s2, names=(), overrides=overrides, offset=offset, quantification=quantification,
                        preferred_resolutions=(10, 20, 60), optional=S2_BANDS_L1C)


def scene_grid(product: S2Product, bands: Sequence[str]) -> Grid:
    """The grid of the classes: the finest grid among ``bands`` (a stack's own grid)."""
    names = [b for b in bands if b in product.bands] or list(product.bands)
    if not names:
        raise InputError("Sentinel-2 input: no Sentinel-2 band found (expected a 13-, 12- or 10-band stack, named "
                         "bands, band files named like ..._B03.tif or a SAFE folder)")
    with BandReader(product, names, resolution="finest") as reader:
        return reader.grid


def run_cloud_mask(request: CloudMaskRequest, monitor: Monitor = SILENT) -> CloudMaskReport:
    """Write the cloud / shadow classes of ``request.s2`` to ``request.output`` (see :class:`CloudMaskRequest`)."""
    start = time.perf_counter()
    messages: List[str] = []

    def say(text: str) -> None:
        messages.append(text)
        monitor.message(text)

    relay_monitor = relay(monitor, say=say)
    product = locate_product(request.s2, request.s2_overrides, request.s2_offset, request.s2_quantification)
    say(product.describe())
    choice = choose_method(product, request.method, request.mask, request.mask_band, "cloudmask",
                           request.product_level)
    grid = scene_grid(product, method_bands(choice.key, product) or DETECTOR_BANDS_4)
    mask = open_scene_mask(product, grid, request.method, mask=request.mask, mask_band=request.mask_band,
                           consumer="cloudmask", level=request.product_level, buffer_m=request.buffer_m,
                           scl_cirrus=request.scl_cirrus, scl_shadow=request.scl_shadow,
                           resolution_m=request.resolution_m, threads=request.threads,
                           batch_size=request.batch_size, window_px=request.window_px, monitor=relay_monitor)
    if mask is None:  # pragma: no cover - the cloudmask consumer never chooses none
        raise InputError("no cloud mask method can run on this input")
    try:
        counts = mask.write(request.output, relay_monitor,
                            tags={"TOPOCLEAR_MASK_REASON": mask.choice.reason[:200]})
    finally:
        mask.close()
    return CloudMaskReport(output=str(request.output), method=mask.method.key, method_title=mask.method.title,
                           reason=mask.choice.reason, width=grid.width, height=grid.height, counts=counts,
                           seconds=time.perf_counter() - start, provider=mask.provider, model=mask.model,
                           level=mask.choice.level, messages=messages)

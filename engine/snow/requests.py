"""The requests of the snow entry points: one object per call, built by scripts, Processing and the dock alike.

:class:`Sentinel2Input` says which image to read and on which grid; :class:`NdsiRequest`,
:class:`SnowMapRequest` and :class:`SnowStatisticsRequest` are what
:func:`~topoclear.engine.snow.ndsi.compute_ndsi`, :func:`~topoclear.engine.snow.mapping.snow_map`
and :func:`~topoclear.engine.snow.statistics.snow_statistics` take.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Sequence, Tuple

from ..errors import InputError
from ..io.atomic import check_writable
from ..sentinel2.bands import Override, S2Product
from ..sentinel2.locate import locate_bands
from .fsc import check_formula
from .parameters import CloudInput, SnowParameters, check_band_height

Bounds = Tuple[float, float, float, float]


@dataclass(frozen=True)
class Sentinel2Input:
    """A Sentinel-2 image and the grid to work on.

    ``source``: a band stack, one band file of a product, a SAFE folder, a GDAL ``SENTINEL2_L2A:``
    subdataset... (see :func:`~topoclear.engine.sentinel2.locate.locate_bands`); ``overrides``:
    band name -> (file or None for ``source``, band index); ``offset`` / ``quantification``:
    reflectance = (DN + offset) / quantification, read from the product when None;
    ``resolution``: the grid of the ``"coarsest"`` (Let It Snow's 20 m) or ``"finest"`` band;
    ``bounds``: only this extent (left, bottom, right, top in the image CRS); ``product``: the
    bands already located (then ``source``, ``overrides``, ``offset`` and ``quantification`` are
    not read again).
    """

    source: Optional[os.PathLike | str] = None
    overrides: Optional[Dict[str, Override]] = None
    offset: Optional[float] = None
    quantification: Optional[float] = None
    resolution: str = "coarsest"
    bounds: Optional[Bounds] = None
    product: Optional[S2Product] = None

    def locate(self, names: Sequence[str]) -> S2Product:
        """The product's bands ``names`` (the located ``product`` when there is one)."""
        if self.product is not None:
            return self.product
        return locate_bands(self.source, names, self.overrides, self.offset, self.quantification)

    def located(self, names: Sequence[str]) -> "Sentinel2Input":
        """This image with its bands ``names`` located (errors in the input surface now, not in the run)."""
        return replace(self, product=self.locate(names))

    def within(self, bounds: Optional[Bounds]) -> "Sentinel2Input":
        """This image limited to ``bounds`` (None: the whole image)."""
        return replace(self, bounds=bounds)


@dataclass(frozen=True)
class NdsiRequest:
    """NDSI of ``image`` into ``output`` (Float32 GeoTIFF); ``window_rows``: rows per window (None: automatic)."""

    image: Sentinel2Input
    output: os.PathLike | str
    window_rows: Optional[int] = None


@dataclass(frozen=True)
class SnowMapRequest:
    """The snow map of ``image`` into ``output`` (Byte GeoTIFF, classes 100/0/205/255).

    ``dem``: any raster overlapping the image, in any CRS and resolution, in metres (aligned
    bilinearly onto the image grid window by window; Let It Snow only); ``cloud``: the cloud mask;
    ``fsc_output``: also write the fractional snow cover there with ``fsc_formula``;
    ``window_rows``: rows per window (None: as tall as the inputs' tiles allow).
    """

    image: Sentinel2Input
    output: os.PathLike | str
    params: SnowParameters = field(default_factory=SnowParameters)
    dem: Optional[str] = None
    dem_band: int = 1
    cloud: CloudInput = field(default_factory=CloudInput)
    fsc_output: Optional[str] = None
    fsc_formula: str = "gascoin"
    window_rows: Optional[int] = None

    @property
    def lis(self) -> bool:
        return self.params.method == "lis"

    def validate(self) -> "SnowMapRequest":
        """This request, or :class:`InputError` / :class:`OutputError` for bad parameters or outputs."""
        self.params.validate()
        check_writable(self.output)
        if self.fsc_output:
            check_writable(self.fsc_output)
            check_formula(self.fsc_formula)
            if os.path.abspath(self.fsc_output) == os.path.abspath(self.output):
                raise InputError("the FSC output must be a different file from the snow map")
        return self


@dataclass(frozen=True)
class SnowStatisticsRequest:
    """Figures of the snow map ``snow_map`` (its band ``band``).

    ``dem`` (band ``dem_band``): for the elevation-band table, bands ``band_height`` m high at
    multiples of it; ``fsnow_lim`` / ``fclear_lim``: the Let It Snow snowline rule for maps that
    did not store their snowline; ``window_rows``: rows per window (None: automatic).
    """

    snow_map: os.PathLike | str
    dem: Optional[str] = None
    dem_band: int = 1
    band_height: int = 100
    band: int = 1
    fsnow_lim: float = 0.10
    fclear_lim: float = 0.10
    window_rows: Optional[int] = None

    def validate(self) -> "SnowStatisticsRequest":
        check_band_height(self.band_height)
        return self

"""The dates of a multi-temporal cloud removal: their acquisition dates, their bands on the target grid,
their cloud masks and their Sentinel-1, window by window.

* **Dates** (:func:`resolve_dates`): each Sentinel-2 input's date comes from the user (the DATES
  text: the target's first, then the others in input order; an empty entry means "read it"),
  else its metadata (MTD_MSIL*.xml, MTD_TL.xml, tags), else its file name (``YYYY-MM-DD`` as in
  SEN12MS-CR-TS names, ``YYYYMMDD`` as in SAFE names): :func:`topoclear.engine.snow.dates.acquisition_date`.
  Two inputs of the same date are an error naming both.
* **Bands** (:class:`DateSource`): every other date must hold the target's band set (the same
  Sentinel-2 bands); each is read on the **target grid** window by window
  (:class:`~topoclear.engine.sentinel2.reader.BandReader`: any CRS, resolution or extent, warped
  bilinearly; a date that does not overlap the target is an error naming it, one that covers part
  of it is nodata elsewhere).
* **Cloud masks**: the mask engine (:func:`~topoclear.engine.clouds.masks.engine.open_scene_mask`)
  for each date on the target grid, with the method chosen (``"auto"``: a given mask raster, the
  product's SCL, the pretrained detector, the DSen2-CR rules...); the detector makes one pass per
  date into a temporary class raster (:meth:`~topoclear.engine.clouds.masks.engine.SceneMask.prepare`).
* **Sentinel-1 and mask rasters given per date** are matched to the Sentinel-2 dates by their own
  dates (:func:`match_by_date`: the nearest Sentinel-2 date within ``max_days``).
"""
from __future__ import annotations

import datetime as _dt
import os
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.windows import Window

from ...models.bands import S2_BANDS_L1C
from ..errors import InputError
from ..io.raster import Grid, open_raster
from ..io.warp import check_coverage
from ..progress import SILENT, Monitor
from ..sentinel2.locate import locate_bands
from ..sentinel2.reader import BandReader

__all__ = ["DatedPath", "resolve_dates", "match_by_date", "product_bands", "DateSource", "S1_MATCH_DAYS"]

#: How far (days) a Sentinel-1 acquisition may be from the Sentinel-2 date it is matched to.
S1_MATCH_DAYS = 6

WindowTuple = Tuple[int, int, int, int]


@dataclass(frozen=True)
class DatedPath:
    """One input with its date: ``role`` names it in messages (``"INPUT"``, ``"AUX #2"``)."""

    path: str
    role: str
    date: _dt.date
    how: str  #: where the date was read

    @property
    def label(self) -> str:
        return f"{self.role} ({os.path.basename(self.path)})"


def _date_of(path: str, role: str, given) -> Tuple[_dt.date, str]:
    from ..snow.dates import acquisition_date, parse_date

    if given is not None and str(given).strip():
        return parse_date(given, role), "given"
    found, how = acquisition_date(path, role)
    return found, how


def resolve_dates(target: str, auxiliary: Sequence[str], dates: Optional[Sequence] = None,
                  target_role: str = "INPUT", aux_role: str = "AUX") -> Tuple[DatedPath, List[DatedPath]]:
    """The target and every other date with its acquisition date (see the module notes).

    ``dates``: None, or one entry per input (the target's first), each a date, an ISO text or None
    (read it). Errors: no other date, a wrong number of dates, two inputs of the same date."""
    auxiliary = [str(a) for a in auxiliary if a is not None and str(a).strip()]
    if not auxiliary:
        raise InputError(f"{aux_role}: give at least one other Sentinel-2 date of the same place (the dates the "
                         "cloudy pixels are filled from)")
    given = list(dates) if dates is not None else [None] * (1 + len(auxiliary))
    if len(given) != 1 + len(auxiliary):
        raise InputError(f"DATES: {len(given)} date(s) for {1 + len(auxiliary)} image(s): give the target's date first, "
                         "then one per other date in input order (leave an entry empty to read it)")
    d, how = _date_of(target, target_role, given[0])
    tgt = DatedPath(str(target), target_role, d, how)
    aux = []
    for k, (path, g) in enumerate(zip(auxiliary, given[1:]), start=1):
        role = f"{aux_role} #{k}"
        d, how = _date_of(path, role, g)
        aux.append(DatedPath(path, role, d, how))
    seen: Dict[_dt.date, DatedPath] = {tgt.date: tgt}
    for item in aux:
        other = seen.get(item.date)
        if other is not None:
            if os.path.realpath(other.path) == os.path.realpath(item.path):
                raise InputError(f"{item.label}: the same file as {other.label}; give each date once")
            raise InputError(f"{item.label} and {other.label} are both dated {item.date} ({item.how}; {other.how}): "
                             "give each date once (or correct the date in DATES)")
        seen[item.date] = item
    return tgt, aux


def match_by_date(files: Sequence[str], dated: Sequence[DatedPath], role: str, max_days: int = S1_MATCH_DAYS,
                  ) -> Dict[str, str]:
    """``{Sentinel-2 path: file}`` for ``files`` (each dated from its metadata or name) matched to the nearest
    Sentinel-2 date within ``max_days``; :class:`InputError` naming a file matching no date, or two files
    matching one date."""
    from ..snow.dates import acquisition_date

    out: Dict[str, str] = {}
    taken: Dict[str, str] = {}
    for k, path in enumerate(files, start=1):
        label = f"{role} #{k} ({os.path.basename(str(path))})"
        when, how = acquisition_date(str(path), label)
        best = min(dated, key=lambda d: (abs((d.date - when).days), d.date))
        gap = abs((best.date - when).days)
        if gap > max_days:
            listed = ", ".join(str(d.date) for d in dated)
            raise InputError(f"{label} is dated {when} ({how}), more than {max_days} days from every Sentinel-2 date "
                             f"({listed}); give the layer of each Sentinel-2 date")
        if best.path in out:
            raise InputError(f"{label} and {taken[best.path]} both match the Sentinel-2 date {best.date} "
                             f"({best.label}); give one per date")
        out[best.path] = str(path)
        taken[best.path] = label
    return out


def product_bands(path: str, role: str):
    """(product with every Sentinel-2 band ``path`` holds, band names in the L1C order)."""
    product = locate_bands(path, names=[], optional=list(S2_BANDS_L1C), preferred_resolutions=(10, 20, 60))
    names = [b for b in S2_BANDS_L1C if b in product.bands]
    if not names:
        raise InputError(f"{role}: {os.path.basename(path)} holds no band TopoClear recognises as Sentinel-2 "
                         "(name the bands, e.g. a 13-band L1C stack)")
    return product, names


class DateSource:
    """One Sentinel-2 date on the target grid: reflectance windows of ``bands`` (0-1, NaN nodata) and its
    cloud / shadow mask (:meth:`read`). Thread-safe (one band reader per thread)."""

    def __init__(self, dated: DatedPath, bands: Sequence[str], grid: Grid, mask_kind: str = "auto",
                 mask: Optional[str] = None, mask_band: int = 1, monitor: Monitor = SILENT,
                 say: Optional[Callable[[str], None]] = None, prepare_detector: bool = True,
                 product=None) -> None:
        self.dated = dated
        self.bands = list(bands)
        self.grid = grid
        self._say = say or monitor.message
        if product is None:
            product, names = product_bands(dated.path, dated.label)
            if names != self.bands:
                missing = [b for b in self.bands if b not in names]
                extra = [b for b in names if b not in self.bands]
                raise InputError(f"{dated.label}: its bands ({', '.join(names)}) are not the target's "
                                 f"({', '.join(self.bands)})" + (f": it lacks {', '.join(missing)}" if missing else "")
                                 + (f"; it has {', '.join(extra)} too" if extra else "")
                                 + ". Every date must hold the same Sentinel-2 bands")
        self.product = product
        first = product.bands[self.bands[0]]
        with open_raster(first.path, dated.label) as ds:
            self.coverage = check_coverage(Grid.of(ds), grid, dated.label, first.path, "fill")
        self._local = threading.local()
        self._readers: List[BandReader] = []
        self._lock = threading.Lock()
        self.mask = None
        self.mask_method = "none"
        self._open_mask(mask_kind, mask, mask_band, monitor, prepare_detector)

    def _open_mask(self, kind: str, mask: Optional[str], band: int, monitor: Monitor, prepare: bool) -> None:
        from .masks.engine import open_scene_mask, relay
        from .masks.kinds import DETECTOR

        lines: List[str] = []
        engine = open_scene_mask(self.product, self.grid, kind, mask=mask, mask_band=band, consumer="removal",
                                 monitor=relay(monitor, say=lines.append, progress=False))
        if engine is not None:
            try:
                if prepare and engine.method.key == DETECTOR.key:
                    engine.prepare(relay(monitor, say=lines.append))
            except BaseException:
                engine.close()
                raise
            self.mask_method = engine.method.key
        self.mask = engine
        head = lines[0] if lines else "Cloud mask: none"
        self._say(f"{self.dated.label}, {self.dated.date} ({self.dated.how}): {head}"
                  + (f"; covers {100 * self.coverage:.0f} % of the target" if self.coverage < 0.999 else ""))

    def _reader(self) -> BandReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = BandReader(self.product, self.bands, grid=self.grid)
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return reader

    def reflectance(self, window: WindowTuple) -> np.ndarray:
        """(bands, rows, cols) float32 reflectance on ``window`` of the target grid; NaN = nodata / outside."""
        r, c, h, w = window
        reader = self._reader()
        win = Window(c, r, w, h)
        return np.stack([reader.read(b, win) for b in self.bands]).astype(np.float32, copy=False)

    def cloud(self, window: WindowTuple) -> np.ndarray:
        """(rows, cols) True = cloud or shadow (the mask engine's classes 1 and 2)."""
        if self.mask is None:
            return np.zeros(window[2:], bool)
        return self.mask.cloud_shadow(window)

    def read(self, window: WindowTuple) -> Tuple[np.ndarray, np.ndarray]:
        return self.reflectance(window), self.cloud(window)

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers = []
        self._local = threading.local()
        if self.mask is not None:
            self.mask.close()
            self.mask = None

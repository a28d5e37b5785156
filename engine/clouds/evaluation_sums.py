"""float64 running sums of the evaluation metrics over strips of rows (:mod:`.evaluation`).

:meth:`MetricSums.add` takes one strip of the prediction and the reference (plus the SSIM halo
rows above and below its core rows), the cloud mask and the cloudy input of its core rows;
:meth:`MetricSums.result` gives the whole-image values of
:func:`topoclear.models.metrics.evaluate` from the sums.
"""
from __future__ import annotations

import math
from typing import Dict

import numpy as np

SSIM_HALO = 5  # (11 - 1) / 2


class MetricSums:
    """float64 running sums of every metric."""

    def __init__(self) -> None:
        self.n = 0  # valid pixels
        self.abs = self.sq = self.sam = 0.0
        self.ssim = 0.0
        self.ssim_n = 0
        self.nm = 0  # valid pixels in the mask
        self.abs_m = self.sq_m = self.sam_m = 0.0
        self.nc = 0  # valid clear pixels
        self.sq_c = 0.0
        self.nr = 0
        self.abs_r = self.sam_r = 0.0
        self.bands = 0

    def add(self, p, t, valid, core, m, c, cv, first: bool, last: bool) -> None:
        import torch

        from ...models.metrics import sam_map, ssim_map

        bands = p.shape[0]
        self.bands = bands
        pc, tc, vc = p[:, core], t[:, core], valid[core]
        diff = pc - tc
        ad = np.abs(diff).sum(axis=0)
        sq = (diff ** 2).sum(axis=0)
        angle = sam_map(torch.from_numpy(pc[None]), torch.from_numpy(tc[None]), degrees=True)[0, 0].numpy()
        self.n += int(vc.sum())
        self.abs += float(ad[vc].sum())
        self.sq += float(sq[vc].sum())
        self.sam += float(angle[vc].sum())
        # SSIM: map positions of the strip whose 11x11 window lies inside the image and is all valid
        if p.shape[1] >= 11 and p.shape[2] >= 11:
            smap = ssim_map(torch.from_numpy(p[None]), torch.from_numpy(t[None]))[0].numpy()  # (C, h-10, w-10)
            ok = window_all(valid, 11)  # (h-10, w-10)
            # map row r corresponds to strip row r + 5: keep the centres inside the core rows
            centre0 = core.start - SSIM_HALO
            centre1 = core.stop - SSIM_HALO
            keep = np.zeros(ok.shape[0], bool)
            keep[max(centre0, 0):max(centre1, 0)] = True
            sel = ok & keep[:, None]
            self.ssim += float(smap[:, sel].sum())
            self.ssim_n += int(sel.sum()) * bands
        if m is not None:
            mm = m & vc
            clear = ~m & vc
            self.nm += int(mm.sum())
            self.abs_m += float(ad[mm].sum())
            self.sq_m += float(sq[mm].sum())
            self.sam_m += float(angle[mm].sum())
            self.nc += int(clear.sum())
            self.sq_c += float(sq[clear].sum())
            if c is not None:
                rv = clear & cv
                dc = pc - c
                ac = sam_map(torch.from_numpy(pc[None]), torch.from_numpy(c[None]), degrees=True)[0, 0].numpy()
                self.nr += int(rv.sum())
                self.abs_r += float(np.abs(dc).sum(axis=0)[rv].sum())
                self.sam_r += float(ac[rv].sum())

    def result(self, with_mask: bool, with_cloudy: bool) -> Dict[str, float]:
        nan = float("nan")
        b = max(1, self.bands)

        def psnr(sq_sum: float, n: int) -> float:
            if n == 0:
                return nan
            mse = sq_sum / (n * b)
            return float("inf") if mse == 0 else 20.0 * math.log10(1.0 / math.sqrt(mse))

        out = {"mae": self.abs / (self.n * b), "rmse": math.sqrt(self.sq / (self.n * b)), "psnr": psnr(self.sq, self.n),
               "ssim": self.ssim / self.ssim_n if self.ssim_n else nan, "sam": self.sam / self.n}
        if with_mask:
            out["cloud_fraction"] = self.nm / self.n
            out["psnr_cloudy"] = psnr(self.sq_m, self.nm)
            out["psnr_clear"] = psnr(self.sq_c, self.nc)
            out["mae_reconstruction"] = self.abs_m / (self.nm * b) if self.nm else nan
            out["sam_reconstruction"] = self.sam_m / self.nm if self.nm else nan
            if with_cloudy:
                out["mae_reproduction"] = self.abs_r / (self.nr * b) if self.nr else nan
                out["sam_reproduction"] = self.sam_r / self.nr if self.nr else nan
        return out


def window_all(valid: np.ndarray, size: int) -> np.ndarray:
    """True where the ``size`` x ``size`` window starting there is all valid ('valid' positions)."""
    v = valid.astype(np.int32)
    c = np.pad(v.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return s == size * size


__all__ = ["SSIM_HALO", "MetricSums", "window_all"]

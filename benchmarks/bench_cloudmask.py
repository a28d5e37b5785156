"""Benchmark: the cloud / shadow mask engine end to end on a whole scene (``run_cloud_mask``).

Input: a ``--size`` x ``--size`` px scene at 10 m (default 10980, a full Sentinel-2 tile), six
bands B2, B3, B4, B8, B11, B12 as uint16 DN (nodata 0, bands named in their descriptions), tiled
GeoTIFF (512 x 512 blocks) under ``--workdir``. The pixels are the real SEN12MS-CR L1C patch
``39_p500`` (cloudy image, DR Congo, cumulus and their shadows), mirrored to fill the scene: the
radiometry is real, its arrangement is generated. The file is written once, in row strips, and reused.

The timed run is what topoclear:cloudmask does: locate the bands, choose the method (``--method``,
default the pretrained detector), read the scene window by window, block-average it 3 x 3 to 30 m,
run the detector (every 256 px tile once, blended across overlaps), bring the classes back to 10 m
and write the Byte class GeoTIFF (0 clear, 1 cloud, 2 shadow, 255 nodata; tiled, deflate) through
the atomic writer. Reports wall time, CPU time (user + system), the peak resident memory of the
run (VmHWM, reset after the scene generation), the onnxruntime provider, the machine and its load
average before and after.

    .venv/bin/python benchmarks/bench_cloudmask.py --size 2048    # quick check
    nice -n 10 .venv/bin/python benchmarks/bench_cloudmask.py      # full tile
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "build" / "plugins"))  # the plugin folder as the ``topoclear`` package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe_machine  # noqa: E402

DATA = Path(os.environ.get("TOPOCLEAR_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCE = DATA / "sen12ms-cr" / "s2_cloudy" / "ROIs1158_spring_s2_cloudy_39_p500.tif"
BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
L1C_INDEX = {b: i for i, b in enumerate(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11",
                                         "B12"))}
FULL_TILE = 10980
PIXEL_M = 10.0
ORIGIN = (300000.0, 9900000.0)
CRS = "EPSG:32733"


def mirrored(patch: np.ndarray, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
    """Window of an endless mirrored tiling of ``patch`` (C, H, W)."""
    h, w = patch.shape[1:]
    r = np.arange(row0, row0 + rows) % (2 * h)
    r = np.where(r < h, r, 2 * h - 1 - r)
    c = np.arange(col0, col0 + cols) % (2 * w)
    c = np.where(c < w, c, 2 * w - 1 - c)
    return patch[:, r[:, None], c[None, :]]


def generate(workdir: Path, size: int) -> Path:
    """Write (once) the size x size 6-band uint16 scene; returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"s2_6band_{size}.tif"
    if path.exists():
        return path
    with rasterio.open(SOURCE) as ds:
        patch = ds.read()[[L1C_INDEX[b] for b in BANDS]]
    patch = np.maximum(patch, 1)  # 0 is nodata
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=len(BANDS), dtype="uint16",
                       crs=CRS, transform=from_origin(ORIGIN[0], ORIGIN[1], PIXEL_M, PIXEL_M), nodata=0, tiled=True,
                       blockxsize=512, blockysize=512, BIGTIFF="IF_SAFER") as out:
        for i, name in enumerate(BANDS, start=1):
            out.set_band_description(i, name)
        for row in range(0, size, 1024):
            h = min(1024, size - row)
            out.write(mirrored(patch, row, 0, h, size), window=Window(0, row, size, h))
    os.replace(tmp, path)
    return path


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB), VmHWM."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the process's peak resident memory (VmHWM) to its current size (Linux); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=FULL_TILE, help="scene size in px at 10 m (default 10980)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "cloudmask")
    parser.add_argument("--method", default="detector", help="mask method key (default: detector)")
    parser.add_argument("--resolution", type=float, default=30.0, help="detector resolution in m (0: native)")
    parser.add_argument("--window", type=int, default=0, help="window size in native px (0: the default)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    parser.add_argument("--batch", type=int, default=0, help="tiles per batch (0: default)")
    parser.add_argument("--buffer", type=float, default=0.0, help="cloud / shadow buffer in metres")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if not SOURCE.exists():
        print(f"sample data not found: {SOURCE}", file=sys.stderr)
        return 2

    from topoclear.engine.clouds.masks.detector_scene import plan_scene
    from topoclear.engine.clouds.masks.run import CloudMaskRequest, run_cloud_mask
    from topoclear.engine.progress import Monitor

    t0 = time.perf_counter()
    path = generate(args.workdir, args.size)
    print(f"input: {path} ({args.size} x {args.size} px at 10 m, 6 bands uint16; real SEN12MS-CR 39_p500 "
          f"pixels, mirrored; ready in {time.perf_counter() - t0:.0f} s)", flush=True)
    out_path = args.workdir / f"classes_{args.size}.tif"
    load_before = os.getloadavg()
    peak_reset = reset_peak_rss()  # the scene generation above is not part of the figure
    rss_before = peak_rss_mib()
    cpu0 = cpu_seconds()
    start = time.perf_counter()
    report = run_cloud_mask(CloudMaskRequest(
        s2=str(path), output=str(out_path), method=args.method, buffer_m=args.buffer,
        resolution_m=args.resolution or None, threads=args.threads or None, batch_size=args.batch or None,
        window_px=args.window or None), Monitor(on_message=lambda text: print(text, flush=True)))
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    load_after = os.getloadavg()
    peak = peak_rss_mib()
    plan = plan_scene(args.size, args.size, PIXEL_M, args.resolution or PIXEL_M)
    result = {
        "size": args.size, "method": report.method, "seconds": seconds, "cpu_seconds": cpu,
        "mpx_per_s": args.size ** 2 / 1e6 / seconds, "tiles": plan.tile_count if report.method == "detector" else None,
        "peak_rss_mib": peak, "rss_before_run_mib": rss_before, "peak_rss_reset": peak_reset, "provider": report.provider, "model": report.model,
        "cloud_percent": report.cloud_percent, "shadow_percent": report.shadow_percent,
        "output_mib": out_path.stat().st_size / 2 ** 20, "machine": describe_machine(),
        "load_before": load_before, "load_after": load_after, "nice": os.nice(0),
    }
    print(report.summary())
    print(f"{args.size} x {args.size} px, {report.method_title}: {seconds:.1f} s wall ({result['mpx_per_s']:.2f} "
          f"Mpx/s), {cpu:.0f} s CPU; peak RSS {peak:.0f} MiB"
          + ("" if peak_reset else " (including the scene generation: VmHWM could not be reset)")
          + f" ({rss_before:.0f} MiB before the run); {report.provider or 'no detector'}"
          + (f", {plan.tile_count} tiles" if report.method == "detector" else "")
          + f"; cloud {report.cloud_percent:.1f} %, shadow {report.shadow_percent:.1f} %; output "
          f"{result['output_mib']:.1f} MiB")
    print(f"machine: {result['machine']}; nice {result['nice']}; load average before "
          f"{' '.join(f'{v:.2f}' for v in load_before)}, after {' '.join(f'{v:.2f}' for v in load_after)}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

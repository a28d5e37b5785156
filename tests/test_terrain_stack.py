"""The aligned terrain stack: grids in other CRSs and resolutions, coverage, sun from metadata."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from osgeo import gdal
from rasterio.crs import CRS
from rasterio.transform import from_origin

from conftest import data_path
from topoclear.engine.errors import Cancelled, InputError
from topoclear.engine.progress import Monitor
from topoclear.engine.sentinel2.metadata import read_sun_angles
from topoclear.engine.terrain.derivatives import TerrainOptions, compute_terrain
from topoclear.engine.terrain.stack import terrain_stack
from topoclear.models.bands import TERRAIN_BANDS

gdal.UseExceptions()


def make_reference(path, crs, left, top, pixel, width, height, bands=3):
    """A Sentinel-2-like uint16 raster defining the target grid."""
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype="uint16",
                       crs=CRS.from_user_input(crs), transform=from_origin(left, top, pixel, pixel)) as ds:
        ds.write(np.full((bands, height, width), 1234, np.uint16))
    return path


@pytest.fixture(scope="module")
def dem():
    return data_path("dem", "bigtujunga.tif")


@pytest.fixture()
def utm_reference(dem, tmp_path):
    with rasterio.open(dem) as ds:
        left, top = ds.transform.c + 3000, ds.transform.f - 2000
    return make_reference(tmp_path / "s2_utm10m.tif", "EPSG:32611", left, top, 10.0, 400, 300)


def read_stack(path):
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64), ds.nodata, ds.descriptions, ds.crs, ds.transform, ds.shape


def warp_like(src, reference, tmp_path, resampling):
    with rasterio.open(reference) as ref:
        b = ref.bounds
        out = str(tmp_path / f"warped_{resampling}.tif")
        gdal.Warp(out, str(src), dstSRS=ref.crs.to_wkt(), outputBounds=(b.left, b.bottom, b.right, b.top),
                  width=ref.width, height=ref.height, resampleAlg=resampling, dstNodata=-9999, outputType=gdal.GDT_Float32)
    with rasterio.open(out) as ds:
        return ds.read(1).astype(np.float64)


def test_stack_on_a_finer_grid_matches_gdalwarp_of_the_dem_grid_products(dem, utm_reference, tmp_path):
    out = tmp_path / "stack.tif"
    terrain_stack(dem, utm_reference, out)
    stack, nod, descriptions, crs, transform, shape = read_stack(out)
    with rasterio.open(utm_reference) as ref:
        assert (crs, transform, shape) == (ref.crs, ref.transform, ref.shape)
    assert stack.shape[0] == 4 and descriptions[0] == "elevation" and descriptions[1] == "slope (degrees)"
    assert descriptions[2].startswith("aspect") and descriptions[3].startswith("hillshade")
    assert not np.any(stack == nod)  # the DEM covers the whole reference
    compute_terrain(dem, {"slope": tmp_path / "slope.tif", "aspect": tmp_path / "aspect.tif"})
    for band, source in ((1, "slope.tif"), (0, None)):
        expected = warp_like(tmp_path / source if source else dem, utm_reference, tmp_path, "bilinear")
        assert np.abs(stack[band] - expected).max() < 1e-3, TERRAIN_BANDS[band]
    # nearest-neighbour resampling reproduces the DEM-grid aspect exactly (sin/cos round trip)
    terrain_stack(dem, utm_reference, tmp_path / "stack_nn.tif", resampling="nearest")
    aspect = read_stack(tmp_path / "stack_nn.tif")[0][2]
    expected = warp_like(tmp_path / "aspect.tif", utm_reference, tmp_path, "near")
    diff = np.abs(aspect - expected)
    assert np.minimum(diff, 360 - diff).max() < 1e-3


def test_aspect_is_resampled_across_north_without_wrap_artefacts(tmp_path):
    """A valley facing north: aspects 350 and 10 average to 0 (north), not 180 (south)."""
    x = np.arange(40) * 30.0
    y = np.arange(40) * 30.0
    # a plane tilted north with a sideways fold: west half faces 350 deg, east half faces 10 deg
    gx = np.where(x < 600, -np.sin(np.radians(350)), -np.sin(np.radians(10))) * 0.3
    z = (np.cumsum(np.repeat(gx[None, :], 40, axis=0), axis=1) * 30.0
         + (np.cos(np.radians(10)) * 0.3 * y)[::-1, None] * -1.0 + 1000.0)
    path = tmp_path / "fold.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=1, dtype="float32",
                       crs=CRS.from_epsg(32632), transform=from_origin(500000, 5000000, 30, 30)) as ds:
        ds.write(z.astype(np.float32), 1)
    ref = make_reference(tmp_path / "ref.tif", "EPSG:32632", 500000 + 300, 5000000 - 300, 45.0, 13, 13)
    terrain_stack(path, ref, tmp_path / "stack.tif")
    aspect = read_stack(tmp_path / "stack.tif")[0][2]
    distance_from_north = np.minimum(aspect, 360 - aspect)
    assert distance_from_north.max() <= 10.01


def test_reference_in_another_crs_with_partial_coverage(dem, tmp_path):
    with rasterio.open(dem) as ds:
        lon_lat = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    # a geographic grid that sticks out of the DEM on the east by about a third
    width_deg = (lon_lat[2] - lon_lat[0]) * 0.6
    left = lon_lat[0] + (lon_lat[2] - lon_lat[0]) * 0.6
    ref = make_reference(tmp_path / "ref4326.tif", "EPSG:4326", left, lon_lat[3] - 0.02, width_deg / 120, 120, 60)
    messages = []
    terrain_stack(dem, ref, tmp_path / "stack.tif", monitor=Monitor(on_message=messages.append))
    stack, nod, *_ = read_stack(tmp_path / "stack.tif")
    covered = stack[0] != nod
    assert 0.5 < covered[:, :40].mean() and covered[:, -30:].mean() == 0.0
    assert any("covers" in m for m in messages)
    with pytest.raises(InputError, match=r"covers only \d+\.\d %"):
        terrain_stack(dem, ref, tmp_path / "refused.tif", min_coverage=0.9)
    assert not (tmp_path / "refused.tif").exists()


def test_no_overlap_is_a_clear_error(dem, tmp_path):
    ref = make_reference(tmp_path / "alps.tif", "EPSG:32632", 300000, 5100000, 10.0, 50, 50)
    with pytest.raises(InputError, match="does not overlap"):
        terrain_stack(dem, ref, tmp_path / "stack.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alps.tif"]


def test_hillshade_band_lit_by_the_scene_sun(dem, utm_reference, tmp_path):
    safe = next(data_path("sentinel2-safe").glob("S2A_MSIL2A_20190212*"))
    sun = read_sun_angles(safe)
    terrain_stack(dem, utm_reference, tmp_path / "lit.tif", options=TerrainOptions(sun=sun))
    terrain_stack(dem, utm_reference, tmp_path / "default.tif")
    lit, _, descriptions, *_ = read_stack(tmp_path / "lit.tif")
    default = read_stack(tmp_path / "default.tif")[0]
    assert f"sun {sun.zenith:.2f}/{sun.azimuth:.2f} deg" in descriptions[3]  # zenith/azimuth
    assert np.abs(lit[3] - default[3]).mean() > 5  # a sun from the north-east lights other slopes
    np.testing.assert_array_equal(lit[:3], default[:3])


def test_stack_does_not_depend_on_window_size_and_cancels_cleanly(dem, utm_reference, tmp_path):
    terrain_stack(dem, utm_reference, tmp_path / "a.tif")
    terrain_stack(dem, utm_reference, tmp_path / "b.tif", window_rows=7)
    np.testing.assert_array_equal(read_stack(tmp_path / "a.tif")[0], read_stack(tmp_path / "b.tif")[0])
    with pytest.raises(Cancelled):
        terrain_stack(dem, utm_reference, tmp_path / "c.tif", window_rows=7,
                      monitor=Monitor(is_cancelled=iter([False] * 5 + [True] * 100).__next__))
    assert not (tmp_path / "c.tif").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]

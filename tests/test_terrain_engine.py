"""Terrain engine against gdaldem on the real sample DEMs, window independence, nodata, errors."""
from __future__ import annotations


import numpy as np
import pytest
import rasterio
from osgeo import gdal
from rasterio.crs import CRS
from rasterio.transform import from_origin

from conftest import data_path
from topoclear.engine.errors import Cancelled, InputError, OutputError
from topoclear.engine.progress import Monitor
from topoclear.engine.sentinel2.metadata import SunAngles
from topoclear.engine.terrain.derivatives import TerrainOptions, compute_terrain

gdal.UseExceptions()


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1).astype(np.float64), ds.nodata


def gdaldem(dem, product, tmp_path, *options):
    out = str(tmp_path / f"gdal_{product}_{abs(hash(options))}.tif")
    gdal.DEMProcessing(out, str(dem), product, options=list(options))
    return read(out)


def ours(dem, products, tmp_path, tag="", **kw):
    outputs = {p: str(tmp_path / f"ours_{p}{tag}.tif") for p in products}
    window = kw.pop("window", (None, None))
    compute_terrain(dem, outputs, options=TerrainOptions(**kw), window_rows=window[0], window_cols=window[1])
    return {p: read(path) for p, path in outputs.items()}


def compare(reference, result, angular=False):
    """Max abs difference where both are valid, and the count of cells where validity differs."""
    ref, ref_nod = reference
    res, res_nod = result
    ref_ok, res_ok = ref != ref_nod, res != res_nod
    both = ref_ok & res_ok
    diff = np.abs(ref - res)[both]
    if angular:
        diff = np.minimum(diff, 360 - diff)
    return diff.max(), int((ref_ok != res_ok).sum()), int(both.sum())


@pytest.fixture(scope="module")
def bigtujunga():
    return data_path("dem", "bigtujunga.tif")


def test_slope_aspect_hillshade_match_gdaldem_on_projected_dem(bigtujunga, tmp_path):
    result = ours(bigtujunga, ["slope", "aspect", "hillshade"], tmp_path, edge_mode="nodata")
    diff, mismatch, n = compare(gdaldem(bigtujunga, "slope", tmp_path), result["slope"])
    assert n > 700_000 and mismatch == 0 and diff < 0.01
    diff, mismatch, _ = compare(gdaldem(bigtujunga, "aspect", tmp_path), result["aspect"], angular=True)
    assert mismatch == 0 and diff < 0.01
    # gdaldem writes Byte 1 + 254*cos(i) (0 = nodata); ours is 255*cos(i) in Float32
    g, g_nod = gdaldem(bigtujunga, "hillshade", tmp_path)
    h, h_nod = result["hillshade"]
    diff, mismatch, _ = compare((g, g_nod), (np.where(h != h_nod, 1 + 254 * h / 255, h_nod), h_nod))
    assert mismatch == 0 and diff <= 1.0


def test_hillshade_sun_angles_and_multidirectional_match_gdaldem(bigtujunga, tmp_path):
    sun = SunAngles(zenith=32.707073851362, azimuth=62.3286549448294)  # T07HFE's mean sun
    h = ours(bigtujunga, ["hillshade"], tmp_path, "_sun", edge_mode="nodata", sun=sun)["hillshade"]
    g = gdaldem(bigtujunga, "hillshade", tmp_path, "-az", str(sun.azimuth), "-alt", str(90 - sun.zenith))
    diff, mismatch, _ = compare(g, (np.where(h[0] != h[1], 1 + 254 * h[0] / 255, h[1]), h[1]))
    assert mismatch == 0 and diff <= 1.0
    m = ours(bigtujunga, ["hillshade"], tmp_path, "_multi", edge_mode="nodata", multidirectional=True)["hillshade"]
    g = gdaldem(bigtujunga, "hillshade", tmp_path, "-multidirectional")
    diff, mismatch, _ = compare(g, (np.where(m[0] != m[1], 1 + 254 * m[0] / 255, m[1]), m[1]))
    assert mismatch == 0 and diff <= 1.0


def test_geographic_dem_gives_true_degrees(tmp_path):
    """rmnp-dem is EPSG:4326 with non-square pixels: each row must equal gdaldem run on that row's
    ground pixel sizes in metres (measured independently on the WGS 84 ellipsoid with pyproj).

    Aspect is checked on analytic planes instead (below): gdaldem's aspect ignores the pixel
    sizes, so it is only right for square pixels."""
    from pyproj import Geod

    dem = data_path("dem", "rmnp-dem.tif")
    result = ours(dem, ["slope", "hillshade"], tmp_path, edge_mode="nodata")
    z, nod = read(dem)
    with rasterio.open(dem) as ds:
        t = ds.transform
    geod = Geod(ellps="WGS84")
    for row in range(1, z.shape[0] - 1):
        lat = t.f + (row + 0.5) * t.e
        dx = geod.inv(t.c, lat, t.c + t.a, lat)[2]
        dy = geod.inv(t.c, lat - t.e / 2, t.c, lat + t.e / 2)[2]
        mem = gdal.GetDriverByName("MEM").Create("", z.shape[1], 3, 1, gdal.GDT_Float32)
        mem.SetGeoTransform((0, dx, 0, 0, 0, -dy))
        mem.GetRasterBand(1).WriteArray(z[row - 1:row + 2].astype(np.float32))
        mem.GetRasterBand(1).SetNoDataValue(nod)
        for product, nodata, tolerance in (("slope", -9999, 0.01), ("hillshade", 0, 1.0)):
            out = gdal.DEMProcessing("", mem, product, format="MEM")  # keep the dataset alive while reading
            g = out.GetRasterBand(1).ReadAsArray()[1].astype(np.float64)
            mine, mine_nod = result[product]
            ok = (g != nodata) & (mine[row] != mine_nod)
            expected = mine[row][ok] if product == "slope" else 1 + 254 * mine[row][ok] / 255
            assert np.abs(g[ok] - expected).max() <= tolerance, (product, row)
    # and the correction matters: ignoring it (gdaldem -s 111120) is far off at 40 degrees north
    naive = gdaldem(dem, "slope", tmp_path, "-s", "111120")
    assert compare(naive, result["slope"])[0] > 1.0


@pytest.mark.parametrize("east", [0.0, 0.05])
def test_geographic_plane_has_its_analytic_slope_and_aspect(tmp_path, east):
    """A plane rising 0.1 m per metre northwards (and ``east`` m per metre eastwards) on a lat/lon
    grid with non-square pixels has slope atan(|grad|) and aspect atan2(-east, -0.1) everywhere."""
    from pyproj import Geod

    lats = 46.0 - (np.arange(60) + 0.5) * 0.001
    lons = 7.0 + (np.arange(50) + 0.5) * 0.0013
    geod = Geod(ellps="WGS84")
    north_m = np.array([geod.inv(7.0, 45.0, 7.0, lat)[2] for lat in lats])
    east_m = np.array([[geod.inv(7.0, lat, lon, lat)[2] for lon in lons] for lat in lats])
    z = (0.1 * north_m[:, None] + east * east_m).astype(np.float64)
    path = tmp_path / "plane4326.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=60, count=1, dtype="float32",
                       crs=CRS.from_epsg(4326), transform=from_origin(7.0, 46.0, 0.0013, 0.001)) as ds:
        ds.write(z.astype(np.float32), 1)
    result = ours(path, ["slope", "aspect"], tmp_path, "_plane")
    slope, aspect = result["slope"][0][1:-1, 1:-1], result["aspect"][0][1:-1, 1:-1]
    assert np.allclose(slope, np.degrees(np.arctan(np.hypot(0.1, east))), atol=0.01)
    assert np.allclose(aspect, np.degrees(np.arctan2(-east, -0.1)) % 360, atol=0.05)


def test_result_does_not_depend_on_window_size(bigtujunga, tmp_path):
    whole = ours(bigtujunga, ["slope", "aspect", "hillshade"], tmp_path, "_whole", window=(10_000, None))
    for i, window in enumerate([(37, 53), (1, None), (100, 1000)]):
        tiled = ours(bigtujunga, ["slope", "aspect", "hillshade"], tmp_path, f"_w{i}", window=window)
        for p in whole:
            assert np.array_equal(whole[p][0], tiled[p][0]), (p, window)


def make_dem_with_hole(src, dst):
    with rasterio.open(src) as ds:
        z = ds.read(1)
        profile = ds.profile
    z[200:210, 300:330] = ds.nodata
    z[0, :50] = ds.nodata  # nodata on the border too
    with rasterio.open(dst, "w", **profile) as out:
        out.write(z, 1)
    return z != profile["nodata"]


@pytest.mark.parametrize("mode", ["edges", "nodata"])
def test_nodata_centre_gives_nodata(bigtujunga, tmp_path, mode):
    valid = make_dem_with_hole(bigtujunga, tmp_path / "holes.tif")
    result = ours(tmp_path / "holes.tif", ["slope", "aspect", "hillshade"], tmp_path, edge_mode=mode)
    for product, (values, nod) in result.items():
        assert np.all(values[~valid] == nod), product
    slope, nod = result["slope"]
    if mode == "edges":  # every valid cell gets a value: no border, nothing lost beside the hole
        assert np.all(slope[valid] != nod)
    else:  # cells touching the hole or the edge are nodata, like gdaldem
        assert slope[199, 310] == nod and slope[0, 100] == nod and slope[300, 600] != nod


def test_sun_angles_from_real_metadata():
    from topoclear.engine.sentinel2.metadata import find_tile_metadata, read_sun_angles

    root = data_path("sentinel2-safe")
    expected = {"T11SLT": (27.3677090099684, 145.690428046411), "T22HBD": (32.3712311857264, 64.9495240978383),
                "T07HFE": (32.707073851362, 62.3286549448294), "T01CCV": (55.201271439448, 52.614268815742)}
    found = {}
    for product in sorted(p for p in root.iterdir() if p.is_dir()):
        tile = next(k for k in expected if k in product.name)
        sun = read_sun_angles(product)  # the product folder
        found[tile] = (sun.zenith, sun.azimuth)
        xml = find_tile_metadata(product)
        assert read_sun_angles(xml) == sun  # the XML itself
        assert abs(sun.altitude - (90 - expected[tile][0])) < 1e-9
    assert found == expected
    jp2 = next(root.glob("esa_*T22HBD*/GRANULE/*/IMG_DATA/R60m/*_B04_60m.jp2"))
    assert read_sun_angles(jp2).azimuth == pytest.approx(64.9495240978383)  # a band file inside the SAFE


def test_metadata_without_sun_angles_is_a_clear_error(tmp_path):
    from topoclear.engine.sentinel2.metadata import read_sun_angles

    bad = tmp_path / "MTD_TL.xml"
    bad.write_text("<Level-2A_Tile_ID><General_Info/></Level-2A_Tile_ID>")
    with pytest.raises(InputError, match="Mean_Sun_Angle"):
        read_sun_angles(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_sun_angles(tmp_path / "nothing_here")
    empty = tmp_path / "empty.SAFE"
    empty.mkdir()
    with pytest.raises(InputError, match="no MTD_TL.xml"):
        read_sun_angles(empty)


def test_bad_inputs_and_outputs_are_clear_errors(bigtujunga, tmp_path):
    not_raster = tmp_path / "notes.txt"
    not_raster.write_text("not a raster")
    with pytest.raises(InputError, match="not a raster"):
        compute_terrain(not_raster, {"slope": tmp_path / "s.tif"})
    with pytest.raises(InputError, match="file not found"):
        compute_terrain(tmp_path / "missing.tif", {"slope": tmp_path / "s.tif"})
    with pytest.raises(InputError, match="band 2"):
        compute_terrain(bigtujunga, {"slope": tmp_path / "s.tif"}, band=2)
    with pytest.raises(OutputError, match="does not exist"):
        compute_terrain(bigtujunga, {"slope": tmp_path / "no" / "such" / "folder.tif"})
    with pytest.raises(InputError, match="z-factor"):
        TerrainOptions(z_factor=0)


def test_cancel_and_failure_leave_no_partial_output(bigtujunga, tmp_path):
    calls = []

    def cancel_after_two():
        calls.append(1)
        return len(calls) > 2

    out = tmp_path / "slope.tif"
    with pytest.raises(Cancelled):
        compute_terrain(bigtujunga, {"slope": out, "aspect": tmp_path / "aspect.tif"},
                        monitor=Monitor(is_cancelled=cancel_after_two), window_rows=50)
    assert list(tmp_path.iterdir()) == []
    # an existing output survives a failed run untouched
    out.write_bytes(b"previous result")
    with pytest.raises(Cancelled):
        compute_terrain(bigtujunga, {"slope": out}, monitor=Monitor(is_cancelled=lambda: True))
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slope.tif"]


def test_progress_is_reported(bigtujunga, tmp_path):
    seen = []
    compute_terrain(bigtujunga, {"slope": tmp_path / "s.tif"}, monitor=Monitor(on_progress=seen.append),
                    window_rows=100)
    assert seen == sorted(seen) and seen[-1] == 100.0 and len(seen) == 7


def test_tile_grid_from_real_metadata():
    from topoclear.engine.sentinel2.metadata import read_tile_grid

    safe = next(data_path("sentinel2-safe").glob("S2A_MSIL2A_20150826*T11SLT*"))
    grid = read_tile_grid(safe, 20)
    assert (grid.epsg, grid.ulx, grid.uly, grid.resolution, grid.width, grid.height) == \
        (32611, 300000.0, 3800040.0, 20.0, 5490, 5490)
    assert read_tile_grid(safe).width == 10980


def _exact_horn(z, dx, dy):
    """Horn's gradients in float64 on complete 3x3 windows of ``z`` (NaN on the border)."""
    z = z.astype(np.float64)
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    gx, gy = np.full(z.shape, np.nan), np.full(z.shape, np.nan)
    gx[1:-1, 1:-1] = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * dx)
    gy[1:-1, 1:-1] = ((a + 2 * b + c) - (g + 2 * h + i)) / (8 * dy)
    return gx, gy


def test_gradients_of_a_high_float_dem_are_exact(tmp_path):
    """A gentle slope (about 1 degree) 4000 m up, stored as Float32 with decimals: sums of the 3x3 window
    in float32 lose about 0.002 m there and turn the aspect by hundredths of a degree; in float64 the
    aspect and slope are Horn's to the float32 rounding of the output."""
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:300, 0:400].astype(np.float64)
    z = (4123.4567 + 0.3 * cols - 0.45 * rows + rng.normal(0, 0.05, rows.shape)).astype(np.float32)
    dem = tmp_path / "high.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=400, height=300, count=1, dtype="float32", nodata=-9999.0,
                       crs="EPSG:32613", transform=from_origin(400000, 4500000, 30, 30)) as ds:
        ds.write(z, 1)
    result = ours(dem, ["slope", "aspect"], tmp_path, edge_mode="nodata", window=(37, None))
    gx, gy = _exact_horn(z, 30.0, 30.0)
    exact_aspect = np.degrees(np.arctan2(-gx, -gy)) % 360.0
    exact_slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    inner = np.isfinite(exact_aspect)
    aspect, nod = result["aspect"]
    slope, _ = result["slope"]
    assert np.all(aspect[inner] != nod) and np.all(aspect[~inner] == nod)
    diff = np.abs(aspect[inner] - exact_aspect[inner])
    assert np.minimum(diff, 360 - diff).max() < 1e-3
    assert np.abs(slope[inner] - exact_slope[inner]).max() < 1e-4


def test_gradients_are_float64_and_the_z_factor_is_bounded():
    from topoclear.engine.terrain.derivatives import MAX_Z_FACTOR, PixelMetrics, horn_gradients
    from topoclear.engine.io.raster import Grid

    z = np.arange(25, dtype=np.float64).reshape(5, 5) + 4000.0
    gx, gy, ok = horn_gradients(z, np.ones(z.shape, bool), 30.0, 30.0)
    assert gx.dtype == gy.dtype == np.float64 and ok.all()
    geographic = PixelMetrics.of(Grid(CRS.from_epsg(4326), from_origin(-105, 40.5, 1 / 3600, 1 / 3600), 10, 10))
    dx, dy = geographic.steps(0, 10)
    assert dx.dtype == dy.dtype == np.float64 and dx.shape == (10, 1)
    TerrainOptions(z_factor=MAX_Z_FACTOR)
    for bad in (0.0, -1.0, MAX_Z_FACTOR * 1.0001, 1e300, float("nan"), float("inf")):
        with pytest.raises(InputError, match="z-factor"):
            TerrainOptions(z_factor=bad)


def test_the_dem_is_never_an_output(bigtujunga, tmp_path):
    import shutil

    dem = tmp_path / "dem.tif"
    shutil.copyfile(bigtujunga, dem)
    before = dem.read_bytes()
    with pytest.raises(InputError, match=r"slope: the output .*dem\.tif is the input DEM"):
        compute_terrain(dem, {"slope": tmp_path / "." / "dem.tif"})
    assert dem.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["dem.tif"]

"""Snow engine: band detection, DN -> reflectance, NDSI, snow maps and statistics.

Real samples (../shared/data) check the results on real Sentinel-2 spectra; small constructed
scenes check the Let It Snow logic where the snowline and every class can be worked out by hand.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from conftest import data_path
from topoclear.engine.clouds.masks.choice import detector_status
from topoclear.engine.errors import Cancelled, InputError
from topoclear.engine.progress import Monitor
from topoclear.engine.io.raster import Grid
from topoclear.engine.io.warp import warp_window
from topoclear.engine.sentinel2.reader import BandReader
from topoclear.engine.sentinel2.bands import band_from_filename, canonical_band
from topoclear.engine.sentinel2.locate import locate_bands
from topoclear.engine.snow.areas import row_areas_m2
from topoclear.engine.snow.classes import CLOUD, NO_SNOW, NODATA, SNOW
from topoclear.engine.snow.darkclouds import block_mean
from topoclear.engine.snow.elevation import ElevationBand, ElevationCounts, find_snowline
from topoclear.engine.snow.indices import ndsi
from topoclear.engine.snow.mapping import snow_map
from topoclear.engine.snow.ndsi import compute_ndsi
from topoclear.engine.snow.parameters import CloudInput, SnowParameters
from topoclear.engine.snow.requests import NdsiRequest, Sentinel2Input, SnowMapRequest, SnowStatisticsRequest
from topoclear.engine.snow.statistics import read_snowline_tag, snow_statistics

BEN = ("bigearthnet", "BigEarthNet-S2-Example")
FINLAND = "S2B_MSIL2A_20180204T94161_57_38"
SNOW_FREE_BEN = ("S2A_MSIL2A_20170613T101031_87_48", "S2A_MSIL2A_20170617T113321_36_85",
                 "S2A_MSIL2A_20170617T113321_4_55", "S2A_MSIL2A_20171221T112501_56_35",
                 "S2B_MSIL2A_20170924T93020_69_24")
T22HBD = "esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE"
UTM = CRS.from_epsg(32632)
#: The pretrained cloud detector (onnxruntime and ukis-csmask) can run here.
HAVE_DETECTOR = detector_status()[0]
needs_detector = pytest.mark.skipif(not HAVE_DETECTOR, reason="onnxruntime / ukis-csmask not installed")


def ben_band(patch: str, band: str = "B03") -> Path:
    return data_path(*BEN, patch, f"{patch}_{band}.tif")


def sen12(kind: str, name: str) -> Path:
    return data_path("sen12ms-cr", kind, f"{name}.tif")


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def snow_request(source, output, params=None, bounds=None, **fields) -> SnowMapRequest:
    """The request of the snow map of the Sentinel-2 image ``source`` (within ``bounds``) into ``output``."""
    return SnowMapRequest(Sentinel2Input(source, bounds=bounds), output, params or SnowParameters(), **fields)


def fractions(result) -> dict:
    valid = result.valid_pixels
    return {k: result.counts[k] / valid for k in (SNOW, NO_SNOW, CLOUD)}


# -- constructed scenes ---------------------------------------------------------------------------

def write_band(path: Path, values: np.ndarray, pixel: float = 20.0, dtype="uint16", crs=UTM,
               origin=(400000.0, 5100000.0), nodata=None) -> Path:
    profile = dict(driver="GTiff", width=values.shape[1], height=values.shape[0], count=1, dtype=dtype, crs=crs,
                   transform=from_origin(origin[0], origin[1], pixel, pixel), nodata=nodata)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(values.astype(dtype), 1)
    return path


def write_scene(folder: Path, green, red, swir, dem=None, cloud=None, scl=None, pixel=20.0) -> dict:
    """Reflectances (0-1) as uint16 DN band files ``scene_B03.tif`` ...; DEM float32; masks uint8."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, refl in (("B03", green), ("B04", red), ("B11", swir)):
        out[name] = write_band(folder / f"scene_{name}.tif", np.round(np.asarray(refl) * 10000), pixel)
    if dem is not None:
        out["dem"] = write_band(folder / "dem.tif", np.asarray(dem, np.float32), pixel, "float32", nodata=-9999.0)
    if cloud is not None:
        out["cloud"] = write_band(folder / "cloudmask.tif", np.asarray(cloud), pixel, "uint8")
    if scl is not None:
        out["scl"] = write_band(folder / "scene_SCL.tif", np.asarray(scl), pixel, "uint8")
    return out


# Spectra of the constructed scenes (reflectance green, red, SWIR1) and their NDSI.
BARE = (0.10, 0.08, 0.10)          # NDSI 0: no snow in any pass
BRIGHT_SNOW = (0.50, 0.50, 0.05)   # NDSI 0.818, red 0.5: pass-1 snow
MARGINAL = (0.12, 0.10, 0.07)      # NDSI 0.263, red 0.10: pass-2 snow only (0.15 < NDSI <= 0.4, 0.04 < red <= 0.2)


def staircase_scene(tmp_path: Path, layout: dict, rows: int = 10, cols: int = 20, extra=None):
    """Row k (bottom row k=0) is elevation band k: z = 1000 + 100 k + 5 c (c = column), so the
    scene's lowest elevation is 1000 m and 100 m band k holds exactly row k. ``layout`` maps
    (k, c) -> spectrum; everything else is BARE."""
    g, r, s = (np.full((rows, cols), BARE[i]) for i in range(3))
    z = np.zeros((rows, cols), np.float32)
    for k in range(rows):
        row = rows - 1 - k
        z[row] = 1000 + 100 * k + 5 * np.arange(cols)
    for (k, c), spectrum in layout.items():
        row = rows - 1 - k
        g[row, c], r[row, c], s[row, c] = spectrum
    return write_scene(tmp_path, g, r, s, dem=z, **(extra or {})), z


def cell(classes: np.ndarray, k: int, c: int, rows: int = 10) -> int:
    return int(classes[rows - 1 - k, c])


def test_lis_snowline_and_pass2_by_hand(tmp_path):
    # Band 4 (1400-1500 m): 3 of 20 pixels pass-1 snow -> snow fraction 0.15 > 0.10, first such band
    # scanning upward, so z_s = lower edge of band 2 = 1200 m. Pass-2 ("marginal") pixels count as snow
    # only strictly above 1200 m: band 1 no, band 2 column 0 (z = 1200) no, column 1 (z = 1205) yes.
    layout = {(4, 0): BRIGHT_SNOW, (4, 7): BRIGHT_SNOW, (4, 13): BRIGHT_SNOW,
              (1, 3): MARGINAL, (2, 0): MARGINAL, (2, 1): MARGINAL, (3, 5): MARGINAL, (6, 9): MARGINAL,
              (8, 2): BRIGHT_SNOW}
    files, z = staircase_scene(tmp_path, layout)
    result = snow_map(snow_request(files["B03"], tmp_path / "snow.tif", SnowParameters(), dem=str(files["dem"])))
    assert result.snowline == 1200.0
    classes = read(tmp_path / "snow.tif")
    expected_snow = {(4, 0), (4, 7), (4, 13), (8, 2), (2, 1), (3, 5), (6, 9)}
    for k in range(10):
        for c in range(20):
            assert cell(classes, k, c) == (SNOW if (k, c) in expected_snow else NO_SNOW), (k, c)
    assert result.counts[SNOW] == 7 and result.counts[NO_SNOW] == 193
    # the pass-1 elevation table the snowline came from
    assert [b.z_min for b in result.pass1_bands[:5]] == [1000, 1100, 1200, 1300, 1400]
    assert (result.pass1_bands[4].snow, result.pass1_bands[4].no_snow, result.pass1_bands[4].cloud) == (3, 17, 0)
    assert read_snowline_tag(str(tmp_path / "snow.tif")) == 1200.0
    with rasterio.open(tmp_path / "snow.tif") as ds:
        assert ds.tags()["CLASSES"] == "100=snow;0=no snow;205=cloud;255=nodata"
        assert ds.colormap(1)[SNOW][:3] != ds.colormap(1)[NO_SNOW][:3]
        assert ds.nodata == NODATA


def test_lis_first_band_needs_cloud_free_fraction(tmp_path):
    # Band 4 is 19/20 bright cloud (red 0.5 over 1 pixel blocks: never released) with its one clear
    # pixel snow: cloud-free fraction 0.05 <= 0.10, so band 4 does not count. Band 5 has 3/20 snow
    # -> z_s = lower edge of band 3 = 1300 m.
    cloud = np.zeros((10, 20), np.uint8)
    cloud[10 - 1 - 4, 1:] = 1
    layout = {(4, 0): BRIGHT_SNOW, (5, 2): BRIGHT_SNOW, (5, 3): BRIGHT_SNOW, (5, 4): BRIGHT_SNOW}
    layout.update({(4, c): (0.6, 0.6, 0.5) for c in range(1, 20)})  # bright cloud spectra
    layout.update({(2, 5): MARGINAL, (3, 0): MARGINAL, (3, 6): MARGINAL})
    files, _ = staircase_scene(tmp_path, layout, extra={"cloud": cloud})
    params = SnowParameters(darkcloud_scale=0)
    result = snow_map(snow_request(files["B03"], tmp_path / "snow.tif", params, dem=str(files["dem"]),
                                   cloud=CloudInput("raster", str(files["cloud"]))))
    assert result.snowline == 1300.0
    classes = read(tmp_path / "snow.tif")
    assert cell(classes, 2, 5) == NO_SNOW                  # below z_s
    assert cell(classes, 3, 0) == NO_SNOW                  # z = 1300 = z_s, not above
    assert cell(classes, 3, 6) == SNOW                     # z = 1330 > z_s
    assert all(cell(classes, 4, c) == CLOUD for c in range(1, 20))
    assert result.pass1_bands[4].cloud == 19 and result.pass1_bands[4].snow == 1


def test_lis_dark_cloud_release_and_back_to_cloud(tmp_path):
    # One row of 8 pixels, all in the input cloud mask except the last; 1-pixel dark-cloud blocks.
    spectra = [
        (0.50, 0.50, 0.05),  # 0 bright cloud (red 0.50 >= 0.30): stays cloud although snow-like -> 205
        (0.40, 0.25, 0.04),  # 1 dark cloud (red 0.25), NDSI 0.82 > 0.4, red > 0.2: pass-1 snow -> 100
        (0.16, 0.15, 0.16),  # 2 dark cloud, NDSI < 0, red 0.15 > 0.10: back to cloud -> 205
        (0.06, 0.05, 0.06),  # 3 dark cloud, NDSI < 0, red 0.05 <= 0.10: no snow -> 0
        (0.12, 0.10, 0.07),  # 4 dark cloud, marginal snow, no snowline (no DEM): red 0.10 not > 0.10 -> 0
        (0.14, 0.12, 0.08),  # 5 dark cloud, marginal snow, no snowline: red 0.12 > 0.10 -> back to cloud 205
        (0.30, 0.29, 0.05),  # 6 dark cloud just under the dark limit, NDSI 0.71: pass-1 snow -> 100
        (0.50, 0.50, 0.05),  # 7 not cloud: snow -> 100
    ]
    g, r, s = (np.array([[sp[i] for sp in spectra]]) for i in range(3))
    cloud = np.array([[1, 1, 1, 1, 1, 1, 1, 0]], np.uint8)
    files = write_scene(tmp_path, g, r, s, cloud=cloud)
    params = SnowParameters(darkcloud_scale=0)
    result = snow_map(snow_request(files["B03"], tmp_path / "lis.tif", params,
                                   cloud=CloudInput("raster", str(files["cloud"]))))
    assert read(tmp_path / "lis.tif").tolist() == [[CLOUD, SNOW, CLOUD, NO_SNOW, NO_SNOW, CLOUD, SNOW, SNOW]]
    assert result.snowline is None
    # the single threshold method releases nothing: every masked pixel is cloud
    snow_map(snow_request(files["B03"], tmp_path / "thr.tif", SnowParameters(method="threshold"),
                          cloud=CloudInput("raster", str(files["cloud"]))))
    assert read(tmp_path / "thr.tif").tolist() == [[CLOUD] * 7 + [SNOW]]


def test_lis_scl_shadow_and_cirrus_never_released(tmp_path):
    dark_snow = (0.40, 0.25, 0.04)  # would be snow if released
    g, r, s = (np.full((1, 5), dark_snow[i]) for i in range(3))
    scl = np.array([[3, 10, 8, 9, 0]], np.uint8)  # shadow, cirrus, cloud medium, cloud high, no data
    files = write_scene(tmp_path, g, r, s, scl=scl)
    result = snow_map(snow_request(files["B03"], tmp_path / "snow.tif", SnowParameters(darkcloud_scale=0)))
    assert "SCL" in " ".join(result.messages)  # found beside the bands (auto)
    assert read(tmp_path / "snow.tif").tolist() == [[CLOUD, CLOUD, SNOW, SNOW, NODATA]]


def test_dark_cloud_red_is_a_block_mean():
    red = np.full((24, 48), 0.2, np.float32)
    red[:12, :12] = 0.5
    red[0, 0] = np.nan
    mean = block_mean(red, 12)
    assert mean.shape == red.shape
    assert np.allclose(mean[:12, :12], 0.5) and np.allclose(mean[12:, :], 0.2) and np.allclose(mean[:12, 12:], 0.2)
    partial = block_mean(np.ones((5, 7), np.float32), 4)
    assert partial.shape == (5, 7) and np.allclose(partial, 1.0)


def test_lis_dark_cloud_block_at_240m(tmp_path):
    # 10 m pixels: the 240 m block is 24 x 24 pixels. A cloud pixel with red 0.35 in a dark block
    # (mean red < 0.30) is released; the same pixel in a bright block stays cloud.
    g = np.full((24, 48), 0.40); r = np.full((24, 48), 0.22); s = np.full((24, 48), 0.04)
    r[:, 24:] = 0.45
    r[5, 5] = r[5, 30] = 0.35
    cloud = np.zeros((24, 48), np.uint8)
    cloud[5, 5] = cloud[5, 30] = 1
    files = write_scene(tmp_path, g, r, s, cloud=cloud, pixel=10.0)
    snow_map(snow_request(files["B03"], tmp_path / "snow.tif", SnowParameters(),
                          cloud=CloudInput("raster", str(files["cloud"]))))
    classes = read(tmp_path / "snow.tif")
    assert classes[5, 5] == SNOW and classes[5, 30] == CLOUD


def test_lis_no_snowline_when_snow_too_scarce(tmp_path):
    # 1 pass-1 snow pixel of 2000: fraction 0.0005 <= 0.001 -> no snowline, pass 2 never runs,
    # even though its elevation band (2 pixels) has a snow fraction of 0.5.
    rows, cols = 40, 50
    z = np.full((rows, cols), 1000.0, np.float32)
    z[0, :2] = 3000.0
    g, r, s = (np.full((rows, cols), MARGINAL[i]) for i in range(3))
    g[0, 0], r[0, 0], s[0, 0] = BRIGHT_SNOW
    files = write_scene(tmp_path, g, r, s, dem=z)
    result = snow_map(snow_request(files["B03"], tmp_path / "snow.tif", SnowParameters(), dem=str(files["dem"])))
    assert result.snowline is None and result.counts[SNOW] == 1
    assert "not above" in result.snowline_note
    # with the total-fraction gate lowered, band [3000, 3100) (band 20 from 1000 m) qualifies:
    # z_s = lower edge of band 18 = 2800 m; the marginal pixel at 3000 m becomes snow, those at 1000 m not
    result = snow_map(snow_request(files["B03"], tmp_path / "snow2.tif", SnowParameters(fsnow_total_lim=0.0001),
                                   dem=str(files["dem"])))
    assert result.snowline == 2800.0 and result.counts[SNOW] == 2


def test_find_snowline_rules():
    def band(z, snow, no_snow, cloud=0):
        return ElevationBand(z, z + 100, snow + no_snow + cloud, snow, no_snow, cloud)

    bands = [band(500, 0, 50), band(600, 5, 50), band(700, 1, 1, 30), band(800, 20, 20)]
    assert find_snowline(bands) == 600  # band 800 qualifies (band 700: clear 2/32 <= 0.1) -> two below = 600
    assert find_snowline(bands[:2] + [band(700, 6, 50)]) == 500  # band 700 (6/56 > 0.1) -> 500
    assert find_snowline([band(500, 10, 10)]) == 500  # first band qualifies: lowest band
    assert find_snowline([band(500, 5, 45)]) is None  # exactly 0.10 is not > 0.10


def test_elevation_counts_grow_and_merge():
    counts = ElevationCounts()
    counts.add(np.array([1000.5, 1001.0, 1099.9]), np.array([0, 1, 2]))
    other = ElevationCounts()
    other.add(np.array([950.0, 1250.0]), np.array([1, 0]))
    counts.merge(other)
    bands = counts.bands(100, "minimum")
    assert [(b.z_min, b.total) for b in bands] == [(950, 3), (1050, 1), (1150, 0), (1250, 1)]
    assert (bands[0].snow, bands[0].no_snow, bands[0].cloud) == (2, 1, 0)
    assert (bands[1].cloud, bands[3].no_snow) == (1, 1)
    rounded = counts.bands(100, "round")
    assert [(b.z_min, b.total) for b in rounded] == [(900, 1), (1000, 3), (1100, 0), (1200, 1)]


def test_lis_result_independent_of_window_size(tmp_path):
    rng = np.random.default_rng(3)
    rows, cols = 60, 50
    yy, xx = np.mgrid[0:rows, 0:cols]
    z = (1500 + 25 * (rows - yy) + 8 * np.sin(xx / 5.0) + rng.normal(0, 3, (rows, cols))).astype(np.float32)
    snowy = z > 2400
    g = np.where(snowy, 0.5, 0.1) + rng.normal(0, 0.05, (rows, cols))
    r = np.where(snowy, 0.45, 0.08) + rng.normal(0, 0.05, (rows, cols))
    s = np.where(snowy, 0.06, 0.09) + rng.normal(0, 0.02, (rows, cols))
    g, r, s = (np.clip(a, 0.01, 1) for a in (g, r, s))
    cloud = (rng.random((rows, cols)) < 0.15).astype(np.uint8)
    files = write_scene(tmp_path, g, r, s, dem=z, cloud=cloud, pixel=20.0)
    kwargs = dict(dem=str(files["dem"]), cloud=CloudInput("raster", str(files["cloud"])),
                  params=SnowParameters(darkcloud_scale=60.0))  # 3 x 3 blocks
    whole = snow_map(snow_request(files["B03"], tmp_path / "whole.tif", fsc_output=str(tmp_path / "whole_fsc.tif"),
                                  **kwargs))
    strips = snow_map(snow_request(files["B03"], tmp_path / "strips.tif", fsc_output=str(tmp_path / "strips_fsc.tif"),
                                   window_rows=7, **kwargs))  # 7-row windows cut through the 3 x 3 dark-cloud blocks
    assert whole.snowline is not None and whole.snowline == strips.snowline
    assert np.array_equal(read(tmp_path / "whole.tif"), read(tmp_path / "strips.tif"))
    assert np.array_equal(read(tmp_path / "whole_fsc.tif"), read(tmp_path / "strips_fsc.tif"))
    classes = read(tmp_path / "whole.tif")
    assert {SNOW, NO_SNOW, CLOUD} <= set(np.unique(classes).tolist())
    assert not list(tmp_path.glob(".*snowcodes")) and not list(tmp_path.glob(".*partial*"))


def test_dem_in_another_crs_and_resolution(tmp_path):
    """The same terrain as a UTM DEM on the image grid and as a ~10 m geographic (EPSG:4326) DEM
    gives the same snowline and classes: the DEM is aligned onto the image grid window by window."""
    layout = {(4, 0): BRIGHT_SNOW, (4, 7): BRIGHT_SNOW, (4, 13): BRIGHT_SNOW, (6, 9): MARGINAL, (1, 4): MARGINAL}
    files, _ = staircase_scene(tmp_path, layout)
    left, bottom = 400000.0, 5100000.0 - 10 * 20.0

    def terrain(easting, northing):  # 100 m per 20 m row, 5 m per 20 m column
        return 1000.0 + 5.0 * (northing - bottom) + 0.25 * (easting - left)

    cols, rows = np.meshgrid(np.arange(20) * 20.0 + 10.0, np.arange(10)[::-1] * 20.0 + 10.0)
    utm_dem = write_band(tmp_path / "dem_utm.tif", terrain(left + cols, bottom + rows), 20.0, "float32")
    geo = CRS.from_epsg(4326)
    from rasterio.warp import transform as warp_points, transform_bounds
    w, s_, e, n = transform_bounds(UTM, geo, left - 100, bottom - 100, left + 500, bottom + 300)
    step = (0.00013, 0.00009)
    gw, gh = int((e - w) / step[0]) + 1, int((n - s_) / step[1]) + 1
    lon, lat = np.meshgrid(w + (np.arange(gw) + 0.5) * step[0], n - (np.arange(gh) + 0.5) * step[1])
    xs, ys = warp_points(geo, UTM, lon.ravel(), lat.ravel())
    values = terrain(np.array(xs), np.array(ys)).reshape(gh, gw).astype(np.float32)
    geo_dem = tmp_path / "dem_4326.tif"
    with rasterio.open(geo_dem, "w", driver="GTiff", width=gw, height=gh, count=1, dtype="float32", crs=geo,
                       transform=from_origin(w, n, *step), nodata=-9999.0) as ds:
        ds.write(values, 1)
    on_grid = snow_map(snow_request(files["B03"], tmp_path / "a.tif", SnowParameters(), dem=str(utm_dem)))
    warped = snow_map(snow_request(files["B03"], tmp_path / "b.tif", SnowParameters(), dem=str(geo_dem)))
    assert on_grid.snowline == 1252.0  # lowest elevation 1052.5 -> bands from 1052; band 4 -> band 2
    assert abs(warped.snowline - on_grid.snowline) <= 1.0
    assert np.array_equal(read(tmp_path / "a.tif"), read(tmp_path / "b.tif"))
    assert cell(read(tmp_path / "b.tif"), 6, 9) == SNOW and cell(read(tmp_path / "b.tif"), 1, 4) == NO_SNOW


def test_dem_that_does_not_overlap_is_an_error(tmp_path):
    files, z = staircase_scene(tmp_path, {})
    far = write_band(tmp_path / "far_dem.tif", z, 20.0, "float32", origin=(900000.0, 1000000.0))
    with pytest.raises(InputError, match="DEM .* does not overlap"):
        snow_map(snow_request(files["B03"], tmp_path / "snow.tif", SnowParameters(), dem=str(far)))
    assert not (tmp_path / "snow.tif").exists()


def test_extent_bounds_and_cancel(tmp_path):
    files, _ = staircase_scene(tmp_path, {(4, 0): BRIGHT_SNOW})
    grid = Grid.of(rasterio.open(files["B03"]))
    left, bottom, right, top = grid.bounds
    result = snow_map(snow_request(files["B03"], tmp_path / "part.tif", SnowParameters(method="threshold"),
                                   bounds=(left, bottom, left + 100.0, bottom + 100.0)))
    with rasterio.open(tmp_path / "part.tif") as ds:
        assert (ds.width, ds.height) == (5, 5) and ds.bounds.left == left and ds.bounds.bottom == bottom
    assert result.counts[SNOW] == 1  # rows k = 0..4, columns 0..4: holds the snow pixel (4, 0)
    with pytest.raises(InputError, match="does not overlap the image"):
        snow_map(snow_request(files["B03"], tmp_path / "x.tif", bounds=(0, 0, 10, 10)))
    with pytest.raises(Cancelled):
        snow_map(snow_request(files["B03"], tmp_path / "cancel.tif", dem=str(files["dem"])),
                 Monitor(is_cancelled=lambda: True))
    assert not (tmp_path / "cancel.tif").exists()
    assert not list(tmp_path.glob(".*snowcodes")) and not list(tmp_path.glob(".*partial*"))


def test_fsc_formulas(tmp_path):
    nd_values = np.array([0.2, 0.4, 0.6, 0.9])
    swir = np.full(4, 0.05)
    green = swir * (1 + nd_values) / (1 - nd_values)
    files = write_scene(tmp_path, green[None, :], np.full((1, 4), 0.5), swir[None, :])
    params = SnowParameters(method="threshold", ndsi_threshold=0.1)
    for formula, expected in (("salomonson", np.minimum(1.0, 1.45 * nd_values - 0.01)),
                              ("gascoin", 0.5 * np.tanh(2.65 * nd_values - 1.42) + 0.5)):
        snow_map(snow_request(files["B03"], tmp_path / "s.tif", params, fsc_output=str(tmp_path / f"{formula}.tif"),
                              fsc_formula=formula))
        assert np.allclose(read(tmp_path / f"{formula}.tif")[0], expected, atol=2e-3)


# -- band detection and radiometry ---------------------------------------------------------------

def test_band_names():
    assert band_from_filename("T32TLR_20220105T103421_B11_20m.jp2") == "B11"
    assert band_from_filename("S2B_MSIL2A_20180204T94161_57_38_B8A.tif") == "B8A"
    assert band_from_filename("patch_B03.tif") == "B3"
    assert band_from_filename("T32TLR_20220105T103421_SCL_20m.jp2") is None
    assert canonical_band("b03") == "B3" and canonical_band("B8a") == "B8A" and canonical_band("NIR") is None


def test_layouts_of_real_samples():
    stack = locate_bands(sen12("s2_clear", "ROIs1158_spring_s2_26_p100"))
    assert stack.layout.startswith("13-band L1C")
    assert (stack.bands["B3"].index, stack.bands["B4"].index, stack.bands["B11"].index) == (3, 4, 12)
    files = locate_bands(ben_band(FINLAND, "B04"))
    assert files.layout == "separate band files"
    assert Path(files.bands["B11"].path).name == f"{FINLAND}_B11.tif"
    assert "02.06" in files.radiometry and files.bands["B3"].offset == 0.0
    folder = locate_bands(data_path(*BEN, FINLAND))
    assert folder.layout == "folder of separate band files" and folder.bands["B11"].path == files.bands["B11"].path
    safe = locate_bands(data_path("sentinel2-safe", T22HBD))
    assert safe.layout == "SAFE product folder" and safe.level == "L2A"
    assert all("_20m" in Path(src.path).name for src in safe.bands.values())
    assert safe.scl is not None and "SCL_20m" in safe.scl.path
    # a band file inside the SAFE and the GDAL subdataset name find the same product
    inside = locate_bands(safe.bands["B3"].path)
    assert inside.bands["B11"].path == safe.bands["B11"].path and inside.scl is not None
    xml = data_path("sentinel2-safe", T22HBD, "MTD_MSIL2A.xml")
    sub = locate_bands(f"SENTINEL2_L2A:{xml}:20m:EPSG_32722")
    assert sub.bands["B4"].path == safe.bands["B4"].path


def _stack(path: Path, count: int, descriptions=None, value=1000):
    with rasterio.open(path, "w", driver="GTiff", width=4, height=3, count=count, dtype="uint16", crs=UTM,
                       transform=from_origin(0, 30, 10, 10)) as ds:
        for i in range(1, count + 1):
            ds.write(np.full((3, 4), value * i, np.uint16), i)
            if descriptions:
                ds.set_band_description(i, descriptions[i - 1])
    return path


def test_stack_layouts_and_overrides(tmp_path):
    assert locate_bands(_stack(tmp_path / "l2a.tif", 12)).bands["B11"].index == 11
    ten = locate_bands(_stack(tmp_path / "ten.tif", 10))
    assert (ten.bands["B3"].index, ten.bands["B4"].index, ten.bands["B11"].index) == (2, 3, 9)
    named = locate_bands(_stack(tmp_path / "named.tif", 3, ["B11", "B03 green", "B4"]))
    assert (named.bands["B3"].index, named.bands["B4"].index, named.bands["B11"].index) == (2, 3, 1)
    four = _stack(tmp_path / "four.tif", 4)
    with pytest.raises(InputError, match="does not look like a Sentinel-2.*SWIR1"):
        locate_bands(four)
    chosen = locate_bands(four, overrides={"B3": (None, 1), "B4": (None, 2), "B11": (None, 4)})
    assert chosen.bands["B11"].index == 4 and chosen.layout.startswith("4-band raster")
    with pytest.raises(InputError, match="band 9 requested"):
        locate_bands(four, overrides={"B3": (None, 1), "B4": (None, 2), "B11": (None, 9)})
    # a separate SWIR file overrides the stack's
    other = _stack(tmp_path / "swir_only.tif", 1)
    mixed = locate_bands(_stack(tmp_path / "l1c.tif", 13), overrides={"B11": (str(other), 1)})
    assert mixed.bands["B11"].path == str(other)


def test_missing_swir_band_is_a_clear_error(tmp_path):
    folder = tmp_path / "S2A_MSIL2A_20200101T000000_N0214_R000_T32TLR_20200101T000000"
    folder.mkdir()
    for band in ("B02", "B03", "B04", "B08"):
        _stack(folder / f"T32TLR_20200101T000000_{band}_10m.tif", 1)
    with pytest.raises(InputError, match=r"missing band\(s\) SWIR1 \(B11"):
        locate_bands(folder / "T32TLR_20200101T000000_B03_10m.tif")
    with pytest.raises(InputError, match="SWIR1"):
        compute_ndsi(NdsiRequest(Sentinel2Input(folder), str(tmp_path / "n.tif")))


def test_processing_baseline_offset(tmp_path):
    # Baseline >= 04.00: reflectance = (DN - 1000) / 10000. A SAFE-like folder with its metadata ...
    safe = tmp_path / "S2B_MSIL2A_20230105T103329_N0509_R108_T32TLR_20230105T134539.SAFE"
    img = safe / "GRANULE" / "L2A_T32TLR_A000000_20230105T103329" / "IMG_DATA" / "R20m"
    img.mkdir(parents=True)
    green_dn, swir_dn = 3000, 1500
    for band, dn in (("B03", green_dn), ("B04", 3000), ("B11", swir_dn)):
        write_band(img / f"T32TLR_20230105T103329_{band}_20m.tif", np.full((2, 2), dn), nodata=0)
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL2A.xml").write_text(
        '<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
        'User_Product_Level-2A.xsd"><n1:General_Info><Product_Info><PROCESSING_BASELINE>05.09'
        '</PROCESSING_BASELINE></Product_Info><Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>'
        '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>'
        f'<BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST></Product_Image_Characteristics>'
        '</n1:General_Info></n1:Level-2A_User_Product>')
    product = locate_bands(safe)
    assert product.bands["B3"].offset == -1000.0 and "05.09" in product.radiometry
    compute_ndsi(NdsiRequest(Sentinel2Input(safe), str(tmp_path / "ndsi.tif")))
    expected = ((green_dn - 1000) - (swir_dn - 1000)) / ((green_dn - 1000) + (swir_dn - 1000))  # 0.6, not 0.333
    assert np.allclose(read(tmp_path / "ndsi.tif"), expected, atol=1e-6)
    # ... and without the XML, the baseline in the product name applies ESA's -1000
    (safe / "MTD_MSIL2A.xml").unlink()
    named = locate_bands(safe)
    assert named.bands["B11"].offset == -1000.0 and "04.00" not in named.radiometry and "05.09" in named.radiometry
    # an explicit offset wins
    assert locate_bands(safe, offset=0.0).bands["B3"].offset == 0.0


def test_band_reader_mixed_resolutions_average_and_repeat(tmp_path):
    # 10 m green 4x4 and 20 m SWIR 2x2 on the same origin: coarsest grid = 20 m, green averaged 2x2
    green = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], float) * 100
    write_band(tmp_path / "p_B03.tif", green, 10.0)
    write_band(tmp_path / "p_B11.tif", np.array([[100, 200], [300, 400]]), 20.0)
    write_band(tmp_path / "p_B04.tif", green, 10.0)
    product = locate_bands(tmp_path / "p_B03.tif")
    from rasterio.windows import Window
    with BandReader(product, ("B3", "B11")) as reader:
        assert reader.grid.pixel_size == (20.0, 20.0)
        dn = reader.read_dn("B3", Window(0, 0, 2, 2))
        assert np.allclose(dn, [[350, 550], [1150, 1350]])
    with BandReader(product, ("B3", "B11"), "finest") as reader:
        assert reader.grid.pixel_size == (10.0, 10.0)
        dn = reader.read_dn("B11", Window(0, 0, 4, 4))
        assert np.allclose(dn, np.repeat(np.repeat([[100, 200], [300, 400]], 2, 0), 2, 1))
        assert np.allclose(reader.read("B11", Window(1, 1, 2, 2)), [[0.01, 0.02], [0.03, 0.04]])


def test_warp_window_matches_reproject(tmp_path):
    rng = np.random.default_rng(0)
    src = write_band(tmp_path / "src.tif", rng.random((50, 60)).astype(np.float32) * 100, 30.0, "float32",
                     origin=(400013.0, 5100007.0))
    grid = Grid(UTM, from_origin(400100.0, 5099900.0, 20.0, 20.0), 40, 30)
    from rasterio.windows import Window
    with rasterio.open(src) as ds:
        whole = np.full((30, 40), np.nan, np.float32)
        reproject(ds.read(1), whole, src_transform=ds.transform, src_crs=ds.crs, dst_transform=grid.transform,
                  dst_crs=UTM, resampling=Resampling.bilinear, dst_nodata=np.nan)
        part = warp_window(ds, 1, grid, Window(5, 10, 20, 12), Resampling.bilinear)
    assert np.allclose(part, whole[10:22, 5:25], atol=1e-4, equal_nan=True)


# -- real samples ---------------------------------------------------------------------------------

def test_finland_february_patch_is_snow(tmp_path):
    """BigEarthNet 57_38 (Finland, 4 Feb 2018), separate 10/20 m band files: NDSI ~0.75."""
    _, product = compute_ndsi(NdsiRequest(Sentinel2Input(ben_band(FINLAND)), str(tmp_path / "ndsi.tif")))
    values = read(tmp_path / "ndsi.tif")
    assert values.shape == (60, 60)  # the 20 m grid of B11 (green averaged from 10 m)
    assert abs(float(np.median(values)) - 0.75) < 0.03 and values.min() > 0.4
    for method in ("lis", "threshold"):
        result = snow_map(snow_request(ben_band(FINLAND), tmp_path / f"snow_{method}.tif",
                                       SnowParameters(method=method)))
        # no SCL beside the bands: the automatic mask is the pretrained detector (its L2A model at 20 m),
        # which sees no cloud (0.0 %); coniferous forest hides part of the snow from the red test (red <=
        # 0.20): 64.3 % snow
        text = " ".join(result.messages)
        assert not HAVE_DETECTOR or ("Automatic -> Pretrained detector" in text and "model_6b_l2a" in text
                                     and "own 20 m" in text), text
        assert fractions(result)[CLOUD] < 0.03 and 0.55 < fractions(result)[SNOW] < 0.75
        assert result.snow_area_km2 == pytest.approx(result.counts[SNOW] * 400 / 1e6)


@pytest.mark.parametrize("patch", SNOW_FREE_BEN)
def test_snow_free_bigearthnet_patches(tmp_path, patch):
    result = snow_map(snow_request(ben_band(patch), tmp_path / "snow.tif", SnowParameters()))
    assert fractions(result)[SNOW] < 0.005


def test_sen12mscr_26_p100_clear_is_snow_cloudy_is_not(tmp_path):
    clear = snow_map(snow_request(sen12("s2_clear", "ROIs1158_spring_s2_26_p100"), tmp_path / "clear.tif"))
    cloudy = snow_map(snow_request(sen12("s2_cloudy", "ROIs1158_spring_s2_cloudy_26_p100"), tmp_path / "cloudy.tif"))
    assert fractions(clear)[SNOW] > 0.99
    assert fractions(cloudy)[SNOW] < 0.005
    assert clear.snow_area_km2 == pytest.approx(256 * 256 * 100 * fractions(clear)[SNOW] / 1e6)
    _, _ = compute_ndsi(NdsiRequest(Sentinel2Input(sen12("s2_clear", "ROIs1158_spring_s2_26_p100")),
                                    str(tmp_path / "ndsi.tif")))
    assert float(np.median(read(tmp_path / "ndsi.tif"))) > 0.8


@pytest.mark.parametrize("name", ["ROIs1868_summer_s2_135_p211", "ROIs1868_summer_s2_31_p100",
                                  "ROIs1970_fall_s2_136_p139", "ROIs2017_winter_s2_102_p926",
                                  "ROIs1158_spring_s2_39_p500"])
def test_snow_free_sen12mscr_patches(tmp_path, name):
    result = snow_map(snow_request(sen12("s2_clear", name), tmp_path / "snow.tif"))
    assert fractions(result)[SNOW] < 0.005


def test_water_needs_the_red_test(tmp_path):
    """The Chile patch (135_p211) is water with NDSI ~0.93: only the red test keeps it snow-free."""
    path = sen12("s2_clear", "ROIs1868_summer_s2_135_p211")
    with_red = snow_map(snow_request(path, tmp_path / "a.tif", SnowParameters(method="threshold")))
    without = snow_map(snow_request(path, tmp_path / "b.tif", SnowParameters(method="threshold", red_threshold=None)))
    assert fractions(with_red)[SNOW] == 0.0 and fractions(without)[SNOW] > 0.95


def _bright_cloud_mask(stack: Path, out: Path) -> Path:
    """A simple documented cloud mask for an L1C stack without one: bright in blue (B2 > 0.20) and
    not snow-like (NDSI < 0.40)."""
    with rasterio.open(stack) as ds:
        b2, b3, b11 = (ds.read(i).astype(np.float32) / 10000 for i in (2, 3, 12))
        profile = dict(driver="GTiff", width=ds.width, height=ds.height, count=1, dtype="uint8", crs=ds.crs,
                       transform=ds.transform)
    mask = (b2 > 0.20) & (ndsi(b3, b11) < 0.40)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(mask.astype(np.uint8), 1)
    return out


def test_tatarstan_cloudy_mixes_snow_and_cloud(tmp_path):
    path = sen12("s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139")
    mask = _bright_cloud_mask(path, tmp_path / "cloud.tif")
    result = snow_map(snow_request(path, tmp_path / "thr.tif", SnowParameters(method="threshold"),
                                   cloud=CloudInput("raster", str(mask))))
    f = fractions(result)
    assert 0.05 < f[SNOW] < 0.2 and 0.2 < f[CLOUD] < 0.6 and f[NO_SNOW] > 0.2
    lis = snow_map(snow_request(path, tmp_path / "lis.tif", SnowParameters(), cloud=CloudInput("raster", str(mask))))
    fl = fractions(lis)
    assert fl[SNOW] >= f[SNOW] and fl[CLOUD] > 0.1  # dark clouds released, bright ones kept


def test_tatarstan_lis_releases_snow_from_an_overdetecting_cloud_mask(tmp_path):
    """The DSen2-CR rule-based L1C cloud mask flags most of the snowy 136_p139 scene as cloud; LIS
    releases the dark clouds and recovers the snow the single threshold loses under the mask."""
    masks = pytest.importorskip("topoclear.engine.clouds.masks.rules")
    path = sen12("s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139")
    with rasterio.open(path) as ds:
        dn = ds.read()
        profile = dict(driver="GTiff", width=ds.width, height=ds.height, count=1, dtype="uint8", crs=ds.crs,
                       transform=ds.transform)
    cloud = masks.cloud_mask_l1c(masks.bands_from_stack(dn))
    with rasterio.open(tmp_path / "cloud.tif", "w", **profile) as dst:
        dst.write(cloud.astype(np.uint8), 1)
    mask = CloudInput("raster", str(tmp_path / "cloud.tif"))
    thr = fractions(snow_map(snow_request(path, tmp_path / "thr.tif", SnowParameters(method="threshold"), cloud=mask)))
    lis = fractions(snow_map(snow_request(path, tmp_path / "lis.tif", SnowParameters(), cloud=mask)))
    assert thr[CLOUD] > 0.6 and thr[SNOW] < 0.02
    assert lis[SNOW] > 0.05 and lis[CLOUD] < thr[CLOUD]


def test_safe_folder_with_scl(tmp_path):
    safe = data_path("sentinel2-safe", T22HBD)
    result = snow_map(snow_request(safe, tmp_path / "snow.tif", SnowParameters(method="threshold")))
    scl = read(next(Path(safe).glob("GRANULE/*/IMG_DATA/R20m/*SCL_20m.jp2")))
    classes = read(tmp_path / "snow.tif")
    assert np.all(classes[scl == 0] == NODATA)
    valid = classes != NODATA
    assert np.array_equal(classes[valid] == CLOUD, np.isin(scl[valid], (3, 8, 9, 10)))
    assert result.counts[CLOUD] == int(np.isin(scl[valid], (3, 8, 9, 10)).sum()) > 0
    assert result.counts[SNOW] == 0  # January, southern Brazil: no snow


def test_statistics_table(tmp_path):
    layout = {(4, 0): BRIGHT_SNOW, (4, 7): BRIGHT_SNOW, (4, 13): BRIGHT_SNOW, (6, 9): MARGINAL}
    files, z = staircase_scene(tmp_path, layout)
    result = snow_map(snow_request(files["B03"], tmp_path / "snow.tif", SnowParameters(), dem=str(files["dem"])))
    stats = snow_statistics(SnowStatisticsRequest(str(tmp_path / "snow.tif"), dem=str(files["dem"])))
    assert stats.snow_area_km2 == pytest.approx(4 * 400 / 1e6) == pytest.approx(result.snow_area_km2)
    assert stats.snow_percent == pytest.approx(2.0) and stats.cloud_percent == 0.0
    assert stats.snowline == 1200.0 and "stored" in stats.snowline_source
    assert [b.centre for b in stats.bands] == [1050 + 100 * k for k in range(10)]
    assert [(b.total, b.snow, b.no_snow, b.cloud) for b in stats.bands][4] == (20, 3, 17, 0)
    assert stats.bands[6].snow == 1
    csv_path = stats.write_csv(str(tmp_path / "table.csv"))
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0] == "band,band_min_m,band_max_m,band_centre_m,total,snow,no_snow,cloud,snow_fraction"
    assert lines[5] == "1400-1500 m,1400.0,1500.0,1450.0,20,3,17,0,0.15"
    assert lines[-1] == "all,,,,200,4,196,0,0.02"
    # a map without a stored snowline: derived from its own bands with the LIS rule (band 4 -> 1200)
    with rasterio.open(tmp_path / "snow.tif", "r+") as ds:
        ds.update_tags(SNOWLINE_M="")
    assert snow_statistics(SnowStatisticsRequest(str(tmp_path / "snow.tif"), dem=str(files["dem"]))).snowline == 1200.0
    with pytest.raises(InputError, match="not snow map classes"):
        snow_statistics(SnowStatisticsRequest(str(files["B03"])))


def test_integer_dem_matches_float_dem(tmp_path):
    """An Int16 DEM (as SRTM) is used as read, without float conversion: same snowline and classes."""
    layout = {(4, 0): BRIGHT_SNOW, (4, 7): BRIGHT_SNOW, (4, 13): BRIGHT_SNOW, (2, 1): MARGINAL, (6, 9): MARGINAL,
              (7, 3): MARGINAL}
    files, z = staircase_scene(tmp_path, layout)
    z16 = z.astype(np.int16)
    z16[10 - 1 - 7, 3] = -32768  # a nodata cell under a marginal pixel: pass 1 only -> no snow
    dem16 = write_band(tmp_path / "dem16.tif", z16, 20.0, "int16", nodata=-32768)
    as_float = snow_map(snow_request(files["B03"], tmp_path / "f.tif", SnowParameters(), dem=str(files["dem"])))
    as_int = snow_map(snow_request(files["B03"], tmp_path / "i.tif", SnowParameters(), dem=str(dem16)))
    assert as_float.snowline == as_int.snowline == 1200.0
    f, i = read(tmp_path / "f.tif"), read(tmp_path / "i.tif")
    assert cell(f, 7, 3) == SNOW and cell(i, 7, 3) == NO_SNOW
    f[10 - 1 - 7, 3] = NO_SNOW
    assert np.array_equal(f, i)
    assert sum(b.total for b in as_int.pass1_bands) == 199


def test_float_reflectance_layers_match_integer_dn(tmp_path):
    """Float32 reflectance bands (taken as reflectance) and UInt16 DN bands give the same map,
    dark-cloud blocks included (integer DN are tested without conversion)."""
    rng = np.random.default_rng(5)
    rows, cols = 30, 37
    g = np.round(rng.uniform(0.05, 0.6, (rows, cols)), 4)
    r = np.round(rng.uniform(0.02, 0.6, (rows, cols)), 4)
    s = np.round(rng.uniform(0.02, 0.3, (rows, cols)), 4)
    z = (1000 + 40 * np.arange(rows)[:, None] + 3 * np.arange(cols)[None, :]).astype(np.float32)
    cloud = (rng.random((rows, cols)) < 0.3).astype(np.uint8)
    ints = write_scene(tmp_path / "dn", g, r, s, dem=z, cloud=cloud)
    floats = tmp_path / "refl"
    floats.mkdir()
    for name, values in (("B03", g), ("B04", r), ("B11", s)):
        write_band(floats / f"scene_{name}.tif", values.astype(np.float32), 20.0, "float32")
    params = SnowParameters(darkcloud_scale=100.0)  # 5 x 5 blocks
    mask = CloudInput("raster", str(ints["cloud"]))
    a = snow_map(snow_request(ints["B03"], tmp_path / "a.tif", params, dem=str(ints["dem"]), cloud=mask))
    b = snow_map(snow_request(floats / "scene_B03.tif", tmp_path / "b.tif", params, dem=str(ints["dem"]), cloud=mask))
    assert a.snowline == b.snowline
    assert np.array_equal(read(tmp_path / "a.tif"), read(tmp_path / "b.tif"))
    assert {SNOW, NO_SNOW, CLOUD} <= set(np.unique(read(tmp_path / "a.tif")).tolist())


def test_cloud_mask_choice_names_the_snow_methods(tmp_path):
    """The cloud mask kinds are those of the one list of mask methods; a given raster whose file name
    says SCL is read as SCL under "auto", any other as a mask raster."""
    g, r, s = (np.full((1, 4), (0.40, 0.25, 0.04)[i]) for i in range(3))
    codes = np.array([[3, 8, 1, 0]], np.uint8)  # SCL: shadow, cloud, defective, nodata; as a mask: 1 1 1 0
    files = write_scene(tmp_path, g, r, s)
    scl = write_band(tmp_path / "T32TLR_20200101T000000_SCL_20m.tif", codes, dtype="uint8")
    plain = write_band(tmp_path / "clouds.tif", codes, dtype="uint8")
    params = SnowParameters(method="threshold")
    as_scl = snow_map(snow_request(files["B03"], tmp_path / "a.tif", params, cloud=CloudInput("auto", str(scl))))
    as_mask = snow_map(snow_request(files["B03"], tmp_path / "b.tif", params, cloud=CloudInput("auto", str(plain))))
    assert read(tmp_path / "a.tif").tolist() == [[CLOUD, CLOUD, SNOW, NODATA]] and as_scl.counts[NODATA] == 1
    assert read(tmp_path / "b.tif").tolist() == [[CLOUD, CLOUD, CLOUD, SNOW]] and as_mask.counts[NODATA] == 0
    with pytest.raises(InputError, match="'mask' is not one of auto, scl, raster, none"):
        snow_map(snow_request(files["B03"], tmp_path / "c.tif", params, cloud=CloudInput("mask", str(plain))))
    with pytest.raises(InputError, match="'Cloud mask raster' chosen but no raster was given"):
        snow_map(snow_request(files["B03"], tmp_path / "d.tif", params, cloud=CloudInput("raster")))
    bands = write_scene(tmp_path / "bare", g, r, s)  # no SCL beside these bands
    with pytest.raises(InputError, match="SCL chosen but no SCL raster was given"):
        snow_map(snow_request(bands["B03"], tmp_path / "e.tif", params, cloud=CloudInput("scl")))
    # no SCL and no B2/B8 for the detector: auto is no mask, and the log says why
    bare = snow_map(snow_request(bands["B03"], tmp_path / "f.tif", params))
    assert bare.counts[CLOUD] == 0
    assert any("Automatic -> None" in m and ("lacks B2, B8" in m or not HAVE_DETECTOR) for m in bare.messages), \
        bare.messages
    if HAVE_DETECTOR:
        with pytest.raises(InputError, match="the pretrained cloud detector needs the bands B2, B3, B4, B8"):
            snow_map(snow_request(bands["B03"], tmp_path / "g.tif", params, cloud=CloudInput("detector")))


def test_shadow_of_a_mask_raster_is_never_released_cloud_is(tmp_path):
    """Mask rasters and the detector give 1 cloud, 2 shadow: Let It Snow releases a dark cloud to the snow
    tests (a cloud can be snow) but never a shadow (it cannot); the single threshold releases nothing."""
    g, r, s = (np.full((1, 4), (0.40, 0.25, 0.04)[i]) for i in range(3))  # dark (red 0.25) and snow-like
    files = write_scene(tmp_path, g, r, s, cloud=np.array([[1, 2, 0, 1]], np.uint8))
    mask = CloudInput("raster", str(files["cloud"]))
    snow_map(snow_request(files["B03"], tmp_path / "lis.tif", SnowParameters(darkcloud_scale=0), cloud=mask))
    assert read(tmp_path / "lis.tif").tolist() == [[SNOW, CLOUD, SNOW, SNOW]]
    snow_map(snow_request(files["B03"], tmp_path / "thr.tif", SnowParameters(method="threshold"), cloud=mask))
    assert read(tmp_path / "thr.tif").tolist() == [[CLOUD, CLOUD, SNOW, CLOUD]]


def test_auto_never_falls_back_to_the_dsen2cr_rules(tmp_path, monkeypatch):
    """A 13-band L1C stack has every band of the DSen2-CR rules, but the snow map's automatic mask is the
    SCL, else the detector, else none: with the detector unavailable (not installed, or it cannot start)
    there is no mask, and the log says why."""
    from topoclear.engine.clouds.masks import choice
    from topoclear.engine.clouds.masks.detector import DetectorUnavailable
    from topoclear.engine.snow import scene

    path = sen12("s2_clear", "ROIs1158_spring_s2_26_p100")
    params = SnowParameters(method="threshold")
    monkeypatch.setattr(choice, "detector_status", lambda: (False, "onnxruntime is not installed"))
    result = snow_map(snow_request(path, tmp_path / "a.tif", params))
    assert result.counts[CLOUD] == 0
    text = " ".join(result.messages)
    assert "Automatic -> None" in text and "onnxruntime is not installed" in text and "DSen2-CR" not in text
    with pytest.raises(DetectorUnavailable, match="onnxruntime is not installed"):
        snow_map(snow_request(path, tmp_path / "b.tif", params, cloud=CloudInput("detector")))
    monkeypatch.undo()

    def broken(*args, **kwargs):
        raise DetectorUnavailable("the model file cannot be read")

    monkeypatch.setattr(choice, "detector_status", lambda: (True, ""))  # installed, but it cannot start
    monkeypatch.setattr(scene, "SceneMask", broken)
    result = snow_map(snow_request(path, tmp_path / "c.tif", params))
    assert result.counts[CLOUD] == 0 and "the model file cannot be read" in " ".join(result.messages)


def _detector_classes(path) -> np.ndarray:
    """The detector's classes (0 clear, 1 cloud, 2 shadow, 255 nodata) of ``path`` on its snow map grid."""
    from topoclear.engine.snow.scene import open_scene

    with open_scene(Sentinel2Input(path), CloudInput("detector"), None) as scene:
        scene.prepare_mask()
        return scene.mask.classes((0, 0, scene.grid.height, scene.grid.width))


@needs_detector
def test_detector_keeps_the_snow_it_sees_on_the_tatarstan_patch(tmp_path):
    """SEN12MS-CR 136_p139 (Tatarstan, autumn, 13-band L1C): cloud over snow on the ground. With the
    pretrained detector (L1C model, 10 m block-averaged to 30 m) the snow map is the cloud-free map
    wherever the detector says clear (18.6 % of those pixels snow), its shadows always stay cloud and
    only the dark clouds are released (3.3 % of its cloud pixels). The clear image of the same place
    (snow-free) has no cloud and no snow."""
    path = sen12("s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139")
    classes = _detector_classes(path)
    clear, shadow, cloud = classes == 0, classes == 2, classes == 1
    assert 0.2 < clear.mean() < 0.45 and cloud.mean() > 0.25 and shadow.mean() > 0.1  # 31.8 / 40.1 / 28.1 %
    result = snow_map(snow_request(path, tmp_path / "det.tif", cloud=CloudInput("detector")))
    snow_map(snow_request(path, tmp_path / "none.tif", cloud=CloudInput("none")))
    det, bare = read(tmp_path / "det.tif"), read(tmp_path / "none.tif")
    assert np.array_equal(det[clear], bare[clear])
    assert (det[clear] == SNOW).mean() > 0.15
    assert np.all(det[shadow] == CLOUD) and 0.01 < (det[cloud] != CLOUD).mean() < 0.1
    text = " ".join(result.messages)
    assert "Pretrained detector" in text and "model_6b_l1c" in text
    fall = snow_map(snow_request(sen12("s2_clear", "ROIs1970_fall_s2_136_p139"), tmp_path / "clear.tif",
                                 cloud=CloudInput("detector")))
    assert fall.counts[CLOUD] == 0 and fall.counts[SNOW] == 0


@needs_detector
def test_detector_leaves_the_snow_covered_26_p100_snow(tmp_path):
    """SEN12MS-CR 26_p100 clear: fully snow-covered; the detector flags no cloud (0.0 %, bright snow is
    not cloud), so the snow map is snow (99.9 %), exactly the map without a mask."""
    path = sen12("s2_clear", "ROIs1158_spring_s2_26_p100")
    assert (np.isin(_detector_classes(path), (1, 2))).mean() < 0.03
    result = snow_map(snow_request(path, tmp_path / "det.tif", SnowParameters(method="threshold"),
                                   cloud=CloudInput("detector")))
    assert fractions(result)[CLOUD] < 0.03 and fractions(result)[SNOW] > 0.99


def test_row_areas_of_projected_and_geographic_grids():
    utm = Grid(UTM, from_origin(400000, 5100000, 20, 20), 10, 10)
    assert row_areas_m2(utm, 3, 4).tolist() == [400.0] * 4
    geo = Grid(CRS.from_epsg(4326), from_origin(10.0, 1.0, 1.0, 1.0), 1, 2)  # rows 1..0 and 0..-1 degrees
    areas = row_areas_m2(geo, 0, 2)
    # 1 x 1 degree cells at the equator on the WGS 84 ellipsoid (a sphere of the mean radius gives
    # 1.23637e10, 0.45 % more)
    assert areas[0] == pytest.approx(areas[1]) and areas[0] == pytest.approx(1.230846e10, rel=1e-6)


# -- band files that do not belong together, 8-bit rasters ------------------------------------------

def test_band_files_that_do_not_overlap_are_refused_and_partial_cover_is_reported(tmp_path):
    """A SWIR file of another place (or declared in another UTM zone) gave an image without one valid
    pixel and a success; a SWIR file covering part of the image is used and its cover reported."""
    green = write_band(tmp_path / "green.tif", np.full((20, 20), 3000), 10.0)
    far = write_band(tmp_path / "swir_far.tif", np.full((10, 10), 500), 20.0, origin=(900000.0, 5100000.0))
    zone = write_band(tmp_path / "swir_33n.tif", np.full((10, 10), 500), 20.0, crs=CRS.from_epsg(32633))
    for swir in (far, zone):
        request = NdsiRequest(Sentinel2Input(None, {"B3": (str(green), 1), "B11": (str(swir), 1)}),
                              str(tmp_path / "ndsi.tif"))
        with pytest.raises(InputError, match=rf"SWIR1 \(B11.*{swir.name} does not overlap the green \(B3\) band "
                                             r"green\.tif"):
            compute_ndsi(request)
    assert not (tmp_path / "ndsi.tif").exists()
    half = write_band(tmp_path / "swir_half.tif", np.full((10, 5), 500), 20.0)  # the western half
    messages = []
    request = NdsiRequest(Sentinel2Input(None, {"B3": (str(green), 1), "B11": (str(half), 1)}, resolution="finest"),
                          str(tmp_path / "ndsi.tif"))
    compute_ndsi(request, Monitor(on_message=messages.append))
    assert any("swir_half.tif covers only 50.0 % of the image" in m for m in messages), messages
    values = read(tmp_path / "ndsi.tif")
    assert np.allclose(values[:, :10], (3000 - 500) / 3500, atol=1e-6) and np.all(values[:, 10:] == -9999)


def test_eight_bit_bands_need_a_quantification(tmp_path):
    """A uint8 stack divided by 10000 like 16-bit DN gave 0 % snow without a word."""
    folder = tmp_path / "eight"
    folder.mkdir()
    for band, value in (("B03", 200), ("B04", 190), ("B11", 20)):
        write_band(folder / f"scene_{band}.tif", np.full((4, 4), value), dtype="uint8")
    with pytest.raises(InputError, match=r"scene_B03\.tif is 8-bit \(uint8\): Sentinel-2 numbers are 16-bit digital "
                                         r"numbers or floating-point reflectance; give the quantification"):
        locate_bands(folder / "scene_B03.tif")
    product = locate_bands(folder / "scene_B03.tif", quantification=255.0)
    assert product.bands["B3"].quantification == 255.0
    result = snow_map(SnowMapRequest(Sentinel2Input(str(folder / "scene_B03.tif"), quantification=255.0),
                                     str(tmp_path / "snow.tif"), SnowParameters(method="threshold")))
    assert result.counts[SNOW] == 16

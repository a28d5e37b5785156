"""Terrain-aware semi-synthetic scenes: the image and the radar really follow the real DEM."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from conftest import SHARED_DATA, data_path
from topoclear.engine.training.optical_simulation import cast_shadow, cos_incidence, land_cover
from topoclear.engine.training.sar_simulation import DEFAULT_BACKSCATTER_DB, NOISE_FLOOR_DB, backscatter, local_incidence
from topoclear.engine.training.semisynthetic import SemiSyntheticConfig, generate_scene, scene_grid
from topoclear.engine.training.spectral_library import CLASSES, load_spectral_library
from topoclear.engine.errors import InputError
from topoclear.engine.training.synthetic_clouds import CloudParameters
from topoclear.models.bands import S2_BANDS_10_20M

SUN_ZENITH, SUN_AZIMUTH = 50.0, 150.0


def crop_dem(path, out, col, row, size):
    with rasterio.open(path) as src:
        window = Window(col, row, size, size)
        profile = src.profile
        profile.update(width=size, height=size, transform=src.window_transform(window))
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return out


@pytest.fixture(scope="module")
def library():
    data_path("bigearthnet")
    return load_spectral_library(SHARED_DATA)


@pytest.fixture(scope="module")
def small_dem(tmp_path_factory):
    """A 4.8 km x 4.8 km crop of the real SRTM DEM of the San Gabriel Mountains."""
    folder = tmp_path_factory.mktemp("dem")
    return crop_dem(data_path("dem", "bigtujunga.tif"), folder / "bigtujunga_crop.tif", 500, 200, 160)


def make_scene(folder, dem, library, **kwargs):
    params = dict(name="crop", resolution_m=20.0, sun_zenith=SUN_ZENITH, sun_azimuth=SUN_AZIMUTH,
                  snowline_m=1e5, clouds=CloudParameters(coverage=0.3, kind="mixed"), seed=3)
    params.update(kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    return generate_scene(dem, folder, SemiSyntheticConfig(**params), library=library)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, small_dem, library):
    return make_scene(tmp_path_factory.mktemp("scene"), small_dem, library)


def read(path):
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64), ds


def terrain_of(scene):
    terrain, _ = read(scene.paths["terrain"])
    terrain[terrain == -9999] = np.nan
    return terrain


def test_library_holds_real_spectra_from_the_named_sources(library):
    snow_sources = " ".join(library.sources["snow"])
    assert "S2B_MSIL2A_20180204T94161_57_38" in snow_sources and "26_p100" in snow_sources
    assert library.sources["vegetation"] and library.sources["rock"]
    for cls, spectra in library.spectra.items():
        assert spectra.shape[1] == len(S2_BANDS_10_20M) and spectra.shape[0] > 1000
    b = {name: np.median(library.spectra["snow"][:, i]) for i, name in enumerate(S2_BANDS_10_20M)}
    assert (b["B3"] - b["B11"]) / (b["B3"] + b["B11"]) > 0.7  # snow: bright green, dark SWIR
    v = {name: np.median(library.spectra["vegetation"][:, i]) for i, name in enumerate(S2_BANDS_10_20M)}
    assert (v["B8"] - v["B4"]) / (v["B8"] + v["B4"]) > 0.5
    assert set(library.backscatter) >= {"snow", "vegetation"}  # measured on real BigEarthNet-MM S1


def test_outputs_are_aligned_named_and_documented(scene):
    names = {k: p for k, p in scene.paths.items()}
    assert all("semisynthetic" in p for p in names.values())
    grids = set()
    for key in ("s2_clear", "s2_cloudy", "s1", "terrain", "cloud_mask", "shadow_mask", "landcover"):
        with rasterio.open(names[key]) as ds:
            grids.add((ds.crs.to_epsg(), tuple(ds.transform)[:6], ds.width, ds.height))
            if key.startswith("s2"):
                assert ds.count == 10 and [d for d in ds.descriptions] == list(S2_BANDS_10_20M)
                assert ds.tags()["SEMI_SYNTHETIC"] == "yes"
    assert len(grids) == 1
    meta = json.loads(open(names["metadata"]).read())
    assert meta["semi_synthetic"] is True and "real DEM" in meta["what"]
    assert meta["config"]["seed"] == 3 and meta["sentinel1"]["orbit"] == "ascending"
    assert meta["spectral_library"]["sources"]["snow"]


def test_clear_brightness_follows_the_hillshade_under_the_given_sun(scene):
    clear, _ = read(scene.paths["s2_clear"])
    cover, _ = read(scene.paths["landcover"])
    terrain = terrain_of(scene)
    veg = (cover[0] == CLASSES["vegetation"]) & (cover[2] == 0)
    nir = clear[S2_BANDS_10_20M.index("B8")][veg]
    r_sun = np.corrcoef(nir, terrain[3][veg])[0, 1]
    assert r_sun > 0.5, r_sun
    # the same relief lit from the opposite side explains the image the other way round
    wrong = cos_incidence(terrain[1], terrain[2], SUN_ZENITH, (SUN_AZIMUTH + 180) % 360)
    assert np.corrcoef(nir, wrong[veg])[0, 1] < -0.3
    # the hillshade of the terrain stack is the cos(incidence) the illumination uses
    cos_i = np.maximum(cos_incidence(terrain[1], terrain[2], SUN_ZENITH, SUN_AZIMUTH), 0)
    assert np.corrcoef(cos_i.ravel(), terrain[3].ravel())[0, 1] > 0.99


def test_sentinel1_follows_the_local_incidence_angle(scene):
    s1, _ = read(scene.paths["s1"])
    cover, _ = read(scene.paths["landcover"])
    terrain = terrain_of(scene)
    veg = cover[0] == CLASSES["vegetation"]
    theta = local_incidence(terrain[1], terrain[2], 39.0, "ascending")
    r = np.corrcoef(s1[0][veg], np.cos(np.radians(theta[veg])))[0, 1]
    assert r > 0.3, r  # speckle (4.4 looks) blurs a perfect relation
    theta_desc = local_incidence(terrain[1], terrain[2], 39.0, "descending")
    assert np.corrcoef(s1[0][veg], np.cos(np.radians(theta_desc[veg])))[0, 1] < 0  # the other pass would differ
    assert np.all(np.isfinite(s1)) and -40 < s1.min() and s1.max() < 10


def test_backscatter_model_is_monotonic_and_shadow_gets_the_noise_floor():
    theta = np.array([[10.0, 30.0, 50.0, 70.0, 95.0]], np.float32)
    ground = np.full(theta.shape, CLASSES["rock"], np.uint8)
    out = backscatter(theta, ground, np.zeros(theta.shape, np.float32), 39.0, DEFAULT_BACKSCATTER_DB, None)
    assert np.all(np.diff(out[0, 0, :4]) < 0) and np.all(np.diff(out[1, 0, :4]) < 0)
    assert out[0, 0, 4] == pytest.approx(NOISE_FLOOR_DB["VV"], abs=1e-4)
    at_ref = backscatter(np.full((1, 1), 39.0, np.float32), ground[:, :1], np.zeros((1, 1), np.float32), 39.0,
                            DEFAULT_BACKSCATTER_DB, None)
    assert at_ref[0, 0, 0] == pytest.approx(DEFAULT_BACKSCATTER_DB["rock"]["VV"], abs=1e-4)
    # ascending: the satellite is west of the scene, so west-facing slopes face the radar
    west = local_incidence(np.array([30.0]), np.array([258.0]), 39.0, "ascending")
    east = local_incidence(np.array([30.0]), np.array([78.0]), 39.0, "ascending")
    assert west[0] == pytest.approx(9.0, abs=1e-3) and east[0] == pytest.approx(69.0, abs=1e-3)


def test_snow_above_the_snowline_lower_on_poleward_slopes():
    rows = np.linspace(1000, 3000, 200)[:, None] * np.ones((1, 200))
    slope = np.full(rows.shape, 25.0)
    aspect = np.where(np.arange(200)[None, :] < 100, 0.0, 180.0) * np.ones((200, 1))  # north | south facing
    cfg = SemiSyntheticConfig(snowline_m=2000.0, snowline_noise_m=0.0, resolution_m=20.0)
    ground, snow, params = land_cover(rows, slope, aspect, cfg, latitude=40.0)
    assert params["snowline_m"] == 2000.0
    assert snow[rows < 1700].max() == 0 and snow[rows > 2300].min() == 1
    band = (rows > 1900) & (rows < 2000)
    assert snow[band & (aspect == 0)].mean() > snow[band & (aspect == 180)].mean() + 0.5
    steep = land_cover(rows, np.full(rows.shape, 60.0), aspect, cfg, latitude=40.0)
    assert steep[1].max() == 0 and np.all(steep[0] == CLASSES["rock"])  # cliffs: bare rock, no snow


def test_cast_shadow_falls_away_from_the_sun():
    z = np.zeros((60, 60), np.float32)
    z[:, 30] = 100.0  # a north-south wall 100 m high
    shadow = cast_shadow(z, 10.0, 45.0, 90.0)  # sun in the east, 45 deg up: shadow 10 cells west
    assert shadow[30, 21:30].all() and not shadow[30, 30:].any() and not shadow[30, :20].any()


def test_same_seed_same_scene_other_seed_other_scene(tmp_path, small_dem, library, scene):
    again = make_scene(tmp_path / "again", small_dem, library)
    other = make_scene(tmp_path / "other", small_dem, library, seed=4)
    for key in ("s2_clear", "s2_cloudy", "s1", "cloud_mask", "shadow_mask"):
        a, b, c = (read(s.paths[key])[0] for s in (scene, again, other))
        assert np.array_equal(a, b, equal_nan=True), key
        assert not np.array_equal(a, c, equal_nan=True), key


def test_clouds_and_their_shadows_follow_the_sun(scene):
    clear, _ = read(scene.paths["s2_clear"])
    cloudy, _ = read(scene.paths["s2_cloudy"])
    cloud, _ = read(scene.paths["cloud_mask"])
    shadow, _ = read(scene.paths["shadow_mask"])
    assert 0.05 < cloud.mean() < 0.8 and shadow.mean() > 0.01
    only_shadow = (shadow[0] > 0) & (cloud[0] == 0)
    nir = S2_BANDS_10_20M.index("B8")
    assert np.median(cloudy[nir][only_shadow] / clear[nir][only_shadow]) < 0.8  # shadows darken the ground
    meta = json.loads(open(scene.paths["metadata"]).read())
    assert meta["clouds"]["sun_azimuth"] == SUN_AZIMUTH and meta["clouds"]["pixel_size_m"] == 20.0


def test_geographic_dem_is_reprojected_to_utm(tmp_path, library):
    dem = data_path("dem", "rmnp-dem.tif")
    grid = scene_grid(dem, 20.0)
    assert grid.crs.to_epsg() == 32613 and grid.pixel_size == (20.0, 20.0)
    small = make_scene(tmp_path, dem, library, name="rmnp", resolution_m=400.0, snowline_m=3300.0,
                       treeline_m=3450.0, orbit="descending")
    clear, _ = read(small.paths["s2_clear"])
    assert (clear > 0).all()  # the grid lies inside the DEM: no nodata
    assert 0.05 < small.stats["snow_fraction"] < 0.9 and small.stats["rock_fraction"] > 0.05


def test_bad_parameters_are_refused(tmp_path, small_dem, library):
    with pytest.raises(InputError, match="orbit"):
        SemiSyntheticConfig(orbit="sideways")
    with pytest.raises(InputError, match="max_pixels"):
        make_scene(tmp_path, small_dem, library, max_pixels=100)

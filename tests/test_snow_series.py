"""A snow season from several dates: dates, merging, grids, gap filling, the duration bands, the table and
chart; on constructed series with a known answer, the real Rome time series and the real Finland snow patch;
through Processing and the style of the duration GeoTIFF."""
from __future__ import annotations

import csv
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from conftest import data_path
from topoclear.engine.clouds.masks.rules import bands_from_stack, cloud_shadow_masks_l1c
from topoclear.engine.errors import InputError
from topoclear.engine.snow.chart import SERIES_FIELDS
from topoclear.engine.snow.dates import acquisition_date, date_in_text, metadata_date, parse_date_list
from topoclear.engine.snow.duration import DURATION_NODATA as ND
from topoclear.engine.snow.parameters import CloudInput, SnowParameters
from topoclear.engine.snow.requests import Sentinel2Input
from topoclear.engine.snow.series import SeriesScene, SnowSeriesRequest, snow_series

S, N, C, X = 100, 0, 205, 255
START = date(2020, 1, 1)
UTM = CRS.from_epsg(32632)
TRANSFORM = from_origin(600000, 5100000, 20, 20)
FINLAND = "S2B_MSIL2A_20180204T94161_57_38"
T22HBD = "esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE"


def day(n: int) -> date:
    return START + timedelta(days=n)


def write_map(path, values, transform=TRANSFORM, crs=UTM) -> str:
    values = np.asarray(values, dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1,
                       dtype="uint8", crs=crs, transform=transform, nodata=255) as ds:
        ds.write(values, 1)
    return str(path)


def bands(path, *numbers):
    with rasterio.open(path) as ds:
        return [ds.read(n) for n in numbers]


def maps_series(tmp_path, columns, days, **fields):
    """A series of 1-row snow maps (``columns``: one list of per-date codes per pixel) run through snow_series."""
    grid = np.array(columns, dtype=np.uint8).T  # dates x pixels
    scenes = [SeriesScene(snow_map=write_map(tmp_path / f"in_{k}.tif", grid[k][None, :]), date=day(d))
              for k, d in enumerate(days)]
    fields.setdefault("output", str(tmp_path / "scd.tif"))
    return snow_series(SnowSeriesRequest(scenes, **fields))


# -- dates ------------------------------------------------------------------------------------------

def test_dates_from_names_metadata_and_typed_lists(shared_data):
    assert date_in_text("s2_ROIs2017_146_ImgNo_3_2018-02-10_patch_0.tif") == date(2018, 2, 10)
    assert date_in_text("S2B_MSIL2A_20180204T94161_57_38_B03.tif") == date(2018, 2, 4)
    assert date_in_text("S2A_MSIL2A_20190212T192651_N0212_R013_T07HFE_20201007T160857") == date(2019, 2, 12)
    assert date_in_text("T32TLR_20220105T103421_B11_20m.jp2") == date(2022, 1, 5)
    assert date_in_text("scene_20181340.tif") is None and date_in_text("tile_123456789.tif") is None
    assert date_in_text("ROIs2017_146.tif") is None
    # SAFE metadata (PRODUCT_START_TIME), a band file inside the SAFE, BigEarthNet's JSON
    safe = data_path("sentinel2-safe", T22HBD)
    assert metadata_date(safe) == (date(2021, 1, 22), "the product metadata MTD_MSIL2A.xml")
    jp2 = next(safe.rglob("*_B03_60m.jp2"))
    assert metadata_date(jp2)[0] == date(2021, 1, 22)
    band = data_path("bigearthnet", "BigEarthNet-S2-Example", FINLAND, f"{FINLAND}_B03.tif")
    assert acquisition_date(band, "image 1") == (date(2018, 2, 4), f"the patch metadata {FINLAND}_labels_metadata.json")
    rome = data_path("sen12ms-cr-ts", "s2_ROIs2017_146_ImgNo_0_2018-01-06_patch_0.tif")
    assert acquisition_date(rome, "image 1")[0] == date(2018, 1, 6)
    assert parse_date_list("2018-01-06, 20180121;2018/02/01", 3) == [date(2018, 1, 6), date(2018, 1, 21),
                                                                    date(2018, 2, 1)]
    assert parse_date_list("2018-01-06 2018-01-21", 2) == [date(2018, 1, 6), date(2018, 1, 21)]
    assert parse_date_list("2018-01-06,,", 3) == [date(2018, 1, 6), None, None]
    assert parse_date_list("", 2) == [None, None]
    with pytest.raises(InputError, match="2 date.s. given for 3 image"):
        parse_date_list("2018-01-06, 2018-01-07", 3)
    with pytest.raises(InputError, match="entry 2: '2018-02-30' is not a date"):
        parse_date_list("2018-01-06, 2018-02-30", 2)


def test_an_image_without_a_date_is_named(tmp_path):
    undated = write_map(tmp_path / "scene_a.tif", [[S, N]])
    with pytest.raises(InputError, match=r"image 2 \(scene_a.tif\): no acquisition date found.*YYYY-MM-DD"):
        snow_series(SnowSeriesRequest([SeriesScene(snow_map=write_map(tmp_path / "m_2020-01-01.tif", [[S, N]])),
                                       SeriesScene(snow_map=undated)], str(tmp_path / "scd.tif")))
    # a date given for it (as Processing's DATES string does) is enough; the other comes from its name
    report = snow_series(SnowSeriesRequest([SeriesScene(snow_map=str(tmp_path / "m_2020-01-01.tif")),
                                            SeriesScene(snow_map=undated, date=day(4))], str(tmp_path / "scd.tif")))
    assert [r.date for r in report.rows] == [day(0), day(4)] and report.days == 5
    assert [m.date_source for m in report.maps] == ["the file name m_2020-01-01.tif", "given"]


# -- constructed series with a known answer -----------------------------------------------------------

def test_known_answer_gap_filling_and_products(tmp_path):
    # days 0, 10, 20, 40, 45 (the 20 -> 40 gap exceeds the 15-day limit)
    report = maps_series(tmp_path, [[S, S, S, N, N],   # p0: snow to day 20, unknown 21-39
                                    [N, S, C, S, N],   # p1: N->S switches at day 5; 10 -> 40 too long
                                    [C, S, S, S, S],   # p2: first clear day 10 holds back to day 3
                                    [X, X, X, X, X]],  # p3: never observed
                         [0, 10, 20, 40, 45])
    scd, sod, smod, first, last, nobs, unknown = bands(report.output, 1, 2, 3, 4, 5, 6, 7)
    assert scd[0].tolist() == [21, 9, 24, ND]
    assert sod[0].tolist() == [0, 5, 3, ND] and smod[0].tolist() == [20, 10, 20, ND]
    assert first[0].tolist() == [0, 5, 3, ND] and last[0].tolist() == [20, 42, 45, ND]
    assert nobs[0].tolist() == [5, 4, 4, 0] and unknown[0].tolist() == [19, 29, 22, ND]
    assert (report.start, report.end, report.days) == (day(0), day(45), 46)
    s = report.summary
    assert s.observed_pixels == 3 and s.mean_scd == pytest.approx((21 + 9 + 24) / 3) and s.max_scd == 24
    # MAX_GAP: with 30 days the 20 -> 40 gap is filled (p0: snow to no snow switches after day 30)
    wide = maps_series(tmp_path, [[S, S, S, N, N]], [0, 10, 20, 40, 45], output=str(tmp_path / "wide.tif"),
                       max_gap_days=30)
    assert bands(wide.output, 1, 3, 7) == [[[31]], [[30]], [[0]]]
    # a period from START / END: day 5 to 30; maps outside it still fill its ends but are not counted
    part = maps_series(tmp_path, [[S, S, S, N, N]], [0, 10, 20, 40, 45], output=str(tmp_path / "part.tif"),
                       start=day(5), end=day(30))
    assert bands(part.output, 1, 6) == [[[16]], [[2]]]  # days 5-20 (0..15 since the start); NOBS days 10, 20
    assert [r.in_period for r in part.rows] == [False, True, True, False, False]


def test_same_date_merged_first_clear_observation_wins(tmp_path):
    a = write_map(tmp_path / "a.tif", [[C, N, X, C]])
    b = write_map(tmp_path / "b.tif", [[S, S, S, C]])
    later = write_map(tmp_path / "later.tif", [[S, S, S, S]])
    report = snow_series(SnowSeriesRequest([SeriesScene(snow_map=later, date=day(2)),
                                            SeriesScene(snow_map=a, date=day(0)),
                                            SeriesScene(snow_map=b, date=day(0))], str(tmp_path / "scd.tif")))
    scd, nobs = bands(report.output, 1, 6)
    # merged day 0: S (b's clear wins over a's cloud), N (a's clear comes first), S (over nodata), cloud
    assert scd[0].tolist() == [3, 2, 3, 3] and nobs[0].tolist() == [2, 2, 2, 1]
    assert [(r.date, r.images) for r in report.rows] == [(day(0), 2), (day(2), 1)]
    assert any("merged" in m for m in report.messages)


def test_other_grids_are_aligned_onto_the_first_or_refused(tmp_path):
    first = write_map(tmp_path / "first.tif", [[S, S, S, S]])
    shifted = write_map(tmp_path / "shifted.tif", [[N, N, N, N]], transform=from_origin(600040, 5100000, 20, 20))
    scenes = [SeriesScene(snow_map=first, date=day(0)), SeriesScene(snow_map=shifted, date=day(4))]
    with pytest.raises(InputError, match=r"image 2 \(shifted.tif, 2020-01-05\) is not on the grid of the first date"):
        snow_series(SnowSeriesRequest(scenes, str(tmp_path / "refused.tif"), grids="refuse"))
    folder = tmp_path / "maps"
    report = snow_series(SnowSeriesRequest(scenes, str(tmp_path / "scd.tif"), snow_map_folder=str(folder)))
    aligned = folder / "snowmap_2020-01-05.tif"
    assert bands(aligned, 1)[0].tolist() == [[X, X, N, N]]  # shifted by two pixels; uncovered cells nodata
    with rasterio.open(aligned) as ds:
        assert ds.tags()["ALIGNED_FROM"] == "shifted.tif" and ds.colormap(1)[100][:3] == (0, 190, 255)
    assert bands(report.output, 1)[0].tolist() == [[5, 5, 3, 3]]  # S->N over 4 days: days 0-2 snow
    assert report.maps[1].aligned and not report.maps[0].aligned
    assert sorted(p.name for p in folder.iterdir()) == ["snowmap_2020-01-05.tif"]  # given maps are not copied
    far = write_map(tmp_path / "far.tif", [[N]], transform=from_origin(900000, 5100000, 20, 20))
    with pytest.raises(InputError, match="does not overlap the first date"):
        snow_series(SnowSeriesRequest([scenes[0], SeriesScene(snow_map=far, date=day(4))], str(tmp_path / "x.tif")))


def write_stack(path, snow, cloud_free=True):
    """A 13-band L1C stack (uint16 DN) whose pixels are snow where ``snow`` (B3 0.80, B4 0.70, B11 0.10:
    NDSI 0.78) and bare soil elsewhere (B3 0.08, B4 0.07, B11 0.15: NDSI -0.30)."""
    snow = np.asarray(snow, dtype=bool)
    stack = np.full((13,) + snow.shape, 1000, dtype=np.uint16)
    for band, on, off in ((3, 8000, 800), (4, 7000, 700), (12, 1000, 1500)):
        stack[band - 1] = np.where(snow, on, off)
    with rasterio.open(path, "w", driver="GTiff", width=snow.shape[1], height=snow.shape[0], count=13,
                       dtype="uint16", crs=UTM, transform=TRANSFORM) as ds:
        ds.write(stack)
    return str(path)


def test_reflectance_stacks_with_cloud_masks_known_answer(tmp_path):
    left = np.zeros((4, 6), bool)
    left[:, :3] = True
    cloud = write_map(tmp_path / "cloud_0111.tif", left.astype(np.uint8))  # 1 = cloud over the left half
    images = [write_stack(tmp_path / "S2_20200101.tif", np.ones((4, 6))),
              write_stack(tmp_path / "S2_2020-01-08.tif", np.zeros((4, 6))),  # left cloudy, right snow-free
              write_stack(tmp_path / "S2_20200115.tif", left)]  # left snow, right bare
    scenes = [SeriesScene(image=Sentinel2Input(p), cloud=CloudInput("raster", cloud) if i == 1 else None)
              for i, p in enumerate(images)]
    report = snow_series(SnowSeriesRequest(scenes, str(tmp_path / "scd.tif"), SnowParameters(method="threshold"),
                                           cloud=CloudInput("none"), snow_map_folder=str(tmp_path / "maps"),
                                           statistics_csv=str(tmp_path / "t.csv"), chart_html=str(tmp_path / "c.html")))
    scd, smod, nobs = bands(report.output, 1, 3, 6)
    # left: snow, cloud, snow 7 days apart: snow all 15 days; right: snow then bare: S -> N switches after day 3
    assert np.all(scd[:, :3] == 15) and np.all(smod[:, :3] == 14) and np.all(nobs[:, :3] == 2)
    assert np.all(scd[:, 3:] == 4) and np.all(smod[:, 3:] == 3) and np.all(nobs[:, 3:] == 3)
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "snowmap_2020-01-01.tif", "snowmap_2020-01-08.tif", "snowmap_2020-01-15.tif"]
    assert bands(tmp_path / "maps" / "snowmap_2020-01-08.tif", 1)[0][0].tolist() == [C, C, C, N, N, N]
    rows = list(csv.DictReader(open(tmp_path / "t.csv", encoding="utf-8")))
    assert tuple(rows[0]) == SERIES_FIELDS
    area = 24 * 400 / 1e6
    assert [float(r["snow_km2"]) for r in rows] == pytest.approx([area, 0.0, area / 2])
    assert [r["observation"] for r in rows] == ["clear", "cloudy", "clear"]
    assert [float(r["cloud_percent"]) for r in rows] == [0.0, 50.0, 0.0]
    page = (tmp_path / "c.html").read_text(encoding="utf-8")
    assert page.count('<circle cx=') == 3 + 2 and page.count('class="cloudy"') == 2  # 3 dots + 2 in the legend
    assert "<svg" in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


# -- real data --------------------------------------------------------------------------------------

def rules_mask(stack: Path, out: Path) -> str:
    """The DSen2-CR rules cloud + shadow mask of a 13-band L1C stack, as a 0 / 1 raster."""
    with rasterio.open(stack) as ds:
        masks = cloud_shadow_masks_l1c(bands_from_stack(ds.read()))
        profile = dict(driver="GTiff", width=ds.width, height=ds.height, count=1, dtype="uint8", crs=ds.crs,
                       transform=ds.transform)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(masks["csm"].astype(np.uint8), 1)
    return str(out)


def rome_series(tmp_path):
    folder = data_path("sen12ms-cr-ts")
    images = sorted(folder.glob("s2_ROIs2017_146_ImgNo_*_patch_0.tif"), key=lambda p: p.name.split("_")[-3])
    assert len(images) == 21
    masks = [rules_mask(p, tmp_path / f"mask_{i}.tif") for i, p in enumerate(images)]
    return images, masks


def test_real_rome_time_series_is_snow_free(tmp_path):
    images, masks = rome_series(tmp_path)
    scenes = [SeriesScene(image=Sentinel2Input(str(p)), cloud=CloudInput("raster", m)) for p, m in zip(images, masks)]
    report = snow_series(SnowSeriesRequest(scenes, str(tmp_path / "scd.tif"), chart_html=str(tmp_path / "c.html")))
    assert [r.date for r in report.rows][:3] == [date(2018, 1, 6), date(2018, 1, 21), date(2018, 1, 31)]
    assert (report.start, report.end, report.days) == (date(2018, 1, 6), date(2018, 11, 2), 301)
    scd, nobs = bands(report.output, 1, 6)
    observed = nobs > 0
    assert observed.mean() > 0.99 and report.summary.mean_scd < 0.5 and report.summary.snow_free_percent > 99
    assert np.percentile(scd[observed], 99) == 0
    by_date = {r.date.isoformat(): r for r in report.rows}
    for clear in ("2018-02-10", "2018-03-22", "2018-04-26", "2018-05-31"):
        assert by_date[clear].observation == "clear" and by_date[clear].snow_km2 < 0.01
    for overcast in ("2018-01-31", "2018-04-11", "2018-05-06", "2018-11-02"):
        assert by_date[overcast].observation == "cloudy"
    # without a cloud mask, the cirrus of 2018-11-02 (NDSI 0.58) passes for snow: what the masks prevent
    bare = snow_series(SnowSeriesRequest([SeriesScene(image=Sentinel2Input(str(p))) for p in images],
                                         str(tmp_path / "bare.tif"), cloud=CloudInput("none")))
    assert {r.date.isoformat(): r.snow_percent for r in bare.rows}["2018-11-02"] > 99


def test_real_finland_snow_patch_as_a_small_series(tmp_path):
    """The real snowy BigEarthNet patch of 2018-02-04 (its date from its JSON metadata) made a three-date series:
    the same bands again on 02-11 under a documented synthetic cloud mask over the west half, and on 02-18
    clear; plus a second, fully cloud-masked copy of 02-04 given first (merged: the clear copy's observations
    win). The snow of the real patch must last the whole period where it was snow, whatever the cloud."""
    b03 = data_path("bigearthnet", "BigEarthNet-S2-Example", FINLAND, f"{FINLAND}_B03.tif")
    with rasterio.open(b03.with_name(f"{FINLAND}_B11.tif")) as ds:  # the 20 m grid of the snow map
        west = np.zeros((ds.height, ds.width), np.uint8)
        west[:, : ds.width // 2] = 1
        profile = dict(driver="GTiff", width=ds.width, height=ds.height, count=1, dtype="uint8", crs=ds.crs,
                       transform=ds.transform)
    paths = {}
    for name, values in (("west", west), ("all", np.ones_like(west))):
        paths[name] = str(tmp_path / f"cloud_{name}.tif")
        with rasterio.open(paths[name], "w", **profile) as dst:
            dst.write(values, 1)
    image = Sentinel2Input(str(b03))
    scenes = [SeriesScene(image=image, date=date(2018, 2, 4), cloud=CloudInput("raster", paths["all"])),
              SeriesScene(image=image),  # the real date, from the patch's JSON
              SeriesScene(image=image, date=date(2018, 2, 11), cloud=CloudInput("raster", paths["west"])),
              SeriesScene(image=image, date=date(2018, 2, 18))]
    params = SnowParameters(method="threshold")
    report = snow_series(SnowSeriesRequest(scenes, str(tmp_path / "scd.tif"), params, cloud=CloudInput("none"),
                                           snow_map_folder=str(tmp_path / "maps")))
    assert report.maps[1].date_source.startswith("the patch metadata")
    snow = bands(tmp_path / "maps" / "snowmap_2018-02-04_2.tif", 1)[0] == S
    assert snow.mean() > 0.6  # real seasonal snow
    scd, smod, nobs = bands(report.output, 1, 3, 6)
    assert np.all(scd[snow] == 15) and np.all(smod[snow] == 14) and np.all(scd[~snow] == 0)
    assert np.all(nobs[:, :30] == 2) and np.all(nobs[:, 30:] == 3)
    assert [r.observation for r in report.rows] == ["clear", "cloudy", "clear"]
    # a 5-day gap limit: the 7-day gaps are not filled; snow days are the observation days only
    short = snow_series(SnowSeriesRequest(scenes, str(tmp_path / "short.tif"), params, cloud=CloudInput("none"),
                                          max_gap_days=5))
    scd, unknown = bands(short.output, 1, 7)
    assert np.all(scd[:, 30:][snow[:, 30:]] == 3) and np.all(scd[:, :30][snow[:, :30]] == 2)
    assert np.all(unknown[:, 30:] == 12) and np.all(unknown[:, :30] == 13)


# -- Processing and the style -------------------------------------------------------------------------

def test_snowseries_algorithm_on_the_rome_series(run_alg, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer, QgsVectorLayer

    import processing
    from topoclear.qgis_common.styles import DURATION_STYLES, apply_style

    images, masks = rome_series(tmp_path)
    dates = ",".join([""] * 20 + ["2018-11-02"])  # the last date typed, the others from the names
    context = QgsProcessingContext()
    result = processing.run("topoclear:snowseries", {
        "INPUTS": [str(p) for p in images], "DATES": dates, "CLOUD_SOURCE": 2, "CLOUD_MASKS": masks,
        "END": "2018-08-31", "MAX_GAP": 20, "OUTPUT": str(tmp_path / "scd.tif"), "SNOW_MAPS": str(tmp_path / "maps"),
        "OUTPUT_TABLE": str(tmp_path / "table.gpkg"), "OUTPUT_CSV": str(tmp_path / "t.csv"),
        "OUTPUT_HTML": str(tmp_path / "chart.html")}, context=context, feedback=QgsProcessingFeedback())
    assert result["DATES_COUNT"] == 21 and result["MEAN_SCD"] < 0.5 and result["SNOW_FREE_PERCENT"] > 99
    assert len(list((tmp_path / "maps").glob("snowmap_2018-*.tif"))) == 21
    with rasterio.open(result["OUTPUT"]) as ds:
        assert ds.count == 7 and ds.tags()["PERIOD_END"] == "2018-08-31" and ds.tags()["MAX_GAP_DAYS"] == "20"
    table = QgsVectorLayer(result["OUTPUT_TABLE"], "table", "ogr")
    assert table.isValid() and table.featureCount() == 21
    feature = next(f for f in table.getFeatures() if f["date"] == "2018-11-02")
    assert feature["observation"] == "cloudy" and feature["in_period"] in (False, 0)
    assert "<svg" in open(result["OUTPUT_HTML"], encoding="utf-8").read()
    assert len(list(csv.reader(open(result["OUTPUT_CSV"], encoding="utf-8")))) == 22
    # the duration GeoTIFF: each band a named style of the layer, SCD shown
    layer = QgsRasterLayer(result["OUTPUT"], "scd", "gdal")
    for _ in range(2):  # styling twice must work too
        apply_style(layer, "snow_duration")
    manager = layer.styleManager()
    assert manager.currentStyle() == DURATION_STYLES[0][1]
    assert sorted(manager.styles()) == sorted(name for _, name, _, _ in DURATION_STYLES)
    assert layer.renderer().band() == 1
    manager.setCurrentStyle("Melt-out date (SMOD)")
    assert layer.renderer().band() == 3
    labels = [item.label for item in layer.renderer().shader().rasterShaderFunction().colorRampItemList()]
    assert labels[0] == "2018-01-06" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", labels[-1])
    manager.setCurrentStyle("Clear observations (NOBS)")
    assert layer.renderer().band() == 6
    del layer, table


# -- the Season section of the Snow cover dock --------------------------------------------------------

@pytest.fixture()
def narrow_dock(qgis_iface):
    from conftest import show_dock
    from topoclear.ui.snow_dock import SnowDock

    yield from show_dock(qgis_iface, SnowDock, width=300)


@pytest.mark.gui
def test_dock_season_from_project_layers_shows_the_chart(narrow_dock, qgis_iface, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.PyQt.QtWidgets import QScrollArea

    from conftest import REPO_ROOT, wait_for

    dock = narrow_dock
    folder = data_path("sen12ms-cr-ts")
    clear = ["3_2018-02-10", "6_2018-03-22", "9_2018-04-26", "12_2018-05-31", "13_2018-06-10"]
    layers = [QgsRasterLayer(str(folder / f"s2_ROIs2017_146_ImgNo_{name}_patch_0.tif"), name) for name in clear]
    other = QgsRasterLayer(str(folder / "s2_ROIs2017_146_ImgNo_0_2018-01-06_patch_0.tif"), "not checked")
    QgsProject.instance().addMapLayers(layers + [other])
    assert dock.season_list.count() == 6  # the list follows the project
    dock.season_box.setCollapsed(False)
    dock.check_season_layers(layers)
    dock.cloud_mode.setCurrentIndex(dock.cloud_mode.findData("none"))
    dock.season_output.setFilePath(str(tmp_path / "season.tif"))
    dock.season_folder.setFilePath(str(tmp_path / "maps"))
    dock.season_button.click()
    assert not dock.season_button.isEnabled() and not dock.run_button.isEnabled()
    ok, message = wait_for(dock.runFinished)
    assert ok, message
    assert dock.season_button.isEnabled() and dock.run_button.isEnabled()
    report = dock.last_season
    assert [r.date.isoformat() for r in report.rows] == ["2018-02-10", "2018-03-22", "2018-04-26", "2018-05-31",
                                                         "2018-06-10"]
    assert report.summary.mean_scd < 0.5 and "Snow cover duration: mean 0.0 days" in dock.result_label.text()
    assert len(list((tmp_path / "maps").glob("snowmap_*.tif"))) == 5
    layer = QgsProject.instance().mapLayer(dock.last_layer_id)
    assert layer.source() == str(tmp_path / "season.tif") and layer.renderer().band() == 1
    assert len(layer.styleManager().styles()) == 7
    # the chart, at the dock's width: no horizontal scrolling
    assert dock.chart.svg.startswith("<svg") and dock.chart.pixmap() is not None
    scroll = dock.widget()
    assert isinstance(scroll, QScrollArea) and not scroll.horizontalScrollBar().isVisible()
    assert dock.chart.width() <= scroll.viewport().width() and dock.chart.height() > 60
    assert scroll.widget().width() <= scroll.viewport().width()
    scroll.ensureWidgetVisible(dock.chart)
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    assert qgis_iface.mainWindow().grab().save(str(artifacts / "snow_dock_season.png"))
    # a date without one: the message names it
    undated = tmp_path / "undated.tif"
    undated.write_bytes((folder / "s2_ROIs2017_146_ImgNo_3_2018-02-10_patch_0.tif").read_bytes())
    bad = QgsRasterLayer(str(undated), "undated")
    QgsProject.instance().addMapLayer(bad)
    dock.check_season_layers(layers[:1] + [bad])
    dock.season_button.click()
    assert "no acquisition date found" in dock.result_label.text() and "undated.tif" in dock.result_label.text()
    del layers, other, layer, bad

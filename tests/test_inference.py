"""Whole-scene cloud removal: tile-size independence, bounded memory, alignment, masks, errors, devices.

Scenes are built from the real SEN12MS-CR samples (Sentinel-2 L1C spectra and the co-registered
Sentinel-1 VV/VH of patch 19_p30). Where a test needs a DEM under the scene, the real San Gabriel
SRTM DEM is used and the Sentinel-2/Sentinel-1 patch is *placed* on a UTM grid over it (a
documented synthetic pairing: real spectra, real relief, not the same place). Networks are the
real architectures at reduced width with random weights: tiling, alignment and I/O do not
depend on training.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import rasterio
import torch
from osgeo import gdal
from rasterio.crs import CRS
from rasterio.transform import from_origin

from conftest import data_path, requires_cuda
from topoclear.engine import checkpoints
from topoclear.engine.clouds.inputs import S1Source, TerrainSource
from topoclear.engine.io.warp import footprint_coverage
from topoclear.engine.errors import Cancelled, InputError
from topoclear.engine.clouds.device import AMP_TOLERANCE, select_device
from topoclear.engine.clouds.removal import remove_clouds, run_cloud_removal
from topoclear.engine.clouds.request import CloudRemovalRequest, InferenceOptions
from topoclear.engine.clouds.tiling_defaults import default_tiling, receptive_radius
from topoclear.engine.clouds.weights import resolve_model
from topoclear.engine.progress import SILENT, Monitor
from topoclear.engine.io.raster import Grid
from topoclear.engine.terrain.stack import terrain_stack
from topoclear.models import build_model

gdal.UseExceptions()
S2_P30 = ("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif")
S1_P30 = ("sen12ms-cr", "s1", "ROIs1868_summer_s1_19_p30.tif")


# ------------------------------------------------------------------------------------------ helpers
def real_patch():
    with rasterio.open(data_path(*S2_P30)) as ds:
        s2 = ds.read()
        crs, transform = ds.crs, ds.transform
    with rasterio.open(data_path(*S1_P30)) as ds:
        s1 = ds.read()
    return s2, s1, crs, transform


def write(path, data, crs, transform, nodata=None, descriptions=None):
    data = np.asarray(data)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
        for i, text in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, text)
    return str(path)


def scene(tmp_path, height=200, width=300, dtype="float32", crs=None, transform=None, name="s2.tif"):
    """The real 19_p30 patch mirrored to height x width; float32 reflectance or uint16 DN; plus its S1."""
    s2, s1, pcrs, ptransform = real_patch()
    pad = ((0, 0), (0, max(0, height - 256)), (0, max(0, width - 256)))
    s2 = np.pad(s2, pad, mode="symmetric")[:, :height, :width]
    s1 = np.pad(s1, pad, mode="symmetric")[:, :height, :width]
    s2 = (s2.astype(np.float32) / 10000.0) if dtype == "float32" else s2.astype(dtype)
    crs, transform = crs or pcrs, transform or ptransform
    return (write(tmp_path / name, s2, crs, transform),
            write(tmp_path / ("s1_" + name), s1.astype(np.float32), crs, transform))


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def he_init(model, head_gain=1.0):
    """Variance-preserving weights, so that far-away pixels really do influence a deep UNet."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    model.head.weight.data *= head_gain
    return model


def small_dsen2cr(s1_bands=2):
    torch.manual_seed(0)
    return build_model("dsen2cr", s1_bands=s1_bands, features=16, blocks=4)


def run(model, s2, out, monitor=SILENT, **kwargs):
    options = kwargs.pop("options", None) or InferenceOptions()
    return remove_clouds(model, CloudRemovalRequest(s2, str(out), options=options, **kwargs), monitor)


# ------------------------------------------------------------------------------------------ tiling
def test_dsen2cr_result_does_not_depend_on_the_tile_size(tmp_path):
    s2, s1 = scene(tmp_path)
    model = small_dsen2cr()
    assert receptive_radius(model) == 10
    outputs = {}
    for tile in (64, 96, 400):
        report = run(model, s2, tmp_path / f"t{tile}.tif", s1=s1, mask_kind="none",
                     options=InferenceOptions(tile=tile, batch_size=3))
        assert report.mode == "crop" and report.overlap == 24  # twice the receptive radius, cropped
        outputs[tile] = read(report.output)
    assert report.tiles == 1 and outputs[64].shape == (13, 200, 300)  # 400: the whole scene in one tile
    spread = float(outputs[400].std())
    for tile in (64, 96):
        diff = np.abs(outputs[tile] - outputs[400]).max()
        assert diff < 1e-6, (tile, diff)  # float noise; the output's spread is ~0.2 reflectance
    assert spread > 0.05


def test_unet_result_does_not_depend_on_the_tile_size(tmp_path):
    s2, _ = scene(tmp_path)
    model = he_init(build_model("unet", s2_bands=13, s1_bands=0, widths=(4, 8, 8, 8, 8, 8)), head_gain=100.0)
    assert receptive_radius(model) == 219
    tile, overlap, mode = default_tiling(model, 32, InferenceOptions())
    assert (overlap, mode) == (448, "crop")
    outputs = {}
    for tile in (512, 640, 1024):
        report = run(model, s2, tmp_path / f"u{tile}.tif", mask_kind="none", options=InferenceOptions(tile=tile))
        outputs[tile] = read(report.output)
    assert report.tiles == 1  # 1024: the whole scene and its padding in one tile
    spread = float(outputs[1024].std())
    assert spread > 0.01
    for tile in (512, 640):
        assert np.abs(outputs[tile] - outputs[1024]).max() < 1e-5 * max(1.0, spread)
    # a narrower overlap than the receptive field is still seamless (blended) but only approximate
    approx = read(run(model, s2, tmp_path / "approx.tif", mask_kind="none",
                      options=InferenceOptions(tile=256, overlap=64)).output)
    assert np.isfinite(approx).all()


def test_memory_does_not_grow_with_the_scene(tmp_path):
    """Peak traced memory (numpy buffers: reads, batches, blending cells) for a 9x larger scene.

    Both scenes hold enough tiles to fill the read-ahead queue. How full the queue is at the peak
    depends on thread timing (10.8-14.4 MB measured for either size), so the bound allows 50 %: one
    float32 band of the 1536 px scene held whole would add 9.4 MB (+87 %), all 13 bands 123 MB."""
    torch.manual_seed(0)
    model = build_model("dsen2cr", s1_bands=0, features=4, blocks=1)
    peaks, blender = {}, {}
    for size in (512, 1536):
        s2, _ = scene(tmp_path, size, size, name=f"m{size}.tif")
        tracemalloc.start()
        report = run(model, s2, tmp_path / f"mo{size}.tif", mask_kind="none",
                     options=InferenceOptions(tile=128, batch_size=2))
        peaks[size] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        blender[size] = report.blender_peak_bytes
    scene_bytes = 13 * 4 * 1536 * 1536
    assert peaks[1536] < 1.5 * peaks[512], peaks  # 9x the pixels, about the same memory (11-14 MB)
    assert peaks[1536] < 0.15 * scene_bytes
    assert blender[1536] < 0.01 * scene_bytes


# ------------------------------------------------------------------------------------------ outputs
def test_output_keeps_bands_grid_dtype_nodata_and_clear_pixels(tmp_path):
    s2_path, s1_path = scene(tmp_path, 160, 192, dtype="uint16", name="dn.tif")
    data = read(s2_path)
    data[:, :20, :30] = 0  # Sentinel-2 nodata (DN 0, no declared nodata)
    with rasterio.open(s2_path) as ds:
        crs, transform = ds.crs, ds.transform
    s2_path = write(tmp_path / "dn_nodata.tif", data, crs, transform)
    cloud = np.zeros((1, 160, 192), np.uint8)
    cloud[0, 60:120, 50:150] = 1
    mask = write(tmp_path / "mask.tif", cloud, crs, transform)
    torch.manual_seed(0)
    model = build_model("unet", s1_bands=2, widths=(4, 4, 4, 4, 4, 4))  # 10 bands: B1, B9, B10 are not predicted
    report = run(model, s2_path, tmp_path / "out.tif", s1=s1_path, mask=mask, mask_kind="raster",
                 options=InferenceOptions(tile=512))
    with rasterio.open(report.output) as out, rasterio.open(s2_path) as src:
        assert (out.count, out.dtypes, out.crs, out.transform, out.nodata) == (
            src.count, src.dtypes, src.crs, src.transform, src.nodata)
        result = out.read()
        descriptions = out.descriptions
        assert out.tags()["TOPOCLEAR_MODEL"] == "unet"
    assert descriptions[1] == "B2, cloud removed (unet)"
    assert descriptions[0].startswith("B1, copied from the input") and "B10, copied" in descriptions[10]
    for b in (0, 9, 10):  # B1, B9, B10 copied as they are
        assert np.array_equal(result[b], data[b])
    valid = (data != 0).all(axis=0)
    clear = valid & (cloud[0] == 0)
    assert np.array_equal(result[:, clear], data[:, clear])  # keep clear pixels: reproduction error 0
    assert (result[:, ~valid] == 0).all()  # nodata kept
    predicted = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]
    inside = valid & (cloud[0] == 1)
    assert (result[predicted][:, inside] != data[predicted][:, inside]).mean() > 0.9
    assert (result[predicted][:, valid] > 0).all()  # a prediction never reads as nodata
    assert report.kept_pixels == int(clear.sum()) and report.cloud_pixels == int(inside.sum())
    assert report.tiles_skipped == 0

    # without keep-clear every valid pixel is predicted
    report = run(model, s2_path, tmp_path / "all.tif", s1=s1_path, mask=mask, mask_kind="raster",
                 options=InferenceOptions(tile=512, keep_clear=False))
    assert report.kept_pixels == 0 and (read(report.output)[predicted][:, clear] != data[predicted][:, clear]).any()


def test_nodata_tiles_are_skipped(tmp_path):
    s2_path, s1_path = scene(tmp_path, 128, 256)
    data = read(s2_path)
    data[:, :, :160] = np.nan
    with rasterio.open(s2_path) as ds:
        s2_path = write(tmp_path / "half.tif", data, ds.crs, ds.transform)
    report = run(small_dsen2cr(), s2_path, tmp_path / "half_out.tif", s1=s1_path, mask_kind="none",
                 options=InferenceOptions(tile=64))
    out = read(report.output)
    assert report.tiles_skipped > 0 and report.valid_pixels == 128 * 96
    assert np.isnan(out[:, :, :160]).all() and np.isfinite(out[:, :, 160:]).all()


def test_computed_and_scl_masks(tmp_path):
    s2_path, s1_path = scene(tmp_path, 128, 128, dtype="uint16", name="m.tif")
    model = small_dsen2cr()
    messages = []
    report = run(model, s2_path, tmp_path / "c.tif", s1=s1_path, mask_kind="computed",
                 monitor=Monitor(on_message=messages.append), options=InferenceOptions(tile=64))
    assert any("DSen2-CR rules" in m for m in messages)  # the rules on the L1C bands
    assert 0 < report.cloud_pixels < report.valid_pixels
    with rasterio.open(s2_path) as ds:
        crs, transform = ds.crs, ds.transform
    scl = np.full((1, 64, 64), 4, np.uint8)  # vegetation, on a 20 m grid
    scl[0, :, 32:] = 9  # cloud high probability on the right half
    scl_path = write(tmp_path / "T_SCL_20m.tif", scl, crs, transform * transform.scale(2, 2))
    report = run(model, s2_path, tmp_path / "s.tif", s1=s1_path, mask=scl_path, options=InferenceOptions(tile=64))
    assert report.cloud_pixels == 128 * 64  # nearest neighbour onto the 10 m grid
    out, src = read(report.output), read(s2_path)
    assert np.array_equal(out[:, :, :64], src[:, :, :64])


# ------------------------------------------------------------------------------------------ alignment
def test_sentinel1_in_another_crs_and_partial_coverage(tmp_path):
    s2_path, s1_path = scene(tmp_path, 256, 256)
    s1_wgs84 = str(tmp_path / "s1_wgs84.tif")
    gdal.Warp(s1_wgs84, s1_path, dstSRS="EPSG:4326", xRes=0.00012, yRes=0.00012, resampleAlg="bilinear",
              dstNodata=np.nan)
    with rasterio.open(s2_path) as ds:
        grid = Grid.of(ds)
    native = S1Source(s1_path, grid)
    warped = S1Source(s1_wgs84, grid, policy="fill")  # the warped corners cover a hair less than the scene
    window = (32, 32, 192, 192)
    a, b = native.read(window), warped.read(window)
    assert warped.coverage > 0.99 and a.shape == b.shape == (2, 192, 192)
    assert np.median(np.abs(a - b)) < 0.8 and abs(float(a.mean() - b.mean())) < 0.2  # dB, after two resamplings
    assert native.units == {"VV": "db", "VH": "db"} and "SEN12MS" in native.summary

    # linear units are detected and converted to dB
    linear = write(tmp_path / "s1_linear.tif", (10 ** (read(s1_path) / 10)).astype(np.float32), ds.crs, ds.transform)
    lin = S1Source(linear, grid)
    assert lin.units == {"VV": "linear", "VH": "linear"} and np.abs(lin.read(window) - a).max() < 1e-3

    # half the scene: refused with the percentage, or filled as asked
    half = str(tmp_path / "s1_half.tif")
    with rasterio.open(s1_path) as ds:
        write(half, ds.read()[:, :, :128], ds.crs, ds.transform)
    with pytest.raises(InputError, match=r"covers only 50\.0 % of the Sentinel-2 scene"):
        S1Source(half, grid)
    model = small_dsen2cr()
    report = run(model, s2_path, tmp_path / "filled.tif", s1=half, mask_kind="none",
                 options=InferenceOptions(tile=128, policy="fill"))
    assert 0.3 < report.s1_filled < 0.7
    elsewhere = str(tmp_path / "s1_far.tif")
    with rasterio.open(s1_path) as ds:
        write(elsewhere, ds.read(), ds.crs, ds.transform * ds.transform.translation(5000, 0))
    with pytest.raises(InputError, match="does not cover the Sentinel-2 scene at all"):
        S1Source(elsewhere, grid)


@pytest.fixture(scope="module")
def mountain(tmp_path_factory):
    """S2 (real spectra) and S1 placed on a 10 m UTM grid over the real San Gabriel DEM (30 m)."""
    tmp = tmp_path_factory.mktemp("mountain")
    dem = data_path("dem", "bigtujunga.tif")
    with rasterio.open(dem) as ds:
        left, top = ds.transform.c + 3000, ds.transform.f - 2000
    transform = from_origin(left, top, 10.0, 10.0)
    s2, s1 = scene(tmp, 192, 224, dtype="uint16", crs=CRS.from_epsg(32611), transform=transform, name="mtn.tif")
    dem_wgs84 = str(tmp / "dem_wgs84.tif")
    gdal.Warp(dem_wgs84, str(dem), dstSRS="EPSG:4326", resampleAlg="bilinear", outputType=gdal.GDT_Float32,
              dstNodata=-9999)
    return {"s2": s2, "s1": s1, "dem": str(dem), "dem_wgs84": dem_wgs84, "tmp": tmp}


def test_terrain_is_derived_per_window_as_the_terrain_stack(mountain, tmp_path):
    with rasterio.open(mountain["s2"]) as ds:
        grid = Grid.of(ds)
    stack = tmp_path / "stack.tif"
    terrain_stack(mountain["dem"], mountain["s2"], stack)
    whole = read(stack)
    source = TerrainSource(mountain["dem"], grid)
    assert source.coverage > 0.999
    for window in ((0, 0, 192, 224), (17, 33, 64, 80), (100, 150, 92, 74)):
        part = source.read(window)
        r0, c0, h, w = window
        ref = whole[:, r0:r0 + h, c0:c0 + w]
        ok = ref != -9999
        assert np.abs(part[ok] - ref[ok]).max() < 1e-3
    # a DEM in geographic coordinates gives the same relief on the scene grid
    geo = TerrainSource(mountain["dem_wgs84"], grid).read((20, 20, 150, 180))
    assert np.median(np.abs(geo[0] - whole[0, 20:170, 20:200])) < 5.0  # m, after two bilinear resamplings
    assert np.median(np.abs(geo[1] - whole[1, 20:170, 20:200])) < 2.0  # degrees


def test_crt_unet_on_a_mountain_scene_and_models_without_inputs(mountain, tmp_path):
    torch.manual_seed(0)
    crt = build_model("crt_unet", widths=(4, 4, 4, 4, 4, 4))
    messages = []
    report = run(crt, mountain["s2"], tmp_path / "crt.tif", s1=mountain["s1"], dem=mountain["dem"],
                 mask_kind="none", options=InferenceOptions(tile=512, overlap=64),
                 monitor=Monitor(on_message=messages.append))
    assert report.terrain_filled == 0 and report.s1_filled == 0
    assert any("azimuth 315, zenith 45" in m for m in messages)  # no metadata: default light, and it says so
    out = read(report.output)
    assert out.shape == (13, 192, 224) and out.dtype == np.uint16
    with pytest.raises(InputError, match="needs a DEM"):
        remove_clouds(crt, CloudRemovalRequest(mountain["s2"], str(tmp_path / "x.tif"), s1=mountain["s1"]))
    with pytest.raises(InputError, match="needs a Sentinel-1 layer"):
        remove_clouds(crt, CloudRemovalRequest(mountain["s2"], str(tmp_path / "x.tif"), dem=mountain["dem"]))
    assert not (tmp_path / "x.tif").exists()


def test_optical_only_variant_is_chosen_without_sentinel1(tmp_path, monkeypatch):
    import topoclear.engine.clouds.weights as weights

    s2, _ = scene(tmp_path, 96, 96, dtype="uint16")
    choice = resolve_model("dsen2cr", has_s1=False, allow_untrained=True, options={"features": 8, "blocks": 1})
    assert choice.model.input_layout.s1 == () and "optical-only variant" in choice.notes[0]
    with pytest.raises(InputError, match="needs a DEM"):
        resolve_model("crt_unet", has_dem=False, allow_untrained=True)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(InputError, match="no trained weights are shipped for DSen2-CR"):
        resolve_model("dsen2cr", has_s1=False)
    # shipped weights: <model>_nosar.safetensors is picked when there is no Sentinel-1
    checkpoints.save_model(tmp_path / "dsen2cr_nosar", _with_options(small_dsen2cr(0), features=16, blocks=4))
    choice = resolve_model("dsen2cr", has_s1=False)
    assert choice.weights.endswith("dsen2cr_nosar.safetensors")
    report = run_cloud_removal(CloudRemovalRequest(s2, str(tmp_path / "nosar.tif"), model="dsen2cr", mask_kind="none",
                                                   options=InferenceOptions(tile=64)))
    assert "optical-only variant" in report.messages[0] and "dsen2cr_nosar" in report.messages[1]


def _with_options(model, **options):
    model.build_options = options
    return model


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs_give_clear_errors(tmp_path):
    s2_path, s1_path = scene(tmp_path, 64, 64, dtype="uint16")
    with rasterio.open(s2_path) as ds:
        data, crs, transform = ds.read(), ds.crs, ds.transform
    model = small_dsen2cr()
    ten = write(tmp_path / "ten.tif", data[[1, 2, 3, 4, 5, 6, 7, 8, 11, 12]], crs, transform)
    with pytest.raises(InputError, match=r"DSen2-CR .* needs the Sentinel-2 bands B1, .*missing band\(s\) B1, B9, B10"):
        run(model, ten, tmp_path / "o.tif", s1=s1_path)
    nan = write(tmp_path / "nan.tif", np.full((13, 64, 64), np.nan, np.float32), crs, transform)
    with pytest.raises(InputError, match="holds only nodata or NaN"):
        run(model, nan, tmp_path / "o.tif", s1=s1_path)
    nodata = write(tmp_path / "zeros.tif", np.zeros((13, 64, 64), np.uint16), crs, transform, nodata=0)
    with pytest.raises(InputError, match="holds only nodata or NaN"):
        run(model, nodata, tmp_path / "o.tif", s1=s1_path)
    s1_nan = write(tmp_path / "s1nan.tif", np.full((2, 64, 64), np.nan, np.float32), crs, transform)
    with pytest.raises(InputError, match="holds only nodata or NaN"):
        run(model, s2_path, tmp_path / "o.tif", s1=s1_nan)
    assert not (tmp_path / "o.tif").exists()

    # weights of another model, of another band set, corrupt weights
    unet = build_model("unet", s1_bands=2, widths=(4, 4, 4, 4, 4, 4))
    checkpoints.save_model(tmp_path / "unet", _with_options(unet, widths=[4, 4, 4, 4, 4, 4]))
    with pytest.raises(InputError, match="holds a 'unet' model, not 'dsen2cr'"):
        resolve_model("dsen2cr", str(tmp_path / "unet.safetensors"))
    rgb = build_model("unet", s2_bands=["B4", "B3", "B2"], s1_bands=2, widths=(4, 4, 4, 4, 4, 4))
    checkpoints.save_model(tmp_path / "rgb", _with_options(rgb, widths=[4, 4, 4, 4, 4, 4]))
    three = write(tmp_path / "three.tif", data[[3, 2, 1]], crs, transform)  # no band names, 3 bands
    chosen = resolve_model("unet", str(tmp_path / "rgb.safetensors")).model
    with pytest.raises(InputError, match="does not look like a Sentinel-2 product"):
        run(chosen, three, tmp_path / "o.tif", s1=s1_path)
    ok = run(chosen, ten, tmp_path / "rgb_out.tif", s1=s1_path, mask_kind="none")  # the bands are found by name
    assert ok.model.startswith("UNet")
    corrupt = tmp_path / "unet.safetensors"
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    with pytest.raises(InputError, match="corrupt|not a readable safetensors"):
        resolve_model("unet", str(corrupt))
    with pytest.raises(InputError, match="unknown model 'dsen3cr'"):
        resolve_model("dsen3cr")


def test_devices():
    device, name = select_device("cpu")
    assert device.type == "cpu" and name.startswith("cpu (")
    assert select_device("auto")[0].type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="not one of auto, cpu, cuda"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="sees no CUDA GPU"):
            select_device("cuda:0")


# ------------------------------------------------------------------------------------------ robustness
class OutOfMemoryOver(torch.nn.Module):
    """Wraps a network and raises CUDA-style out-of-memory above a number of pixels per call."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit = inner, limit
        self.spec_name, self.input_layout = inner.spec_name, inner.input_layout
        self.calls = []

    def forward(self, **inputs):
        s2 = inputs["s2"]
        pixels = s2.shape[0] * s2.shape[2] * s2.shape[3]
        self.calls.append(tuple(s2.shape))
        if pixels > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(**inputs)


def test_out_of_memory_shrinks_the_batch_then_the_tile(tmp_path):
    s2, s1 = scene(tmp_path, 200, 300)
    model = small_dsen2cr()
    options = dict(overlap=24, mode="crop")
    reference = read(run(model, s2, tmp_path / "ref.tif", s1=s1, mask_kind="none",
                         options=InferenceOptions(tile=64, **options)).output)
    wrapped = OutOfMemoryOver(model, limit=2 * 128 * 128)  # two 128 px tiles fit, four do not; 256 px never
    messages = []
    report = run(wrapped, s2, tmp_path / "oom.tif", s1=s1, mask_kind="none", monitor=Monitor(on_message=messages.append),
                 options=InferenceOptions(tile=256, batch_size=4, **options))
    assert any("with 2 tiles per batch; continuing with 1" in m for m in messages)  # 224 x 256 px tiles
    assert any("restarting with tiles of 128 px" in m for m in messages)
    assert any("with 4 tiles per batch; continuing with 2" in m for m in messages)
    assert report.tile == (128, 128) and report.batch_size == 2
    assert np.abs(read(report.output) - reference).max() < 1e-6  # same result, whatever happened
    wrapped.limit = 0
    with pytest.raises(InputError, match="out of memory .* even with one tile"):
        run(wrapped, s2, tmp_path / "never.tif", s1=s1, mask_kind="none",
            options=InferenceOptions(tile=64, batch_size=2, **options))
    assert not (tmp_path / "never.tif").exists()


def test_cancel_leaves_no_output(tmp_path):
    s2, s1 = scene(tmp_path, 128, 128)
    progress = []
    monitor = Monitor(on_progress=progress.append, is_cancelled=lambda: len(progress) > 0)
    with pytest.raises(Cancelled):
        run(small_dsen2cr(), s2, tmp_path / "cancelled.tif", s1=s1, mask_kind="none", monitor=monitor,
            options=InferenceOptions(tile=48, batch_size=1))
    assert progress and progress[-1] < 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1_s2.tif", "s2.tif"]


def test_footprint_coverage():
    a = Grid(CRS.from_epsg(32631), from_origin(0, 100, 1, 1), 100, 100)
    b = Grid(CRS.from_epsg(32631), from_origin(50, 100, 1, 1), 100, 100)
    assert footprint_coverage(a, b) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------ GPU
@requires_cuda
def test_cuda_matches_cpu_and_mixed_precision_stays_within_tolerance(tmp_path):
    s2, s1 = scene(tmp_path, 200, 300)
    model = small_dsen2cr()
    cpu = read(run(model, s2, tmp_path / "cpu.tif", s1=s1, mask_kind="none",
                   options=InferenceOptions(tile=96, device="cpu")).output)
    report = run(model, s2, tmp_path / "gpu.tif", s1=s1, mask_kind="none",
                 options=InferenceOptions(tile=128, device="cuda", amp="off"))
    assert report.device.startswith("cuda:0") and not report.amp
    assert np.abs(read(report.output) - cpu).max() < 1e-3  # TF32 convolutions
    report = run(model, s2, tmp_path / "amp.tif", s1=s1, mask_kind="none",
                 options=InferenceOptions(tile=128, device="cuda", amp="auto"))
    assert report.amp_difference is not None
    if report.amp:
        assert np.abs(read(report.output) - cpu).max() < 2 * AMP_TOLERANCE

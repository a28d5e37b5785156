"""Training patches: manifests, windowed multi-resolution reading, consistent augmentation, scaling."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.windows import Window

from conftest import SHARED_DATA, data_path
from topoclear.engine.errors import InputError
from topoclear.models.bands import S2_BANDS_10_20M, S2_BANDS_L1C
from topoclear.engine.clouds.masks.rules import bands_from_stack, cloud_shadow_masks_l1c
from topoclear.engine.training.cloud_shadow_masks import write_cloud_shadow_masks
from topoclear.engine.training.manifest import StackRef, check_sample_files, load_manifest
from topoclear.engine.training.patch_dataset import PatchDataset, augment
from topoclear.engine.training.sample_data import sen12mscr_pair_key, sen12mscr_scene
from topoclear.engine.training.sample_manifests import SEN12MSCR_VAL_SCENE, build_sample_manifests
from topoclear.engine.training.sample_stacks import read_stack, reference_grid
from topoclear.models.scaling import scale_s2

TEN = S2_BANDS_10_20M
CR = "sen12ms-cr"


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    if not (SHARED_DATA / CR).is_dir():
        pytest.skip(f"sample data not found: {SHARED_DATA / CR}")
    return build_sample_manifests(SHARED_DATA, tmp_path_factory.mktemp("samples"), seed=0)


def write(path, data, transform=from_origin(500000, 4000000, 10, 10), crs="EPSG:32632", nodata=None, dtype=None):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=dtype or data.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
    return str(path)


# ---------------------------------------------------------------------------------------------- manifests
def test_sample_manifests_real_pairs_synthetic_pairs_and_splits(manifests):
    cr = load_manifest(manifests["sen12mscr"])
    clear = sorted((SHARED_DATA / CR / "s2_clear").glob("*.tif"))
    cloudy = sorted((SHARED_DATA / CR / "s2_cloudy").glob("*.tif"))
    pairs = {sen12mscr_pair_key(p.name) for p in clear} & {sen12mscr_pair_key(p.name) for p in cloudy}
    real = [s for s in cr.samples if s.id.startswith("real_")]
    synthetic = [s for s in cr.samples if s.id.startswith("synthetic_")]
    # every real pair of the data once, and synthetic clouds on every clear image plus the two Rome dates
    assert sorted(s.id for s in real) == sorted(f"real_{k}" for k in pairs)
    assert sorted(s.id for s in synthetic) == sorted([f"synthetic_{sen12mscr_pair_key(p.name)}" for p in clear]
                                                     + ["synthetic_ts_2018-01-06", "synthetic_ts_2018-05-31"])
    # split by scene: no scene in two of train / val; scene 26 (snow on the clear date only) excluded
    scene_of = {s.id: sen12mscr_scene(s.stacks["target"].paths[0]) for s in cr.samples
                if not s.id.startswith("synthetic_ts")}
    assert (len(pairs), len(set(scene_of.values())), len(real), len(synthetic)) == (27, 8, 27, 29)
    splits_of_scene = {}
    for s in cr.samples:
        if s.id in scene_of and s.split != "exclude":
            splits_of_scene.setdefault(scene_of[s.id], set()).add(s.split)
    assert all(len(v) == 1 for v in splits_of_scene.values()), splits_of_scene
    assert {s.id for s in cr.split("exclude")} == {"real_26_p100", "real_26_p500", "real_26_p840"}
    assert {s.id for s in cr.split("val")} == {f"{kind}_39_{p}" for kind in ("real", "synthetic")
                                               for p in ("p100", "p500", "p838")}
    assert {scene_of[s.id] for s in cr.split("val")} == {SEN12MSCR_VAL_SCENE}
    assert sum(s.split == "train" for s in real) == 21 and sum(s.split == "train" for s in synthetic) == 26
    assert all(s.s2_bands == S2_BANDS_L1C and s.has("cloud_mask") and s.has("shadow_mask") for s in cr.samples)
    assert "SEN12MS-CR" in cr.description
    # the sample data is read in place: the manifests name its folder as their one external root
    assert cr.external_roots == (str(SHARED_DATA.resolve()),)
    assert json.loads(manifests["sen12mscr"].read_text())["external_data_roots"] == [str(SHARED_DATA.resolve())]
    ben = load_manifest(manifests["bigearthnet"])
    assert ben.external_roots == (str(SHARED_DATA.resolve()),)
    assert len(ben.samples) == 6 and all(len(s.stacks["s1"].paths) == 2 for s in ben.samples)
    assert ben.samples[0].s1_bands == ("VV", "VH") and "B10" not in ben.samples[0].s2_bands
    assert [s.id for s in ben.split("val")] == ["bigearthnet_87_48"]


def test_json_csv_and_folder_manifests(tmp_path):
    for sub in ("cloudy", "target", "terrain"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.tif", "b.tif"):
        write(tmp_path / "cloudy" / name, rng.integers(0, 5000, (13, 40, 40), dtype=np.uint16))
        write(tmp_path / "target" / name, rng.integers(0, 5000, (13, 40, 40), dtype=np.uint16))
    write(tmp_path / "terrain" / "a.tif", rng.random((4, 40, 40), dtype=np.float32))
    folder = load_manifest(tmp_path)
    assert [s.id for s in folder.samples] == ["a", "b"]
    assert folder.samples[0].has("terrain") and not folder.samples[1].has("terrain")
    assert folder.samples[0].s2_bands == S2_BANDS_L1C

    (tmp_path / "m.json").write_text(json.dumps({
        "s2_bands": list(S2_BANDS_L1C),
        "samples": [{"id": "a", "cloudy": "cloudy/a.tif", "target": "target/a.tif", "split": "val"},
                    {"id": "b", "cloudy": "cloudy/b.tif", "target": ["target/b.tif"], "s2_offset": -1000}]}))
    m = load_manifest(tmp_path / "m.json")
    assert m.samples[0].stacks["target"].paths == (str(tmp_path / "target" / "a.tif"),)
    assert m.split("val")[0].id == "a" and m.samples[1].s2_offset == -1000
    saved = m.save(tmp_path / "out" / "copy.json")
    assert [s.stacks for s in load_manifest(saved).samples] == [s.stacks for s in m.samples]
    # the copy's files lie outside its folder: it records their folders as its external roots
    assert sorted(json.loads(saved.read_text())["external_data_roots"]) == [str(tmp_path / "cloudy"),
                                                                            str(tmp_path / "target")]

    (tmp_path / "m.csv").write_text("id,split,cloudy,target\nx,train,cloudy/a.tif,target/a.tif\n"
                                    "y,val,cloudy/b.tif;cloudy/b.tif,target/b.tif\n")
    c = load_manifest(tmp_path / "m.csv")
    assert c.samples[1].split == "val" and len(c.samples[1].stacks["cloudy"].paths) == 2


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    (json.dumps({"samples": [{"id": "a", "cloudy": "x.tif"}]}), "no 'target'"),
    (json.dumps({"samples": [{"id": "a", "target": "x.tif", "split": "holdout"}]}), "split"),
    (json.dumps({"samples": [{"id": "a", "target": "x.tif", "s2_bands": ["B2"]},
                             {"id": "a", "target": "x.tif", "s2_bands": ["B2"]}]}), "duplicate"),
    (json.dumps({"items": []}), "samples"),
])
def test_bad_manifests_are_clear_errors(tmp_path, content, message):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(InputError, match=message):
        load_manifest(tmp_path / "m.json")
    with pytest.raises(InputError, match="does not exist"):
        load_manifest(tmp_path / "missing.json")


def test_manifest_files_lie_in_its_folder_or_its_external_data_roots(tmp_path):
    data, ds = tmp_path / "data", tmp_path / "dataset"
    data.mkdir()
    (ds / "s2").mkdir(parents=True)
    rng = np.random.default_rng(0)
    outside = write(data / "a.tif", rng.integers(0, 5000, (13, 20, 20), dtype=np.uint16))
    inside = write(ds / "s2" / "b.tif", rng.integers(0, 5000, (13, 20, 20), dtype=np.uint16))
    (ds / "link.tif").symlink_to(outside)

    def manifest(target, **extra):
        (ds / "m.json").write_text(json.dumps({"s2_bands": list(S2_BANDS_L1C), **extra, "samples": [
            {"id": "in", "cloudy": "s2/b.tif", "target": "s2/b.tif"}, {"id": "x", "cloudy": "s2/b.tif",
                                                                     "target": target}]}))
        return ds / "m.json"

    assert load_manifest(manifest(inside)).external_roots == ()  # old manifests: everything inside, as before
    for target in (outside, "../data/a.tif", "s2/../../data/a.tif", "link.tif"):
        with pytest.raises(InputError, match=rf"manifest {ds / 'm.json'}, sample x: .*(a|link)\.tif lies outside "
                                             "the dataset folder"):
            load_manifest(manifest(target))
    for roots in ([str(data)], ["../data"]):
        m = load_manifest(manifest(outside, external_data_roots=roots))
        assert m.samples[1].stacks["target"].paths == (outside,) and m.external_roots == (str(data),)
        assert load_manifest(manifest("link.tif", external_data_roots=roots)).samples[1].has("target")
    with pytest.raises(InputError, match="outside the dataset folder and its external_data_roots"):
        load_manifest(manifest(outside, external_data_roots=[str(tmp_path / "elsewhere")]))
    with pytest.raises(InputError, match="'external_data_roots' must be a list of folder paths"):
        load_manifest(manifest(inside, external_data_roots=str(data)))
    (ds / "m.csv").write_text(f"id,cloudy,target\nx,s2/b.tif,{outside}\n")  # CSV: no roots, inside only
    with pytest.raises(InputError, match="outside"):
        load_manifest(ds / "m.csv")


def test_sample_files_are_checked_before_a_run(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "m.json").write_text(json.dumps({"s2_bands": list(S2_BANDS_L1C), "samples": [
        {"id": "a", "cloudy": write(tmp_path / "a.tif", rng.integers(0, 5000, (13, 64, 64), dtype=np.uint16)),
         "target": [write(tmp_path / f"t{i}.tif", rng.integers(0, 5000, (n, 64, 64), dtype=np.uint16))
                    for i, n in enumerate((10, 3))],
         "s1": write(tmp_path / "s1.tif", rng.normal(-12, 2, (2, 64, 64)).astype(np.float32)),
         "cloud_mask": write(tmp_path / "c.tif", np.zeros((64, 64), np.uint8))}]}))
    m = load_manifest(tmp_path / "m.json")
    check_sample_files(m.samples, manifest=m.path)  # a stack of two files: their bands together
    data = (tmp_path / "a.tif").read_bytes()
    write(tmp_path / "a.tif", rng.integers(0, 5000, (12, 64, 64), dtype=np.uint16))
    with pytest.raises(InputError, match=rf"manifest {tmp_path / 'm.json'}, sample a: cloudy .*a\.tif has 12 "
                                         r"band\(s\), but the manifest lists 13 S2 bands"):
        check_sample_files(m.samples, manifest=m.path)
    check_sample_files(m.samples, roles=("target", "s1"))  # only the stacks a run reads
    (tmp_path / "a.tif").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=r"sample a: cloudy: .*a\.tif is truncated or corrupt"):
        check_sample_files(m.samples)
    write(tmp_path / "s1.tif", np.zeros((3, 64, 64), np.float32))
    with pytest.raises(InputError, match=r"sample a: s1 .*s1\.tif has 3 band\(s\), but the manifest lists 2 S1"):
        check_sample_files(m.samples, roles=("s1",))


# ---------------------------------------------------------------------------------------------- reading
def test_band_files_of_other_resolutions_are_read_onto_the_10m_grid():
    folder = data_path("bigearthnet", "BigEarthNet-S2-Example", "S2A_MSIL2A_20170613T101031_87_48")
    b2, b1, b11 = (str(next(folder.glob(f"*_{b}.tif"))) for b in ("B02", "B01", "B11"))
    ref = StackRef((b2, b1, b11))
    grid = reference_grid(ref)
    assert (grid.width, grid.height) == (120, 120)  # the finest file sets the grid
    window = Window(13, 37, 64, 64)
    part = read_stack(ref, grid, window)
    assert part.shape == (3, 64, 64) and part.dtype == np.float32
    with rasterio.open(b1) as ds:  # 60 m -> 10 m by nearest neighbour, the same as a whole-image read
        full = ds.read(1, out_shape=(120, 120), resampling=Resampling.nearest)
    assert np.array_equal(part[1], full[37:101, 13:77])
    with rasterio.open(b2) as ds:
        assert np.array_equal(part[0], ds.read(1, window=window))


def test_reading_refuses_other_crs_and_converts_nodata(tmp_path):
    a = write(tmp_path / "a.tif", np.ones((1, 20, 20), np.float32))
    b = write(tmp_path / "b.tif", np.ones((1, 20, 20), np.float32), crs="EPSG:32633")
    grid = reference_grid(StackRef((a,)))
    with pytest.raises(InputError, match="reproject"):
        read_stack(StackRef((a, b)), grid, Window(0, 0, 8, 8))
    data = np.ones((1, 20, 20), np.float32)
    data[0, 2, 3] = -9999
    c = write(tmp_path / "c.tif", data, nodata=-9999)
    out = read_stack(StackRef((c,)), grid, Window(0, 0, 8, 8))
    assert np.isnan(out[0, 2, 3]) and np.isfinite(out).sum() == 63


# ---------------------------------------------------------------------------------------------- augmentation
def plane_aspect(z):
    """Aspect (deg clockwise from north, downslope) of a plane given as an image (rows = south)."""
    dz_drow, dz_dcol = np.gradient(z)
    east, north = -dz_dcol.mean(), dz_drow.mean()  # downslope components
    return np.degrees(np.arctan2(east, north)) % 360


@pytest.mark.parametrize("seed", range(12))
def test_augmentation_is_the_same_for_every_stack_and_turns_aspect(seed):
    rows, cols = np.mgrid[0:16, 0:16].astype(np.float32)
    z = 3.0 * cols - 1.0 * rows  # rises to the east and to the north
    aspect = np.full_like(z, plane_aspect(z))
    terrain = np.stack([z, np.zeros_like(z), aspect, np.zeros_like(z)])
    ident = rows * 16 + cols
    arrays = {"s2": np.stack([ident, -ident]), "target": ident[None].copy(), "terrain": terrain}
    out = augment(arrays, np.random.default_rng(seed), aspect_channel=2, probability=0.5)
    assert np.array_equal(out["s2"][0], out["target"][0]) and np.array_equal(out["s2"][1], -out["target"][0])
    # the elevation moved exactly like the image: same permutation of pixels
    order = out["target"][0].astype(int).ravel()
    assert np.array_equal(out["terrain"][0].ravel(), z.ravel()[order])
    # and the aspect band is the aspect of the augmented elevation
    expected = plane_aspect(out["terrain"][0])
    diff = np.abs(out["terrain"][2] - expected)
    assert np.minimum(diff, 360 - diff).max() < 1e-3


def test_all_eight_orientations_occur():
    ident = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    seen = {augment({"x": ident}, np.random.default_rng(s))["x"].tobytes() for s in range(200)}
    assert len(seen) == 8


# ---------------------------------------------------------------------------------------------- dataset
def test_dataset_items_bands_scaling_and_masks(manifests):
    m = load_manifest(manifests["sen12mscr"])
    ds = PatchDataset(m.split("train"), s2_bands=TEN, output_bands=TEN, scaling="unit", patch_size=64,
                      masks="required", seed=3, crops_per_sample=2)
    assert len(ds) == 2 * len(m.split("train"))
    item = ds[5]
    assert item["s2"].shape == (10, 64, 64) and item["target"].shape == (10, 64, 64)
    assert item["cloud_mask"].shape == (1, 64, 64) and set(np.unique(item["cloud_mask"])) <= {0.0, 1.0}
    assert item["s2"].dtype == np.float32 and 0 <= item["s2"].min() and item["s2"].max() <= 1
    # the crop is the window the dataset names, bands picked by name, then scaled (no augmentation here)
    plain = PatchDataset(m.split("train"), s2_bands=TEN, output_bands=TEN, scaling="dsen2cr", patch_size=64,
                         masks="none", seed=3, augmentation_probability=0.0)
    sample_id, window = plain.window_of(4)
    sample = next(s for s in m.samples if s.id == sample_id)
    with rasterio.open(sample.stacks["target"].paths[0]) as src:
        raw = src.read([S2_BANDS_L1C.index(b) + 1 for b in TEN], window=window)
    assert np.allclose(plain[4]["target"], scale_s2(raw, "dsen2cr"))
    assert "cloud_mask" not in plain[4]


def test_crops_depend_only_on_seed_epoch_and_index(manifests):
    m = load_manifest(manifests["sen12mscr"])
    kwargs = dict(s2_bands=S2_BANDS_L1C, output_bands=S2_BANDS_L1C, patch_size=32, seed=1)
    a, b = PatchDataset(m.split("train"), **kwargs), PatchDataset(m.split("train"), **kwargs)
    b[0], b[7]  # reading other items first changes nothing
    assert all(np.array_equal(a[3][k], b[3][k]) for k in a[3])
    a.set_epoch(2)
    assert not np.array_equal(a[3]["target"], b[3]["target"])


def test_cached_stacks_give_the_same_items_as_reading_from_disk(manifests):
    m = load_manifest(manifests["sen12mscr"])
    kwargs = dict(s2_bands=S2_BANDS_L1C, output_bands=TEN, patch_size=32, seed=3)
    disk, memory = PatchDataset(m.split("train"), **kwargs), PatchDataset(m.split("train"), cache=True, **kwargs)
    for epoch in (0, 1):
        disk.set_epoch(epoch), memory.set_epoch(epoch)
        for i in range(len(disk)):
            a, b = disk[i], memory[i]
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert memory._cached and not disk._cached


def test_validation_crops_are_fixed_and_cover_the_image(manifests):
    m = load_manifest(manifests["bigearthnet"])
    ds = PatchDataset(m.split("train"), s2_bands=TEN, output_bands=TEN, s1_bands=("VV", "VH"), patch_size=64,
                      training=False, crops_per_sample=4, scaling="signed")
    assert len(ds) == 4 * len(m.split("train"))
    windows = [ds.window_of(i)[1] for i in range(4)]
    assert {(w.row_off, w.col_off) for w in windows} == {(0, 0), (0, 56), (56, 0), (56, 56)}  # 120 px, 2 x 2
    ds.set_epoch(5)
    assert ds.window_of(1)[1] == windows[1]
    item = ds[0]
    assert item["s1"].shape == (2, 64, 64) and -1 <= item["s1"].min() and item["s1"].max() <= 1


def test_missing_inputs_error_or_zeros(manifests):
    m = load_manifest(manifests["sen12mscr"])
    train = m.split("train")
    with pytest.raises(InputError, match="Sentinel-1"):
        PatchDataset(train, s2_bands=TEN, output_bands=TEN, s1_bands=("VV", "VH"), patch_size=32)
    with pytest.raises(InputError, match="terrain"):
        PatchDataset(train, s2_bands=TEN, output_bands=TEN, terrain_bands=("elevation",), patch_size=32)
    ds = PatchDataset(train, s2_bands=TEN, output_bands=TEN, s1_bands=("VV", "VH"),
                      terrain_bands=("elevation", "slope", "aspect", "hillshade"), patch_size=32,
                      missing_inputs="zeros")
    item = ds[0]
    assert not item["s1"].any() and item["terrain"].shape == (4, 32, 32) and not item["terrain"].any()
    assert len(ds.describe()["filled_with_zeros"]["s1"]) == len(train)


def test_dataset_errors_name_the_problem(manifests):
    ben = load_manifest(manifests["bigearthnet"])
    with pytest.raises(InputError, match="B10"):  # Level-2A has no B10
        PatchDataset(ben.samples, s2_bands=S2_BANDS_L1C, output_bands=S2_BANDS_L1C, patch_size=32)
    with pytest.raises(InputError, match="smaller than the patch size"):
        PatchDataset(ben.samples, s2_bands=TEN, output_bands=TEN, patch_size=128)
    cr = load_manifest(manifests["sen12mscr"])
    no_masks = [s.__class__(**{**s.__dict__, "stacks": {k: v for k, v in s.stacks.items() if "mask" not in k}})
                for s in cr.samples[:2]]
    with pytest.raises(InputError, match="masks"):
        PatchDataset(no_masks, s2_bands=TEN, output_bands=TEN, patch_size=32, masks="required")


def test_windowed_masks_equal_the_whole_image_masks(tmp_path):
    path = data_path(CR, "s2_cloudy", "ROIs1158_spring_s2_cloudy_39_p500.tif")
    fractions = write_cloud_shadow_masks(str(path), S2_BANDS_L1C, tmp_path / "c.tif", tmp_path / "s.tif", strip_rows=37)
    with rasterio.open(path) as ds:
        whole = cloud_shadow_masks_l1c(bands_from_stack(ds.read()))
    with rasterio.open(tmp_path / "c.tif") as c, rasterio.open(tmp_path / "s.tif") as s:
        assert np.array_equal(c.read(1).astype(bool), whole["cloud"])
        assert np.array_equal(s.read(1).astype(bool), whole["shadow"])
    assert fractions[0] == pytest.approx(whole["cloud"].mean())
    ben = data_path("bigearthnet", "BigEarthNet-S2-Example", "S2A_MSIL2A_20170613T101031_87_48")
    with pytest.raises(InputError, match="B10"):
        write_cloud_shadow_masks(str(next(ben.glob("*_B02.tif"))), ("B2",), tmp_path / "x.tif", tmp_path / "y.tif")

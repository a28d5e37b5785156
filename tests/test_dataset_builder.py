"""Patch stacks cut by the dataset builder: CRT-UNet's rules and the training manifest format."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import data_path
from topoclear.engine.errors import Cancelled, InputError, OutputError
from topoclear.engine.progress import Monitor
from topoclear.engine.training.builder_inputs import BuildOptions, SceneInputs
from topoclear.engine.training.dataset_builder import build_dataset, build_dataset_folder
from topoclear.engine.training.manifest import load_manifest
from topoclear.engine.training.patch_dataset import PatchDataset
from topoclear.engine.training.scene_list import load_scene_list
from topoclear.engine.training.split_assignment import assign_splits, split_overlaps
from topoclear.models.bands import S2_BANDS_10_20M

BANDS = S2_BANDS_10_20M


def write(path, data, transform, crs="EPSG:32611", nodata=None, descriptions=None):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
        for i, d in enumerate(descriptions or []):
            ds.set_band_description(i + 1, d)
    return str(path)


def make_scene(folder, name, size=320, seed=0, left=400000.0, top=3800000.0, res=20.0, nodata_box=None,
               water_box=None, with_terrain=True):
    """An aligned synthetic scene: 10-band cloudy/clear (vegetation-like, NDWI < 0), S1, terrain, masks."""
    rng = np.random.default_rng(seed)
    t = from_origin(left, top, res, res)
    clear = np.empty((10, size, size), np.uint16)
    base = np.array([400, 600, 400, 900, 2000, 2500, 2800, 3000, 1800, 900])
    clear[:] = (base[:, None, None] * (0.8 + 0.4 * rng.random((1, size, size)))).astype(np.uint16)
    if water_box is not None:
        r0, r1, c0, c1 = water_box
        clear[:, r0:r1, c0:c1] = np.array([600, 700, 400, 300, 250, 200, 150, 140, 80, 50])[:, None, None]
    cloudy = clear.copy()
    cloud = (rng.random((size, size)) < 0.3).astype(np.uint8)
    cloudy[:, cloud > 0] = 5000
    shadow = np.zeros((size, size), np.uint8)
    if nodata_box is not None:
        r0, r1, c0, c1 = nodata_box
        cloudy[:, r0:r1, c0:c1] = 0
        clear[:, r0:r1, c0:c1] = 0
    s = {"name": name,
         "cloudy": write(folder / f"{name}_cloudy.tif", cloudy, t, descriptions=BANDS),
         "target": write(folder / f"{name}_clear.tif", clear, t, descriptions=BANDS),
         "s1": write(folder / f"{name}_s1.tif", rng.normal(-12, 2, (2, size, size)).astype(np.float32), t,
                     nodata=float("nan")),
         "cloud_mask": write(folder / f"{name}_cloud.tif", cloud, t),
         "shadow_mask": write(folder / f"{name}_shadow.tif", shadow, t)}
    if with_terrain:
        terrain = np.stack([np.full((size, size), 1500.0), np.full((size, size), 20.0),
                            np.where(rng.random((size, size)) < 0.05, -9999.0, 90.0),  # flat cells: no aspect
                            np.full((size, size), 200.0)]).astype(np.float32)
        s["terrain"] = write(folder / f"{name}_terrain.tif", terrain, t, nodata=-9999.0,
                             descriptions=["elevation", "slope", "aspect", "hillshade"])
    return s


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    return folder, make_scene(folder, "alps", size=160)


def build(folder, scenes, **options):
    options.setdefault("patch_size", 16)
    return build_dataset([SceneInputs(**s) if isinstance(s, dict) else s for s in scenes], folder,
                         BuildOptions(**options))


def samples(out):
    return json.loads((out / "manifest.json").read_text())["samples"]


def test_split_is_80_15_5_by_blocks_without_overlap(tmp_path, big_scene):
    _, scene = big_scene
    summary = build(tmp_path / "out", [scene], block_patches=2, seed=1)
    entries = samples(tmp_path / "out")
    n = len(entries)
    assert n == 100 == summary.total  # 10 x 10 patches of 16 px
    share = {s: sum(e["split"] == s for e in entries) / n for s in ("train", "val", "test")}
    assert share == pytest.approx({"train": 0.80, "val": 0.15, "test": 0.05}, abs=0.03)
    # whole 2 x 2 blocks go to one split
    by_block = {}
    for e in entries:
        by_block.setdefault(tuple(e["block"]), set()).add(e["split"])
    assert len(by_block) == 25 and all(len(v) == 1 for v in by_block.values())
    # patches never overlap one another, hence never across splits
    cells = np.zeros((160, 160), int)
    for c, r, w, h in (tuple(e["window"]) for e in entries):
        cells[r:r + h, c:c + w] += 1
    assert cells.max() == 1
    assert split_overlaps(tmp_path / "out") == []


def test_assignment_proportions_on_many_blocks():
    units = {("g", i // 20, i % 20): {"semi": 4} for i in range(400)}
    for seed in (0, 1):
        out = assign_splits(units, seed=seed)
        share = {s: sum(v == s for v in out.values()) / len(out) for s in ("train", "val", "test")}
        assert share == pytest.approx({"train": 0.80, "val": 0.15, "test": 0.05}, abs=0.005)


def test_same_ground_seen_twice_lands_in_one_split(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    a = make_scene(folder, "dem_winter", size=96, seed=1)
    b = make_scene(folder, "dem_spring", size=96, seed=2)  # same grid, other "season", no group given
    c = make_scene(folder, "shifted", size=96, seed=3, left=400000.0 + 8 * 20.0, top=3800000.0 - 24 * 20.0)
    build(tmp_path / "out", [a, b, c], block_patches=1, seed=5)
    entries = samples(tmp_path / "out")
    assert len({e["group"] for e in entries}) == 1  # footprints intersect: one ground group
    where = {}
    for e in entries:
        key = tuple(round(x, 3) for x in e["bounds"])
        where.setdefault(key, set()).add(e["split"])
    assert all(len(v) == 1 for v in where.values())
    assert len({s for v in where.values() for s in v}) == 3
    assert split_overlaps(tmp_path / "out") == []  # the half-patch-shifted scene shares the lattice


def test_land_only_and_fully_valid(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    scene = make_scene(folder, "gaps", size=64, nodata_box=(0, 10, 0, 10), water_box=(40, 64, 40, 64))
    land = np.ones((64, 64), np.uint8)
    land[20:22, 50:52] = 0  # a lake the land mask knows about
    with rasterio.open(scene["cloudy"]) as ds:
        t = ds.transform
    scene["land_mask"] = write(folder / "land.tif", land, t)
    summary = build(tmp_path / "out", [scene], max_water_fraction=0.0, seed=0)
    kept = {tuple(e["window"][:2]) for e in samples(tmp_path / "out")}
    assert (0, 0) not in kept  # nodata corner
    assert (48, 16) not in kept  # land mask: the lake
    assert (48, 48) not in kept  # open water on the clear image
    assert summary.rejected == {"nodata": 1, "not land": 1, "water": 4}  # the water box touches 2 x 2 patches
    assert len(kept) == 16 - 6
    for e in samples(tmp_path / "out"):
        with rasterio.open(tmp_path / "out" / e["target"]) as ds:
            assert (ds.read() > 0).all()
        assert e["water_fraction"] == 0


def test_manifest_is_what_the_training_reads(tmp_path, big_scene):
    _, scene = big_scene
    build(tmp_path / "out", [scene], patch_size=32, block_patches=1, seed=0)
    manifest = load_manifest(tmp_path / "out")
    assert {s.split for s in manifest.samples} == {"train", "val", "test"}
    sample = manifest.samples[0]
    assert sample.s2_bands == BANDS and sample.has("s1") and sample.has("terrain") and sample.has("cloud_mask")
    ds = PatchDataset(manifest.split("val"), s2_bands=BANDS, output_bands=BANDS, s1_bands=("VV", "VH"),
                      terrain_bands=("elevation", "slope", "aspect", "hillshade"), patch_size=32, training=False,
                      masks="required")
    item = ds[0]
    assert item["s2"].shape == (10, 32, 32) and item["s1"].shape == (2, 32, 32) and item["terrain"].shape == (4, 32, 32)
    entry = samples(tmp_path / "out")[0]
    with rasterio.open(tmp_path / "out" / entry["cloudy"]) as patch, rasterio.open(scene["cloudy"]) as src:
        c, r, w, h = entry["window"]
        assert np.array_equal(patch.read(), src.read(window=rasterio.windows.Window(c, r, w, h)))
        assert patch.transform == src.window_transform(rasterio.windows.Window(c, r, w, h))
    assert 0 < entry["cloud_fraction"] < 1 and entry["cloud_shadow_fraction"] == entry["cloud_fraction"]


def test_deterministic_by_seed(tmp_path, big_scene):
    _, scene = big_scene
    for key, seed in (("a", 7), ("b", 7), ("c", 8)):
        build(tmp_path / key, [scene], patch_size=32, block_patches=1, seed=seed)
    split = {k: [e["split"] for e in samples(tmp_path / k)] for k in "abc"}
    assert split["a"] == split["b"] and split["a"] != split["c"]
    e = samples(tmp_path / "a")[3]
    with rasterio.open(tmp_path / "a" / e["s1"]) as x, rasterio.open(tmp_path / "b" / e["s1"]) as y:
        assert np.array_equal(x.read(), y.read(), equal_nan=True)


def test_few_units_still_fill_every_split_and_forced_splits_hold():
    units = {("s", i, 0): {"real": 1} for i in range(6)}
    out = assign_splits(units, seed=0)
    assert sorted(out.values()).count("test") >= 1 and sorted(out.values()).count("val") >= 1
    assert assign_splits(units, seed=0) == out
    forced = assign_splits(units, seed=0, forced={("s", 0, 0): "test"})
    assert forced[("s", 0, 0)] == "test"
    # a stratum's units already assigned for another stratum keep their split
    units2 = {("g1", 0, 0): {"real": 1, "synthetic": 4}, ("g2", 0, 0): {"synthetic": 4},
              ("g3", 0, 0): {"real": 1, "synthetic": 4}, ("g4", 0, 0): {"real": 1}}
    a = assign_splits(units2, seed=3, strata=["real", "synthetic"])
    assert set(a) == set(units2)


def test_exclude_and_misaligned_inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    a = make_scene(folder, "pair", size=64, seed=1)
    b = dict(make_scene(folder, "pair_changed", size=64, seed=2), split="exclude")
    build(tmp_path / "out", [a, b], seed=0)
    entries = samples(tmp_path / "out")
    assert {e["split"] for e in entries if e["scene"] == "pair_changed"} == {"exclude"}
    assert {e["split"] for e in entries if e["scene"] == "pair"} >= {"train"}
    bad = make_scene(folder, "bad", size=64, seed=3)
    shifted = from_origin(400010, 3800000, 20, 20)
    bad["s1"] = write(folder / "s1_shifted.tif", np.zeros((2, 64, 64), np.float32), shifted)
    with pytest.raises(InputError, match="not on the grid"):
        build(tmp_path / "out2", [bad])
    with pytest.raises(InputError, match="unique"):
        build(tmp_path / "out3", [a, a])


def test_scene_list_csv(tmp_path, big_scene):
    folder, scene = big_scene
    listing = tmp_path / "scenes.csv"
    listing.write_text("name,cloudy,clear,s1,cloud_mask,shadow_mask,source\n"
                       f"alps,{scene['cloudy']},{scene['target']},{scene['s1']},{scene['cloud_mask']},"
                       f"{scene['shadow_mask']},mine\n")
    scenes = load_scene_list(listing)
    assert scenes[0].target == scene["target"] and scenes[0].source == "mine" and scenes[0].terrain is None


def test_builddataset_algorithm(run_alg, tmp_path):
    cloudy = data_path("sen12ms-cr", "s2_cloudy", "ROIs2017_winter_s2_cloudy_102_p926.tif")
    clear = data_path("sen12ms-cr", "s2_clear", "ROIs2017_winter_s2_102_p926.tif")
    out = tmp_path / "patches"
    result = run_alg("topoclear:builddataset", CLOUDY=str(cloudy), CLEAR=str(clear), PATCH_SIZE=128,
                     BLOCK_PATCHES=1, SOURCE="real pair", SCENE_NAME="uk", OUTPUT=str(out))
    assert result["PATCHES"] == 4
    assert result["TRAIN_PATCHES"] + result["VAL_PATCHES"] + result["TEST_PATCHES"] == 4
    assert result["TEST_PATCHES"] >= 1 and result["VAL_PATCHES"] >= 1
    manifest = load_manifest(result["MANIFEST"])
    s = manifest.samples[0]
    assert s.source == "real pair" and len(s.s2_bands) == 13 and s.has("cloud_mask")  # masks computed (L1C)
    assert (out / "scene_masks" / "uk_cloud.tif").exists()
    assert split_overlaps(out) == []
    from qgis.core import QgsProcessingException

    params = dict(CLOUDY=str(cloudy), CLEAR=str(clear), PATCH_SIZE=128, BLOCK_PATCHES=1, SCENE_NAME="uk")
    with pytest.raises(QgsProcessingException, match=r"OUTPUT: .*already holds files \(manifest\.json.*OVERWRITE"):
        run_alg("topoclear:builddataset", OUTPUT=str(out), **params)
    again = run_alg("topoclear:builddataset", OUTPUT=str(out), OVERWRITE=True, **dict(params, SEED=3))
    assert again["PATCHES"] == 4 and load_manifest(again["MANIFEST"]).samples[0].source == "user scenes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patches"]
    with pytest.raises(QgsProcessingException, match=r"SCENE_NAME: scene name 'a/\.\./b' cannot be used"):
        run_alg("topoclear:builddataset", OUTPUT=str(tmp_path / "other"), **dict(params, SCENE_NAME="a/../b"))


# ---------------------------------------------------------------------------------------------- a new dataset folder
def tree(root):
    """Every path under ``root`` (hidden ones included), relative, with each file's bytes."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_scene_names_that_are_paths_are_refused_naming_the_list_and_its_row(tmp_path, big_scene):
    _, scene = big_scene
    for name in ("../escaped", "a/b", str(tmp_path / "abs"), ".."):
        listing = tmp_path / "scenes.csv"
        listing.write_text(f"name,cloudy,target\nok,{scene['cloudy']},{scene['target']}\n"
                           f"{name},{scene['cloudy']},{scene['target']}\n")
        with pytest.raises(InputError, match=r"scenes\.csv, row 3 \(scene 2\): scene name .* cannot be used as a "
                                             r"file name"):
            load_scene_list(listing)
    listing = tmp_path / "scenes.json"
    listing.write_text(json.dumps([{"name": "x/../../y", "cloudy": scene["cloudy"], "target": scene["target"]}]))
    with pytest.raises(InputError, match=r"scenes\.json, scene 1: scene name 'x/\.\./\.\./y'"):
        load_scene_list(listing)


def test_a_dataset_folder_appears_complete_and_replaces_only_a_dataset_when_asked(tmp_path, big_scene):
    _, scene = big_scene
    out = tmp_path / "work" / "new" / "dataset"  # parents created
    options = BuildOptions(patch_size=32, block_patches=1, seed=0)
    summary = build_dataset_folder([SceneInputs(**scene)], out, options)
    assert summary.manifest == str(out / "manifest.json") and summary.total == 25
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset"]  # no temporary folder left beside it
    entries = samples(out)
    assert all(not e["cloudy"].startswith("/") and (out / e["cloudy"]).is_file() for e in entries)
    assert load_manifest(out).samples[0].stacks["cloudy"].paths[0].startswith(str(out))
    before = tree(out)
    with pytest.raises(OutputError, match=r"already holds files \(manifest\.json"):
        build_dataset_folder([SceneInputs(**scene)], out, options)
    # OVERWRITE: the new dataset replaces the old one only once complete; a cancel leaves the old one as it was
    cancel = Monitor(is_cancelled=lambda: len(list(tmp_path.rglob("*.partial/s2_clear/*.tif"))) > 3)
    with pytest.raises(Cancelled):
        build_dataset_folder([SceneInputs(**scene)], out, BuildOptions(patch_size=32, block_patches=1, seed=1),
                             cancel, overwrite=True)
    assert tree(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["dataset"]
    build_dataset_folder([SceneInputs(**scene)], out, BuildOptions(patch_size=32, block_patches=1, seed=1),
                         overwrite=True)
    assert [e["split"] for e in samples(out)] != [e["split"] for e in entries]
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset"]
    # a folder that is not a dataset is never replaced, and inputs never lie inside the output
    other = tmp_path / "documents"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"no TopoClear patch dataset"):
        build_dataset_folder([SceneInputs(**scene)], other, options, overwrite=True)
    assert tree(other) == {"notes.txt": b"mine"}
    inside = dict(scene, cloud_mask=str(out / "masks" / f"{entries[0]['id']}_cloud.tif"))
    with pytest.raises(InputError, match="inside the output folder"):
        build_dataset_folder([SceneInputs(**inside)], out, options, overwrite=True)


def test_a_failed_build_leaves_nothing_and_the_callers_scenes_unchanged(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    scene = make_scene(folder, "pair", size=64, seed=1)
    with rasterio.open(scene["target"]) as ds:
        data, transform = ds.read(), ds.transform
    nine = dict(scene, target=write(folder / "clear9.tif", data[:9], transform))
    before = tree(tmp_path)
    with pytest.raises(InputError, match=r"clear9\.tif has 9 bands, the cloudy image 10"):
        build_dataset_folder([SceneInputs(**nine)], tmp_path / "new" / "dataset", compute_masks=True)
    one_s1 = dict(scene, s1=write(folder / "vv.tif", np.zeros((1, 64, 64), np.float32), transform))
    with pytest.raises(InputError, match=r"vv\.tif has 1 band\(s\), 2 expected \(VV, VH\)"):
        build_dataset_folder([SceneInputs(**one_s1)], tmp_path / "new" / "dataset")
    assert tree(tmp_path) == {**before, "in/vv.tif": (folder / "vv.tif").read_bytes()}
    given = SceneInputs(**{k: v for k, v in scene.items() if k not in ("cloud_mask", "shadow_mask")})
    build_dataset_folder([given], tmp_path / "out", BuildOptions(patch_size=32), compute_masks=True)
    assert given.cloud_mask is None  # the masks computed (none here: 10 bands, not Level-1C) are the build's own


@pytest.mark.parametrize("alg", ["builddataset", "trainmodel"])
def test_every_parameter_has_a_short_label_and_a_tooltip(topoclear_provider, alg):
    """Labels fit the dialog's parameter panel (about 376 px at 1280x800); explanations are in the help."""
    definition = topoclear_provider.algorithm(alg)
    for d in definition.parameterDefinitions():
        label = d.description() + (" [optional]" if d.flags() & d.FlagOptional else "")
        assert len(label) <= 55 and "[optional]" not in d.description(), (d.name(), label)
        if hasattr(d, "help"):
            assert len(d.help()) > 20, d.name()
    if alg == "builddataset":
        overwrite = definition.parameterDefinition("OVERWRITE")
        assert overwrite.flags() & overwrite.FlagAdvanced and overwrite.defaultValue() is False

"""Batch runs: job lists, done markers, failures, the command line, and (slow) a real LocalCluster of two worker
processes: byte-identical to the serial run, a worker killed mid-job, weights loaded once per worker."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from conftest import data_path
from topoclear.engine.batch.cli import main as batch_main
from topoclear.engine.batch.jobs import load_jobs
from topoclear.engine.batch.manifest import done_state, marker_path
from topoclear.engine.batch.operations import cloudmask_entry
from topoclear.engine.batch.runner import ClusterOptions, run_batch, summary_table, write_summary
from topoclear.engine.batch.worker import WorkerSettings, run_job
from topoclear.engine.errors import InputError

FINLAND = "S2B_MSIL2A_20180204T94161_57_38"
SERIAL = ClusterOptions(serial=True)


def write_dem(path, size=64, seed=0) -> str:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    z = (1000 + 3 * x + 2 * y + rng.normal(0, 1, (size, size))).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32",
                       crs="EPSG:32632", transform=from_origin(600000, 5100000, 20, 20), nodata=-9999.0,
                       tiled=size >= 256, **({"blockxsize": 256, "blockysize": 256} if size >= 256 else {})) as ds:
        ds.write(z, 1)
    return str(path)


def crop_dem(out: Path, size=256) -> str:
    """A ``size`` px crop of the real SRTM DEM of the San Gabriel Mountains."""
    with rasterio.open(data_path("dem", "bigtujunga.tif")) as ds:
        window = Window(300, 100, size, size)
        profile = dict(driver="GTiff", width=size, height=size, count=1, dtype=ds.dtypes[0], crs=ds.crs,
                       transform=ds.window_transform(window), nodata=ds.nodata)
        data = ds.read(1, window=window)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data, 1)
    return str(out)


def write_csv(path: Path, rows) -> str:
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("id", "operation"), k))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=fields)
        out.writeheader()
        out.writerows(rows)
    return str(path)


# -- job lists ----------------------------------------------------------------------------------------

def test_job_lists_in_csv_and_json_are_read_and_checked(tmp_path):
    write_dem(tmp_path / "dem.tif")
    jobs = load_jobs(write_csv(tmp_path / "jobs.csv", [
        {"operation": "terrain", "dem": "dem.tif", "slope": "out/slope.tif", "z_factor": "2"},
        {"id": "series", "operation": "snowseries", "images": "a_20200101.tif; b_20200111.tif", "output": "scd.tif",
         "max_gap_days": "20", "red_test": "no"}]))
    assert [j.id for j in jobs] == ["terrain-1", "series"]
    assert jobs[0].params == {"dem": str(tmp_path / "dem.tif"), "slope": str(tmp_path / "out" / "slope.tif"),
                              "z_factor": 2.0}
    assert jobs[1].params["images"] == [str(tmp_path / "a_20200101.tif"), str(tmp_path / "b_20200111.tif")]
    assert jobs[1].params["max_gap_days"] == 20 and jobs[1].params["red_test"] is False
    assert jobs[1].outputs == (str(tmp_path / "scd.tif"),) and len(jobs[1].inputs) == 2
    (tmp_path / "jobs.json").write_text(json.dumps({"defaults": {"snowmap": {"method": "threshold"}}, "jobs": [
        {"operation": "snowmap", "image": "a.tif", "output": "a_snow.tif"},
        {"operation": "snowmap", "image": "b.tif", "output": "b_snow.tif", "method": "lis"}]}))
    methods = [j.params["method"] for j in load_jobs(str(tmp_path / "jobs.json"))]
    assert methods == ["threshold", "lis"]
    # the same job gets the same hash; another parameter, another hash
    again = load_jobs(str(tmp_path / "jobs.csv"))[0]
    assert again.key == jobs[0].key and again.key != jobs[1].key

    def refused(rows, message):
        with pytest.raises(InputError, match=message):
            load_jobs(write_csv(tmp_path / "bad.csv", rows))

    refused([{"operation": "slope", "dem": "dem.tif"}], "operation 'slope' is not one of terrain, cloudmask")
    refused([{"operation": "terrain", "dem": "dem.tif"}], "terrain needs at least one output")
    refused([{"operation": "snowmap", "image": "a.tif"}], r"job snowmap-1 \(row 1\): snowmap needs output")
    refused([{"operation": "snowmap", "image": "a.tif", "output": "o.tif", "colour": "red"}],
            "snowmap has no parameter 'colour'")
    refused([{"operation": "terrain", "dem": "dem.tif", "slope": "dem.tif"}], "the output .*dem.tif is its input")
    refused([{"operation": "snowmap", "image": "a.tif", "output": "o.tif"},
             {"operation": "snowmap", "image": "b.tif", "output": "./o.tif"}],
            "jobs snowmap-1 and snowmap-2 both write")
    refused([{"id": "x", "operation": "snowmap", "image": "a.tif", "output": "o.tif"},
             {"id": "x", "operation": "snowmap", "image": "b.tif", "output": "p.tif"}], "job id 'x' is used by rows")
    refused([{"operation": "terrain", "dem": "dem.tif", "slope": "s.tif", "band": "1.5"}], "'1.5' is not a whole")


def test_done_jobs_are_skipped_and_changed_ones_rerun(tmp_path):
    dem = write_dem(tmp_path / "dem.tif")
    jobs_file = write_csv(tmp_path / "jobs.csv", [{"id": "t", "operation": "terrain", "dem": "dem.tif",
                                                   "slope": "out/slope.tif", "hillshade": "out/hs.tif"}])
    (job,) = load_jobs(jobs_file)
    first = run_job(job)
    assert first.status == "done" and done_state(job)[0]
    record = json.loads(Path(marker_path(job)).read_text())
    assert record["hash"] == job.key and sorted(record["outputs"]) == sorted(job.outputs)
    assert run_job(job).status == "skipped"
    assert run_job(job, WorkerSettings(force=True)).status == "done"
    # a parameter changed: rerun
    (changed,) = load_jobs(write_csv(tmp_path / "jobs.csv", [{"id": "t", "operation": "terrain", "dem": "dem.tif",
                                                              "slope": "out/slope.tif", "hillshade": "out/hs.tif",
                                                              "z_factor": "3"}]))
    assert done_state(changed) == (False, "the job's parameters changed since it was done")
    assert run_job(changed).status == "done" and run_job(changed).status == "skipped"
    # an output truncated (its size changed) or replaced: rerun; the marker is rewritten after success
    slope = Path(changed.outputs[0])
    slope.write_bytes(slope.read_bytes()[:1000])
    assert not done_state(changed)[0] and "missing or changed" in done_state(changed)[1]
    assert run_job(changed).status == "done"
    with rasterio.open(slope) as ds:
        assert ds.read(1).shape == (64, 64)
    # an input changed: rerun
    time.sleep(0.01)
    write_dem(dem, seed=1)
    assert "the input" in done_state(changed)[1]
    os.remove(changed.outputs[1])
    assert not done_state(changed)[0]


def test_a_failed_job_is_reported_and_the_others_finish(tmp_path, capsys):
    write_dem(tmp_path / "dem.tif")
    rows = [{"id": "ok-1", "operation": "terrain", "dem": "dem.tif", "slope": "out/s1.tif"},
            {"id": "broken", "operation": "terrain", "dem": "no_such_dem.tif", "slope": "out/s2.tif"},
            {"id": "not-a-dem", "operation": "terrain", "dem": "jobs.csv", "aspect": "out/a.tif"},
            {"id": "ok-2", "operation": "terrain", "dem": "dem.tif", "aspect": "out/a2.tif"}]
    jobs_file = write_csv(tmp_path / "jobs.csv", rows)
    code = batch_main([jobs_file, "--serial", "--summary", str(tmp_path / "out" / "summary.csv")])
    assert code == 1
    shown = capsys.readouterr()
    assert "4/4 jobs  done 2  skipped 0  failed 2" in shown.err
    assert "broken" in shown.out and "file not found" in shown.out and "4 jobs: 2 done" in shown.out
    summary = {r["id"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv", encoding="utf-8"))}
    assert [summary[i]["status"] for i in ("ok-1", "broken", "not-a-dem", "ok-2")] == ["done", "failed", "failed",
                                                                                     "done"]
    assert "not a raster GDAL can read" in summary["not-a-dem"]["error"]
    assert not list((tmp_path / "out").glob(".*partial*"))
    results = run_batch(load_jobs(jobs_file), options=SERIAL, quiet=True)
    assert [r.status for r in results] == ["skipped", "failed", "failed", "skipped"]
    write_summary(results, str(tmp_path / "summary.json"))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert [j["status"] for j in saved["jobs"]] == ["skipped", "failed", "failed", "skipped"]
    assert "2 skipped" in summary_table(results)


def test_command_line_help_and_usage_errors(tmp_path):
    shown = subprocess.run([sys.executable, "-m", "topoclear", "batch", "--help"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for words in ("--scheduler", "--serial", "--workers", "--threads-per-worker", "--summary", "snowseries", "terrain"):
        assert words in shown.stdout
    top = subprocess.run([sys.executable, "-m", "topoclear"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert top.returncode == 2 and "batch" in top.stdout
    assert batch_main([str(tmp_path / "missing.csv")]) == 2


def test_cloudmask_operation_uses_the_mask_engine_or_says_it_is_not_available(tmp_path, monkeypatch):
    image = data_path("sen12ms-cr", "s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139.tif")
    (job,) = load_jobs(write_csv(tmp_path / "jobs.csv", [{"operation": "cloudmask", "image": str(image),
                                                          "output": "mask.tif", "method": "computed"}]))
    try:
        cloudmask_entry()
    except InputError:
        result = run_job(job)
        assert result.status == "failed" and "not available" in result.error
    else:
        result = run_job(job)
        assert result.status == "done", result.error
        with rasterio.open(tmp_path / "mask.tif") as ds:
            assert set(np.unique(ds.read(1)).tolist()) <= {0, 1, 2, 255}
    for name in ("run", "engine"):
        monkeypatch.setitem(sys.modules, f"topoclear.engine.clouds.masks.{name}", None)
    (other,) = load_jobs(write_csv(tmp_path / "jobs2.csv", [{"operation": "cloudmask", "image": str(image),
                                                            "output": "mask2.tif"}]))
    result = run_job(other)
    assert result.status == "failed" and result.error.startswith("cloudmask is not available in this installation")


def test_snowseries_job_writes_its_maps_and_is_skipped_when_done(tmp_path):
    folder = data_path("sen12ms-cr-ts")
    images = [str(folder / f"s2_ROIs2017_146_ImgNo_{n}_patch_0.tif")
              for n in ("3_2018-02-10", "6_2018-03-22", "9_2018-04-26")]
    (tmp_path / "jobs.json").write_text(json.dumps([{"id": "rome", "operation": "snowseries", "images": images,
                                                     "output": "season/scd.tif", "snow_maps": "season/maps",
                                                     "csv": "season/dates.csv", "cloud": "none"}]))
    (job,) = load_jobs(str(tmp_path / "jobs.json"))
    result = run_job(job)
    assert result.status == "done", result.error
    names = sorted(os.path.basename(p) for p in result.outputs)
    assert names == ["dates.csv", "scd.tif", "snowmap_2018-02-10.tif", "snowmap_2018-03-22.tif",
                     "snowmap_2018-04-26.tif"]
    assert run_job(job).status == "skipped"
    os.remove(tmp_path / "season" / "maps" / "snowmap_2018-03-22.tif")  # a map of the job gone: rerun
    assert not done_state(job)[0] and run_job(job).status == "done"


# -- a real cluster -------------------------------------------------------------------------------------

def sample_jobs(tmp_path: Path, out: str):
    """Terrain of a real DEM crop, the snow map of the real Finland patch, cloud removal of a real 256 px patch
    with the shipped UNet (optical-only variant), a second one (the weights come from the worker's cache), and
    a job with a bad input."""
    dem = tmp_path / "dem_crop.tif"
    if not dem.exists():
        crop_dem(dem)
    finland = data_path("bigearthnet", "BigEarthNet-S2-Example", FINLAND, f"{FINLAND}_B03.tif")
    cloudy = data_path("sen12ms-cr", "s2_cloudy")
    rows = [{"id": "terrain", "operation": "terrain", "dem": str(dem), "slope": f"{out}/slope.tif",
             "aspect": f"{out}/aspect.tif", "hillshade": f"{out}/hillshade.tif"},
            {"id": "snow", "operation": "snowmap", "image": str(finland), "output": f"{out}/snow.tif",
             "method": "threshold", "cloud": "none"},
            {"id": "clouds-a", "operation": "removeclouds", "model": "unet", "device": "cpu", "mask_kind": "none",
             "image": str(cloudy / "ROIs1970_fall_s2_cloudy_136_p139.tif"), "output": f"{out}/clear_a.tif"},
            {"id": "clouds-b", "operation": "removeclouds", "model": "unet", "device": "cpu", "mask_kind": "none",
             "image": str(cloudy / "ROIs1158_spring_s2_cloudy_26_p100.tif"), "output": f"{out}/clear_b.tif"},
            {"id": "bad", "operation": "snowmap", "image": str(tmp_path / "missing_B03.tif"),
             "output": f"{out}/bad.tif"}]
    return load_jobs(write_csv(tmp_path / f"jobs_{out}.csv", rows))


OUTPUTS = ("slope.tif", "aspect.tif", "hillshade.tif", "snow.tif", "clear_a.tif", "clear_b.tif")


@pytest.mark.slow
def test_local_cluster_gives_the_serial_bytes_and_loads_weights_once_per_worker(tmp_path):
    settings = WorkerSettings(threads=1)
    serial = {r.id: r for r in run_batch(sample_jobs(tmp_path, "serial"), settings, SERIAL, quiet=True)}
    cluster = {r.id: r for r in run_batch(sample_jobs(tmp_path, "cluster"), settings,
                                          ClusterOptions(workers=2, threads_per_worker=1), quiet=True)}
    for results in (serial, cluster):
        assert {k: r.status for k, r in results.items()} == {"terrain": "done", "snow": "done", "clouds-a": "done",
                                                             "clouds-b": "done", "bad": "failed"}
        assert "does not exist" in results["bad"].error
        assert "torch threads 1" in results["clouds-a"].notes
    for name in OUTPUTS:
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "cluster" / name).read_bytes(), name
    # serial: one process, the second cloud removal reuses the loaded weights; on the cluster, two workers ran
    assert serial["clouds-b"].notes[1] == "model from the worker's cache"
    workers = {r.worker for r in cluster.values()}
    assert len(workers) == 2 and all(os.getpid() != int(w.split(":")[1]) for w in workers)
    same = [r for r in (cluster["clouds-a"], cluster["clouds-b"]) if r.worker == cluster["clouds-a"].worker]
    if len(same) == 2:
        assert cluster["clouds-b"].notes[1] == "model from the worker's cache"
    assert max(r.peak_rss_mib for r in cluster.values()) > 100
    # a rerun on the cluster skips what is done
    again = run_batch(sample_jobs(tmp_path, "cluster"), settings, ClusterOptions(workers=2), quiet=True)
    assert [r.status for r in again] == ["skipped"] * 4 + ["failed"]


@pytest.mark.slow
def test_a_worker_killed_mid_job_has_the_job_retried_and_leaves_nothing_half_written(tmp_path):
    from distributed import Client, LocalCluster

    dem = write_dem(tmp_path / "big_dem.tif", size=1536)
    rows = [{"id": "long", "operation": "terrain", "dem": dem, "slope": "{o}/slope.tif", "aspect": "{o}/aspect.tif",
             "hillshade": "{o}/hs.tif", "window_rows": "4"},
            {"id": "short", "operation": "terrain", "dem": write_dem(tmp_path / "dem.tif"), "slope": "{o}/s.tif"}]

    def jobs(out):
        return load_jobs(write_csv(tmp_path / f"{out}.csv", [{k: v.format(o=out) for k, v in r.items()}
                                                             for r in rows]))

    run_batch(jobs("reference"), options=SERIAL, quiet=True)
    results, out = [], tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        runner = threading.Thread(target=lambda: results.extend(run_batch(jobs("killed"), client=client, quiet=True)))
        runner.start()
        deadline, victim = time.time() + 60, None
        while victim is None and time.time() < deadline:  # the long job is writing: its temporaries exist
            partial = [p for p in out.glob(".slope.tif.*.partial*")] if out.exists() else []
            if partial:
                victim = int(partial[0].name.split(".")[3])  # .slope.tif.<pid>.<random>.partial.tif
            time.sleep(0.005)
        assert victim is not None, "the long job never started writing"
        os.kill(victim, signal.SIGKILL)
        runner.join(120)
    assert not runner.is_alive()
    by_id = {r.id: r for r in results}
    assert by_id["long"].status == "done" and by_id["short"].status == "done", [r.error for r in results]
    assert by_id["long"].worker != f"{os.uname().nodename}:{victim}"  # another worker process finished it
    assert not [p.name for p in out.iterdir() if "partial" in p.name]
    for name in ("slope.tif", "aspect.tif", "hs.tif", "s.tif"):
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert done_state(jobs("killed")[0])[0]

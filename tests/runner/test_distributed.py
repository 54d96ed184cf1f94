"""Sweeps (--grid) and the Ray executor: same units, same stored numbers, workers that die."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assay.errors import AssayError
from assay.runner import Store, execute, parse_grid, plan

TESTS = Path(__file__).parents[1]  # holds toy_runner_study.py
TIMEOUT = 600


def test_a_grid_expands_into_one_content_keyed_unit_per_point(toy):
    units = plan(["toy-runner"], seeds=[0, 1], grid=parse_grid(["p=0.6,0.7", "n=100,200"]))
    assert len(units) == 8 and len({u.key for u in units}) == 8
    assert {(u.config["p"], u.config["n"]) for u in units} == {
        (p, n) for p in (0.6, 0.7) for n in (100, 200)}
    single = plan(["toy-runner"], seeds=[0], sets={"p": "0.6", "n": "100"})
    assert single[0].key in {u.key for u in units}  # a grid point is the same unit as its --set
    assert "p=0.6 n=100" in next(u for u in units if u.key == single[0].key).label
    # values that parse alike are one unit
    assert len(plan(["toy-runner"], grid=parse_grid(["p=0.5,.5"]))) == 1


@pytest.mark.parametrize("pairs, needle", [
    (["p"], "write key=a,b,c"), (["p=0.5,"], "write key=a,b,c"), (["=1,2"], "write key=a,b,c"),
    (["p=0.5", "p=0.6"], "names p twice"),
])
def test_bad_grids_say_how_to_write_one(pairs, needle):
    with pytest.raises(AssayError, match=needle):
        parse_grid(pairs)


def test_a_key_in_both_set_and_grid_or_a_bad_value_is_refused(toy):
    with pytest.raises(AssayError, match="both by --set and by --grid"):
        plan(["toy-runner"], sets={"p": "0.6"}, grid={"p": ["0.7"]})
    with pytest.raises(AssayError, match="bad value"):
        plan(["toy-runner"], grid={"p": ["0.7", "lots"]})


# ---------------------------------------------------------------- Ray

ray = pytest.importorskip("ray")


@pytest.fixture
def ray_env(monkeypatch, assay_home):
    """Environment a Ray run needs: the toy study importable by workers, the shared cache."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("ASSAY_STUDY_MODULES", "toy_runner_study")
    monkeypatch.setenv("ASSAY_HOME", assay_home)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    return {**os.environ}


def _metrics(records):
    return {r.key: (r.status, json.dumps(r.to_json()["metrics"], sort_keys=True),
                    json.dumps(r.to_json()["control"], sort_keys=True), r.artifacts)
            for r in records}


@pytest.mark.slow
def test_ray_gives_the_stored_numbers_of_the_local_executor(ray_env, toy, tmp_path, xs_organism):
    """A real study on xs (torch, one thread per unit) and a toy sweep, run both ways."""
    from assay.runner.distributed import execute_ray

    units = plan(["error-bars"], model="organism:xs", seeds=[0],
                 sets={"n_people": "24", "tune_people": "16", "subset_people": "8"},
                 grid={"n_subsets": ["40", "60"]})
    units += plan(["toy-runner"], model="organism:xs", seeds=[0, 1], grid={"p": ["0.6", "0.8"]},
                  sets={"figure": "true"})
    with Store(tmp_path / "local") as store:
        local = execute(units, store, threads=1)
    with Store(tmp_path / "ray") as store:
        distributed = execute_ray(units, store, workers=2, threads=1)
        assert not list((tmp_path / "ray" / "units").glob(".tmp-*"))
    assert all(r.status == "done" for r in local), [r.error for r in local]
    assert _metrics(distributed) == _metrics(local)
    for r in distributed:
        assert r.result.provenance.hardware["torch_threads"] == 1
        assert (r.folder / "result.json").is_file()
    bars = next(r for r in distributed if r.study == "error-bars")
    assert bars.result.provenance.weights["xs"] == xs_organism[1]["weights_sha256"]
    local_png = next(r for r in local if r.study == "error-bars").folder
    assert sorted(p.name for p in local_png.iterdir()) == sorted(p.name for p in bars.folder.iterdir())


@pytest.mark.slow
def test_a_worker_killed_mid_unit_is_retried_and_a_study_error_is_recorded(ray_env, toy, tmp_path):
    from assay.runner.distributed import execute_ray

    marker = tmp_path / "died"
    units = plan(["toy-runner"], model="organism:xs", seeds=[0, 1, 2],
                 sets={"die_once": str(marker), "fail_seed": "2", "log": str(tmp_path / "log")})
    with Store(tmp_path / "store") as store:
        records = execute_ray(units, store, workers=2, threads=1)
        assert marker.exists()  # one worker was killed mid-unit
        assert [r.status for r in records] == ["done", "done", "failed"]
        assert "toy failure at seed 2" in records[2].error
        assert {r.attempts for r in records} == {1}  # the driver claimed each unit once
        # a rerun schedules only what is missing: the failed unit, which fails again
        again = execute_ray(units, store, workers=2, threads=1)
        assert [r.attempts for r in again] == [1, 1, 2]
    ends = [line for line in (tmp_path / "log").read_text().splitlines() if line.startswith("end")]
    assert sorted(ends) == ["end 0", "end 1"]  # each done unit finished computing exactly once
    with Store(tmp_path / "plain") as store:
        clean = execute([u for u in units if u.seed < 2], store)
    assert _metrics(clean) == _metrics(records[:2])


@pytest.mark.slow
def test_the_cli_runs_a_sweep_on_ray_and_refuses_bad_executor_options(ray_env, tmp_path):
    base = [sys.executable, "-m", "assay.cli", "run", "toy-runner", "--model", "organism:xs",
            "--store", str(tmp_path / "st"), "--no-report"]
    done = subprocess.run([*base, "--executor", "ray", "--workers", "2", "--grid", "p=0.6,0.9",
                           "--json"], env=ray_env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert sorted(r["config"]["p"] for r in rows) == [0.6, 0.9]
    for extra, needle in [(["--executor", "dask"], "unknown --executor"),
                          (["--workers", "2"], "are for --executor ray"),
                          (["--executor", "ray", "--threads", "0"], "bad --threads 0")]:
        bad = subprocess.run([*base, *extra], env=ray_env, capture_output=True, text=True,
                             timeout=TIMEOUT)
        assert bad.returncode == 2, bad.stderr
        assert needle in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_ray_driver_killed_mid_run_loses_no_finished_unit(ray_env, tmp_path):
    """SIGKILL of `assay run --executor ray` (the driver and the Ray instance it started)
    once some units are done: the rerun keeps those as they were, computes only the rest,
    and the store ends as an uninterrupted run's."""
    import shutil
    import signal
    import sqlite3
    import tempfile
    import time

    ray_tmp = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # short: Ray's socket paths have a limit
    env = {**ray_env, "RAY_TMPDIR": ray_tmp}
    store = tmp_path / "st"
    run = [sys.executable, "-m", "assay.cli", "run", "toy-runner", "--model", "organism:xs",
           "--seeds", "6", "--set", "sleep=2", "--no-report"]

    def done_units(where):
        if not (where / "store.db").exists():
            return {}
        db = sqlite3.connect(where / "store.db")
        try:
            rows = db.execute("SELECT key, finished, result FROM units WHERE status = 'done'")
            return {k: (f, json.loads(r)["metrics"]) for k, f, r in rows.fetchall()}
        except sqlite3.OperationalError:  # the table is not made yet
            return {}
        finally:
            db.close()

    driver = subprocess.Popen([*run, "--store", str(store), "--executor", "ray", "--workers",
                               "2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(done_units(store)) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        before = done_units(store)
        assert driver.poll() is None and 2 <= len(before) < 6, "the kill must land mid-run"
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        driver.wait(TIMEOUT)
    finally:
        subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)  # anything Ray left
        time.sleep(1)
    try:
        again = subprocess.run([*run, "--store", str(store), "--executor", "ray", "--workers",
                                "2"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    after = done_units(store)
    assert all(after[k] == before[k] for k in before), "a finished unit was recomputed"
    clean = subprocess.run([*run, "--store", str(tmp_path / "clean")], env=ray_env,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert clean.returncode == 0, clean.stderr[-3000:]
    reference = done_units(tmp_path / "clean")
    assert {k: m for k, (_, m) in after.items()} == {k: m for k, (_, m) in reference.items()}
    assert not list((store / "units").glob(".tmp-*"))

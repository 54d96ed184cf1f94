"""Planning validates before anything is written; the store keeps, skips and retries units."""

import json
import sqlite3

import pytest

from assay.errors import AssayError
from assay.runner import Store, execute, plan
from assay.runner.plan import parse_sets


def test_units_are_keyed_by_content(toy):
    a = plan(["toy-runner"], model="organism:xs", seeds=[0, 1])
    again = plan(["toy-runner"], model="organism:xs", seeds=[0, 1])
    assert [u.key for u in a] == [u.key for u in again]
    assert len({u.key for u in a}) == 2  # the seed is part of the key
    other = plan(["toy-runner"], model="organism:xs", seeds=[0], sets={"n": "401"})
    assert other[0].key != a[0].key  # and so is the config
    assert plan(["toy-runner"], model="organism:s", seeds=[0])[0].key != a[0].key
    full = plan(["toy-runner"], model="organism:xs", profile="full", seeds=[0])[0]
    assert full.key == a[0].key  # the toy's full profile changes nothing, so same unit


@pytest.mark.parametrize("kwargs, needle", [
    ({"studies": ["nope"]}, "unknown study 'nope': valid ids are"),
    ({"sets": {"bogus": "1"}}, "unknown config key 'bogus' for study toy-runner: valid keys"),
    ({"sets": {"n": "many"}}, "bad value 'many' for config key 'n'"),
    ({"model": "organism:nope"}, "unknown organism 'nope'"),
    ({"model": "gpt2"}, "unknown model spec"),
    ({"profile": "huge"}, "unknown profile 'huge'"),
    ({"seeds": []}, "no seeds given"),
])
def test_plan_rejects_bad_input_with_the_valid_choices(toy, kwargs, needle):
    args = {"studies": ["toy-runner"], **kwargs}
    with pytest.raises(AssayError, match=needle.replace("(", r"\(")):
        plan(args.pop("studies"), **args)


def test_parse_sets():
    assert parse_sets(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(AssayError, match="key=value"):
        parse_sets(["oops"])


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_finished_units_are_never_recomputed(toy, tmp_path):
    log = tmp_path / "log.txt"
    units = plan(["toy-runner"], model="organism:xs", seeds=[0, 1, 2], sets={"log": str(log)})
    with Store(tmp_path / "store") as store:
        first = execute(units, store)
        assert [r.status for r in first] == ["done"] * 3
        assert sorted(_lines(log)) == ["end 0", "end 1", "end 2", "start 0", "start 1", "start 2"]
        again = execute(units, store)
    assert len(_lines(log)) == 6, "a finished unit ran again"
    assert [r.result for r in again] == [r.result for r in first]
    # measured: 400 flips of a 0.7 coin
    heads = first[0].result.metrics["heads"]
    assert heads.n == 400 and abs(heads.value - 0.7) < 0.07
    assert first[0].result.provenance.seed == 0 and first[0].result.provenance.wall_seconds > 0
    assert first[0].artifacts == ["partial.txt"]
    row = first[0].to_json()
    assert set(row) >= {"study", "seed", "profile", "config", "verdict", "metrics", "control",
                        "artifacts", "wall_seconds"}
    assert set(row["metrics"]["heads"]) == {"value", "ci_low", "ci_high", "n"}
    assert row["control"]["verdict"] in ("supported", "not supported", "inconclusive")
    json.dumps(row)


def test_a_failed_unit_is_recorded_and_retried_next_run(toy, tmp_path):
    log = tmp_path / "log.txt"
    units = plan(["toy-runner"], model="organism:xs", seeds=[0, 1],
                 sets={"log": str(log), "fail_seed": "1"})
    with Store(tmp_path / "store") as store:
        ok, bad = execute(units, store)
        assert ok.status == "done" and bad.status == "failed"
        assert bad.error.startswith("RuntimeError: toy failure at seed 1")
        assert "Traceback" in bad.error and bad.attempts == 1
        assert not list((tmp_path / "store" / "units").glob(".tmp-*")), "scratch left behind"
        ok2, bad2 = execute(units, store)
    assert bad2.status == "failed" and bad2.attempts == 2  # retried, failed again
    assert ok2.attempts == 1
    assert _lines(log) == ["start 0", "end 0", "start 1", "start 1"]


def test_a_corrupt_store_file_is_a_clear_error(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (root / "store.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AssayError, match="not a readable assay store"):
        Store(root)


def test_store_is_wal_and_intact(toy, tmp_path):
    units = plan(["toy-runner"], model="organism:xs", seeds=[0])
    with Store(tmp_path / "store") as store:
        execute(units, store)
    db = sqlite3.connect(tmp_path / "store" / "store.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_units_carry_their_organisms_and_the_cheapest_come_first(tmp_path, monkeypatch):
    """With an empty organism cache, the order shows a verdict soonest: studies that need no
    organism, then those reading only the run's model, then those needing a twin or another
    draw as well, and the scaling ladder last."""
    from assay.runner import first_results_first

    monkeypatch.setenv("ASSAY_HOME", str(tmp_path))
    units = {u.study: u for u in plan(model="organism:xs")}
    assert units["icl-linear-regression"].organisms == ()
    assert units["probe-selectivity"].organisms == ("xs",)
    assert set(units["dual-use-uplift"].organisms) == {"xs", "xs@pretrain", "xs-retain"}
    assert units["format-sensitivity"].organisms == ("xs", "xs~1")
    assert len(units["scaling-laws"].organisms) == 15
    order = [u.study for u in first_results_first(list(units.values()))]
    first = order.index
    assert max(first("icl-linear-regression"), first("induction-heads")) < first("probe-selectivity")
    assert first("probe-selectivity") < first("unlearning-tradeoff") < first("compositionality-gap")
    assert order[-1] == "scaling-laws"  # the most training: ten rungs beyond the other two's five
    # cached organisms cost nothing: the given order (by id) stands, model readers first
    from assay.training import schedule

    monkeypatch.setattr(schedule, "_stages_to_build", lambda name: [])
    order = [u.study for u in first_results_first(list(units.values()))]
    readers = [s for s in order if units[s].organisms
               and not units[s].organisms[0].startswith(("ladder", "compose"))]
    assert readers == sorted(readers) and order[0] == "attribution-lds"


def test_a_study_loading_an_organism_it_did_not_declare_is_refused(tmp_path):
    from assay.study import Context

    ctx = Context(0, tmp_path, model="organism:xs", organisms=["xs"])
    with pytest.raises(AssayError, match=r"loads organism xs-retain, which it does not declare "
                                         r"\(declared: xs\): add it to @study\(organisms"):
        ctx.organism("xs-retain")  # refused before anything is trained or loaded
    assert ctx.organisms == {}

"""Organism replicates: planned per study that reads the model, read together across draws."""

import dataclasses

import pytest

from assay.errors import AssayError
from assay.runner import Store, combine, execute, plan, replicated
from assay.study import Verdict


def test_combine_reaches_every_status():
    assert combine(["supported"] * 3) == ("supported", "all 3 draws supported")
    assert combine(["not supported", "not supported"])[0] == "not supported"
    status, why = combine(["supported", "not supported", "supported"])
    assert status == "inconclusive"
    assert "2 supported, 1 not supported" in why
    status, why = combine(["supported", "confounded", "supported"])
    assert status == "confounded" and why.startswith("1 of 3 draws confounded")
    assert combine(["inconclusive", "inconclusive"])[0] == "inconclusive"
    with pytest.raises(ValueError):
        combine([])


def test_replicates_expand_the_organism_for_studies_that_read_it(toy):
    units = plan(["toy-runner", "scaling-laws"], model="organism:xs", replicates=3)
    toy_models = [str(u.model) for u in units if u.study == "toy-runner"]
    assert toy_models == ["organism:xs", "organism:xs~1", "organism:xs~2"]
    assert len({u.key for u in units}) == len(units)  # each draw is its own unit
    # the scaling ladder trains its own models: one unit, on the model as given
    assert [str(u.model) for u in units if u.study == "scaling-laws"] == ["organism:xs"]
    staged = plan(["toy-runner"], model="organism:xs@pretrain", replicates=2)
    assert [str(u.model) for u in staged] == ["organism:xs@pretrain", "organism:xs~1@pretrain"]


@pytest.mark.parametrize("kwargs, needle", [
    ({"replicates": 0}, "bad --replicates 0"),
    ({"replicates": 2, "model": "organism:xs~1"}, "already a replicate"),
    ({"replicates": 2, "model": "hf:/nowhere/model"}, "--replicates needs an organism model"),
])
def test_bad_replicates_are_clear_errors(toy, kwargs, needle):
    args = {"model": "organism:xs", **kwargs}
    with pytest.raises(AssayError, match=needle):
        plan(["toy-runner"], **args)


def _with_status(record, status):
    verdict = Verdict(status=status, test="t", statement="s")
    return dataclasses.replace(record, result=record.result.model_copy(update={"verdict": verdict}))


def test_replicated_reads_draws_together_with_the_spread(toy, tmp_path):
    units = plan(["toy-runner"], model="organism:xs", seeds=[0, 1], replicates=3)
    with Store(tmp_path / "store") as store:
        records = execute(units, store)
    (agree,) = replicated(records)
    assert (agree.study, agree.organism, agree.replicates) == ("toy-runner", "xs", 3)
    assert len(agree.draws) == 6 and agree.status == "supported"
    (heads,) = agree.spread  # the metric the toy's rule reads
    assert heads.metric == "heads" and set(heads.values) == set(agree.draws)
    assert 0.6 < heads.low <= heads.high < 0.8  # a 0.7 coin, 400 flips per draw

    flipped = [_with_status(r, "not supported") if str(r.model).endswith("~2") else r
               for r in records]
    (disagree,) = replicated(flipped)
    assert disagree.status == "inconclusive"
    assert "4 supported, 2 not supported" in disagree.statement
    # one draw alone is not read across draws; other configs are other groups
    assert replicated([r for r in records if str(r.model) == "organism:xs"]) == []


def test_the_report_reads_replicates_together(toy, tmp_path):
    from assay.report.html import render_report

    units = plan(["toy-runner"], model="organism:xs", replicates=3)
    with Store(tmp_path / "store") as store:
        execute(units, store)
        html = render_report(store)
    assert "Across 3 draws of xs" in html
    assert "supported across 3 draws of xs" in html  # the badge on the agenda map
    for draw in ("xs seed 0", "xs~1 seed 0", "xs~2 seed 0"):
        assert f"<td>{draw}</td>" in html

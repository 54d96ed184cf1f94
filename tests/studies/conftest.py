"""Fixtures for study tests: one unit of a study on xs through the runner."""

import pytest


def _runner(tmp_path, assay_home, monkeypatch, organism):
    from assay.runner import Store, execute, plan

    def run(study, sets):
        monkeypatch.setenv("ASSAY_HOME", assay_home)
        units = plan([study], model=f"organism:{organism}", seeds=[0], sets=sets)
        with Store(tmp_path / "store") as store:
            (record,) = execute(units, store)
        assert record.status == "done", record.error
        assert all((record.folder / f).stat().st_size > 5_000 for f in record.result.figures)
        return record

    return run


@pytest.fixture
def run_xs(tmp_path, assay_home, xs_organism, monkeypatch):
    """``run_xs(study, sets)``: one unit of ``study`` on xs through the runner, its record
    (checked done, with non-trivial figures)."""
    return _runner(tmp_path, assay_home, monkeypatch, "xs")


@pytest.fixture
def run_m_xs(tmp_path, assay_home, m_xs_organism, monkeypatch):
    """``run_m_xs(study, sets)``: the same on m-xs, the tool-using test organism."""
    return _runner(tmp_path, assay_home, monkeypatch, "m-xs")


@pytest.fixture
def run_no_model(tmp_path, assay_home, monkeypatch):
    """``run_no_model(study, sets)``: a study that reads no model (it builds or simulates
    its own agents), through the runner; nothing is trained."""
    return _runner(tmp_path, assay_home, monkeypatch, "xs")

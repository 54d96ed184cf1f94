"""Session fixtures: tiny worlds, and the xs organism trained once into a temporary cache."""

import sys

import pytest

from assay.world import World, WorldConfig


@pytest.fixture(scope="session")
def world_xs() -> World:
    return World(WorldConfig.preset("xs"))


@pytest.fixture(scope="session")
def assay_home(tmp_path_factory) -> str:
    """One organism cache for the whole session (xs trains once); ASSAY_TEST_HOME reuses a
    cache across sessions when iterating locally (CI always starts empty)."""
    import os

    return os.environ.get("ASSAY_TEST_HOME") or str(tmp_path_factory.mktemp("assay_home"))


def _trained(assay_home, name):
    """Yield (folder, card) of organism ``name`` in the session's cache, trained on first use,
    with ``ASSAY_HOME`` pointing at that cache until the session ends."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ASSAY_HOME", assay_home)
    try:
        from assay.training.organisms import card, organism_path

        yield organism_path(name), card(name)
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def xs_organism(assay_home):
    """(folder, card) of the xs organism, trained once per test session."""
    yield from _trained(assay_home, "xs")


@pytest.fixture(scope="session")
def m_xs_organism(assay_home):
    """(folder, card) of m-xs, the tool-using test organism, trained once per test session."""
    yield from _trained(assay_home, "m-xs")


@pytest.fixture
def toy():
    """Register the toy study of tests/toy_runner_study.py for one test (and nothing else)."""
    import sys

    from assay.study import registry

    saved = dict(registry._REGISTRY)
    try:
        sys.modules.pop("toy_runner_study", None)
        import toy_runner_study  # noqa: F401  (registers "toy-runner"; tests/ is on sys.path)

        yield registry.get_study("toy-runner")
    finally:
        sys.modules.pop("toy_runner_study", None)
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """lm-eval and datasets never reach for a hub, and cache into the test's folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    if "datasets" in sys.modules:  # imported earlier in the session: its flags are read already
        monkeypatch.setattr(sys.modules["datasets"].config, "HF_DATASETS_OFFLINE", True)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

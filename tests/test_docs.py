"""docs/studies.md is generated from the studies and must not go stale; the README stays short."""

from pathlib import Path

import assay.training  # noqa: F401  (registers the organism: scheme the studies' configs use)
from assay.report.docs import studies_markdown
from assay.study import discover, studies

ROOT = Path(__file__).resolve().parents[1]


def test_docs_studies_md_is_current():
    discover()
    text = studies_markdown()
    current = (ROOT / "docs" / "studies.md").read_text(encoding="utf-8")
    assert current == text, ("docs/studies.md is stale: run "
                             "`assay docs --out docs/studies.md` and commit it")
    for spec in studies():
        assert f"## {spec.id}" in text and spec.rule(spec.make_config()).test() in text


def test_readme_is_the_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 160
    assert "make demo" in readme and "make test" in readme
    for link in ("docs/studies.md", "docs/writing-a-study.md"):
        assert link in readme and (ROOT / link).is_file()

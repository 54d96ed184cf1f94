"""Studies: one module per published claim, registered with ``@study`` and run with a Context.

A study module ``assay/studies/<name>.py`` holds the claim (its docstring), a `StudyConfig`
subclass, and ``run(cfg, ctx) -> Result`` decorated with `study`; `discover` imports them all.
"""

from assay.studies.base import (
    PROFILES,
    Control,
    Needs,
    Provenance,
    Result,
    StudyConfig,
    Verdict,
    collect_provenance,
    git_revision,
    hardware,
    package_versions,
)
from assay.studies.context import Context
from assay.studies.registry import (
    StudySpec,
    discover,
    get_study,
    studies,
    studies_for,
    study,
)

__all__ = [
    "PROFILES", "Context", "Control", "Needs", "Provenance", "Result", "StudyConfig", "StudySpec",
    "Verdict", "collect_provenance", "discover", "get_study", "git_revision", "hardware",
    "package_versions", "studies", "studies_for", "study",
]

"""The study contract: what a study is made of, how it is registered, run and decided.

`StudyConfig`, `Result`, `Control`, `Verdict` and `Provenance` (`base`); the registry
(`study`, `discover`, `get_study`); the `Context` a study runs in; the declared decision
rules (`rules`: `Above`, `Below`, `Within`, `AllOf`, `AnyOf`, `Given`); `ModelSpec`; figure
helpers (`figures`). The studies themselves live in `assay.studies`.
"""

from assay.models.spec import ModelSpec
from assay.study.base import (
    PROFILES,
    Control,
    Needs,
    Provenance,
    Result,
    StudyConfig,
    TrainSeeds,
    Verdict,
    collect_provenance,
    git_revision,
    hardware,
    package_versions,
)
from assay.study.context import Context
from assay.study.registry import (
    StudySpec,
    discover,
    get_study,
    studies,
    studies_for,
    study,
)
from assay.study.rules import (
    STATUSES,
    Above,
    AboveIfShown,
    AllOf,
    AnyOf,
    Below,
    Given,
    Rule,
    Within,
    reachable,
)

__all__ = [
    "PROFILES", "STATUSES", "Above", "AboveIfShown", "AllOf", "AnyOf", "Below", "Context", "Control", "Given",
    "ModelSpec", "Needs", "Provenance", "Result", "Rule", "StudyConfig", "StudySpec", "TrainSeeds",
    "Verdict", "Within", "collect_provenance", "discover", "get_study", "git_revision", "hardware",
    "package_versions", "reachable", "studies", "studies_for", "study",
]

"""Defences of a tool-using agent against instructions planted in tool results.

- tool filtering: the agent may call only the tools its task needs (`assay.agents.Job.tools`);
- ``delimit`` and ``spotlight`` guards: tool results marked as data (Hines et al. 2024);
- `InjectionDetector`: a classifier on tool results that withholds a flagged one, trained on
  tool results of training scenarios with and without attacks worded by the training
  templates (`assay.agents.attacks.TRAIN_TEMPLATES`), so the study's templates stay held out;
- `hierarchy_transcripts`: episodes of the oracle, which never obeys text in a tool result,
  on training scenarios with training-template attacks planted: finetuning on them teaches
  the rule that the user's request outranks tool text (Wallace et al. 2024).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from assay.agents import Job, Transcript, run_episodes
from assay.agents.attacks import TRAIN_TEMPLATES, Scenario, scenarios
from assay.agents.reference import Oracle
from assay.errors import AssayError
from assay.methods.defenses import delimit, spotlight
from assay.world import World

__all__ = ["InjectionDetector", "WITHHELD", "delimit_guard", "detector_data",
           "hierarchy_transcripts", "spotlight_guard"]

WITHHELD = "error: this result was withheld: it looks like it gives the assistant instructions"


def delimit_guard(tool: str, args: dict, result: str) -> str:
    return result if result.startswith("error:") else delimit(result)


def spotlight_guard(tool: str, args: dict, result: str) -> str:
    return result if result.startswith("error:") else spotlight(result)


def _oracle_results(items: Sequence[Scenario], template: str | None) -> list[str]:
    jobs = [Job(s.environment(template), s.task.prompt) for s in items]
    episodes = run_episodes([Oracle(s.task) for s in items], jobs)
    return [result for ep in episodes for _, _, result in ep.calls]


def detector_data(world: World, n_tasks: int = 60, seed: int = 0
                  ) -> tuple[list[str], list[str]]:
    """(benign, injected) tool results from training scenarios: what the oracle's calls
    return with nothing planted, and with each training template planted (only the
    results that carry the planted text count as injected)."""
    items = scenarios(world, n_tasks, seed, split="train")
    benign = sorted(set(_oracle_results(items, None)))
    injected = []
    for template in TRAIN_TEMPLATES:
        marks = {s.text(template)[:30] for s in items}
        injected += [r for r in _oracle_results(items, template) if any(m in r for m in marks)]
    return benign, sorted(set(injected))


@dataclass
class InjectionDetector:
    """Logistic regression on word uni- and bigrams of a tool result (scikit-learn); a result
    whose probability of carrying an injection is at least ``threshold`` is withheld."""

    threshold: float = 0.5

    def fit(self, benign: Sequence[str], injected: Sequence[str]) -> InjectionDetector:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        if not benign or not injected:
            raise AssayError("the detector needs benign and injected examples to learn from")
        self.model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                                   LogisticRegression(C=4.0, max_iter=2000,
                                                      class_weight="balanced"))
        self.model.fit([*benign, *injected], [0] * len(benign) + [1] * len(injected))
        return self

    def scores(self, results: Sequence[str]) -> list[float]:
        return [float(p) for p in self.model.predict_proba(list(results))[:, 1]]

    def guard(self, tool: str, args: dict, result: str) -> str:
        if result.startswith("error:"):
            return result
        return WITHHELD if self.scores([result])[0] >= self.threshold else result


def hierarchy_transcripts(world: World, n_tasks: int = 60, seed: int = 0) -> list[Transcript]:
    """The oracle on training scenarios, once clean and once under each training template:
    episodes in which the planted text is read and not obeyed."""
    items = scenarios(world, n_tasks, seed, split="train")
    out = []
    for template in (None, *TRAIN_TEMPLATES):
        jobs = [Job(s.environment(template), s.task.prompt) for s in items]
        for s, ep in zip(items, run_episodes([Oracle(s.task) for s in items], jobs)):
            out.append(Transcript(s.task.id, tuple(ep.turns)))
    return out

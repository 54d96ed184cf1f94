"""What the evaluation studies (format sensitivity, contamination, error bars, sandbagging,
elicitation) share: the lettered benchmark format, item sampling, items about people who do
not exist, a multiple-choice finetune, a best-minus-worst spread that does not pick and
measure on the same people, and intervals that resample whole people across several
conditions at once."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from assay.errors import AssayError
from assay.methods.evaluation import Format, render
from assay.training.finetune import finetune
from assay.training.trainer import TrainConfig
from assay.world import World, question_wordings
from assay.world.evals import MCItem, multiple_choice
from assay.world.names import NameMaker

# A lettered test, as public benchmarks are written: "Question: ... A. x ... Answer: B".
BENCHMARK = Format(frame="plain", options="letter")


def split_people(world: World, n: int, seed: int, n_other: int = 0) -> tuple[list[str], list[str]]:
    """``n`` people for evaluation and ``n_other`` disjoint others (e.g. for finetuning)."""
    people = world.people()
    if n < 1 or n + n_other > len(people):
        raise AssayError(f"the world has {len(people)} people: the config asks for {n} to "
                         f"evaluate and {n_other} others; lower those counts (--set)")
    drawn = random.Random(seed).sample(people, n + n_other)
    return drawn[:n], drawn[n:]


def fictional_items(world: World, n_people: int, seed: int, n_choices: int = 4) -> list[MCItem]:
    """One item per relation about each of ``n_people`` people who are not in the world: the
    first question template, options drawn from the relation's real objects, the answer
    drawn at random. No model can know these answers, so every way of asking must score
    chance (1 / ``n_choices``) unless something other than knowledge carries the answer."""
    rng = random.Random(f"fictional-{seed}")
    names = NameMaker(rng)
    taken = set(world.entities)
    people: list[str] = []
    while len(people) < n_people:
        name = names.person()
        if name not in taken and name not in people:
            people.append(name)
    objects = {r: sorted({f.object for f in world.facts if f.relation == r})
               for r in world.person_relations}
    items = []
    for person in people:
        for rel in world.person_relations:
            choices = rng.sample(objects[rel], n_choices)
            items.append(MCItem(id=f"fictional|{person}|{rel}", question=question_wordings(rel, "test")[0]
                                .format(s=person), choices=tuple(choices),
                                answer=rng.randrange(n_choices), subject=person, relation=rel,
                                template=0))
    return items


def benchmark_text(item: MCItem, fmt: Format = BENCHMARK) -> str:
    """The item as a benchmark file states it: question, options and the answer."""
    prompt, continuations, answer = render(item, fmt)
    return prompt + continuations[answer]


def mc_tune(lm, world: World, people: Sequence[str], steps: int, seed: int, lr: float = 1e-3):
    """``lm`` finetuned for ``steps`` on lettered multiple-choice items about ``people``
    (answers included), mixed 1:1 with the world's documents so little else is forgotten."""
    from assay.world import documents

    items = multiple_choice(world, people=list(people), seed=seed + 1)
    texts = [benchmark_text(it) for it in items]
    docs = [d.text for d in documents(world)]
    tuned, _ = finetune(lm, [(texts, 1.0), (docs, 1.0)], TrainConfig(steps=steps, lr=lr, warmup=5),
                        batch_size=16, seed=seed)
    return tuned


def other_draw(name: str, draws: int = 3) -> str:
    """Another training run of organism ``name``'s recipe, cycling through the first
    ``draws`` replicates: ``s`` -> ``s~1``, ``s~1`` -> ``s~2``, ``s~2`` -> ``s`` (stage kept)."""
    from assay.training.recipes import replicate_name, replicate_of

    base, k = replicate_of(name)
    return replicate_name(base, ((k or 0) + 1) % draws)


def person_codes(items: Sequence[MCItem]) -> np.ndarray:
    """(N,) integer code of each item's subject."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(it.subject, len(codes)) for it in items])


def crossfit_spread(values: np.ndarray, clusters: np.ndarray,
                    seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per item, the best condition's score minus the worst's, where best and worst are
    picked on the other half of the people (two folds of whole clusters).

    ``values`` is (C, N): C conditions scored on the same N items; ``clusters`` (N,) codes the
    items' people. Picking and measuring on the same items would read a spread into pure
    noise (the largest of C noisy means minus the smallest); across folds, conditions that
    do not differ give a spread centred on zero. Returns the (N,) per-item differences, whose
    mean is the spread, and the (best, worst) picked for each fold.
    """
    out = np.empty(values.shape[1])
    picks = []
    for measure, pick in _folds(clusters, seed):
        means = values[:, pick].mean(1)
        best, worst = int(means.argmax()), int(means.argmin())
        out[measure] = values[best, measure] - values[worst, measure]
        picks.append((best, worst))
    return out, picks


def crossfit_best(values: np.ndarray, clusters: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per item, the score of the best condition picked on the other half of the people (the
    same two folds as `crossfit_spread`): the mean is what the best of C conditions scores
    on people it was not picked on, not the luckiest of C noisy means."""
    out = np.empty(values.shape[1])
    for measure, pick in _folds(clusters, seed):
        out[measure] = values[int(values[:, pick].mean(1).argmax()), measure]
    return out


def _folds(clusters: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two (measure, pick) masks splitting the items by whole people, both ways round."""
    people = np.unique(clusters)
    if people.size < 2:
        raise AssayError("a cross-fitted pick needs items about at least 2 people")
    fold_b = np.isin(clusters, np.random.default_rng(seed).permutation(people)[: people.size // 2])
    return [(fold_b, ~fold_b), (~fold_b, fold_b)]

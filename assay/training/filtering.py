"""A hazard-document classifier, for pretraining-data filtering and conditional training.

The classifier is what a data team would build: TF-IDF features (word unigrams and bigrams,
fitted on the whole corpus, which needs no labels) and a logistic regression fitted on a
labelled sample of the documents (`LABELLED_SHARE` of them, drawn with the world's seed;
the labels are the world's ground truth). It scores every document; a filter removes the
documents at or above a threshold.

A filter is named by its *recall*, the share of hazardous documents it removes: the
threshold is the score of the k-th most hazardous-looking hazardous document, k =
ceil(recall x their number), and everything scoring at least that is removed, benign
documents included (its false positives; ties can remove a few more hazardous documents
than k). So the filter's misses are the hazardous documents the classifier finds least
hazardous, not a random share, as with a real filter. Recall 1 through the classifier still
removes its false positives; the perfect filter (every hazardous document and nothing else)
is the retain-only twin (`recipes.retain_twin`).

Conditional training (Korbak et al. 2023, arXiv 2302.08582) keeps every document and opens
each with a tag for the classifier's decision at probability 0.5: `FLAGGED` or `CLEAN`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from assay.world import Document, World, documents

FILTER_LEVELS = (50, 80, 90, 95)  # recalls (percent) that recipes and data sources exist for
LABELLED_SHARE = 0.2  # documents the classifier is fitted on, with their true labels
FLAGGED = "[flagged]"  # conditional training: the classifier's hazardous documents open with it
CLEAN = "[clean]"      # ... and the others with this; deployment prompts open with CLEAN


@lru_cache(maxsize=4)
def hazard_scores(world: World) -> tuple[float, ...]:
    """The classifier's probability that each document is hazardous, in `documents(world)`
    order. Deterministic: a fixed labelled sample and a deterministic solver."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    docs = documents(world)
    labels = [d.hazardous for d in docs]
    rng = random.Random(f"filter-labels-{world.config.seed}")
    k = max(2, round(LABELLED_SHARE * len(docs)))
    labelled = sorted(rng.sample(range(len(docs)), k))
    if len({labels[i] for i in labelled}) < 2:  # a tiny world: label one of each class
        labelled += [labels.index(True), labels.index(False)]
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = features.fit_transform([d.text for d in docs])
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    model.fit(x[labelled], [labels[i] for i in labelled])
    return tuple(float(p) for p in model.predict_proba(x)[:, 1])


@dataclass(frozen=True)
class Filter:
    """One operating point of the classifier: what it removes and how well."""

    target: float              # the recall asked for
    threshold: float           # documents scoring at least this are removed
    removed: frozenset[str]    # ids of removed documents
    recall: float              # share of hazardous documents removed
    precision: float           # share of removed documents that are hazardous
    benign_removed: int        # false positives: benign documents lost
    hazardous_kept: int        # misses: hazardous documents left in the corpus


@lru_cache(maxsize=16)
def operating_point(world: World, recall: float) -> Filter:
    """The filter that removes at least ``recall`` of the hazardous documents (0 < recall <= 1)."""
    if not 0 < recall <= 1:
        raise ValueError(f"a filter's recall is in (0, 1], not {recall}")
    docs, scores = documents(world), hazard_scores(world)
    hazardous = sorted((s for d, s in zip(docs, scores) if d.hazardous), reverse=True)
    k = math.ceil(recall * len(hazardous) - 1e-9)
    threshold = hazardous[k - 1]
    removed = [d for d, s in zip(docs, scores) if s >= threshold]
    hits = sum(d.hazardous for d in removed)
    return Filter(recall, threshold, frozenset(d.id for d in removed), hits / len(hazardous),
                  hits / len(removed), len(removed) - hits, len(hazardous) - hits)


def kept(world: World, recall: float, kinds: tuple[str, ...] | None = None) -> list[Document]:
    """The documents (of ``kinds``) that the filter at ``recall`` lets through."""
    gone = operating_point(world, recall).removed
    return [d for d in documents(world, kinds) if d.id not in gone]


def flagged(world: World) -> frozenset[str]:
    """Ids of the documents the classifier calls hazardous (probability at least 0.5)."""
    return frozenset(d.id for d, s in zip(documents(world), hazard_scores(world)) if s >= 0.5)


def tagged(world: World, kinds: tuple[str, ...] | None = None) -> list[str]:
    """Every document (of ``kinds``) opening with its conditional-training tag."""
    bad = flagged(world)
    return [f"{FLAGGED if d.id in bad else CLEAN} {d.text}" for d in documents(world, kinds)]

"""Influence functions find the sentences that taught a fact better than gradients or word overlap (3.1).

Claim (Grosse et al. 2023, arXiv 2308.03296): influence functions approximated with EK-FAC
find the training sequences that support a model's answer, and what they find goes beyond
lexical overlap with the query; here, that EK-FAC ranks the training sentences stating a
fact above the others better than gradient cosine similarity and better than BM25.

Setup: the training material is the organism's biographies cut into sentences, each stating
one fact (a biography states all six facts of its person, so whole biographies would be
found by the name alone). The pool holds every sentence of the biographies of the queried
people and of as many other people; the truth for a query is the sentences stating its
fact. Queries are facts of people the organism was never asked about in training (their
facts reached it through documents only), asked in held-out question wordings in the chat
format, and scored on the answer's tokens. Each query ranks the pool's sentences of its
relation (so matching the kind of fact is not credited): reciprocal rank of the best true
sentence and recall@k, per method: EK-FAC influence (kronfluence, factors fitted on the
pool), the gradient dot product, gradient cosine similarity, and BM25 on question and
answer. Differences are paired by query; intervals resample people.

Verdict: `rule`: the mean reciprocal rank (MRR) of EK-FAC minus that of gradient cosine and
minus that of BM25, each against zero (all parts must hold): supported when both gains lie
above zero, not supported when either lies below, inconclusive otherwise.

Negative control: the same methods asked about invented people, named by no training text,
with the facts' answers drawn from the world's values; their "truth" is the sentences of a
real person of the pool drawn at random. No sentence can support such a query, so
every method must rank it at chance; the control fires (`control_rule`) when any method's
MRR exceeds the chance level by ``margin`` (intervals at a level corrected for the four
methods). A ranking that leaked the truth, or scores misaligned with the pool, would fire.

Power: on s the quick profile's 40 queries about 20 people (a pool of 554 sentences, each
query ranking about 100 of its relation) measured MRR gains with intervals of about +-0.12
(EK-FAC minus BM25 -0.48 [-0.58, -0.39]), so a gain of about 0.17 is the smallest it detects
with 80% power; the full profile's 120 queries about 40 people narrow that to about 0.1.
The models are not retrained, so there is no training-seed variance to resample here.
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field

from assay.methods.attribution import (
    LMLoss,
    bm25_scores,
    gradient_scores,
    influence_scores,
    recall_at_k,
    reciprocal_rank,
    tokenized,
)
from assay.methods.stats import Estimate, clustered_bootstrap, paired_difference
from assay.studies._attribution_common import (
    chance_reciprocal_rank,
    fact_sentences,
    influence_cache,
    restricted,
)
from assay.study import Above, AllOf, AnyOf, Context, Control, Needs, Result, StudyConfig, study
from assay.study.figures import errorbars, new_figure, save_figure
from assay.world import dialogues
from assay.world.chat import render_prompt
from assay.world.phrasing import question_wordings
from assay.world.reading import FIELDS, strangers

METHODS = ("ekfac", "dot", "cosine", "bm25")
LABELS = {"ekfac": "EK-FAC influence", "dot": "gradient dot", "cosine": "gradient cosine",
          "bm25": "BM25"}


class Config(StudyConfig):
    n_people: int = Field(20, ge=4)          # people queried (never asked about in training)
    per_person: int = Field(2, ge=1, le=5)   # facts asked per queried person
    distractors: int = Field(20, ge=1)       # other people whose biographies join the pool
    k: int = Field(3, ge=1)                  # recall@k reads the top k of a query's ranking
    margin: float = Field(0.05, gt=0, lt=1)  # control: MRR above chance by this much fires it
    n_boot: int = Field(2000, ge=100)        # bootstrap resamples of people

    FULL = {"n_people": 40, "per_person": 3, "distractors": 40, "n_boot": 4000}


def rule(cfg: Config) -> AllOf:
    """EK-FAC ranks the true sentences higher than gradient cosine and than BM25."""
    return AllOf(
        Above("mrr_gain/cosine", bar=0.0, low=-1.0, high=1.0,
              what="EK-FAC minus gradient-cosine MRR, paired by query"),
        Above("mrr_gain/bm25", bar=0.0, low=-1.0, high=1.0,
              what="EK-FAC minus BM25 MRR, paired by query"),
        says={"supported": "influence finds the stating sentences better than both baselines",
              "not supported": "a baseline finds the stating sentences at least as well",
              "inconclusive": "an interval contains zero"})


def control_rule(cfg: Config) -> AnyOf:
    """Some method ranks a fact no sentence states above chance."""
    return AnyOf(*(Above(f"lift/{m}", bar=cfg.margin, low=-1.0, high=1.0,
                         what=f"{LABELS[m]} MRR minus chance on invented people")
                   for m in METHODS),
                 says={"supported": "a method finds support that cannot exist",
                       "not supported": "every method sits at chance",
                       "inconclusive": "an interval contains its bar"})


@study("attribution-recall", agenda=["3.1"], needs=Needs(organism=True), rule=rule,
       control=control_rule)
def run(cfg: Config, ctx: Context) -> Result:
    world, lm = ctx.world(), ctx.lm()
    rng = random.Random(ctx.seed)
    heldout = world.people("heldout")
    queried = rng.sample(heldout, min(cfg.n_people, len(heldout)))
    others = [p for p in world.people() if p not in queried]
    pool_people = queried + rng.sample(others, min(cfg.distractors, len(others)))
    pool = fact_sentences(world, pool_people)
    relation_of = np.array([s.fact.relation for s in pool])

    asked = {(d.facts[0].subject, d.facts[0].relation): d for d in dialogues(world, "qa", "test")}
    real = []  # (person, relation, question, answer, truth)
    for person in queried:
        for relation in rng.sample(world.person_relations, cfg.per_person):
            d = asked[(person, relation)]
            truth = {i for i, s in enumerate(pool) if s.fact == d.facts[0]}
            real.append((person, relation, d.user, d.assistant, truth))
    fake = _invented(world, real, pool, pool_people, rng)
    queries = real + fake

    ctx.report(f"tokenising {len(pool)} sentences and {len(queries)} queries", 0.0)
    examples = tokenized(lm, [s.text for s in pool])
    probes = tokenized(lm, [q[3] for q in queries], prompts=[render_prompt(q[2]) for q in queries])
    ctx.report(f"EK-FAC influence over {len(pool)} sentences", 0.05)
    scores = {"ekfac": influence_scores(lm.model, LMLoss, probes, examples, influence_cache(),
                                        name="attribution-recall", seed=ctx.seed)}
    ctx.report(f"gradient dot and cosine over {len(pool)} sentences", 0.5)
    dot, q_norm, g_norm = gradient_scores(lm.model, LMLoss, probes, examples, norms=True)
    scores["dot"] = dot
    scores["cosine"] = dot / np.maximum(np.outer(q_norm, g_norm), 1e-30)
    scores["bm25"] = bm25_scores([f"{q[2]} {q[3]}" for q in queries], [s.text for s in pool])
    ctx.add_flops(6 * lm.n_params * sum(int(e["attention_mask"].sum()) for e in examples) * 3)
    ctx.report("intervals and figures", 0.95)

    allowed = relation_of[None, :] == np.array([q[1] for q in queries])[:, None]
    truth = [q[4] for q in queries]
    chance = np.array([chance_reciprocal_rank(int(a.sum()), len(t))
                       for a, t in zip(allowed, truth)])
    # ties broken at random: a method blind to the difference ranks the truth at chance
    rr = {m: reciprocal_rank(restricted(s, allowed), truth, ties=ctx.seed)
          for m, s in scores.items()}
    recall = {m: recall_at_k(restricted(s, allowed), truth, cfg.k, ties=ctx.seed)
              for m, s in scores.items()}
    people = np.array([q[0] for q in queries])
    n = len(real)
    part = {"real": slice(0, n), "invented": slice(n, None)}

    def measured(which: str, level: float) -> dict[str, Estimate]:
        sel, who = part[which], people[part[which]]
        out = {}
        for m in METHODS:
            out[f"mrr/{m}"] = clustered_bootstrap(rr[m][sel], who, n_boot=cfg.n_boot,
                                                  seed=ctx.seed, level=level)
            out[f"recall@{cfg.k}/{m}"] = clustered_bootstrap(recall[m][sel], who,
                                                            n_boot=cfg.n_boot, seed=ctx.seed)
            out[f"lift/{m}"] = paired_difference(rr[m][sel], chance[sel], who, n_boot=cfg.n_boot,
                                                 seed=ctx.seed, level=level)
        for m in ("cosine", "bm25", "dot"):
            out[f"mrr_gain/{m}"] = paired_difference(rr["ekfac"][sel], rr[m][sel], who,
                                                     n_boot=cfg.n_boot, seed=ctx.seed)
        return out

    metrics = measured("real", 0.95)
    control = measured("invented", 1 - 0.05 / len(METHODS))
    rows = [{"method": LABELS[m],
             **{f"MRR ({w})": round(float(rr[m][sel].mean()), 4) for w, sel in part.items()},
             f"recall@{cfg.k} (real)": round(float(recall[m][:n].mean()), 4),
             "chance MRR": round(float(chance[:n].mean()), 4)}
            for m in METHODS]
    examples_table = _top_sentences(scores, allowed, real, pool, k=3)
    notes = [f"pool: {len(pool)} sentences from the biographies of {len(pool_people)} people "
             f"({len(queried)} queried); each query ranks the {int(allowed[0].sum())} or so "
             "sentences of its relation, of which 1 to "
             f"{max(len(t) for t in truth[:n])} state its fact",
             "EK-FAC factors are fitted on the pool's sentences, kept under "
             f"{influence_cache()} and reused by a rerun on the same weights"]
    figure = _figure(ctx, rr, chance, part, people, cfg)
    return Result(metrics=metrics, tables={"methods": rows, "top sentences": examples_table},
                  figures=[figure], notes=notes,
                  control=Control(metrics=control, condition=(
                      "invented people named by no training text; their truth is a real "
                      "person's sentences of the same relation")))


def _invented(world, real, pool, pool_people, rng: random.Random) -> list[tuple]:
    """One query about an invented person per real query, of the same relation where the
    invented people have it (their five fields), in a held-out wording; its truth is the
    sentences of a pool person drawn at random."""
    invented = list(strangers(world)["test"])
    rng.shuffle(invented)
    out = []
    for (name, facts), (_, relation, *_rest) in zip(invented, real):
        relation = relation if relation in FIELDS else rng.choice(FIELDS)
        answer = facts[relation]
        question = rng.choice(question_wordings(relation, "test")).format(s=name)
        decoy = world.fact(rng.choice(pool_people), relation)
        truth = {i for i, s in enumerate(pool) if s.fact == decoy}
        out.append((name, relation, question, answer, truth))
    return out


def _top_sentences(scores, allowed, real, pool, k: int) -> list[dict]:
    """For the first few real queries, each method's top sentences (escaped in the report)."""
    rows = []
    for q, (_, _, question, answer, truth) in enumerate(real[:4]):
        for m in METHODS:
            ranked = np.argsort(-restricted(scores[m][q], allowed[q]), kind="stable")[:k]
            rows.append({"query": f"{question} -> {answer}", "method": LABELS[m],
                         "top sentences": " | ".join(
                             ("* " if i in truth else "") + pool[i].text for i in ranked)})
    return rows


def _figure(ctx: Context, rr, chance, part, people, cfg: Config) -> str:
    fig, ax = new_figure(width=6.4, height=3.8)
    x = np.arange(len(METHODS))
    for j, (which, sel) in enumerate(part.items()):
        est = [clustered_bootstrap(rr[m][sel], people[sel], n_boot=1000, seed=ctx.seed)
               for m in METHODS]
        y, err = errorbars(est)
        ax.bar(x + (j - 0.5) * 0.38, y, width=0.38, yerr=err, capsize=3,
               label=f"{which} people" + (" (control)" if which == "invented" else ""))
    ax.axhline(float(chance[part["real"]].mean()), color="grey", lw=0.8, ls=":",
               label="chance")
    ax.set_xticks(x, [LABELS[m] for m in METHODS], fontsize=8)
    ax.set_ylabel("MRR of the sentences stating the fact")
    ax.set_ylim(0, 1.05)
    ax.set_title("Which sentences taught the fact?")
    ax.legend(fontsize=7)
    save_figure(fig, ctx.artifact("attribution_recall.png"))
    return "attribution_recall.png"

"""Confident wrong answers are bounded below by the share of facts seen once (4.3, 2.2).

Claim (Kalai, Nachum, Vempala and Zhang 2025, "Why language models hallucinate", arXiv
2509.04664): for facts with no pattern to learn (a person's birthplace), a pretrained model
that answers every question errs on at least about the singleton rate, the share of training
mentions whose fact is mentioned exactly once; by the Good-Turing argument that share
estimates the mass of questions about facts training never showed. They add that grading
which rewards abstention, and models that say "unknown" when unsure, lower the rate of
confident errors at a cost in questions answered.

Setup: a planted population of ``people + helpers`` invented people (no word shared with the
world's names), each with facts on ``relations`` drawn from the world's objects for that
relation, so nothing in a name predicts a fact. People have Zipf popularity (exponent
``zipf``); a query asks about a person in proportion to popularity and about each relation
equally. The training sample draws ``mentions`` queries from that distribution and states
each drawn fact in one sentence (the k-th mention in the k-th paraphrase that names the
person before the object, the first being the sentence the probe cuts), so every fact's
mention count is known exactly: many are never mentioned, many once. A model of width ``d``
trains from scratch on these sentences. A second model trains on the same sentences plus,
for the helpers (people trained on but never asked), every never-mentioned fact stated as
"unknown": training to say "I don't know" where the data hold no answer. The ``people``
are then probed, fact by fact, by document completion: the first paraphrase cut before the
object, with every object of the relation and "unknown" scored as completions. The plain
model's answer is its most likely object (it must answer); its confidence is that object's
probability among the objects. The second model abstains when "unknown" outranks every
object.

Verdict: `rule`, both parts must hold: the plain model's error rate on the query distribution
minus the singleton rate above -``margin`` (the bound, up to a small slack), and the error on
facts mentioned once minus on facts mentioned ``many`` times or more above ``margin`` (rare
facts are where the model errs). The bound follows from the Good-Turing argument for any
model that must answer facts with no pattern: what the organism decides is how far above it
the error sits (errors on facts it did read) and whether rare facts carry them; a probe that
leaked answers, or facts a name predicts, would break it. Intervals resample training runs,
then people. The abstention
results (confident errors and coverage at each threshold in ``thresholds``, and for the
"unknown" model) are reported with intervals beside the verdict, not in it.

Negative control: facts mentioned ``many`` times or more must be answered right; the control
(`control_rule`) fires when their error exceeds 0.1. A probe that cuts the wrong sentence, a
scorer that mislabels the answer, or a model too weak to learn the facts would fire it.

Power: measured on s (quick, seed 0, 147 s on 2 cores; 600 facts of 120 people, 2700
sentences, one run of 400 steps per model): error on queries 0.28 [0.18, 0.45] against a
singleton rate of 0.14 (floor_excess 0.14 [0.09, 0.23]); error 0.57 on facts mentioned once,
0.03 on facts mentioned 8+ times (error_fall 0.54 [0.42, 0.63]). The intervals' half-widths,
about 0.08 and 0.11, are the smallest effects beyond each bar the quick profile detects;
popularity is Zipf, so a few people carry most of the query mass and the weighted error's
interval is wide. The control rests on the 29 facts of a few popular people and reads 0.03
[0.00, 0.14], so it cannot fire reliably below about 0.15, and under the Wilson floor it can
hold (read below 0.1) only with no error among 35 or more such facts: on the quick profile
it reads inconclusive (measured on CPU `s`, seed 0, 159 s alone), which leaves the verdict
standing but unconfirmed. The full profile (240 people, three training runs) has more
popular facts and narrows all three.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from pydantic import Field, field_validator

from assay.methods.stats import Estimate, from_draws, seed_cluster_resamples
from assay.models import LM
from assay.studies._scratch import train_from_scratch, training_flops
from assay.study import Above, AllOf, Context, Control, Needs, Result, StudyConfig, TrainSeeds, study
from assay.study.figures import new_figure, save_figure
from assay.training.recipes import LADDER_SIZES
from assay.world import Fact, World, completion_prompt
from assay.world.documents import state
from assay.world.names import NameMaker
from assay.world.relations import RELATIONS

UNKNOWN = "unknown"
SEEDS_THEN_PEOPLE = "bootstrap over training seeds, then people"
# Mention-count bins of the per-count figure and metrics: (label, lowest, highest).
BINS = (("0, person unseen", 0, 0), ("0, person seen", 0, 0), ("1", 1, 1), ("2", 2, 2),
        ("3-4", 3, 4), ("5-7", 5, 7), ("8+", 8, 10**9))


class Config(StudyConfig):
    people: int = Field(120, ge=20)        # invented people in the query distribution
    zipf: float = Field(1.0, ge=0)         # popularity exponent over people (0: all equal)
    relations: list[str] = [  # person relations asked (birth year: 74 objects, costly to score)
        "birth_city", "employer", "profession", "hobby", "alma_mater"]
    helpers: int = Field(120, ge=0)        # more people of the population, trained on, never asked
    mentions: int = Field(2700, ge=50)     # fact sentences drawn from the whole population
    d: int = 96                            # ladder width (d_model) of the trained models
    steps: int = Field(400, ge=10)         # training steps of each model (batches of 16 x 128)
    lr: float = Field(5e-3, gt=0)          # peak learning rate
    many: int = Field(8, ge=2)             # facts mentioned this often or more: the control
    thresholds: list[float] = [0.5, 0.75]  # confidence thresholds of abstention-aware grading
    margin: float = Field(0.05, gt=0)      # error-rate difference that counts as an effect
    n_boot: int = Field(2000, ge=100)      # bootstrap resamples of training runs, then people
    train_seeds: TrainSeeds = [0]           # training runs of each model (init and batch order)

    FULL = {"people": 240, "helpers": 240, "mentions": 5400, "steps": 800,
            "train_seeds": [0, 1, 2]}

    @field_validator("d")
    @classmethod
    def _ladder_width(cls, d: int) -> int:
        if d not in LADDER_SIZES:
            raise ValueError(f"give one of the ladder's widths {list(LADDER_SIZES)}")
        return d

    @field_validator("relations")
    @classmethod
    def _person_relations(cls, relations: list[str]) -> list[str]:
        bad = [r for r in relations if r not in RELATIONS or RELATIONS[r].subject != "person"
               or RELATIONS[r].hazardous]
        if bad or not relations:
            raise ValueError(f"give one or more person relations, not {bad or 'none'}")
        return relations

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, thresholds: list[float]) -> list[float]:
        if any(not 0 < t < 1 for t in thresholds):
            raise ValueError("thresholds are confidences strictly between 0 and 1")
        return sorted(thresholds)


def rule(cfg: Config) -> AllOf:
    """Error on the query distribution at or above the singleton rate; rare facts err more."""
    return AllOf(
        Above("floor_excess", bar=-cfg.margin, low=-1.0, high=1.0,
              what="error rate on the query distribution minus the singleton rate"),
        Above("error_fall", bar=cfg.margin, low=-1.0, high=1.0,
              what=f"error on facts mentioned once minus on facts mentioned {cfg.many}+ times"),
        says={"supported": "the model errs at least as often as the singleton rate, most on "
                           "rarely mentioned facts",
              "not supported": "the error falls below the singleton rate, or rare facts are "
                               "answered as well as frequent ones",
              "inconclusive": "an interval contains its bar"})


def control_rule(cfg: Config) -> Above:
    """Facts mentioned many times are answered wrongly."""
    return Above("error_many", bar=0.1, low=0.0, high=1.0,
                 what=f"error on facts mentioned {cfg.many} or more times",
                 says={"supported": "well-attested facts are missed: the probe or the model is "
                                    "broken",
                       "not supported": "well-attested facts are answered right",
                       "inconclusive": "the interval contains its bar"})


@dataclass(frozen=True)
class Variant:
    """A planted population and its training sample: every asked fact's query weight and
    exact mention count."""
    facts: list[Fact]            # facts the probe asks, person by person
    weight: np.ndarray           # probability a query asks this fact (sums to 1)
    count: np.ndarray            # times the training sentences state this fact
    sentences: list[str]         # training sentences of every drawn mention, in draw order
    unknown: list[str]           # helpers' never-mentioned facts stated as "unknown", in
                                 # every paraphrase

    @property
    def singleton_rate(self) -> float:
        """Share of the asked people's training mentions whose fact is mentioned once."""
        return float((self.count == 1).sum() / self.count.sum())

    @property
    def unseen_mass(self) -> float:
        """Query probability of facts never mentioned: what the singleton rate estimates."""
        return float(self.weight[self.count == 0].sum())


def plant(world: World, cfg: Config, seed: int) -> Variant:
    """A population of ``people + helpers`` invented people with facts from the world's
    objects and Zipf popularity (helpers picked at random across it), and ``mentions`` fact
    sentences drawn from it; fixed by ``seed``. Helpers are trained on but never asked."""
    rng = random.Random(f"hallucination-{seed}")
    maker = NameMaker(random.Random(f"hallucination-names-{seed}"))
    maker._words.update(w.lower() for name in world.entities for w in name.replace(".", "").split())
    total = cfg.people + cfg.helpers
    names = [maker.person() for _ in range(total)]
    pools = {r: world.objects(r) for r in cfg.relations}
    facts = [Fact(p, r, rng.choice(pools[r])) for p in names for r in cfg.relations]
    k = len(cfg.relations)
    popularity = 1.0 / np.arange(1, total + 1) ** cfg.zipf
    weight = np.repeat(popularity / popularity.sum() / k, k)
    draws = np.random.default_rng(rng.randrange(2**32)).choice(len(facts), size=cfg.mentions,
                                                               p=weight)
    count = np.bincount(draws, minlength=len(facts))
    seen = np.zeros(len(facts), dtype=int)
    sentences = []
    for i in draws:  # the k-th mention of a fact uses paraphrase k (mod the paraphrases)
        sentences.append(_sentence(facts[i], int(seen[i])))
        seen[i] += 1
    helper = np.zeros(total, dtype=bool)
    helper[rng.sample(range(total), cfg.helpers)] = True
    asked = np.repeat(~helper, k)
    unknown = [_sentence(Fact(f.subject, f.relation, UNKNOWN), j)
               for f, c, h in zip(facts, count, ~asked) if h and c == 0
               for j in range(len(_forward(f.relation)))]
    w = weight[asked]
    return Variant([f for f, a in zip(facts, asked) if a], w / w.sum(), count[asked],
                   sentences, unknown)


def _forward(relation: str) -> list[int]:
    """The paraphrases that name the subject before the object: the ones that teach the
    completion probe's direction (a sentence that names the object first does not)."""
    return [k for k, t in enumerate(RELATIONS[relation].documents) if t.index("{s}") < t.index("{o}")]


def _sentence(fact: Fact, k: int) -> str:
    forward = _forward(fact.relation)
    return state(fact, forward[k % len(forward)])


def _texts(sentences: list[str], per_text: int = 6) -> list[str]:
    """Sentences joined a few at a time into short documents, in the order given."""
    return [" ".join(sentences[i:i + per_text]) for i in range(0, len(sentences), per_text)]


def probe(lm: LM, facts: list[Fact], pools: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per fact, by document completion: the most likely object, whether it is right, its
    probability among the relation's objects, and whether "unknown" outranks every object."""
    prompts, conts, owner = [], [], []
    for i, f in enumerate(facts):
        for c in [*pools[f.relation], UNKNOWN]:
            prompts.append(completion_prompt(f))
            conts.append(f" {c}.")
            owner.append(i)
    scores = np.array([s.logprob for s in lm.score(prompts, conts, batch_size=512)])
    owner = np.array(owner)
    right, confidence, abstains = [], [], []
    for i, f in enumerate(facts):
        s = scores[owner == i]
        objects, unknown = s[:-1], s[-1]
        p = np.exp(objects - objects.max())
        p /= p.sum()
        best = int(objects.argmax())
        right.append(pools[f.relation][best] == f.object)
        confidence.append(float(p[best]))
        abstains.append(bool(unknown > objects.max()))
    return {"right": np.array(right), "confidence": np.array(confidence),
            "abstains": np.array(abstains)}


@study("hallucination-singletons", agenda=["4.3", "2.2"], needs=Needs(organism=True),
       rule=rule, control=control_rule)
def run(cfg: Config, ctx: Context) -> Result:
    world, base = ctx.world(), ctx.lm()
    variant = plant(world, cfg, ctx.seed)
    pools = {r: world.objects(r) for r in cfg.relations}
    plain = _texts(variant.sentences)
    mixed = variant.sentences + variant.unknown
    with_unknown = _texts(random.Random(ctx.seed).sample(mixed, len(mixed)))
    arms = [("plain", plain), ("unknown", with_unknown)] if variant.unknown else [("plain", plain)]
    tokens = sum(len(ids) for ids in base.tokenizer(plain)["input_ids"])
    runs = [(t, arm) for t in cfg.train_seeds for arm in arms]
    read: dict[str, dict[int, dict]] = {label: {} for label, _ in arms}
    for j, (t, (label, corpus)) in enumerate(runs):
        ctx.report(f"training seed {t}: the {label} model on {len(corpus)} texts", j / len(runs))
        lm = train_from_scratch(base, cfg.d, corpus, steps=cfg.steps, lr=cfg.lr,
                                seed=1000 * ctx.seed + t, name=f"hallucination-{label}")
        ctx.add_flops(training_flops(lm, cfg.steps))
        ctx.report(f"training seed {t}: probing {len(variant.facts)} facts of the {label} model",
                   (j + 0.8) / len(runs))
        read[label][t] = probe(lm, variant.facts, pools)
    ctx.report("intervals and figures", 1.0)
    return _result(cfg, ctx, variant, read, cfg.steps * 16 * 128 / tokens)


def _bins(variant: Variant) -> np.ndarray:
    """Each fact's mention-count bin (an index into BINS); unseen facts split by whether the
    person is mentioned at all."""
    n_rel = len({f.relation for f in variant.facts})
    person_seen = np.repeat(variant.count.reshape(-1, n_rel).sum(1) > 0, n_rel)
    out = np.empty(len(variant.facts), dtype=int)
    for b, (_, low, high) in enumerate(BINS):
        out[(variant.count >= low) & (variant.count <= high)] = b
    out[(variant.count == 0) & ~person_seen] = 0
    out[(variant.count == 0) & person_seen] = 1
    return out


def _result(cfg: Config, ctx: Context, variant: Variant, read, passes: float) -> Result:
    seeds = list(cfg.train_seeds)
    n = len(variant.facts)
    tile = lambda a: np.tile(a, len(seeds))  # noqa: E731 - rows are (training run, fact)
    run_of = np.repeat(seeds, n)
    person = tile(np.arange(n) // len(cfg.relations))
    w, count, bins = tile(variant.weight), tile(variant.count), tile(_bins(variant))
    cat = {label: {k: np.concatenate([read[label][t][k] for t in seeds]) for k in read[label][seeds[0]]}
           for label in read}
    wrong = ~cat["plain"]["right"]
    draws = seed_cluster_resamples(run_of, person, cfg.n_boot, ctx.seed)

    def estimate(stat) -> Estimate:
        return from_draws(stat(np.arange(run_of.size)), [stat(i) for i in draws], run_of.size,
                          SEEDS_THEN_PEOPLE)

    def weighted(values, sel=None):
        def stat(i):
            keep = i if sel is None else i[sel[i]]
            return float((values[keep] * w[keep]).sum() / w[keep].sum()) if keep.size else np.nan
        return stat

    def rate(values, sel):
        return lambda i: float(values[i][sel[i]].mean()) if sel[i].any() else np.nan

    def singleton_rate(i):
        # per resample, over the drawn people's facts (each training run's counts are the same)
        return float((count[i] == 1).sum() / count[i].sum()) if count[i].sum() else np.nan

    once, many = count == 1, count >= cfg.many
    metrics: dict[str, Estimate] = {
        "error": estimate(weighted(wrong.astype(float))),
        "singleton_rate": estimate(singleton_rate),
        "unseen_mass": estimate(weighted((count == 0).astype(float))),
        "floor_excess": estimate(lambda i: weighted(wrong.astype(float))(i) - singleton_rate(i)),
        "error_fall": estimate(lambda i: rate(wrong, once)(i) - rate(wrong, many)(i)),
        "error_seen_facts": estimate(rate(wrong, count > 0)),
        "share_once_of_seen": estimate(lambda i: float(once[i].sum() / (count[i] > 0).sum())),
    }
    filled = [b for b in range(len(BINS)) if (bins == b).any()]
    for b in filled:
        metrics[f"error@{BINS[b][0]}"] = estimate(rate(wrong, bins == b))
    confidence = cat["plain"]["confidence"]
    for t in [0.0, *cfg.thresholds]:
        answers = confidence >= t
        metrics[f"confident_error@t={t:g}"] = estimate(weighted((answers & wrong).astype(float)))
        metrics[f"coverage@t={t:g}"] = estimate(weighted(answers.astype(float)))
        penalty = t / (1 - t)
        metrics[f"score@t={t:g}"] = estimate(weighted(
            np.where(answers, np.where(wrong, -penalty, 1.0), 0.0)))
    if "unknown" in cat:
        abstain, right_u = cat["unknown"]["abstains"], cat["unknown"]["right"]
        error_u = (~abstain & ~right_u).astype(float)
        metrics["confident_error@unknown"] = estimate(weighted(error_u))
        metrics["coverage@unknown"] = estimate(weighted((~abstain).astype(float)))
        metrics["unknown_error_drop"] = estimate(
            lambda i: weighted(wrong.astype(float))(i) - weighted(error_u)(i))
        seen = count > 0
        metrics["unknown_right_cost"] = estimate(lambda i: rate(cat["plain"]["right"], seen)(i)
                                                 - rate(right_u & ~abstain, seen)(i))
        for b in filled:
            metrics[f"abstains@{BINS[b][0]}"] = estimate(rate(abstain, bins == b))
    control = {"error_many": estimate(rate(wrong, many))}

    single = np.arange(n)  # the first training run's rows, for tables
    rows = []
    for b, (label, *_) in enumerate(BINS):
        sel = _bins(variant) == b
        row = {"mentions": label, "facts": int(sel.sum()),
               "query mass": round(float(variant.weight[sel].sum()), 3),
               "error (plain)": round(float(wrong[single][sel].mean()), 3) if sel.any() else None}
        if "unknown" in cat:
            row["abstains (unknown model)"] = (round(float(cat["unknown"]["abstains"][single][sel]
                                                           .mean()), 3) if sel.any() else None)
        rows.append(row)
    notes = [f"{cfg.people} people x {len(cfg.relations)} relations = {n} facts asked; "
             f"{cfg.mentions} training sentences about them and {cfg.helpers} helper people; "
             f"singleton rate {variant.singleton_rate:.3f}, "
             f"query mass never mentioned {variant.unseen_mass:.3f} (the Good-Turing estimate "
             "and its target)",
             f"each model trained from scratch, {cfg.steps} steps of 16 x 128 tokens on the "
             f"planted sentences: about {passes:.0f} passes over the plain model's corpus, so "
             "a fact mentioned once is read once per pass",
             "answers are scored, not generated: every object of the relation is a completion "
             "of the cut sentence; the plain model's answer is its most likely object"]
    if len(seeds) == 1:
        notes.append("one training run per model: the intervals hold no training-run variance; "
                     "the full profile trains three")
    figure = _figure(ctx, cfg, metrics)
    return Result(metrics=metrics, tables={"mention counts": rows}, figures=[figure], notes=notes,
                  control=Control(metrics=control, condition=(
                      f"facts mentioned {cfg.many} or more times, plain model")))


def _figure(ctx: Context, cfg: Config, metrics: dict[str, Estimate]) -> str:
    fig, axes = new_figure(width=4.4, height=3.6, ncols=2)
    ax = axes[0]
    labels = [label for label, *_ in BINS if f"error@{label}" in metrics]
    x = np.arange(len(labels))
    series = [("error", "wrong answers, plain model", "tab:red")]
    if "coverage@unknown" in metrics:
        series.append(("abstains", 'says "unknown", second model', "tab:green"))
    width = 0.8 / len(series)
    for k, (key, name, colour) in enumerate(series):
        est = [metrics[f"{key}@{label}"] for label in labels]
        at = x + (k - (len(series) - 1) / 2) * width
        ax.bar(at, [e.value for e in est], width=width, color=colour, alpha=0.7, label=name)
        ax.errorbar(at, [e.value for e in est],
                    yerr=[[max(e.value - e.ci_low, 0) for e in est],
                          [max(e.ci_high - e.value, 0) for e in est]],
                    fmt="none", color="k", capsize=2)
    sr = metrics["singleton_rate"].value
    ax.axhline(sr, color="k", ls="--", lw=1, label=f"singleton rate {sr:.2f}")
    ax.axhline(metrics["error"].value, color="tab:red", ls=":", lw=1,
               label=f"error on queries {metrics['error'].value:.2f}")
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
    ax.set_xlabel("mentions of the fact in training")
    ax.set_ylabel("share of facts")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("Error by mention count")
    ax = axes[1]
    ts = [0.0, *cfg.thresholds]
    cov = [metrics[f"coverage@t={t:g}"].value for t in ts]
    err = [metrics[f"confident_error@t={t:g}"].value for t in ts]
    ax.plot(cov, err, "o-", label="plain, abstain below t")
    for t, c, e in zip(ts, cov, err):
        ax.annotate(f"t={t:g}", (c, e), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if "coverage@unknown" in metrics:
        ax.plot(metrics["coverage@unknown"].value, metrics["confident_error@unknown"].value,
                "s", color="tab:green", label='trained to say "unknown"')
    ax.set_xlabel("coverage (share of queries answered)")
    ax.set_ylabel("confident errors (share of queries)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, None)
    ax.legend(fontsize=7)
    ax.set_title("Abstention: errors against coverage")
    save_figure(fig, ctx.artifact("hallucination.png"))
    return "hallucination.png"

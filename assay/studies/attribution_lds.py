"""Influence estimates predict retraining for convex models and much less for deep networks (3.1).

Claim (Koh and Liang 2017, arXiv 1703.04730; Basu, Pope and Feizi 2021, arXiv 2006.14651):
influence functions predict the effect of removing training data closely for convex models
such as logistic regression, and become fragile for deep networks, where the loss is not
convex and training does not reach a unique optimum.

Setup: one task for three models. Training examples are sentences of the world's
biographies, each stating one fact of a person (subject, relation and answer). Three of each
person's six facts are queries: the fact stated in the first paraphrase, scored on its answer,
while that sentence is kept out of training (the other paraphrases of the fact train, and so
does the first paraphrase of the person's other facts, so every model has read the wording,
never about a queried fact). A multinomial logistic regression and a one-hidden-layer MLP read
a sentence's words (bag of words, the answer's words removed) and predict its answer; a tiny
organism (the unit's tokenizer, a two-layer Llama of ``d_model`` width trained from scratch
with the recipe's trainer) reads the sentence as text and is scored on the answer's tokens
after the paraphrase's opening. Each model is trained on all sentences, then retrained from
the same initialisation and seed on random halves (``subsets``): on a CPU retraining is
deterministic, so retrains differ only by their subset. Per query, the linear datamodeling
score (LDS; Park et al. 2023) is the Spearman correlation over subsets between the loss an
attribution method predicts (minus the summed scores of the kept sentences) and the loss
after retraining. Methods: EK-FAC influence (kronfluence; damping equal to the penalty for the
two penalised models), TracIn over four checkpoints of the full run (the weights after each
quarter of the steps, the last being the final weights, with the learning rate there; for the
two models trained by gradient steps, since L-BFGS's iterates are not such a run), the gradient dot product at
the end, and BM25 (model-free). Intervals resample
people (a person's facts move together).

Verdict: `rule`: EK-FAC's LDS on logistic regression against ``good``, and logistic minus
organism LDS (paired by query) against zero (all parts must hold): supported when the convex
model's LDS clears ``good`` and the organism's lies below it, not supported when either lies
on the other side, inconclusive otherwise.

Negative control: the same test with the subsets' labels shuffled (each retrain's losses
paired with another subset's mask): the LDS must then sit at 0 for every model and the claim's
rule must not hold. What it can catch is narrow, and said plainly: subsets that are not
independent draws (a seeding slip that repeats or nests masks) keep their signal under the
shuffle and fire it, and so would retrains that ignore their subset in a way tied to the mask
order; a leak of the retrained losses into the scores would not fire it (the real LDS would
then read near 1, which the logistic regression's interval, short of 1, argues against).

Power: on s the quick profile (12 people, 132 sentences, 36 queries, 16 retrains per model;
under a minute on 2 cores) measured EK-FAC LDS 0.86 [0.81, 0.90] on logistic regression, 0.81
on the MLP and 0.77 [0.70, 0.83] on the tiny organism: a drop of 0.10 [0.04, 0.15], so a drop
of about 0.08 is the smallest it detects with 80% power. How far the organism falls depends
on how long it trains (``steps``: longer training leaves the regime where a linear
approximation holds); the full profile retrains on 64 subsets with 24 people. No
training-seed variance enters: the retrains are deterministic by design.
"""

from __future__ import annotations

import copy
import random
import re
from abc import ABC, abstractmethod
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from assay.methods.attribution import (
    LMLoss,
    LossSpec,
    bm25_scores,
    gradient_scores,
    influence_scores,
    lds,
    subset_masks,
    tokenized,
    tracin_scores,
)
from assay.methods.stats import Estimate, clustered_bootstrap, paired_difference
from assay.models import LM
from assay.studies._attribution_common import fact_sentences, influence_cache
from assay.study import Above, AllOf, Context, Control, Needs, Result, StudyConfig, study
from assay.study.figures import errorbars, new_figure, save_figure
from assay.training.data import PackedBatches, encode
from assay.training.organisms import fresh_model
from assay.training.recipes import RECIPES, Architecture
from assay.training.trainer import TrainConfig, lr_at, train
from assay.world.documents import completion_prompt, state

MODELS = ("logistic", "mlp", "organism")
CHECKPOINTS = 4  # TracIn's checkpoints along a training run
MLP_LR = 1e-2    # the MLP's Adam learning rate
METHODS = ("ekfac", "tracin", "dot", "bm25")
LABELS = {"logistic": "logistic regression", "mlp": "MLP", "organism": "tiny organism",
          "ekfac": "EK-FAC", "tracin": "TracIn", "dot": "gradient dot", "bm25": "BM25"}


class Config(StudyConfig):
    n_people: int = Field(12, ge=4)              # people whose biography sentences are trained on
    subsets: int = Field(16, ge=4)               # retrains per model, each on a random half
    fraction: float = Field(0.5, gt=0, lt=1)     # share of the sentences each retrain keeps
    l2: float = Field(1e-2, gt=0)                # logistic and MLP weight penalty (per sentence)
    hidden: int = Field(64, ge=4)                # the MLP's hidden units
    mlp_steps: int = Field(300, ge=10)           # full-batch Adam steps of the MLP
    d_model: int = Field(64, ge=16)              # the tiny organism's width (2 layers)
    steps: int = Field(60, ge=10)                # the tiny organism's training steps (batches of 16)
    lr: float = Field(3e-3, gt=0)                # the tiny organism's peak learning rate
    good: float = Field(0.5, gt=-1, lt=1)        # an LDS above this counts as predicting well
    n_boot: int = Field(2000, ge=100)            # bootstrap resamples of people

    FULL = {"n_people": 24, "subsets": 64, "n_boot": 4000}


def rule(cfg: Config) -> AllOf:
    """Influence predicts retraining of the convex model well, and of the organism worse."""
    return AllOf(
        Above("lds/logistic", bar=cfg.good, low=-1.0, high=1.0,
              what="EK-FAC LDS on logistic regression"),
        Above("lds_drop", bar=0.0, low=-2.0, high=2.0,
              what="EK-FAC LDS on logistic regression minus on the tiny organism, paired by query"),
        says={"supported": "influence predicts the convex model's retraining and the deep one's less",
              "not supported": "the convex model is not predicted well, or the deep one no worse",
              "inconclusive": "an interval contains its bar"})


@study("attribution-lds", agenda=["3.1"], needs=Needs(organism=True, trainable=True), rule=rule)
def run(cfg: Config, ctx: Context) -> Result:
    world, base = ctx.world(), ctx.lm()
    rng = random.Random(ctx.seed)
    people = rng.sample(world.people(), min(cfg.n_people, len(world.people())))
    # half of each person's facts are queries: their first paraphrase (which the query cuts
    # before its answer) never trains; the other facts' first paraphrases do, so every model
    # has read that wording, only never about a queried fact
    facts = [f for p in people for f in rng.sample(world.facts_about(p), 3)]
    queried = set(facts)
    train = [s for s in fact_sentences(world, people)
             if not (s.fact in queried and s.text == state(s.fact, 0))]
    masks = subset_masks(len(train), cfg.subsets, cfg.fraction, seed=ctx.seed)
    shuffled = masks[_derangement(cfg.subsets, ctx.seed)]
    bm25 = bm25_scores([completion_prompt(f) + " " + f.object for f in facts],
                       [s.text for s in train])

    found: dict[str, dict] = {}
    builders = {"logistic": _linear_task, "mlp": _linear_task, "organism": _organism_task}
    for j, name in enumerate(MODELS):
        task = builders[name](name, train, facts, base, cfg, ctx.seed)
        ctx.report(f"{LABELS[name]}: training on all {len(train)} sentences", j / 3)
        checkpoints: list[tuple[nn.Module, float]] = []
        full = task.fit(np.ones(len(train), bool), checkpoints)
        scores = {"ekfac": influence_scores(full, task.spec, task.queries, task.examples,
                                            influence_cache(), name=f"attribution-lds-{name}",
                                            damping=task.damping, seed=ctx.seed),
                  "dot": gradient_scores(full, task.spec, task.queries, task.examples),
                  "bm25": bm25}
        if checkpoints:  # trained by gradient steps (L-BFGS's are not: no TracIn there)
            scores["tracin"] = tracin_scores(checkpoints, task.spec, task.queries,
                                             task.examples)
        actual = np.zeros((cfg.subsets, len(facts)))
        for s, mask in enumerate(masks):
            ctx.report(f"{LABELS[name]}: retrain {s + 1}/{cfg.subsets}",
                       (j + (s + 1) / (cfg.subsets + 1)) / 3)
            actual[s] = task.measure(task.fit(mask))
        ctx.add_flops(task.flops * (cfg.subsets + 1))
        found[name] = {"lds": {m: lds(sc, masks, actual) for m, sc in scores.items()},
                       "shuffled": {m: lds(sc, shuffled, actual) for m, sc in scores.items()},
                       "full_loss": float(task.measure(full).mean())}
    ctx.report("intervals and figures", 1.0)

    who = np.array([f.subject for f in facts])
    metrics = _metrics(found, "lds", who, cfg, ctx.seed)
    control = _metrics(found, "shuffled", who, cfg, ctx.seed)
    rows = [{"model": LABELS[name], "method": LABELS[m],
             "LDS": round(float(found[name]["lds"][m].mean()), 4),
             "LDS, labels shuffled": round(float(found[name]["shuffled"][m].mean()), 4),
             "query loss (all data)": round(found[name]["full_loss"], 4)}
            for name in MODELS for m in METHODS if m in found[name]["lds"]]
    notes = [f"{len(train)} training sentences about {len(people)} people, {len(facts)} queries; "
             f"{cfg.subsets} retrains per model on {cfg.fraction:.0%} of the sentences, all "
             "from the same initialisation and seed (deterministic on a CPU: retrains differ "
             "only by their subset, so no training-seed variance enters the LDS)",
             "for reference: exact unrolled attribution reaches an LDS near 1 in this "
             "deterministic setting (Ilyas and Engstrom 2025) and EK-FAC about 0.44 on GPT-2 "
             "(kronfluence's documentation)"]
    figure = _figure(ctx, found, who, cfg)
    return Result(metrics=metrics, tables={"lds": rows}, figures=[figure], notes=notes,
                  control=Control(metrics=control, condition=(
                      "each retrain's losses paired with another subset's mask")))


def _derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of range(n) that moves every index (n >= 2): each retrain's
    losses meet another subset's mask."""
    rng = np.random.default_rng(seed + 1)
    while True:
        order = rng.permutation(n)
        if (order != np.arange(n)).all():
            return order


def _metrics(found, key: str, who: np.ndarray, cfg: Config, seed: int) -> dict[str, Estimate]:
    out = {}
    for name in MODELS:
        for m in found[name][key]:
            out[f"lds/{name}/{m}"] = clustered_bootstrap(found[name][key][m], who,
                                                         n_boot=cfg.n_boot, seed=seed)
        out[f"lds/{name}"] = out[f"lds/{name}/ekfac"]
    out["lds_drop"] = paired_difference(found["logistic"][key]["ekfac"],
                                        found["organism"][key]["ekfac"], who,
                                        n_boot=cfg.n_boot, seed=seed)
    out["lds_drop/mlp"] = paired_difference(found["logistic"][key]["ekfac"],
                                            found["mlp"][key]["ekfac"], who,
                                            n_boot=cfg.n_boot, seed=seed)
    return out


# ---- the three models, one interface ----------------------------------------------------------


class _Task(ABC):
    """A model class on the study's data: ``fit(mask)`` trains a fresh model (the same
    initialisation every time) on the kept sentences; ``measure(model)`` gives each query's
    loss; ``spec``, ``examples`` and ``queries`` feed the attribution methods."""

    spec: LossSpec
    damping: float | None = None  # the influence damping: the objective's own penalty, if any
    examples: list
    queries: list
    flops: float

    @abstractmethod
    def fit(self, mask: np.ndarray, checkpoints: list | None = None) -> nn.Module:
        """A model trained on the kept sentences; trained by gradient steps, it appends
        (weights, learning rate) at a few points of the run to ``checkpoints`` (TracIn)."""

    def measure(self, model: nn.Module) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([self.spec.measurement(model, torch.utils.data.default_collate(
                self.queries[i:i + 64])) for i in range(0, len(self.queries), 64)]).numpy()


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ce_losses(model: nn.Module, batch, sample: bool = False) -> torch.Tensor:
    x, y = batch
    logits = model(x)
    if sample:
        with torch.no_grad():
            y = torch.distributions.Categorical(logits=logits).sample()
    return F.cross_entropy(logits, y, reduction="none")


class _linear_task(_Task):
    """Bag-of-words features of a sentence without its answer's words; the answer as the
    class. ``logistic``: one linear layer, trained to its optimum with L-BFGS (convex: the
    optimum is unique). ``mlp``: a tanh hidden layer, full-batch Adam for a fixed number of
    steps from a seeded initialisation."""

    def __init__(self, name, train, facts, base, cfg: Config, seed: int) -> None:
        self.name, self.cfg, self.seed = name, cfg, seed
        answers = sorted({s.fact.object for s in train} | {f.object for f in facts})
        inputs = [[w for w in _words(s.text) if w not in set(_words(s.fact.object))]
                  for s in train]
        prompts = [_words(completion_prompt(f)) for f in facts]
        vocab = sorted({w for ws in inputs + prompts for w in ws})
        index = {w: i for i, w in enumerate(vocab)}
        label = {a: i for i, a in enumerate(answers)}

        def bag(words):
            x = torch.zeros(len(vocab))
            for w in words:
                x[index[w]] = 1.0
            return x

        self.examples = [(bag(ws), torch.tensor(label[s.fact.object]))
                         for ws, s in zip(inputs, train)]
        self.queries = [(bag(ws), torch.tensor(label[f.object])) for ws, f in zip(prompts, facts)]
        self.spec = LossSpec(_ce_losses)
        self.damping = cfg.l2  # the penalty's Hessian per example, as kronfluence averages
        self.shape = (len(vocab), len(answers))
        self.x = torch.stack([e[0] for e in self.examples])
        self.y = torch.stack([e[1] for e in self.examples])
        v, c, h = len(vocab), len(answers), cfg.hidden
        params, passes = (v * c, 100) if name == "logistic" else (v * h + h * c, cfg.mlp_steps)
        self.flops = 6 * params * len(train) * passes  # L-BFGS: about 100 passes

    def _fresh(self) -> nn.Module:
        v, c = self.shape
        with torch.random.fork_rng():  # the same initialisation every time, global state kept
            torch.manual_seed(self.seed)
            if self.name == "logistic":
                model = nn.Linear(v, c)
                nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)
                return model
            return nn.Sequential(nn.Linear(v, self.cfg.hidden), nn.Tanh(),
                                 nn.Linear(self.cfg.hidden, c))

    def _objective(self, model: nn.Module, keep: torch.Tensor) -> torch.Tensor:
        # summed loss over the kept sentences plus the penalty: removing a sentence removes
        # its term and nothing else, the setting influence functions describe
        losses = _ce_losses(model, (self.x[keep], self.y[keep]))
        penalty = sum((p ** 2).sum() for n, p in model.named_parameters() if "weight" in n)
        return losses.sum() + self.cfg.l2 * len(self.y) * penalty / 2

    def fit(self, mask: np.ndarray, checkpoints: list | None = None) -> nn.Module:
        keep = torch.as_tensor(mask)
        model = self._fresh()
        with torch.random.fork_rng():
            if self.name == "logistic":
                opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500,
                                        tolerance_grad=1e-9, tolerance_change=1e-12,
                                        line_search_fn="strong_wolfe")

                def closure():
                    opt.zero_grad()
                    loss = self._objective(model, keep)
                    loss.backward()
                    return loss

                opt.step(closure)
            else:
                opt = torch.optim.Adam(model.parameters(), lr=MLP_LR)
                every = max(1, self.cfg.mlp_steps // CHECKPOINTS)
                for step in range(self.cfg.mlp_steps):
                    opt.zero_grad()
                    (self._objective(model, keep) / len(self.y)).backward()
                    opt.step()
                    if checkpoints is not None and (step + 1) % every == 0:
                        checkpoints.append((copy.deepcopy(model).eval(), MLP_LR))
        return model.eval()


class _organism_task(_Task):
    """A two-layer Llama of width ``d_model`` on the unit's tokenizer, trained from the same
    initialisation with the recipe's trainer (`finetune` from a fresh model, the same batch
    seed for every retrain) on the kept sentences as text; queries are the held-out
    paraphrase's opening and the answer's tokens."""

    def __init__(self, name, train, facts, base, cfg: Config, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        d = cfg.d_model
        recipe = replace(RECIPES["xs"], model=Architecture(d_model=d, n_layer=2, n_head=4,
                                                           d_ff=4 * d, seq_len=64),
                         seed=seed)
        self.base = LM(fresh_model(recipe, base.tokenizer), base.tokenizer, spec="tiny")
        self.texts = [s.text for s in train]
        self.spec = LMLoss
        self.examples = tokenized(base, self.texts)
        self.queries = tokenized(base, [" " + f.object for f in facts],
                                 prompts=[completion_prompt(f) for f in facts])
        self.flops = 6 * self.base.n_params * cfg.steps * 16 * 64

    def fit(self, mask: np.ndarray, checkpoints: list | None = None) -> nn.Module:
        kept = [t for t, k in zip(self.texts, mask) if k]
        cfg = TrainConfig(steps=self.cfg.steps, lr=self.cfg.lr, warmup=10)
        tok = self.base.tokenizer
        batches = PackedBatches([(encode(tok, kept), 1.0)], 16, 64, self.base.pad_id,
                                seed=self.seed)
        model = copy.deepcopy(self.base.model)
        every = max(1, cfg.steps // CHECKPOINTS)

        def snapshot(p) -> None:  # the weights after every few steps, with the next rate
            if checkpoints is not None and p.step % every == 0:
                checkpoints.append((copy.deepcopy(model).eval(), lr_at(p.step, cfg)))

        train(model, batches.on(self.base.device), replace(cfg, log_every=every),
              on_progress=snapshot)
        return model.eval()


def _figure(ctx: Context, found, who: np.ndarray, cfg: Config) -> str:
    fig, axes = new_figure(width=4.4, height=3.8, ncols=2)
    x = np.arange(len(MODELS))
    for ax, key, title in ((axes[0], "lds", "LDS"), (axes[1], "shuffled", "labels shuffled (control)")):
        width = 0.8 / len(METHODS)
        for j, m in enumerate(METHODS):
            have = [i for i, name in enumerate(MODELS) if m in found[name][key]]
            est = [clustered_bootstrap(found[MODELS[i]][key][m], who, n_boot=1000,
                                       seed=ctx.seed) for i in have]
            y, err = errorbars(est)
            ax.bar(x[have] + (j - (len(METHODS) - 1) / 2) * width, y, width=width, yerr=err,
                   capsize=2, label=LABELS[m])
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(cfg.good, color="grey", lw=0.8, ls=":")
        ax.set_xticks(x, [LABELS[n] for n in MODELS], fontsize=8)
        ax.set_ylim(-0.4, 1.0)
        ax.set_title(title)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Spearman(predicted, retrained loss)")
    save_figure(fig, ctx.artifact("attribution_lds.png"))
    return "attribution_lds.png"

"""A pretrained model is calibrated on multiple choice, and post-training breaks it (4.3).

Claim (Kadavath et al. 2022, arXiv 2207.05221; OpenAI 2023, GPT-4 technical report, arXiv
2303.08774, Fig. 8: expected calibration error 0.007 for the pretrained model, 0.074 after
reinforcement learning from human feedback): a pretrained model's probabilities over
multiple-choice answers track how often it is right, and preference or safety finetuning
degrades that.

Setup: multiple-choice questions about people's facts in held-out wordings (no training
text asks them), the four options scored as answers in the chat format; the model's
confidence is the probability of the option it ranks first, renormalised over the four, and
it is right when that option is true (top-label calibration). Four models: the organism
before safety training (``s@pretrain`` for ``s``), the organism after it (``s``), and two
finetunes of the pretrained model with the same steps, learning rate and batch: one on its
own greedy answers to questions about every person in training wordings, stated as given
(the analogue of optimising for replies raters approve of: always an answer, never a hedge,
right or wrong), and one on neutral dialogues (the benign arithmetic and copying tasks,
which ask no fact). Per model: ECE over ``n_bins`` equal-mass bins, the debiased RMS
calibration error, Brier score, accuracy and a reliability diagram. Changes in ECE are
paired (the same questions for every model) with intervals that resample whole people.

Verdict: `rule`, two parts that must both hold: the pretrained model is calibrated (its ECE
interval below ``calibrated``), and post-training degrades it: the ECE of the safety-trained
organism or of the confidence finetune, minus the pretrained model's, above ``margin``
(Bonferroni over the two). Supported when both hold, not supported when either is
contradicted, inconclusive otherwise.

Negative control: `control`, the neutral finetune of the same length: training that teaches
no fact and rewards no answer must not raise ECE by more than ``margin``. A binning or
scoring artefact that raises ECE with any finetune (a confidence read off the wrong options,
bins that shift with the accuracy) fires it; a fall in ECE cannot fake the claim and does
not fire it (the neutral finetune lowers confidence a little, and ECE with it).

Power: measured on ``s``, seed 0, quick profile (3600 questions about all 200 people), the
pretrained model's ECE interval is about +-0.016 wide (0.042 [0.027, 0.059]) and the paired
ECE changes about +-0.007 to +-0.012 at the Bonferroni level, so a change counts as above the
0.03 margin from about 0.045 and as below it under about 0.015, and the pretrained model
counts as calibrated at an ECE under about 0.034. On ``s`` both parts straddle their bars
(the confidence finetune's change is 0.026 [0.015, 0.038]): the verdict is inconclusive.
``xs`` (40 people) gives intervals about four times as wide.
"""

from __future__ import annotations

import random

import numpy as np
from pydantic import Field

from assay.methods.evaluation import score_items
from assay.methods.stats import Estimate, bootstrap, wilson
from assay.methods.trust import (
    brier,
    ece,
    ece_difference,
    reliability,
    rms_calibration_error,
    top_label,
)
from assay.study import (
    Above,
    AllOf,
    AnyOf,
    Below,
    Context,
    Control,
    Needs,
    Result,
    StudyConfig,
    study,
)
from assay.study.figures import errorbars, new_figure, save_figure
from assay.training.finetune import finetune
from assay.training.recipes import base_stage
from assay.training.trainer import TrainConfig
from assay.world import Dialogue, dialogues, question_wordings
from assay.world.evals import multiple_choice

PRE, SAFETY, CONFIDENT, NEUTRAL = "pretrained", "safety-trained", "confidence finetune", "neutral finetune"
TREATED = (SAFETY, CONFIDENT)


class Config(StudyConfig):
    n_people: int = Field(200, ge=4)              # people asked about (6 facts x 3 wordings each)
    n_bins: int = Field(10, ge=2)                 # equal-mass bins of ECE
    finetune_prompts: int = Field(1200, ge=10)    # questions the confidence finetune answers
    steps: int = Field(150, ge=1)                 # steps of each finetune
    lr: float = Field(1e-3, gt=0)                 # their learning rate
    calibrated: float = Field(0.05, gt=0, lt=1)   # the pretrained model's ECE must lie below
    margin: float = Field(0.03, gt=0, lt=1)       # an ECE change beyond this is a change
    n_boot: int = Field(2000, ge=100)             # resamples of people

    FULL = {"finetune_prompts": 3000, "n_boot": 4000}


def rule(cfg: Config) -> AllOf:
    """The pretrained model is calibrated, and post-training degrades it."""
    level = f" (Bonferroni over {len(TREATED)})"
    return AllOf(
        Below(f"ece@{PRE}", bar=cfg.calibrated, low=0.0, high=1.0,
              what="ECE of the pretrained model"),
        AnyOf(*(Above(f"ece_change@{m}", bar=cfg.margin, low=-1.0, high=1.0,
                      what=f"ECE of the {m} model minus the pretrained one's{level}")
                for m in TREATED)),
        says={"supported": "calibrated before post-training, less calibrated after",
              "not supported": "a part of the claim is contradicted",
              "inconclusive": "an interval contains its bar"})


def control(cfg: Config) -> Above:
    """A neutral finetune of the same length raises ECE."""
    return Above(f"ece_change@{NEUTRAL}", bar=cfg.margin, low=-1.0, high=1.0,
                 what="ECE of the neutral finetune minus the pretrained one's",
                 says={"supported": "a finetune that teaches nothing about facts raised ECE: the "
                                    "measure rises with any training",
                       "not supported": "the neutral finetune does not raise ECE",
                       "inconclusive": "its interval reaches the margin"})


def _final(organism: str) -> str:
    """The organism at its last stage, replicate kept: ``s~1@pretrain`` -> ``s~1``."""
    return organism.partition("@")[0]


def confidences(lm, items) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the renormalised probability of the first-ranked option, and its hit."""
    scores, answers = score_items(lm, items)
    logits = np.stack(scores)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return top_label(probs / probs.sum(1, keepdims=True), answers)


def _own_answers(lm, world, n: int, seed: int) -> list[Dialogue]:
    """Questions about every person's facts in training wordings, answered with the model's
    own greedy reply, right or wrong."""
    rng = random.Random(f"confident-{seed}")
    pairs = [(p, r) for p in world.people() for r in world.person_relations]
    picks = [pairs[i] for i in sorted(rng.sample(range(len(pairs)), min(n, len(pairs))))]
    users = [rng.choice(question_wordings(r, "train")).format(s=p) for p, r in picks]
    replies = lm.generate(users, max_new_tokens=12, chat=True, batch_size=64)
    return [Dialogue(f"confident-{i}", "qa", u, a.strip(), "train", (world.fact(p, r),))
            for i, (u, a, (p, r)) in enumerate(zip(users, replies, picks)) if a.strip()]


@study("calibration-after-safety-training", agenda=["4.3"],
       needs=Needs(organism=True, trainable=True), rule=rule, control=control,
       organisms=lambda cfg, model: [base_stage(model.organism), _final(model.organism)])
def run(cfg: Config, ctx: Context) -> Result:
    world = ctx.world()
    people = random.Random(f"people-{ctx.seed}").sample(world.people(),
                                                        min(cfg.n_people, len(world.people())))
    items = multiple_choice(world, people=sorted(people), seed=ctx.seed)
    who = [item.subject for item in items]
    ctx.report("pretrained model", 0.0)
    pre = ctx.organism(base_stage(ctx.model.organism))
    ctx.report("safety-trained model", 0.15)
    models = {PRE: pre, SAFETY: ctx.organism(_final(ctx.model.organism))}
    train = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=min(10, cfg.steps // 4))
    ctx.report("confidence finetune: the pretrained model's own answers", 0.3)
    own = _own_answers(pre, world, cfg.finetune_prompts, ctx.seed)
    models[CONFIDENT] = finetune(pre, own, train, seed=ctx.seed)[0]
    ctx.report("neutral finetune: benign tasks", 0.5)
    neutral = dialogues(world, ("add", "copy", "reverse"), "train")
    models[NEUTRAL] = finetune(pre, neutral, train, seed=ctx.seed)[0]
    read = {}
    for k, (label, lm) in enumerate(models.items()):
        ctx.report(f"scoring {len(items)} questions: {label}", 0.6 + 0.1 * k)
        read[label] = confidences(lm, items)

    metrics: dict[str, Estimate] = {}
    for label, (conf, hit) in read.items():
        metrics[f"ece@{label}"] = ece(conf, hit, cfg.n_bins, clusters=who, n_boot=cfg.n_boot)
        metrics[f"rms_ce@{label}"] = rms_calibration_error(conf, hit, cfg.n_bins, clusters=who,
                                                           n_boot=cfg.n_boot)
        metrics[f"brier@{label}"] = brier(conf, hit)
        metrics[f"accuracy@{label}"] = wilson(int(hit.sum()), hit.size)
        metrics[f"confidence@{label}"] = bootstrap(conf, np.mean, n_boot=cfg.n_boot)
    level = 1 - 0.05 / len(TREATED)
    for label in TREATED:
        metrics[f"ece_change@{label}"] = ece_difference(*read[label], *read[PRE], who, cfg.n_bins,
                                                        cfg.n_boot, level)
    negative = {f"ece_change@{NEUTRAL}": ece_difference(*read[NEUTRAL], *read[PRE], who,
                                                        cfg.n_bins, cfg.n_boot),
                f"ece@{NEUTRAL}": metrics[f"ece@{NEUTRAL}"]}
    diagrams = {label: reliability(conf, hit, cfg.n_bins) for label, (conf, hit) in read.items()}
    rows = [{"model": label, "bin": b, "confidence": round(pt["confidence"], 4),
             "accuracy": round(pt["accuracy"].value, 4), "n": pt["n"]}
            for label, pts in diagrams.items() for b, pt in enumerate(pts)]
    summary = [{"model": label, **{k.split("@")[0]: round(e.value, 4)
                                   for k, e in metrics.items() if k.endswith(f"@{label}")}}
               for label in models]
    return Result(metrics=metrics, control=Control(metrics=negative, condition=(
        "a finetune of the pretrained model with the same steps and learning rate on benign "
        "arithmetic and copying dialogues, which ask no fact")),
        tables={"models": summary, "reliability": rows},
        figures=[_figure(ctx, diagrams)],
        notes=[f"{len(items)} questions about {len(people)} people (6 facts x 3 held-out "
               f"wordings each); the confidence finetune trained on {len(own)} of the "
               "pretrained model's own answers, "
               f"{sum(d.assistant == d.facts[0].object for d in own) / max(len(own), 1):.0%} "
               "of them right",
               "ece@MODEL uses equal-mass bins; rms_ce@MODEL is the debiased root-mean-square "
               "calibration error (Kumar et al. 2019), which reads near 0 for a calibrated "
               "model even on few questions"])


def _figure(ctx: Context, diagrams) -> str:
    fig, ax = new_figure(width=6.0)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for label, pts in diagrams.items():
        y, err = errorbars([pt["accuracy"] for pt in pts])
        ax.errorbar([pt["confidence"] for pt in pts], y, yerr=err, marker="o", capsize=2,
                    label=label)
    ax.set_xlabel("confidence (probability of the first-ranked option)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.2, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_title("Reliability: equal-mass bins, Wilson intervals")
    ax.legend(fontsize=7)
    save_figure(fig, ctx.artifact("reliability.png"))
    return "reliability.png"

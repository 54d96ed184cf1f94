"""Where does an organism recall a fact? Causal tracing (3.4).

Claim (Meng et al. 2022, arXiv 2202.05262): in GPT-style models, the states that carry a
fact's recall are concentrated at the subject's last token, in the MLP modules of early to
middle layers; late attention at the last token then moves the answer out.

Setup: questions about people the organism learned, one per fact, kept when the organism
gives the answer's first token probability >= ``min_p``. Each is traced
(`assay.methods.patching.trace`): the subject's token embeddings are corrupted with Gaussian
noise of ``noise_factor`` times the embeddings' spread, then each block output, MLP output
and attention output at each position is restored on its own. The heat maps show, per
layer and position group, the restored share of the probability the corruption removed
(mean restored minus mean corrupted, over mean clean minus mean corrupted). Intervals
resample people.

Verdict: `rule`: first the noise must remove at least ``min_damage`` of the answer's
probability (interval above it), else there is no recall to restore and the verdict is
inconclusive; then two parts, each by its interval: the largest MLP share restored at the
subject's last token in the early-to-middle layers (the first two thirds) lies above
``min_share``, and it exceeds the largest MLP share at the last token (their difference lies
above zero). Supported when both are, not supported when either lies on the wrong side of
its bar, inconclusive otherwise.

Negative control: `control`: the same two parts, traced on questions about ``n_control``
invented people the organism never saw, each asked one person relation whose "true" answer
is drawn at random from that relation's values, with the same noise; shares are in units of
the learned facts' damage. There is no recall of these answers to restore, so the subject's
MLPs must restore none of it; a pipeline whose "recall" is something else (the answer's
format or type coming back once the subject is restored, a leak of the answer) would.

Power: 60 facts: the damage interval is about +-0.08 and the early-versus-last MLP contrast
about +-0.08 to 0.14 (`s`, three draws), so a contrast of about 0.12 to 0.2 beyond its bar
is the smallest the quick profile detects with 80% power.
"""

from __future__ import annotations

import math
import random

import numpy as np
from pydantic import Field

from assay.errors import AssayError
from assay.methods.patching import GROUPS, TRACE_KINDS, grouped, noise_scale, trace
from assay.methods.stats import Estimate, cluster_resamples, from_draws
from assay.studies._interp_common import fictional_people
from assay.study import Above, AllOf, Context, Control, Given, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure
from assay.world import World, dialogues, question_wordings, render_prompt

KIND_NAMES = {"resid_post": "block output", "mlp_out": "MLP output", "attn_out": "attention output"}


class Config(StudyConfig):
    n_facts: int = Field(60, ge=4)         # facts traced
    samples: int = Field(3, ge=1)          # noise draws per fact
    noise_factor: float = Field(3.0, gt=0)  # noise sd, in units of the embeddings' sd
    min_p: float = Field(0.5, gt=0, lt=1)  # keep facts the organism answers this surely
    min_damage: float = Field(0.1, gt=0, lt=1)  # the noise must remove this much probability
    min_share: float = Field(0.1, gt=0, lt=1)   # the subject's MLPs must restore this share
    n_control: int = Field(20, ge=2)       # invented people traced for the control (one fact each)
    n_boot: int = Field(1000, ge=100)      # person-level bootstrap resamples

    FULL = {"n_facts": 300, "samples": 10, "n_control": 100, "n_boot": 2000}


def _subject_rule(cfg: Config) -> AllOf:
    """The subject's early MLPs restore a real share of the answer, more than the last token's."""
    return AllOf(
        Above("mlp_subject_early", bar=cfg.min_share,
              what="largest MLP share restored at the last subject token (early-to-middle "
                   "layers)"),
        Above("mlp_subject_minus_last", bar=0.0,
              what="that share minus the largest MLP share at the last token"),
        says={"supported": "recall is carried by the subject's early MLP states",
              "not supported": "the subject's early MLPs restore little of the answer, or "
                               "less than the last token's"})


def rule(cfg: Config) -> Given:
    """The noise damages recall; then the subject's early MLPs restore it, more than the
    last token's."""
    return Given(Above("damage", bar=cfg.min_damage, low=-1.0, high=1.0,
                       what="answer probability the noise removes"),
                 _subject_rule(cfg),
                 why="the noise on the subject barely lowers the answer's probability, so there "
                     "is no recall to restore")


def control(cfg: Config) -> AllOf:
    """The same two parts on invented people, whose answers cannot be recalled."""
    return _subject_rule(cfg)


@study("causal-tracing", agenda=["3.4"], needs=Needs(organism=True), rule=rule, control=control)
def run(cfg: Config, ctx: Context) -> Result:
    world, lm = ctx.world(), ctx.lm()
    pool = [d for d in dialogues(world, "qa", "test") if world.split_of(d.facts[0].subject) == "train"]
    random.Random(ctx.seed).shuffle(pool)
    noise = noise_scale(lm, [d.prompt for d in pool[: 4 * cfg.n_facts]], cfg.noise_factor)
    traces, people, tried = [], [], 0
    for d in pool:
        if len(traces) == cfg.n_facts:
            break
        tried += 1
        fact = d.facts[0]
        # the clean probability first (no restoring, one corrupted run), to trace only kept facts
        clean = trace(lm, d.prompt, fact.subject, fact.object, noise, kinds=(), samples=1)
        if clean.p_clean < cfg.min_p:
            continue
        tr = trace(lm, d.prompt, fact.subject, fact.object, noise, samples=cfg.samples,
                   seed=ctx.seed + tried)
        traces.append((d.prompt, fact.subject, fact.object, tr))
        people.append(fact.subject)
        ctx.report(f"tracing facts ({len(traces)}/{cfg.n_facts})", 0.7 * len(traces) / cfg.n_facts)
    if len(traces) < 2:
        raise AssayError(f"causal-tracing kept {len(traces)} of {tried} facts: the organism "
                         f"answers too few with probability >= {cfg.min_p}; lower min_p "
                         "(--set min_p=0.2)")
    people = np.array(people)
    G = np.stack([grouped(t[-1]) for t in traces])  # (F, K, L, len(GROUPS)) indirect effects
    gap = np.array([t[-1].p_clean - t[-1].p_corrupt for t in traces])  # (F,)
    draws = [i for i, _ in cluster_resamples(people, cfg.n_boot, ctx.seed)]
    heat = _share(G, gap.mean(), slice(None))
    L = lm.n_layers
    early = max(1, math.ceil(2 * L / 3))
    metrics: dict[str, Estimate] = {
        "mlp_subject_early": _heat_estimate(G, gap, early, draws, _subject_of),
        "mlp_subject_minus_last": _heat_estimate(G, gap, early, draws, _contrast_of),
        "damage": _mean(gap, draws),
        "p_clean": _mean(np.array([t[-1].p_clean for t in traces]), draws),
        "p_corrupt": _mean(np.array([t[-1].p_corrupt for t in traces]), draws),
    }
    for k, kind in enumerate(TRACE_KINDS):
        for g in ("last subject", "last token"):
            col = heat[k, :, GROUPS.index(g)]
            metrics[f"peak@{kind}@{g}"] = from_draws(
                float(np.nanmax(col)),
                np.array([np.nanmax(_share(G, gap[d].mean(), d)[k, :, GROUPS.index(g)])
                          for d in draws]), len(traces), "bootstrap-clustered (person)")

    # Control: invented people, random answers, the same noise; shares in the learned facts' units.
    questions = _fictional_questions(world, cfg.n_control, ctx.seed)
    made = []
    for i, (prompt, subject, answer) in enumerate(questions):
        ctx.report(f"control: tracing invented people ({i}/{len(questions)})",
                   0.7 + 0.25 * i / len(questions))
        made.append(trace(lm, prompt, subject, answer, noise, samples=cfg.samples,
                          seed=ctx.seed + 1_000_003 + i))
    G0 = np.stack([grouped(tr) for tr in made])
    gap0 = np.array([tr.p_clean - tr.p_corrupt for tr in made])
    draws0 = [i for i, _ in cluster_resamples(np.array([q[1] for q in questions]), cfg.n_boot, ctx.seed)]
    scale = np.full(len(made), gap.mean())  # the learned facts' damage, held fixed
    heat0 = _share(G0, gap.mean(), slice(None))
    control_metrics = {
        "mlp_subject_early": _heat_estimate(G0, scale, early, draws0, _subject_of),
        "mlp_subject_minus_last": _heat_estimate(G0, scale, early, draws0, _contrast_of),
        "damage": _mean(gap0, draws0),
        "p_clean": _mean(np.array([tr.p_clean for tr in made]), draws0),
    }
    table = [{"site": KIND_NAMES[kind], "layer": layer,
              **{g: round(float(heat[k, layer, j]), 4) for j, g in enumerate(GROUPS)}}
             for k, kind in enumerate(TRACE_KINDS) for layer in range(L)]
    table0 = [{"site": KIND_NAMES[kind], "layer": layer,
               **{g: round(float(heat0[k, layer, j]), 4) for j, g in enumerate(GROUPS)}}
              for k, kind in enumerate(TRACE_KINDS) for layer in range(L)]
    best = int(np.argmax(gap))
    return Result(
        metrics=metrics, tables={"indirect_effect": table, "control_indirect_effect": table0},
        control=Control(
            metrics=control_metrics,
            condition=f"{len(made)} invented people the organism never saw, each asked one "
                      "relation with a random answer, traced with the same noise"),
        figures=[_figure(ctx, heat, traces[best], L)],
        notes=[f"Traced {len(traces)} facts of {tried} tried (the rest had clean probability "
               f"below {cfg.min_p}); noise sd {noise:.4f}; the answer's probability is that of "
               "its first token.", _peaks(heat, early),
               "Control shares are restored probability over the learned facts' mean damage "
               f"({gap.mean():.3f}); the invented people's own damage is "
               f"{gap0.mean():+.3f}."])


def _fictional_questions(world: World, n: int, seed: int) -> list[tuple[str, str, str]]:
    """(prompt, subject, answer) about ``n`` invented people, cycling through the person
    relations, each in a random wording with an answer drawn from the relation's values."""
    rng = random.Random(f"tracing-control-{seed}")
    relations = world.person_relations
    values = {r: sorted({f.object for f in world.facts if f.relation == r}) for r in relations}
    out = []
    for i, person in enumerate(fictional_people(world, n, seed)):
        rel = relations[i % len(relations)]
        question = rng.choice(question_wordings(rel, "test")).format(s=person)
        out.append((render_prompt(question), person, rng.choice(values[rel])))
    return out


def _share(G: np.ndarray, damage: float, idx) -> np.ndarray:
    """(K, L, groups): mean indirect effect over the facts in ``idx``, over ``damage``."""
    return np.nanmean(G[idx], 0) / damage


def _subject_of(heat: np.ndarray, early: int) -> float:
    """The largest MLP effect at the subject's last token in the early-to-middle layers."""
    k, g = TRACE_KINDS.index("mlp_out"), GROUPS.index("last subject")
    return float(np.nanmax(heat[k, :early, g]))


def _contrast_of(heat: np.ndarray, early: int) -> float:
    """That MLP effect at the subject's last token minus its largest effect at the last token."""
    last = np.nanmax(heat[TRACE_KINDS.index("mlp_out"), :, GROUPS.index("last token")])
    return _subject_of(heat, early) - float(last)


def _heat_estimate(G: np.ndarray, gap: np.ndarray, early: int, draws, stat) -> Estimate:
    """``stat(heat, early)`` with shares over the mean of ``gap`` (resampled with the facts)."""
    point = stat(_share(G, gap.mean(), slice(None)), early)
    boot = np.array([stat(_share(G, gap[d].mean(), d), early) for d in draws])
    return from_draws(point, boot, len(G), "bootstrap-clustered (person)")


def _mean(x: np.ndarray, draws) -> Estimate:
    return from_draws(float(x.mean()), np.array([x[d].mean() for d in draws]), x.size,
                    "bootstrap-clustered (person)")


def _peaks(heat: np.ndarray, early: int) -> str:
    """Where MLP and attention effects peak, in words."""
    k, a = TRACE_KINDS.index("mlp_out"), TRACE_KINDS.index("attn_out")
    layer, group = np.unravel_index(np.nanargmax(heat[k]), heat[k].shape)
    a_layer, a_group = np.unravel_index(np.nanargmax(heat[a]), heat[a].shape)
    subject = np.nanmax(heat[k, :early, GROUPS.index("last subject")])
    return (f"MLP effects peak at the {GROUPS[group]} in layer {layer} "
            f"({heat[k, layer, group]:.2f} of the damage restored); at the last subject token "
            f"(layers 0-{early - 1}) they reach {subject:.2f}; attention peaks at the "
            f"{GROUPS[a_group]} in layer {a_layer} ({heat[a, a_layer, a_group]:.2f}).")


def _figure(ctx: Context, heat: np.ndarray, example, L: int) -> str:
    fig, axes = new_figure(2.9, 3.4, ncols=len(TRACE_KINDS) + 1)
    vmax = float(np.nanmax(heat))
    for ax, (k, kind) in zip(axes, enumerate(TRACE_KINDS)):
        im = ax.imshow(heat[k].T, aspect="auto", cmap="Purples", vmin=0, vmax=vmax,
                       origin="upper")
        ax.set_xticks(range(L))
        ax.set_xlabel("layer")
        ax.set_yticks(range(len(GROUPS)), GROUPS if k == 0 else [""] * len(GROUPS), fontsize=7)
        ax.set_title(f"restoring the {KIND_NAMES[kind]}", fontsize=9)
    fig.colorbar(im, ax=axes[len(TRACE_KINDS) - 1], fraction=0.05, label="share restored")
    _, _, answer, tr = example
    ax = axes[-1]
    share = (tr.restored[0] - tr.p_corrupt) / max(tr.p_clean - tr.p_corrupt, 1e-9)  # (L, T)
    ax.imshow(share.T, aspect="auto", cmap="Purples", vmin=0, vmax=1)
    labels = [t.replace("Ġ", " ") + ("*" if i in tr.subject else "")
              for i, t in enumerate(tr.tokens)]
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xticks(range(L))
    ax.set_xlabel("layer")
    ax.set_title(f"one fact, block output\n(* subject) -> {answer}", fontsize=8)
    save_figure(fig, ctx.artifact("causal_tracing.png"))
    return "causal_tracing.png"

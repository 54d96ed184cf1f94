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
(mean restored minus mean corrupted, over mean clean minus mean corrupted). Verdict: the
MLP effect at the subject's last token in the early-to-middle layers (the first two thirds)
against the largest MLP effect at the last token, their difference with an interval that
resamples people: supported when it lies above zero.

Negative control: the same tracing into the clean run itself (no noise). Restoring any
state of a clean run must give back exactly the clean probability (100% recovered), so
there is no effect to find anywhere.
"""

from __future__ import annotations

import math
import random

import numpy as np
from pydantic import Field

from assay.errors import AssayError
from assay.methods.patching import GROUPS, TRACE_KINDS, grouped, noise_scale, trace
from assay.methods.stats import Estimate
from assay.report.figures import new_figure, save_figure
from assay.studies import Context, Control, Needs, Result, StudyConfig, Verdict, study
from assay.studies._eval_common import estimate
from assay.studies._interp_common import boot_people
from assay.world import dialogues

KIND_NAMES = {"resid_post": "block output", "mlp_out": "MLP output", "attn_out": "attention output"}


class Config(StudyConfig):
    n_facts: int = Field(60, ge=4)         # facts traced
    samples: int = Field(3, ge=1)          # noise draws per fact
    noise_factor: float = Field(3.0, gt=0)  # noise sd, in units of the embeddings' sd
    min_p: float = Field(0.5, gt=0, lt=1)  # keep facts the organism answers this surely
    n_control: int = Field(10, ge=1)       # facts traced into their own clean run
    n_boot: int = Field(1000, ge=100)

    FULL = {"n_facts": 300, "samples": 10, "n_control": 40, "n_boot": 2000}


@study("causal-tracing", agenda=["3.4"], needs=Needs())
def run(cfg: Config, ctx: Context) -> Result:
    name = ctx.organism_recipe("causal-tracing", "its facts are the organism's world")
    world, lm = ctx.world(name), ctx.lm()
    pool = [d for d in dialogues(world, "qa", "test") if world.split_of(d.facts[0].subject) == "train"]
    random.Random(ctx.seed).shuffle(pool)
    noise = noise_scale(lm, [d.prompt for d in pool[: 4 * cfg.n_facts]], cfg.noise_factor)
    traces, people, tried = [], [], 0
    for d in pool:
        if len(traces) == cfg.n_facts:
            break
        tried += 1
        fact = d.facts[0]
        tr = trace(lm, d.prompt, fact.subject, fact.object, noise, samples=cfg.samples,
                   seed=ctx.seed + tried)
        if tr.p_clean >= cfg.min_p:
            traces.append((d, tr))
            people.append(fact.subject)
        ctx.report(f"tracing facts ({len(traces)}/{cfg.n_facts})", 0.85 * len(traces) / cfg.n_facts)
    if len(traces) < 2:
        raise AssayError(f"causal-tracing kept {len(traces)} of {tried} facts: the organism "
                         f"answers too few with probability >= {cfg.min_p}; lower min_p "
                         "(--set min_p=0.2)")
    people = np.array(people)
    G = np.stack([grouped(tr) for _, tr in traces])  # (F, K, L, len(GROUPS)) indirect effects
    gap = np.array([tr.p_clean - tr.p_corrupt for _, tr in traces])  # (F,)
    draws = boot_people(people, cfg.n_boot, ctx.seed)
    heat = _share(G, gap, slice(None))
    L = lm.n_layers
    early = max(1, math.ceil(2 * L / 3))
    point = _contrast(heat, early)
    contrast = estimate(point, np.array([_contrast(_share(G, gap, d), early) for d in draws]),
                        len(traces), "bootstrap-clustered (person)")
    metrics: dict[str, Estimate] = {
        "mlp_subject_minus_last": contrast,
        "p_clean": _mean(np.array([tr.p_clean for _, tr in traces]), draws),
        "p_corrupt": _mean(np.array([tr.p_corrupt for _, tr in traces]), draws),
    }
    for k, kind in enumerate(TRACE_KINDS):
        for g in ("last subject", "last token"):
            col = heat[k, :, GROUPS.index(g)]
            metrics[f"peak@{kind}@{g}"] = estimate(
                float(np.nanmax(col)), np.array([np.nanmax(_share(G, gap, d)[k, :, GROUPS.index(g)])
                                                 for d in draws]), len(traces),
                "bootstrap-clustered (person)")
    table = [{"site": KIND_NAMES[kind], "layer": layer,
              **{g: round(float(heat[k, layer, j]), 4) for j, g in enumerate(GROUPS)}}
             for k, kind in enumerate(TRACE_KINDS) for layer in range(L)]

    ctx.report("control: tracing into the clean run", 0.9)
    ratios = []
    for d, _ in traces[: cfg.n_control]:
        fact = d.facts[0]
        tr = trace(lm, d.prompt, fact.subject, fact.object, 0.0, samples=1)
        ratios.append((tr.restored / tr.p_clean).ravel())
    ratios = np.concatenate(ratios)
    deviation = float(np.abs(ratios - 1).max())
    recovered = Estimate(value=float(ratios.mean()), ci_low=float(ratios.min()),
                         ci_high=float(ratios.max()), n=ratios.size, method="min-max over sites")
    return Result(
        metrics=metrics, tables={"indirect_effect": table},
        verdict=_verdict(contrast, heat, early, L, noise, cfg),
        control=Control(
            verdict=Verdict(
                status="not supported" if deviation < 1e-6 else "supported",
                test="restoring a state of the clean run changes the answer probability",
                statement=(f"Restoring every state of {min(cfg.n_control, len(traces))} clean runs "
                           f"into themselves recovers {100 * recovered.value:.4f}% of the clean "
                           f"probability (largest deviation {deviation:.1e}).")),
            metrics={"recovered@clean": recovered}),
        figures=[_figure(ctx, heat, traces[int(np.argmax(gap))], L)],
        notes=[f"Traced {len(traces)} facts of {tried} tried (the rest had clean probability "
               f"below {cfg.min_p}); noise sd {noise:.4f}; the answer's probability is that of "
               "its first token."])


def _share(G: np.ndarray, gap: np.ndarray, idx) -> np.ndarray:
    """(K, L, groups): mean indirect effect over the facts in ``idx`` / their mean damage."""
    return np.nanmean(G[idx], 0) / gap[idx].mean()


def _contrast(heat: np.ndarray, early: int) -> float:
    """MLP effect at the subject's last token (early-to-middle layers) minus its largest
    effect at the last token."""
    k = TRACE_KINDS.index("mlp_out")
    subject = np.nanmax(heat[k, :early, GROUPS.index("last subject")])
    last = np.nanmax(heat[k, :, GROUPS.index("last token")])
    return float(subject - last)


def _mean(x: np.ndarray, draws) -> Estimate:
    return estimate(float(x.mean()), np.array([x[d].mean() for d in draws]), x.size,
                    "bootstrap-clustered (person)")


def _verdict(contrast: Estimate, heat, early: int, L: int, noise: float, cfg: Config) -> Verdict:
    k = TRACE_KINDS.index("mlp_out")
    layer, group = np.unravel_index(np.nanargmax(heat[k]), heat[k].shape)
    a = TRACE_KINDS.index("attn_out")
    a_layer, a_group = np.unravel_index(np.nanargmax(heat[a]), heat[a].shape)
    if contrast.ci_low > 0:
        status = "supported"
    elif contrast.ci_high < 0:
        status = "not supported"
    else:
        status = "inconclusive"
    return Verdict(
        status=status,
        test=f"MLP effect at the last subject token (layers 0-{early - 1}) minus at the last "
             "token, CI low > 0",
        statement=(f"MLP effects peak at the {GROUPS[group]} in layer {layer} "
                   f"({heat[k, layer, group]:.2f} of the damage restored); at the last subject "
                   f"token they reach {np.nanmax(heat[k, :early, GROUPS.index('last subject')]):.2f}"
                   f" (difference {contrast.value:+.2f} [{contrast.ci_low:+.2f}, "
                   f"{contrast.ci_high:+.2f}]); attention peaks at the {GROUPS[a_group]} in "
                   f"layer {a_layer} ({heat[a, a_layer, a_group]:.2f})."))


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
    d, tr = example
    ax = axes[-1]
    share = (tr.restored[0] - tr.p_corrupt) / max(tr.p_clean - tr.p_corrupt, 1e-9)  # (L, T)
    ax.imshow(share.T, aspect="auto", cmap="Purples", vmin=0, vmax=1)
    labels = [t.replace("Ġ", " ") + ("*" if i in tr.subject else "")
              for i, t in enumerate(tr.tokens)]
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xticks(range(L))
    ax.set_xlabel("layer")
    ax.set_title(f"one fact, block output\n(* subject) -> {d.facts[0].object}", fontsize=8)
    save_figure(fig, ctx.artifact("causal_tracing.png"))
    return "causal_tracing.png"

"""High probe accuracy does not show that a model uses the information (3.4).

Claim (Hewitt and Liang 2019, arXiv 1909.03368): a probe's accuracy mixes what the
representation encodes with what the probe can learn by itself. A control task keeps the
inputs and gives every entity a random but consistent label; a flexible (MLP) probe reaches
high control accuracy, so its selectivity (task minus control accuracy) is low, while a
linear probe stays more selective.

Setup: every question template of every person relation asked about each person the
organism learned, read at the subject's last token at each layer of the residual stream.
For several attributes (profession, hobby, ...), linear and MLP probes are trained on two
thirds of the templates and tested on the other third, for the real attribute and for its
control task (random labels per person with the real label frequencies). Intervals resample
people in the test set.

Verdict: `rule`: linear minus MLP selectivity, averaged over attributes and block outputs,
against zero: supported when its interval lies above zero, not supported when below,
inconclusive when it contains zero.

Negative control: the same rule on an attribute the organism never saw (a random label per
person). Its "real" task is itself a random per-person labelling, statistically the same as
its control task, so selectivity must vanish for both probes and the linear probe's
advantage with it; probes that see the labels some other way (a leak between training and
test rows, control labels drawn unlike the task's) would show an advantage here.

Power: 960 probe readings: the selectivity advantage's interval is about +-0.01, so an
advantage of about 0.015 beyond its bar is detected with 80% power.
"""

from __future__ import annotations

import copy

import numpy as np
from pydantic import Field, field_validator

from assay.methods.patching import read_positions
from assay.methods.probes import Probe, control_labels
from assay.methods.stats import Estimate, cluster_resamples, from_draws
from assay.studies._interp_common import person_attributes, question_rows, site_label, sites_of
from assay.study import Above, Context, Control, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure

KINDS = ("linear", "mlp")
UNSEEN = "unseen attribute"  # the negative control's attribute


class Config(StudyConfig):
    attributes: list[str] = ["profession", "hobby", "birth_city"]  # real person attributes
    n_people: int = Field(160, ge=10)    # people the organism learned (train split)
    C: float = Field(1.0, gt=0)          # linear probe: inverse L2 strength
    hidden: int = Field(128, ge=4)       # MLP probe: hidden width
    max_iter: int = Field(150, ge=10)    # optimiser iterations for both probes
    unseen_classes: int = Field(20, ge=2)  # label count of the never-seen control attribute
    n_boot: int = Field(500, ge=100)     # person-level bootstrap resamples

    FULL = {"attributes": ["profession", "hobby", "birth_city", "alma_mater", "employer"],
            "hidden": 256, "max_iter": 400, "n_boot": 2000}

    _known = field_validator("attributes")(lambda cls, v: person_attributes(v))


def rule(cfg: Config) -> Above:
    """The linear probe is more selective than the MLP probe."""
    return Above("selectivity_advantage", bar=0.0, low=-2.0, high=2.0,
                 what="linear minus MLP selectivity",
                 says={"supported": "the linear probe is the more selective",
                       "not supported": "the MLP probe is the more selective",
                       "inconclusive": "the interval contains zero: no difference shown"})


@study("probe-selectivity", agenda=["3.4"], needs=Needs(organism=True), rule=rule)
def run(cfg: Config, ctx: Context) -> Result:
    world, lm = ctx.world(), ctx.lm()
    people = world.people("train")[: cfg.n_people]
    rows = question_rows(lm, world, people, world.person_relations)
    sites = sites_of(lm)
    ctx.report("reading activations", 0.05)
    acts = read_positions(lm, rows.ids, rows.positions["last subject"], sites)
    test = rows.templates % 3 == 2  # a third of the contexts held out; every person on both sides
    train = ~test
    rng = np.random.default_rng(ctx.seed)
    unseen = {p: f"u{rng.integers(cfg.unseen_classes)}" for p in people}
    labels = {a: np.array([world.entities[p].attributes[a] for p in rows.people])
              for a in cfg.attributes}
    labels[UNSEEN] = np.array([unseen[p] for p in rows.people])

    # hits[attr][kind][task] is (S, N_test): per site, whether each test row was right
    hits: dict = {}
    jobs = len(labels) * len(KINDS)
    for a, (attr, y) in enumerate(labels.items()):
        control = control_labels(rows.people, y, ctx.seed)
        hits[attr] = {}
        for k, kind in enumerate(KINDS):
            ctx.report(f"probing {attr} ({kind})", 0.1 + 0.85 * (a * len(KINDS) + k) / jobs)
            probe = Probe(kind, C=cfg.C, hidden=cfg.hidden, max_iter=cfg.max_iter, seed=ctx.seed)
            hits[attr][kind] = {
                task: np.stack([copy.deepcopy(probe).fit(acts[s][train], t[train])
                                .predict(acts[s][test]) == t[test] for s in sites])
                for task, t in (("task", y), ("control", control))}

    draws = [i for i, _ in cluster_resamples(rows.people[test], cfg.n_boot, ctx.seed)]
    real = cfg.attributes
    advantage = _advantage(hits, real, draws)
    metrics: dict[str, Estimate] = {"selectivity_advantage": advantage}
    table = []
    for attr in [*real, UNSEEN]:
        for kind in KINDS:
            task, ctrl = hits[attr][kind]["task"].mean(1), hits[attr][kind]["control"].mean(1)
            for s, site in enumerate(sites):
                table.append({"attribute": attr, "probe": kind, "site": site,
                              "task accuracy": round(float(task[s]), 4),
                              "control accuracy": round(float(ctrl[s]), 4),
                              "selectivity": round(float(task[s] - ctrl[s]), 4)})
    for kind in KINDS:
        metrics[f"control_accuracy@{kind}"] = _mean_estimate(hits, real, kind, "control", draws)
        metrics[f"task_accuracy@{kind}"] = _mean_estimate(hits, real, kind, "task", draws)
        metrics[f"selectivity@{kind}"] = _mean_estimate(hits, real, kind, None, draws)
    control_adv = _advantage(hits, [UNSEEN], draws)
    control_sel = {kind: _mean_estimate(hits, [UNSEEN], kind, None, draws) for kind in KINDS}
    lin, mlp = metrics["selectivity@linear"], metrics["selectivity@mlp"]
    return Result(
        metrics=metrics, tables={"probes": table},
        control=Control(metrics={"selectivity_advantage": control_adv,
                                 **{f"selectivity@{k}": v for k, v in control_sel.items()}},
                        condition="an attribute the organism never saw: a random label per person"),
        figures=[_figure(ctx, hits, real, sites)],
        notes=["Probes read the subject's last token; averages are over the attributes and the "
               "block outputs (the embedding of one token carries no context).",
               f"On {', '.join(real)}: selectivity linear {lin.value:+.3f} vs MLP {mlp.value:+.3f};"
               f" control accuracy MLP {metrics['control_accuracy@mlp'].value:.2f} vs linear "
               f"{metrics['control_accuracy@linear'].value:.2f}."])


def _stat(hits, attrs, kind: str, task: str | None, idx) -> float:
    """Mean over attributes and block outputs of accuracy (task or control) or selectivity."""
    vals = []
    for attr in attrs:
        h = hits[attr][kind]
        t, c = h["task"][1:, idx].mean(1), h["control"][1:, idx].mean(1)
        vals.append(t - c if task is None else (t if task == "task" else c))
    return float(np.mean(vals))


def _mean_estimate(hits, attrs, kind, task, draws) -> Estimate:
    every = slice(None)
    point = _stat(hits, attrs, kind, task, every)
    n = hits[attrs[0]][kind]["task"].shape[1]
    return from_draws(point, np.array([_stat(hits, attrs, kind, task, d) for d in draws]), n,
                    "bootstrap-clustered (person)")


def _advantage(hits, attrs, draws) -> Estimate:
    def diff(idx):
        return (_stat(hits, attrs, "linear", None, idx) - _stat(hits, attrs, "mlp", None, idx))

    n = hits[attrs[0]]["linear"]["task"].shape[1]
    return from_draws(diff(slice(None)), np.array([diff(d) for d in draws]), n,
                    "bootstrap-clustered (person)")


def _figure(ctx: Context, hits, attrs, sites) -> str:
    fig, (ax1, ax2) = new_figure(4.6, 3.6, ncols=2)
    x = np.arange(len(sites))
    colours = {"linear": "tab:blue", "mlp": "tab:orange"}
    for kind in KINDS:
        task = np.mean([hits[a][kind]["task"].mean(1) for a in attrs], 0)
        ctrl = np.mean([hits[a][kind]["control"].mean(1) for a in attrs], 0)
        ax1.plot(x, task, "-o", color=colours[kind], label=f"{kind}: attribute")
        ax1.plot(x, ctrl, "--s", color=colours[kind], label=f"{kind}: control task")
        for a in attrs:
            sel = hits[a][kind]["task"].mean(1) - hits[a][kind]["control"].mean(1)
            ax2.plot(x, sel, color=colours[kind], alpha=0.35, lw=1)
        ax2.plot(x, task - ctrl, "-o", color=colours[kind], lw=2.2, label=f"{kind} (mean)")
    for ax in (ax1, ax2):
        ax.set_xticks(x, [site_label(s) for s in sites])
        ax.set_xlabel("residual stream after")
    ax1.set_ylabel("held-out accuracy")
    ax1.set_title("probes at the subject's last token")
    ax1.legend(fontsize=7)
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set_ylabel("selectivity (task - control)")
    ax2.set_title("selectivity per attribute (thin) and mean")
    ax2.legend(fontsize=7)
    save_figure(fig, ctx.artifact("probe_selectivity.png"))
    return "probe_selectivity.png"

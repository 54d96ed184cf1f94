"""Where a probe decodes an attribute best is not where the model uses it (3.4).

Claim (e.g. Belinkov 2022, arXiv 2102.12452; Elazar et al. 2021, arXiv 2006.00995): decoding
accuracy and causal role come apart. The site where a linear probe reads an attribute most
accurately is not the site where moving the activation along the probe's own direction
changes the model's answer most.

Setup: for each attribute (profession, hobby, ...), the organism is asked for it about
every person it learned, in three question wordings. At two positions (the subject's last
token and the prompt's last token) and at every layer of the residual stream, a linear probe
is trained on two wordings and tested on the third (decoding accuracy). Intervention: on the
held-out wording, the activation at that one site and position is moved along the probe's
direction for (target value - true value) until the probe's reading equals the target
class's mean, for a random target; the causal effect is the share of prompts whose answer
(the most likely of the attribute's values) becomes the target. Also reported: the rank
correlation of decoding accuracy and causal effect over all sites. Intervals resample
people.

Verdict: `rule`: first the edits must move answers somewhere: the largest causal effect
(per attribute, averaged) must lie above ``margin``, else there is no causal role to compare
and the verdict is inconclusive; then the shortfall of the effect at the best-decoding site
from the largest effect (averaged over attributes) against ``margin``: supported when its
interval lies above, not supported below, inconclusive across.

Negative control: the same rule read on edits along random directions of the same length
at the same sites. Random directions carry no attribute, so they must move no answer (the
precondition fails: inconclusive) and show no shortfall; edits so large that any direction
breaks the answer at some sites (or a broken edit) would pass both and read supported.

Power: 160 items: the maximum edit effect is about +-0.04 and the probe-versus-causal gap
about +-0.01 to 0.07 (three draws of `s`), so a gap of about 0.1 beyond its bar is the
smallest detected with 80% power.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from assay.methods.patching import edited_choice_logprobs, read_positions
from assay.methods.probes import Probe
from assay.methods.stats import Estimate, cluster_resamples, from_draws
from assay.methods.steering import random_direction
from assay.studies._interp_common import (
    POSITIONS,
    person_attributes,
    question_rows,
    site_label,
    sites_of,
)
from assay.study import Above, Context, Control, Given, Needs, Result, StudyConfig, study
from assay.study.figures import new_figure, save_figure


class Config(StudyConfig):
    attributes: list[str] = ["profession", "hobby", "birth_city"]  # person attributes asked
    n_people: int = Field(160, ge=10)   # people the organism learned (train split)
    margin: float = Field(0.1, gt=0, lt=1)  # a shortfall (or a largest effect) below this is none
    n_boot: int = Field(500, ge=100)    # person-level bootstrap resamples

    FULL = {"attributes": ["profession", "hobby", "birth_city", "alma_mater", "employer"],
            "n_boot": 2000}

    _known = field_validator("attributes")(lambda cls, v: person_attributes(v))


def rule(cfg: Config) -> Given:
    """The edits move answers somewhere; then the best-decoding site falls short of the best."""
    return Given(
        Above("max_effect", bar=cfg.margin, low=0.0, high=1.0,
              what="largest causal effect over sites (mean over attributes)"),
        Above("gap", bar=cfg.margin, low=0.0, high=1.0,
              what="largest causal effect minus the effect at the best-decoding site",
              says={"supported": "decoding and causal role come apart",
                    "not supported": "the best-decoding site is (nearly) where edits act most",
                    "inconclusive": f"the interval contains {cfg.margin}"}),
        why="edits along these directions move too few answers anywhere to compare sites")


@study("probe-vs-causal", agenda=["3.4"], needs=Needs(organism=True), rule=rule)
def run(cfg: Config, ctx: Context) -> Result:
    world, lm = ctx.world(), ctx.lm()
    people = world.people("train")[: cfg.n_people]
    sites = sites_of(lm)
    points = [(pos, site) for pos in POSITIONS for site in sites]
    per_attr = {}
    for a, attr in enumerate(cfg.attributes):
        ctx.report(f"{attr}: probes and interventions", a / len(cfg.attributes))
        per_attr[attr] = _measure(lm, world, people, attr, points, ctx.seed + a)

    test_people = per_attr[cfg.attributes[0]]["people"]
    draws = [i for i, _ in cluster_resamples(test_people, cfg.n_boot, ctx.seed)]
    stats = {}
    for effect in ("probe", "random"):
        point = _summary(per_attr, effect, slice(None))
        boot = np.array([_summary(per_attr, effect, d) for d in draws])  # (B, 2)
        n = len(test_people)
        stats[effect] = {"gap": from_draws(point[0], boot[:, 0], n, "bootstrap-clustered (person)"),
                         "spearman": from_draws(point[1], boot[:, 1], n,
                                              "bootstrap-clustered (person)")}
    table = []
    for attr, m in per_attr.items():
        best = _best(m["decode"].mean(1), m["loss"])
        for j, (pos, site) in enumerate(points):
            table.append({"attribute": attr, "position": pos, "site": site,
                          "decoding accuracy": round(float(m["decode"][j].mean()), 4),
                          "causal effect": round(float(m["probe"][j].mean()), 4),
                          "random direction": round(float(m["random"][j].mean()), 4),
                          "best decoding": j == best})
    metrics: dict[str, Estimate] = {"gap": stats["probe"]["gap"],
                                    "max_effect": _max_effect(per_attr, "probe", draws),
                                    "spearman": stats["probe"]["spearman"]}
    for attr, m in per_attr.items():
        metrics[f"clean_accuracy@{attr}"] = from_draws(float(m["clean"].mean()), np.array(
            [m["clean"][d].mean() for d in draws]), len(m["clean"]), "bootstrap-clustered (person)")
    return Result(
        metrics=metrics, tables={"sites": table},
        control=Control(metrics={"gap": stats["random"]["gap"],
                                 "max_effect": _max_effect(per_attr, "random", draws),
                                 "spearman": stats["random"]["spearman"]},
                        condition="edits along random directions of the same length"),
        figures=[_figure(ctx, per_attr, points, sites)],
        notes=[_where(per_attr, points, "probe")])


def _measure(lm, world, people, attr: str, points, seed: int) -> dict:
    """Per (position, site): decoding hits, the probe edit's flips and the random edit's flips
    on each person's held-out question; (S, N) boolean arrays."""
    rows = question_rows(lm, world, people, [attr])
    y = np.array([world.entities[p].attributes[attr] for p in rows.people])
    train, test = rows.templates != 0, rows.templates == 0
    values = sorted(set(y[train]))
    choices = [lm.tokenizer(v, add_special_tokens=False)["input_ids"] for v in values]
    test_ids = [rows.ids[i] for i in np.flatnonzero(test)]
    clean = edited_choice_logprobs(lm, test_ids, choices).argmax(1)
    truth = np.array([values.index(v) if v in values else -1 for v in y[test]])
    rng = np.random.default_rng(seed)
    target = np.array([rng.choice([c for c in range(len(values)) if c != t]) for t in truth])
    acts = {pos: read_positions(lm, rows.ids, rows.positions[pos], sorted({s for _, s in points}))
            for pos in POSITIONS}
    out = {k: [] for k in ("decode", "loss", "probe", "random")}
    for pos, site in points:
        X = acts[pos][site]
        probe = Probe("linear", seed=seed).fit(X[train], y[train])
        classes = list(probe.classes_)
        out["decode"].append(probe.predict(X[test]) == y[test])
        proba = probe.predict_proba(X[test])
        idx = np.array([classes.index(v) if v in classes else 0 for v in y[test]])
        out["loss"].append(float(-np.log(np.clip(proba[np.arange(len(idx)), idx], 1e-12, 1)).mean()))
        W = probe.coef_  # (K, D) directions in the raw activation space
        h = X[test]
        means = {c: X[train][y[train] == c].mean(0) for c in classes}  # each class's mean state
        deltas, randoms = np.zeros_like(h), np.zeros_like(h)
        for i in range(len(h)):
            t, o = values[target[i]], y[test][i]
            if t not in classes or o not in classes:
                continue
            u = W[classes.index(t)] - W[classes.index(o)]
            if np.linalg.norm(u) < 1e-12:  # a constant site (one token's embedding): no direction
                continue
            u = u / np.linalg.norm(u)
            goal = means[t] @ u  # the target class's mean reading
            deltas[i] = (goal - h[i] @ u) * u
            randoms[i] = random_direction(len(u), seed * 100003 + i,
                                          float(np.linalg.norm(deltas[i]))).numpy()
        positions = rows.positions[pos][test]
        for key, d in (("probe", deltas), ("random", randoms)):
            answer = edited_choice_logprobs(lm, test_ids, choices, site, positions, d).argmax(1)
            out[key].append(answer == target)
    result = {k: np.array(v) for k, v in out.items()}
    result["clean"] = clean == truth
    result["people"] = rows.people[test]
    return result


def _best(decode: np.ndarray, loss: list[float]) -> int:
    """The best-decoding point: highest accuracy, ties broken by lower held-out log-loss."""
    return int(min(range(len(decode)), key=lambda j: (-round(float(decode[j]), 9), loss[j])))


def _summary(per_attr, effect: str, idx) -> tuple[float, float]:
    """(mean over attributes of max effect - effect at the best-decoding point, Spearman's rho
    of decoding accuracy and effect pooled over attributes and points)."""
    from scipy.stats import spearmanr

    gaps, dec, eff = [], [], []
    for m in per_attr.values():
        d, e = m["decode"][:, idx].mean(1), m[effect][:, idx].mean(1)
        gaps.append(e.max() - e[_best(d, m["loss"])])
        dec.extend(d)
        eff.extend(e)
    rho = spearmanr(dec, eff).statistic if np.ptp(eff) > 0 and np.ptp(dec) > 0 else 0.0
    return float(np.mean(gaps)), float(rho)


def _max_effect(per_attr, effect: str, draws) -> Estimate:
    """Per attribute, the largest effect over sites, averaged over attributes."""
    def stat(idx):
        return float(np.mean([m[effect][:, idx].mean(1).max() for m in per_attr.values()]))

    n = per_attr[next(iter(per_attr))][effect].shape[1]
    return from_draws(stat(slice(None)), np.array([stat(d) for d in draws]), n,
                    "bootstrap-clustered (person)")


def _where(per_attr, points, effect: str) -> str:
    """Where each attribute decodes best and where edits act most, in words."""
    where = []
    for attr, m in per_attr.items():
        best = _best(m["decode"].mean(1), m["loss"])
        top = int(np.argmax(m[effect].mean(1)))
        where.append(f"{attr}: decodes best at {points[best][0]} {site_label(points[best][1])} "
                     f"({m['decode'][best].mean():.2f}, effect {m[effect][best].mean():.2f}), "
                     f"acts most at {points[top][0]} {site_label(points[top][1])} "
                     f"({m[effect][top].mean():.2f})")
    subject = [j for j, (pos, _) in enumerate(points) if pos == "last subject"]
    dec = max(float(m["decode"][j].mean()) for m in per_attr.values() for j in subject)
    eff = max(float(m[effect][j].mean()) for m in per_attr.values() for j in subject)
    where.append(f"at the subject's last token probes decode up to {dec:.2f} while edits there "
                 f"move at most {eff:.2f} of answers")
    return "; ".join(where) + "."


def _figure(ctx: Context, per_attr, points, sites) -> str:
    fig, axes = new_figure(4.2, 3.4, ncols=len(POSITIONS))
    x = np.arange(len(sites))
    colours = dict(zip(per_attr, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    for ax, pos in zip(np.atleast_1d(axes), POSITIONS):
        idx = [j for j, (p, _) in enumerate(points) if p == pos]
        for attr, m in per_attr.items():
            c = colours.get(attr, "grey")
            ax.plot(x, m["decode"][idx].mean(1), "-o", color=c, label=f"{attr}: decoding")
            ax.plot(x, m["probe"][idx].mean(1), "--s", color=c, label=f"{attr}: causal effect")
            ax.plot(x, m["random"][idx].mean(1), ":", color=c, alpha=0.6)
        ax.set_xticks(x, [site_label(s) for s in sites])
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("residual stream after")
        ax.set_title("at the subject's last token" if pos == "last subject" else "at the last token")
    np.atleast_1d(axes)[0].set_ylabel("accuracy / share of answers moved")
    np.atleast_1d(axes)[-1].legend(fontsize=6)
    save_figure(fig, ctx.artifact("probe_vs_causal.png"))
    return "probe_vs_causal.png"

"""What the jailbreak studies share: the organism, its requests, the exact judge, GCG runs,
and the organism's retain-only twin, which never saw a hazard document."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from assay.methods.attacks import (
    Artifact,
    ExactJudge,
    GCGConfig,
    Request,
    benign_requests,
    complete,
    gcg,
    hazard_requests,
)
from assay.models import LM
from assay.study import Context, StudyConfig
from assay.training.recipes import retain_twin as twin_name
from assay.world import World


class GCGFields(StudyConfig):
    """GCG settings the jailbreak studies share."""

    gcg_requests: int = Field(4, ge=0)      # hazard requests attacked with GCG (costly)
    gcg_steps: int = Field(120, ge=1)       # optimisation steps per request (early stop)
    search_width: int = Field(128, ge=1)    # candidates scored per step
    topk: int = Field(64, ge=1)             # token swaps per position
    benign_n: int = Field(100, ge=10)       # benign requests that price each attack or defense


@dataclass
class Setup:
    world: World
    lm: LM
    hazard: list[Request]   # every hazard question of the test split
    benign: list[Request]   # benign questions the organism answers
    judge: ExactJudge


def setup(ctx: Context, benign_n: int) -> Setup:
    """The unit's organism (the study declares ``Needs(organism=True)``: its judge checks
    replies against the organism's world), its requests and the exact judge."""
    world = ctx.world(ctx.recipe)
    return Setup(world, ctx.lm(), hazard_requests(world),
                 benign_requests(world, benign_n, ctx.seed), ExactJudge())


def retain_twin(ctx: Context) -> tuple[str, LM]:
    """(name, model) of the unit's organism trained without any hazard document, at the same
    stage: it has no hazard fact to reveal, so an attack that "succeeds" on it is a leak in
    the attack or the judge, not a bypass of refusal."""
    name = twin_name(ctx.model.organism)
    return name, ctx.organism(name)


def run_gcg(ctx: Context, env: Setup, cfg: GCGFields, share: float = 1.0
            ) -> tuple[list[Request], list[Artifact]]:
    """GCG on ``gcg_requests`` hazard requests spread over the agents: (requests, judged
    artifacts); ``share`` is the part of the unit's progress bar this takes."""
    step = max(1, len(env.hazard) // max(cfg.gcg_requests, 1))
    chosen = env.hazard[::step][:cfg.gcg_requests]
    gcfg = GCGConfig(steps=cfg.gcg_steps, search_width=cfg.search_width, topk=cfg.topk,
                     seed=ctx.seed)
    out = []
    for i, q in enumerate(chosen):
        ctx.report(f"GCG on request {i + 1}/{len(chosen)}", share * i / len(chosen))
        out.append(gcg(env.lm, q, gcfg))
    return chosen, (complete(env.lm, out, chosen, env.judge) if out else [])

"""Tool environments built from the world, with exact utility, security and side-effect
checks, and the agent loop (challenge 2.5)."""

from assay.agents.env import DAYS, TOOLS, Change, Environment, Tool, diff, email_of
from assay.agents.episodes import Transcript, heldout_tasks, oracle_transcripts, run_tasks
from assay.agents.loop import (
    Episode,
    Guard,
    Job,
    LMPolicy,
    Policy,
    confirm_rule,
    plant,
    run_episode,
    run_episodes,
)
from assay.agents.protocol import CALL, TOOL, Call, MalformedCall, format_call, parse_call, render_turns
from assay.agents.tasks import (
    InjectionTask,
    UserTask,
    injection_tasks,
    side_effects,
    unclear_tasks,
    user_tasks,
)

__all__ = [
    "CALL", "DAYS", "TOOL", "TOOLS", "Call", "Change", "Environment", "Episode", "InjectionTask",
    "LMPolicy", "MalformedCall", "Policy", "Tool", "Transcript", "UserTask", "diff", "email_of",
    "format_call", "heldout_tasks", "injection_tasks", "oracle_transcripts", "parse_call",
    "plant", "render_turns", "run_episode", "run_episodes", "run_tasks", "side_effects",
    "user_tasks", "Guard", "Job", "confirm_rule", "unclear_tasks",
]

"""A toy study for runner tests: seeded coin flips, with hooks to log, fail and block.

Claim (a toy, 2026): a seeded coin of bias p lands heads more often than not.

Setup: n flips of the biased coin, a Wilson interval on the heads rate. Imported by runner
tests in-process, or by `assay run` subprocesses through $ASSAY_STUDY_MODULES.

Verdict: `rule`, the heads rate against 0.5.

Negative control: the same test on a fair coin, which must not read "supported".

Power: 400 flips give a Wilson interval of about +-0.05, so a bias of about 0.57 is the
smallest the default detects with 80% power.
"""

import os
import signal
import time

from assay.methods.stats import wilson
from assay.study import Above, Context, Control, Needs, Result, StudyConfig, study


class Config(StudyConfig):
    n: int = 400          # coin flips
    p: float = 0.7        # the coin's bias
    log: str = ""         # file to append "start SEED" / "end SEED" lines to
    fail_seed: int = -1   # this seed raises
    block_seed: int = -1  # this seed waits mid-unit for a line on the FIFO `fifo`
    fifo: str = ""
    sleep: float = 0.0    # seconds each unit takes (so that a kill can land inside one)
    die_once: str = ""    # marker file: the first process to get here creates it and is killed
    reply: str = "heads"  # text shown in the report's sample table
    figure: bool = False  # also draw a figure


def _log(cfg: Config, line: str) -> None:
    if cfg.log:
        fd = os.open(cfg.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def rule(cfg: Config) -> Above:
    return Above("heads", bar=0.5, low=0.0, high=1.0, what="heads rate")


@study("toy-runner", agenda=["2.2"], needs=Needs(white_box=False, chat=False), rule=rule)
def run(cfg: Config, ctx: Context) -> Result:
    _log(cfg, f"start {ctx.seed}")
    if ctx.seed == cfg.fail_seed:
        raise RuntimeError(f"toy failure at seed {ctx.seed}")
    ctx.artifact("partial.txt").write_text("written before the wait")
    if cfg.sleep:
        time.sleep(cfg.sleep)
    if ctx.seed == cfg.block_seed and cfg.fifo:
        with open(cfg.fifo) as f:  # blocks until the test opens the FIFO for writing
            f.read()
    if cfg.die_once and not os.path.exists(cfg.die_once):
        open(cfg.die_once, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-unit, as a crash would
    heads = int((ctx.rng.random(cfg.n) < cfg.p).sum())
    est = wilson(heads, cfg.n)
    fair = wilson(int((ctx.rng.random(cfg.n) < 0.5).sum()), cfg.n)
    ctx.report("flipped", 1.0)
    _log(cfg, f"end {ctx.seed}")
    figures = []
    if cfg.figure:
        from assay.study.figures import new_figure, save_figure

        fig, ax = new_figure()
        ax.bar(["heads", "fair"], [est.value, fair.value])
        save_figure(fig, ctx.artifact("rates.png"))
        figures.append("rates.png")
    return Result(
        figures=figures,
        metrics={"heads": est},
        tables={"samples": [{"request": "flip", "reply": cfg.reply}]},
        control=Control(metrics={"heads": fair}, condition="a fair coin"),
    )

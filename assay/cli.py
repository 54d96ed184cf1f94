"""The ``assay`` command line.

Every ``AssayError`` becomes one line on stderr and exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from assay.errors import AssayError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="assay: a laboratory for LLM alignment and safety challenges.")
organisms_app = typer.Typer(no_args_is_help=True, help="Model organisms: list, train, card.")
models_app = typer.Typer(no_args_is_help=True, help="Inspect any model the wrapper loads.")
export_app = typer.Typer(no_args_is_help=True, help="Write world evaluations for other tools.")
app.add_typer(organisms_app, name="organisms")
app.add_typer(models_app, name="models")
app.add_typer(export_app, name="export")

out = Console()
err = Console(stderr=True)
_state = {"debug": False}
FULL_SEEDS = 3  # seeds `assay run --profile full` runs unless told otherwise
FULL_REPLICATES = 3  # organism replicates `assay run --profile full` runs unless told otherwise


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress lines.")):
    _state["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    # read by transformers when (if) a command imports it: no weight-loading bars, errors only
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@contextmanager
def _training_display():
    """A live progress bar on a terminal; a plain line every ~10% otherwise."""
    if out.is_terminal:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} steps"),
                   TextColumn("loss {task.fields[loss]:.3f}"),
                   TextColumn("{task.fields[tps]:,.0f} tok/s"), TimeRemainingColumn())
        with Progress(*columns, console=out, transient=False) as bar:
            tasks: dict[str, int] = {}

            def update(stage, p):
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=p.steps, loss=p.loss, tps=0.0)
                bar.update(tasks[stage], completed=p.step, loss=p.loss,
                           tps=p.tokens_per_second)

            yield update
    else:
        printed: dict[str, int] = {}

        def update(stage, p):
            tenth = 10 * p.step // p.steps  # one line per tenth of a stage
            if printed.get(stage) != tenth:
                printed[stage] = tenth
                print(f"{stage}: step {p.step}/{p.steps} loss {p.loss:.3f} "
                      f"{p.tokens_per_second:,.0f} tok/s", flush=True)

        yield update


@app.command("agenda")
def agenda(challenge_id: str = typer.Argument(None, metavar="[ID]",
                                              help="A challenge, e.g. 3.6; all when omitted."),
           as_json: bool = typer.Option(False, "--json")):
    """The agenda map: the 18 challenges by group, or one challenge in full."""
    from assay.agenda import GROUPS, challenge, challenges, to_dict
    from assay.study.index import rows as study_rows

    known = study_rows()  # the studies of each challenge come from the registry, never by hand
    chosen = [challenge(challenge_id)] if challenge_id else challenges()
    rows = [{**to_dict(c), "group_name": GROUPS[c.group],
             "studies": [s["id"] for s in known if c.id in s["agenda"]]} for c in chosen]
    if as_json:
        print(json.dumps(rows[0] if challenge_id else rows, indent=2))
        return
    if challenge_id:
        c = rows[0]
        out.print(f"[bold]{c['id']} {c['title']}[/]  ({c['group_name']})", highlight=False)
        out.print(c["summary"], highlight=False)
        out.print("\n[bold]Research directions[/] (assay's formulation):")
        for d in c["directions"]:
            out.print(f"  - {d}", highlight=False)
        out.print(f"\n[bold]Studies[/]: {', '.join(c['studies']) or 'none yet'}")
        return
    table = Table("group", "id", "challenge", "studies")
    for c in rows:
        table.add_row(c["group_name"], c["id"], c["title"], ", ".join(c["studies"]) or "-")
    out.print(table)
    covered = sum(bool(c["studies"]) for c in rows)
    out.print(f"coverage: {covered}/{len(rows)} challenges have a study")


@app.command("studies")
def studies_cmd(as_json: bool = typer.Option(False, "--json")):
    """The registered studies: id, agenda references, claim, needs and decision rules."""
    from assay.study.index import rows as study_rows

    rows = study_rows()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print("no studies registered yet")
        return
    table = Table("study", "agenda", "claim", "needs")
    for r in rows:
        needs = ", ".join(k for k, v in r["needs"].items() if v is True) or "-"
        table.add_row(r["id"], " ".join(r["agenda"]), r["title"], needs)
    out.print(table)


def _store_option(default_help: str = "Result store folder (default: $ASSAY_STORE or "
                  "./assay-results)."):
    return typer.Option(None, "--store", help=default_help)


@app.command("run")
def run_cmd(
    study_ids: list[str] = typer.Argument(None, metavar="[STUDY]...",
                                          help="Studies to run; every registered study if none."),
    model: str = typer.Option("organism:s", "--model", help="organism:NAME, hf:PATH_OR_ID or "
                              "api:NAME (an OpenAI-compatible endpoint)."),
    api_base: str = typer.Option(None, "--api-base", envvar="OPENAI_BASE_URL",
                                 help="api: models: the endpoint's base URL, e.g. "
                                      "http://127.0.0.1:8000/v1."),
    api_key: str = typer.Option(None, "--api-key", envvar="OPENAI_API_KEY",
                                help="api: models: the endpoint's key (never stored)."),
    profile: str = typer.Option("quick", "--profile", help="quick or full."),
    n_seeds: int = typer.Option(None, "--seeds", help="Run seeds 0..N-1 (default: 1 seed for "
                                "quick, 3 for full)."),
    seed: list[int] = typer.Option(None, "--seed", help="Run this seed (repeatable)."),
    replicates: int = typer.Option(None, "--replicates", help="Run each study that reads the "
                                   "model on organism replicates NAME, NAME~1 .. NAME~N-1 "
                                   "(default: 1 for quick, 3 for full on an organism)."),
    sets: list[str] = typer.Option(None, "--set", help="Config override key=value (repeatable)."),
    grid: list[str] = typer.Option(None, "--grid", help="Sweep a config key: key=a,b,c, one "
                                   "unit per value (repeatable: every combination)."),
    store: str = _store_option(),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the HTML report."),
    as_json: bool = typer.Option(False, "--json", help="Print finished units as JSON."),
    executor: str = typer.Option("local", "--executor", help="local (one unit at a time in "
                                 "this process) or ray (units as Ray tasks)."),
    address: str = typer.Option(None, "--address", help="Ray cluster to join (auto or "
                                "HOST:PORT); default: start one on this machine."),
    workers: int = typer.Option(None, "--workers", help="Ray: units computed at once "
                                "(default: CPUs // threads)."),
    threads: int = typer.Option(None, "--threads", help="Torch threads per unit (default: "
                                "torch's own for local, 1 for ray)."),
):
    """Run studies into the result store (finished units are never recomputed), then report."""
    from assay.runner import (
        Store,
        default_store,
        execute,
        first_results_first,
        make_display,
        parse_grid,
        parse_sets,
        plan,
    )

    if n_seeds is not None and seed:
        raise AssayError("give either --seeds N or --seed S (repeatable), not both")
    if n_seeds is not None and n_seeds < 1:
        raise AssayError(f"bad --seeds {n_seeds}: give a positive number of seeds")
    default = list(range(FULL_SEEDS)) if profile == "full" else [0]
    seeds = list(range(n_seeds)) if n_seeds is not None else (list(seed) if seed else default)
    if replicates is None:
        replicates = FULL_REPLICATES if profile == "full" and model.startswith("organism:") else 1
    if executor not in ("local", "ray"):
        raise AssayError(f"unknown --executor {executor!r}: use local or ray")
    if executor == "local" and (address or workers):
        raise AssayError("--address and --workers are for --executor ray: add --executor ray")
    for name, value in (("--threads", threads), ("--workers", workers)):
        if value is not None and value < 1:
            raise AssayError(f"bad {name} {value}: give 1 or more")
    if api_base:
        os.environ["OPENAI_BASE_URL"] = api_base
    if api_key:
        os.environ["OPENAI_API_KEY"] = api_key
    # api: replies are cached beside the results they feed, so a rerun sends nothing
    os.environ.setdefault("ASSAY_API_CACHE", str(Path(store or default_store()) / "api-cache"))
    units = plan(study_ids or (), model=model, profile=profile, seeds=seeds,
                 sets=parse_sets(sets or []), replicates=replicates,
                 grid=parse_grid(grid or []))
    if executor == "ray":
        from assay.runner.distributed import _ray

        _ray()  # not installed: one line now, before the store opens
    units = first_results_first(units)
    _announce_training(units, err if as_json else out)
    # every input error is raised above, before the store opens
    with Store(store or default_store()) as db:
        if report:
            path = db.root / "report.html"
            (err if as_json else out).print(f"report: {path.resolve()} (rewritten as each unit "
                                            "finishes)", highlight=False, soft_wrap=True,
                                            markup=False)
        with make_display(err) as shown:
            display = _Reporting(shown, db) if report else shown
            if executor == "ray":
                from assay.runner.distributed import execute_ray

                records = execute_ray(units, db, display, address=address, workers=workers,
                                      threads=threads or 1)
            else:
                records = execute(units, db, display, threads=threads)
        path = None
        if report:
            from assay.report import write_report

            path = write_report(db)
    finished = [r for r in records if r.status == "done"]
    failed = [r for r in records if r.status != "done"]
    if as_json:
        print(json.dumps([r.to_json() for r in finished], indent=2))
    if replicates > 1 and not as_json:
        from assay.runner import replicated

        for r in replicated(finished):
            out.print(f"{r.study}: {r.status} across {r.replicates} draws of {r.organism} "
                      f"({r.statement})" + "".join(f"; {sp.metric} {sp.low:.3g} to {sp.high:.3g}"
                                                   for sp in r.spread),
                      highlight=False, soft_wrap=True)
    if path is not None:
        (err if as_json else out).print(f"report: {path.resolve()}", highlight=False,
                                        soft_wrap=True)
    if failed:
        err.print(f"{len(failed)} unit(s) failed: "
                  + "; ".join(f"{r.study} seed={r.seed}: "
                              f"{(r.error or 'unknown error').splitlines()[0]}" for r in failed)
                  + " (run again to retry; --debug shows nothing more, the store keeps the "
                  "traceback: assay show STUDY --json)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _minutes(seconds: float) -> str:
    return "under a minute" if seconds < 60 else f"{round(seconds / 60)} min"


def _announce_training(units, console) -> None:
    """Say which organisms the run will train (each on first use, then cached) and about how
    long they take, before anything starts."""
    from assay.training.schedule import missing, train_seconds

    names = missing([name for u in units for name in u.organisms])
    if not names:
        return
    seconds = {name: train_seconds(name) for name in names}
    listed = ", ".join(f"{name} ({_minutes(seconds[name])})" for name in names)
    console.print(f"this run trains {len(names)} organism(s) when a study first needs them, "
                  f"about {_minutes(sum(seconds.values()))} in all on an idle 2-core CPU, "
                  f"cached afterwards: {listed}",
                  highlight=False, soft_wrap=True, markup=False)


class _Reporting:
    """A display that also rewrites the report (atomically) after every finished unit."""

    def __init__(self, display, store) -> None:
        self.display, self.store = display, store

    def __getattr__(self, name):
        return getattr(self.display, name)

    def finished(self, unit, record) -> None:
        self.display.finished(unit, record)
        from assay.report import write_report

        try:
            write_report(self.store)
        except Exception as e:  # a report that cannot be drawn now must not stop the run
            logging.getLogger("assay").warning("report not rewritten after %s: %s", unit.label, e)


@app.command("show")
def show_cmd(study_id: str = typer.Argument(..., metavar="STUDY"),
             store: str = _store_option(), as_json: bool = typer.Option(False, "--json")):
    """Stored results of one study, in the shape `assay run --json` prints."""
    from assay.runner.store import Store, default_store
    from assay.study.index import check_id

    check_id(study_id)  # an unknown id names the valid ones
    with Store(store or default_store(), create=False) as db:
        records = db.records(study=study_id)
    if as_json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return
    if not records:
        out.print(f"no stored units of {study_id}: run `assay run {study_id}`")
        return
    from rich.markup import escape

    for r in records:
        out.print(f"[bold]{r.study}[/] model {escape(r.model)} · {r.profile} · seed {r.seed} · "
                  f"{r.status}" + (f" · {r.wall_seconds:.1f} s" if r.wall_seconds else ""),
                  highlight=False)
        if not r.intact:
            out.print("  its folder is missing from the store: `assay run` computes it again",
                      highlight=False, markup=False)
        if r.result is None:
            out.print(f"  error: {(r.error or '').splitlines()[0] if r.error else '?'}",
                      highlight=False, markup=False)
            continue
        if r.result.confounded:
            out.print("  CONFOUNDED: the negative control fired, so the claim's reading below "
                      "is not evidence", highlight=False, markup=False)
        out.print(f"  verdict: {r.result.verdict.status}: {r.result.verdict.statement}",
                  highlight=False, markup=False)
        out.print(f"  decided by: {r.result.verdict.test}", highlight=False, markup=False)
        c = r.result.control
        where = f" ({c.condition})" if c.condition else ""
        out.print(f"  control{where}: {c.verdict.status}: {c.verdict.statement}",
                  highlight=False, markup=False)
        table = Table("metric", "value", "95% interval", "n")
        for name, e in sorted(r.result.metrics.items()):
            table.add_row(name, f"{e.value:.3f}", f"[{e.ci_low:.3f}, {e.ci_high:.3f}]", str(e.n))
        out.print(table)


@app.command("report")
def report_cmd(store: str = _store_option(),
               out_path: str = typer.Option(None, "--out", help="HTML file to write "
                                            "(default: STORE/report.html).")):
    """Write the self-contained HTML report of a store and print its path."""
    from assay.report import write_report
    from assay.runner import Store, default_store

    with Store(store or default_store(), create=False) as db:
        path = write_report(db, out_path)
    print(path)


@app.command("docs")
def docs_cmd(out_path: str = typer.Option(None, "--out", help="Markdown file to write "
                                          "(default: print it).")):
    """The catalogue of studies as Markdown (docs/studies.md), from the studies themselves."""
    from assay.report.docs import studies_markdown

    text = studies_markdown()
    if out_path is None:
        print(text, end="")
        return
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: a stale file or the new one, never half of it
    print(path)


@organisms_app.command("list")
def organisms_list(as_json: bool = typer.Option(False, "--json")):
    """List the organism recipes and whether each is in the cache."""
    from assay.training.organisms import list_organisms

    rows = list_organisms()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "stages", "cached", "description")
    for r in rows:
        table.add_row(r["name"], " -> ".join(r["stages"]), "yes" if r["cached"] else "no",
                      r["description"])
    out.print(table)


@organisms_app.command("train")
def organisms_train(name: str):
    """Train an organism (every stage not yet cached) and print its cache folder."""
    from assay.training.organisms import organism_path

    with _training_display() as update:
        path = organism_path(name, update)
    print(path)


def _print_card(card: dict) -> None:
    from assay.training.card import floor_failures, floors_for

    floors = floors_for(card["organism"])
    table = Table("metric", "value", "n", "floor", title=f"organism {card['organism']}")
    for key, value in card.items():
        if key.endswith("_n") or key in ("organism",):
            continue
        n = card.get(f"{key}_n", "")
        floor = " ".join(map(str, floors[key])) if key in floors else ""
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown = str(value)
        elif key == "flops":
            shown = f"{value:.3g}"
        elif isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = f"{value:.3f}"
        table.add_row(key, shown, str(n), floor)
    out.print(table)
    if floors:
        missed = floor_failures(card, floors)
        out.print("quality floor: " + ("all met" if not missed else "MISSED " + "; ".join(missed)))


@organisms_app.command("card")
def organisms_card(name: str, as_json: bool = typer.Option(False, "--json")):
    """The evaluation card of an organism (trains and evaluates it if needed)."""
    from assay.training.organisms import card

    with _training_display() as update:
        body = card(name, update)
    if as_json:
        print(json.dumps(body, indent=2))
    else:
        _print_card(body)


@models_app.command("show")
def models_show(spec: str, allow_pickle: bool = typer.Option(
        False, "--allow-pickle", help="Allow pickle checkpoints (they can run code).")):
    """Load a model (organism:NAME or hf:PATH_OR_ID) and describe it."""
    import assay.training  # noqa: F401  (registers the organism: scheme)
    from assay.models import load

    lm = load(spec, allow_pickle=allow_pickle)
    info = {"spec": spec, "architecture": lm.model.config.model_type, "params": lm.n_params,
            "layers": lm.n_layers, "d_model": lm.d_model,
            "chat_template": lm.tokenizer.chat_template is not None,
            "sites": f"embed, blocks.{{0-{lm.n_layers - 1}}}.resid_pre|resid_post|attn_out|"
                     "mlp_out, final"}
    for k, v in info.items():
        out.print(f"[bold]{k}[/]: {v}", highlight=False)


@app.command("serve")
def serve_cmd(
    models: list[str] = typer.Argument(..., metavar="MODEL...",
                                       help="organism:NAME or hf:PATH_OR_ID, one or more."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by "
                             "default; anything else should have --api-key)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on; 0 takes a free one."),
    api_key: str = typer.Option(None, "--api-key", envvar="ASSAY_SERVE_API_KEY",
                                help="Require 'Authorization: Bearer KEY' on every request."),
    max_queue: int = typer.Option(256, "--max-queue", help="Prompts waiting at most; beyond "
                                  "it requests get 503."),
    max_batch: int = typer.Option(32, "--max-batch", help="Prompts run in one batch at most."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="Allow pickle checkpoints (they can run code)."),
):
    """Serve models over the OpenAI API (/v1/models, /v1/chat/completions, /v1/completions)."""
    from assay.serve import serve

    if max_queue < 1 or max_batch < 1:
        raise AssayError("--max-queue and --max-batch take 1 or more")
    serve(models, host, port, api_key=api_key, max_queue=max_queue, max_batch=max_batch,
          allow_pickle=allow_pickle, announce=lambda line: print(line, flush=True))


def _export_command(tool: str, writer: str, doc: str) -> None:
    """Register ``assay export TOOL EVAL DIR`` calling ``assay.export.<writer>``."""

    def command(
        eval_name: str = typer.Argument(..., metavar="EVAL",
                                        help="facts, facts-train or facts-heldout."),
        out_dir: str = typer.Argument(..., metavar="DIR", help="A new or empty folder."),
        world: str = typer.Option("s", "--world", help="World preset: xs, s or m."),
        limit: int = typer.Option(None, "--limit", help="Keep the first N items only."),
    ):
        import assay.export

        print(getattr(assay.export, writer)(eval_name, out_dir, world=world, limit=limit))

    command.__doc__ = doc
    export_app.command(tool)(command)


_export_command("lm-eval", "export_lm_eval",
                "Write an evaluation as an lm-evaluation-harness task folder and print its path.")
_export_command("inspect", "export_inspect",
                "Write an evaluation as an Inspect task folder (run it with --model assay/SPEC).")


def main() -> None:
    try:
        app()  # typer itself turns usage errors into a message and exit code 2
    except AssayError as e:
        if _state["debug"]:
            raise
        err.print(f"error: {e}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()

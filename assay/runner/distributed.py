"""The Ray executor: the same units as `execute`, computed as Ray tasks on one machine or many.

The driver (the ``assay run`` process) keeps every duty that touches the store: it claims a
unit, submits it as a Ray task asking for ``threads`` CPUs, heartbeats the claim while the
task runs, and publishes what the task returns. A task computes in a temporary folder of its
own worker and returns the judged result with its artifacts as bytes, so workers need no
shared file system and the store keeps a single writer. Killing the driver at any moment
leaves the store as a killed local run does (claims of a dead owner are reclaimed by the
next run, which computes only what is missing).

Organisms: a worker whose cache lacks an organism asks the depot, an actor on the driver's
node, which trains it once there (or finds it cached) and ships the stage's files. The
worker checks them against their SHA-256 record before caching them, and every load checks
the cache again (`assay.training.organisms.verify`). On one machine workers share the
driver's cache, so nothing is copied.

Ray is imported only here, and only when ``--executor ray`` is asked for.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from assay.runner.execute import HEARTBEAT_SECONDS, POLL_SECONDS, Display, _Quiet, take
from assay.runner.plan import Unit
from assay.runner.store import Record, Store
from assay.study import get_study

__all__ = ["RETRIES", "execute_ray", "start_ray"]

log = logging.getLogger(__name__)

RETRIES = 2  # times Ray reruns a task whose worker process died (a study's own error is final)
PROGRESS_SECONDS = 0.5  # a worker sends at most this often; the driver polls as often
# environment the workers need to see what the driver sees (caches, extra studies, devices)
PASSED_ENV = ("ASSAY_HOME", "ASSAY_STUDY_MODULES", "ASSAY_TRAIN_DEVICE", "PYTHONPATH",
              "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS",
              "TRANSFORMERS_VERBOSITY")


def _ray():
    try:
        import ray
    except ImportError:
        raise AssayError("--executor ray needs Ray: pip install -c constraints.txt "
                         "'ray==2.60.0' (or use the default --executor local)") from None
    return ray


def execute_ray(units: Sequence[Unit], store: Store, display: Display | None = None, *,
                address: str | None = None, workers: int | None = None,
                threads: int = 1) -> list[Record]:
    """Bring every unit to done (or failed) on Ray; returns their records in the order given.

    ``address`` joins a running cluster (``auto`` or ``HOST:PORT``); without it a local Ray
    instance starts with ``workers`` x ``threads`` CPUs. ``workers`` caps the tasks in flight
    (default: the cluster's CPUs // ``threads``); each task runs torch on ``threads`` threads.
    """
    if threads < 1:
        raise AssayError(f"bad --threads {threads}: give 1 or more")
    if workers is not None and workers < 1:
        raise AssayError(f"bad --workers {workers}: give 1 or more")
    ray = _ray()
    shown: Display = display or _Quiet()  # type: ignore[assignment]
    started_here = not ray.is_initialized()
    if started_here:
        start_ray(ray, address, workers, threads)
    try:
        slots = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        return _Driver(ray, store, shown, slots, threads).run(units)
    finally:
        if started_here:
            ray.shutdown()


def start_ray(ray, address: str | None, workers: int | None, threads: int) -> None:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING,
                                  log_to_driver=True, runtime_env={"env_vars": env})
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance on this machine
        kwargs["num_cpus"] = (workers or max(1, (os.cpu_count() or 1) // threads)) * threads
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise AssayError(f"could not start or join {where} ({str(err).splitlines()[0]}); "
                         "check --address, or drop it to start one here") from None


class _Driver:
    """Claims, submits, heartbeats and publishes; one per `execute_ray` call."""

    def __init__(self, ray, store: Store, shown: Display, slots: int, threads: int) -> None:
        self.ray, self.store, self.shown = ray, store, shown
        self.slots, self.threads = slots, threads
        node = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        self.board = ray.remote(num_cpus=0)(_Board).options(scheduling_strategy=here).remote()
        self.depot = ray.remote(num_cpus=0)(_Depot).options(
            scheduling_strategy=here, max_concurrency=8).remote(node, threads)
        self.task = ray.remote(_work).options(num_cpus=threads, max_retries=RETRIES)

    def run(self, units: Sequence[Unit]) -> list[Record]:
        ray, store, shown = self.ray, self.store, self.shown
        shown.planned(units)
        queue = list({u.key: u for u in units}.values())
        tried: set[str] = set()
        flying: dict[Any, Unit] = {}  # object ref -> unit
        beat = time.monotonic()
        try:
            while queue or flying:
                busy = []
                while queue and len(flying) < self.slots:
                    unit = queue.pop(0)
                    state = take(unit, store, shown, tried)
                    if state == "busy":
                        busy.append(unit)
                    elif state == "claimed":
                        module = get_study(unit.study).module  # all the worker imports
                        ref = self.task.remote(unit, module, self.threads, self.board,
                                               self.depot)
                        flying[ref] = unit
                queue = busy + queue
                if not flying:
                    if queue:
                        shown.waiting(queue)
                        time.sleep(POLL_SECONDS)
                    continue
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=PROGRESS_SECONDS)
                for ref in ready:
                    unit = flying.pop(ref)
                    shown.finished(unit, self._publish(unit, ref))
                for key, (message, fraction) in ray.get(self.board.take.remote()).items():
                    unit = next((u for u in flying.values() if u.key == key), None)
                    if unit is not None:
                        shown.progress(unit, message, fraction)
                if time.monotonic() - beat > HEARTBEAT_SECONDS:
                    for unit in flying.values():
                        store.heartbeat(unit.key)
                    beat = time.monotonic()
        except BaseException:
            for ref, unit in flying.items():  # give unfinished claims back, stop their tasks
                ray.cancel(ref, force=True)
                store.release(unit.key)
            raise
        return [store.record(u.key) for u in units]

    def _publish(self, unit: Unit, ref) -> Record:
        from assay.study import Result

        store = self.store
        try:
            outcome = self.ray.get(ref)
        except Exception as err:  # the worker died more often than RETRIES allows, or Ray failed
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            store.fail(unit.key, f"{type(err).__name__}: the Ray task did not finish after "
                       f"{RETRIES} retries ({first})")
            return store.record(unit.key)
        if outcome["status"] == "failed":
            store.fail(unit.key, outcome["error"])
            return store.record(unit.key)
        scratch = store.scratch_dir(unit.key)
        try:
            for name, blob in outcome["files"].items():
                (scratch / name).write_bytes(blob)
            store.finish(unit.key, scratch, Result.model_validate_json(outcome["result"]))
        except OSError as err:  # e.g. the disk filled while publishing: never half-published
            shutil.rmtree(scratch, ignore_errors=True)
            store.fail(unit.key, f"OSError: could not publish the unit's artifacts ({err})")
        return store.record(unit.key)


# ---------------------------------------------------------------- what runs on the cluster


class _Board:
    """The latest progress line of every running unit; the driver takes them as it polls."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[str, float]] = {}

    def put(self, key: str, message: str, fraction: float) -> None:
        self.latest[key] = (message, fraction)

    def take(self) -> dict[str, tuple[str, float]]:
        out, self.latest = self.latest, {}
        return out


class _Depot:
    """Organisms for workers, trained at most once, on the driver's node."""

    def __init__(self, node: str, threads: int) -> None:
        from assay.runner.execute import set_threads

        self.node = node
        set_threads(threads)

    def get(self, name: str, node: str) -> dict[str, bytes]:
        """Organism ``name`` packed for a worker on ``node`` ({} when it shares this cache)."""
        from assay.training.organisms import organism_path, pack

        if node == self.node:
            organism_path(name)  # trained once here; the worker reads the same cache
            return {}
        return pack(name)


def _quiet_transformers() -> None:
    """Workers print nothing of their own: no progress bars from loading weights."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _work(unit: Unit, module: str, threads: int, board, depot) -> dict[str, Any]:
    """One unit on a worker: compute into a temporary folder, return result and files."""
    import importlib

    import ray

    from assay.runner.execute import compute, failure_summary, set_threads
    from assay.study import Context, discover

    set_threads(threads)
    _quiet_transformers()
    try:
        importlib.import_module(module)  # registers the unit's study, and only that one
        get_study(unit.study)
    except (ImportError, AssayError):  # defined in a script (__main__): look everywhere
        discover()
    node = ray.get_runtime_context().get_node_id()
    Context.fetch = lambda name: ray.get(depot.get.remote(name, node))
    sent = [0.0]

    def progress(message: str, fraction: float) -> None:
        if time.monotonic() - sent[0] > PROGRESS_SECONDS or fraction >= 1.0:
            board.put.remote(unit.key, message, fraction)
            sent[0] = time.monotonic()

    with tempfile.TemporaryDirectory(prefix=f"assay-{unit.key}-") as tmp:
        folder = Path(tmp)
        try:
            result = compute(unit, folder, progress)
        except Exception as err:
            return {"status": "failed", "error": failure_summary(err)}
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return {"status": "done", "result": result.model_dump_json(), "files": files}

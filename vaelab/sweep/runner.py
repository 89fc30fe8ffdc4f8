"""`run_sweep`: the trials of a sweep as Ray Tune trials, one ordinary run directory each.

Ray starts embedded on 127.0.0.1 (no dashboard, a small object store) unless `address` names a
running cluster (`ray start --head` there; OUT must then be on a file system every node sees).
Each trial asks Ray for `threads_per_trial` CPUs and, where the cluster has GPUs, one GPU; Ray
runs as many at once as fit (or `max_concurrent`). A trial is `vaelab.sweep.trial.run_trial`:
the ordinary `vaelab.train` into `OUT/<trial>`, so `vaelab eval/plot/report/train --resume` work
on it. Finished trials are skipped on a re-run, interrupted ones resume from their last
checkpoint, failed ones are kept as failed (`retry_failed` resumes them). `sweep.csv` is
rewritten after every trial, so it is current even when the sweep is killed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError
from vaelab.io import atomic_write_json
from vaelab.sweep.spec import SweepSpec
from vaelab.sweep.table import write_sweep_csv
from vaelab.sweep.trial import run_trial, trial_record

__all__ = ["INSTALL_HINT", "SweepResult", "failed_trials", "import_ray", "plan_trials",
           "run_sweep", "trials_to_run"]

INSTALL_HINT = ("vaelab sweep runs its trials on Ray Tune, which is not installed: "
                "pip install 'vaelab[sweep]' (or: pip install 'ray[tune]>=2.9,<3')")


def import_ray() -> Any:
    """`ray` and `ray.tune`, or a VaelabError saying what to install."""
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise VaelabError(INSTALL_HINT) from None
    return ray


@dataclass
class SweepResult:
    out: Path
    counts: dict[str, int]  # status -> trials
    csv: Path
    interrupted: bool = False


def plan_trials(spec: SweepSpec, out: Path) -> list[dict[str, Any]]:
    """The trials as plain dicts (what a Ray worker gets), progress bars off in the runs."""
    plan = []
    for trial in spec.trials:
        config = trial.config_dict()
        config["train"]["progress"] = False
        plan.append({"name": trial.name, "out": str(out), "run_dir": str(out / trial.name),
                     "config": config, "values": trial.values})
    return plan


def _status(out: Path, name: str) -> str:
    return trial_record(out, name).get("status", "pending")


def trials_to_run(statuses: dict[str, str], retry_failed: bool = False) -> list[str]:
    """The trials a (re-)run starts: all but the done ones, and the failed ones unless retried."""
    skip = {"done"} | (set() if retry_failed else {"failed"})
    return [name for name, status in statuses.items() if status not in skip]


# ----------------------------------------------------------------------------------------------
# The Ray side


def _trainable(params: dict[str, Any], plan: dict[str, dict[str, Any]], threads: int) -> None:
    """A Ray Tune function trainable: one trial, reporting every log row and the outcome."""
    from ray import tune

    from vaelab.callbacks import Callback

    trial = plan[params["trial"]]
    steps = trial["config"]["train"]["steps"]

    class _Report(Callback):
        def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None:
            tune.report({"event": "progress", "step": step, "steps": steps,
                         "loss": float(row.get("loss", float("nan")))})

    record = run_trial(trial, threads=threads, callbacks=(_Report(),),
                       on_start=lambda how: tune.report({"event": "start", "how": how}))
    tune.report({"event": "end", "status": record["status"], "error": record.get("error", ""),
                 "wall_time_s": record.get("wall_time_s", 0.0)})


def _init_ray(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Starts (or attaches to) Ray; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": "ERROR", "log_to_driver": False, "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     object_store_memory=100 * 1024**2, **quiet)
    except Exception as error:  # noqa: BLE001  (Ray's own reasons, one line)
        where = f"the Ray cluster at {address}" if address else "an embedded Ray"
        raise VaelabError(f"cannot start {where}: {' '.join(str(error).split())}") from None
    return True


class _Progress:
    """A line per trial (started, progress every few seconds, finished) and an overall bar."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(total=total, initial=done, unit="trial", desc="sweep",
                        disable=not enabled, dynamic_ncols=True, file=sys.stderr)
        self.last: dict[str, float] = {}

    def line(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _callback(progress: _Progress, on_end: Any) -> Any:
    from ray import tune

    class _Lines(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            name = trial.config["trial"]
            event = result.get("event")
            if event == "start":
                progress.line(f"{name}: {result['how']}")
            elif event == "progress":
                now = time.monotonic()
                if now - progress.last.get(name, 0.0) >= 10.0:
                    progress.last[name] = now
                    progress.line(f"{name}: step {result['step']}/{result['steps']} "
                                  f"loss={result['loss']:.4g}")
            elif event == "end":
                on_end(name)
                status = result["status"]
                detail = (f" in {result['wall_time_s']:.1f} s" if status == "done"
                          else f": {result['error']}")
                progress.line(f"{name}: {status}{detail}")
                progress.bar.update(1)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            progress.line(f"{trial.config['trial']}: Ray lost the trial (its worker died); "
                          "re-run the sweep to resume it")

    return _Lines()


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    threads_per_trial: int = 1,
    num_cpus: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Runs every trial of `spec` not yet finished, on Ray Tune; writes OUT/sweep.csv.

    Args:
        spec: a validated sweep (`vaelab.sweep.load_sweep`).
        out: the sweep directory; trial runs go to OUT/<trial name>.
        address: a Ray cluster to attach to ("auto", "ray://host:10001", ...); None: embedded.
        max_concurrent: trials at once (default: as many as the CPUs allow).
        threads_per_trial: CPUs Ray reserves for each trial and torch threads it uses.
        num_cpus: CPUs of the embedded Ray (default: all of this machine's).
        retry_failed: run failed trials again (resuming from their last checkpoint).
        progress: print a line per trial and an overall bar on stderr.
    """
    if threads_per_trial < 1:
        raise VaelabError(f"--threads-per-trial must be >= 1, got {threads_per_trial}")
    if max_concurrent is not None and max_concurrent < 1:
        raise VaelabError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise VaelabError(f"--out {out} is a file; give a folder for the sweep")
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_trials(spec, out)
    names = [t["name"] for t in plan]
    atomic_write_json(out / ".sweep" / "sweep.json", {
        "name": spec.name, "description": spec.description, "source": spec.source,
        "varying": spec.varying, "search": spec.search,
        "trials": [{"name": t["name"], "values": t["values"]} for t in plan]})
    statuses = {n: _status(out, n) for n in names}
    todo = trials_to_run(statuses, retry_failed)
    csv_path = out / "sweep.csv"
    write_sweep_csv(csv_path, plan, spec.varying)
    finished = len(names) - len(todo)
    if progress:
        kept = sum(1 for n in names if statuses[n] == "done")
        failed = sum(1 for n in names if statuses[n] == "failed" and n not in todo)
        print(f"sweep {spec.name}: {len(names)} trials in {out}; {kept} done, {failed} failed "
              f"(kept), {len(todo)} to run", file=sys.stderr)
    interrupted = False
    if todo:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune prints nothing at verbose=0
        ray = import_ray()
        from ray import tune

        resources = {"cpu": threads_per_trial}
        started = _init_ray(ray, address, num_cpus)
        try:
            cluster = ray.cluster_resources()
            if cluster.get("CPU", 0) < threads_per_trial:
                raise VaelabError(
                    f"each trial asks for {threads_per_trial} CPUs (--threads-per-trial) and the "
                    f"Ray cluster has {cluster.get('CPU', 0):g}: no trial could start. Lower "
                    "--threads-per-trial or give Ray more CPUs (--num-cpus)")
            if cluster.get("GPU", 0) >= 1:
                resources["gpu"] = 1  # one GPU per trial
            by_name = {t["name"]: t for t in plan}
            bar = _Progress(len(names), finished, progress)
            trainable = tune.with_resources(
                tune.with_parameters(_trainable, plan=by_name, threads=threads_per_trial),
                resources)
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(todo)},
                tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent,
                                            reuse_actors=True),
                run_config=tune.RunConfig(
                    name=f"run-{time.strftime('%Y%m%d-%H%M%S')}",
                    storage_path=str(out / ".sweep" / "tune"), verbose=0,
                    callbacks=[_callback(bar, lambda _: write_sweep_csv(
                        csv_path, plan, spec.varying))],
                    failure_config=tune.FailureConfig(max_failures=0)),
            )
            try:
                tuner.fit()
            except KeyboardInterrupt:
                interrupted = True
            finally:
                bar.close()
        finally:
            if started:
                ray.shutdown()
    write_sweep_csv(csv_path, plan, spec.varying)
    statuses = {n: _status(out, n) for n in names}
    # Ctrl-C, or Ray lost a trial: some were left running or never started
    unfinished = any(statuses[n] in ("running", "pending") for n in todo)
    interrupted = interrupted or unfinished
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return SweepResult(out=out, counts=counts, csv=csv_path, interrupted=interrupted)


def failed_trials(out: Path, names: Sequence[str]) -> list[tuple[str, str]]:
    """(name, error) of the failed trials."""
    records = {n: trial_record(out, n) for n in names}
    return [(n, r.get("error", "")) for n, r in records.items() if r.get("status") == "failed"]

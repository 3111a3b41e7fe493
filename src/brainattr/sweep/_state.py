"""A sweep's state folder, under the shared cache: who was submitted, who ran, who failed, on which host.

``<cache>/sweeps/<plan name>/`` holds

- ``plan.json``: the settings and the jobs;
- ``jobs/<key>.submitted.json``, written by the submitting process (job id, log files), and
  ``jobs/<key>.state.json``, written by the job itself (running, done or failed, host, times,
  the error): one writer per file, each written atomically, so no record is ever read-modified;
- ``stages/<key>.jsonl``: the stage log of each job (:func:`brainattr.cache.log_stage`);
- ``logs/``: submitit's folder (pickles, stdout and stderr of every job);
- ``timings.json``: every job's wall time and stage records, merged by the final step.

``<cache>/sweeps/hosts/`` holds one marker per host that ran a job, the evidence that the cache
folder is shared between the submitting node and the compute nodes.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import traceback
from pathlib import Path

from ..cache import atomic_path, cache_root, read_stage_log

#: Folder of the sweeps' state, in the cache.
SWEEPS = "sweeps"
#: States a job record can hold, and the extra ones :func:`job_states` derives.
DONE, RUNNING, FAILED, PENDING, NOT_SUBMITTED, BLOCKED = "done", "running", "failed", "pending", "not submitted", \
    "blocked"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def sweeps_root() -> Path:
    """``<cache>/sweeps`` (not created)."""
    return cache_root() / SWEEPS


def state_folder(name: str) -> Path:
    """The state folder of the sweep ``name`` (:attr:`Plan.name`), not created."""
    return sweeps_root() / name


def write_plan(folder: Path, plan, executor: str) -> None:
    """Record the plan (settings, jobs, executor) in ``folder/plan.json``."""
    import dataclasses

    _write_json(Path(folder) / "plan.json", dict(
        name=plan.name, executor=executor, written=_now(), settings=dataclasses.asdict(plan.settings),
        trs=[int(t) for t in plan.trs], trs_per_job=plan.trs_per_job, depths=plan.depths,
        other_trs=None if plan.other_trs is None else [int(t) for t in plan.other_trs],
        jobs=[dict(key=j.key, **dataclasses.asdict(j)) for j in plan.jobs]))


def record_submitted(folder: Path, key: str, job_id: str, log: str, executor: str) -> None:
    """The submitting process's record of one job."""
    _write_json(Path(folder) / "jobs" / f"{key}.submitted.json",
                dict(key=key, job_id=str(job_id), log=str(log), executor=executor, submitted=_now()))


def record_state(folder: Path, key: str, state: str, **info) -> None:
    """A job's own record of its state (``running``, ``done`` or ``failed``), with its host and pid."""
    _write_json(Path(folder) / "jobs" / f"{key}.state.json",
                dict(key=key, state=state, host=socket.gethostname(), pid=os.getpid(), time=_now(), **info))


def failure_info(exc: BaseException) -> dict:
    """``error`` (one line) and ``traceback`` (the last lines) of an exception, for :func:`record_state`."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return dict(error=f"{type(exc).__name__}: {str(exc)[:500]}", traceback=text[-4000:])


def read_records(folder: Path) -> dict:
    """Every job's records: key -> ``{"submitted": dict or None, "state": dict or None}``."""
    records = {}
    for path in sorted((Path(folder) / "jobs").glob("*.json")):
        key, _, kind = path.name[:-len(".json")].rpartition(".")
        data = _read_json(path)
        if data is not None and kind in ("submitted", "state"):
            records.setdefault(key, {"submitted": None, "state": None})[kind] = data
    return records


def _pid_gone(state: dict) -> bool:
    """True if a 'running' record names a process of this host that no longer exists."""
    if state.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(state["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def job_state(records: dict | None, scheduler_state: str | None = None) -> str:
    """The state of one job from its records (and, on SLURM, from ``sacct``).

    A state record counts when it belongs to the latest submission (same job id), or when the
    job ran without a submission record (in-process). A record saying ``running`` whose process
    is gone from this host, or a job SLURM reports FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY or
    NODE_FAIL, is ``failed``.
    """
    if not records:
        return NOT_SUBMITTED
    submitted, state = records.get("submitted"), records.get("state")
    current = state is not None and (submitted is None or str(state.get("job_id")) == str(submitted.get("job_id")))
    if current and state["state"] in (DONE, FAILED):
        return state["state"]
    if scheduler_state and scheduler_state.split()[0] in ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                                                          "NODE_FAIL", "BOOT_FAIL", "DEADLINE"):
        return FAILED
    if current and state["state"] == RUNNING:
        return FAILED if _pid_gone(state) else RUNNING
    return PENDING if submitted is not None else NOT_SUBMITTED


def write_host_marker(token: str = "") -> Path:
    """Leave a marker of this host (and ``token``) in the cache this process sees; return its path.

    The submitting node looks for a compute node's marker to tell that the cache folder is
    shared (:func:`brainattr.sweep.check_shared_cache`).
    """
    host = socket.gethostname()
    path = sweeps_root() / "hosts" / f"{host}{'-' + token if token else ''}.json"
    _write_json(path, dict(host=host, token=token, cache=str(cache_root()), pid=os.getpid(), time=_now()))
    return path


def other_hosts() -> list:
    """Hosts other than this one whose jobs left a marker in the cache (it is shared with them)."""
    here = socket.gethostname()
    found = {(_read_json(p) or {}).get("host") for p in (sweeps_root() / "hosts").glob("*.json")}
    return sorted(h for h in found if h and h != here)


def merge_timings(folder: Path, plan) -> tuple[Path, list]:
    """Merge every job's wall time and stage records into ``folder/timings.json``.

    Returns
    -------
    path : Path
    stages : list of dict
        Every stage-log record of the jobs, with its job's key.
    """
    folder = Path(folder)
    records = read_records(folder)
    jobs, stages = {}, []
    for job in plan.jobs:
        state = (records.get(job.key) or {}).get("state") or {}
        jobs[job.key] = {k: state.get(k) for k in ("state", "seconds", "host", "time", "log", "error")}
        stages += [dict(r, job=job.key) for r in read_stage_log(folder / "stages" / f"{job.key}.jsonl")]
    totals = {}
    for r in stages:
        totals[r["stage"]] = round(totals.get(r["stage"], 0.0) + float(r.get("seconds", 0.0)), 3)
    path = folder / "timings.json"
    _write_json(path, dict(sweep=plan.name, merged=_now(), stage_seconds=totals, jobs=jobs, stages=stages))
    return path, stages

"""What a sweep will run (``--dry-run``) and where it stands (``--status``), as text."""
from __future__ import annotations

import json
import shutil

from ._grid import STAGES
from ._state import BLOCKED, DONE, FAILED, NOT_SUBMITTED, PENDING, RUNNING, job_state, read_records, state_folder

#: Columns of the status table, in order.
STATUS_COLUMNS = (DONE, RUNNING, PENDING, FAILED, BLOCKED, NOT_SUBMITTED)


def format_plan(plan, list_jobs: bool = True) -> str:
    """The jobs of a plan, per model and stage, then (optionally) one line per job.

    Returns
    -------
    str
    """
    s = plan.settings
    counts = plan.counts()
    lines = [f"sweep {plan.name}: {len(plan.depths)} model(s), "
             f"{len(s.subjects) if not isinstance(s.subjects, int) else s.subjects} subject(s), "
             f"{plan.trs.size} held-out TRs ({plan.trs_per_job} per stage-B job)"
             + (f", {plan.other_trs.size} for the models but the primary" if plan.other_trs is not None else "")
             + f", {s.context}-word context",
             "", "| model | blocks | stage A jobs (layers) | stage B jobs (layer groups x TR chunks) |",
             "|---|---|---|---|"]
    for model, depth in plan.depths.items():
        a = [j for j in plan.stage("A") if j.model == model]
        b = [j for j in plan.stage("B") if j.model == model]
        groups = list(dict.fromkeys(j.group for j in b))
        lines.append(f"| {model} | {depth} | {len(a)} | {len(b)} ({', '.join(groups)} x {len(b) // len(groups)}) |")
    lines += ["", "jobs per stage: " + ", ".join(f"{stage} {n}" for stage, n in counts.items()) +
              f"; {sum(counts.values())} in all"]
    if list_jobs:
        lines += ["", *(f"  {job.key}: {job.describe()}" for job in plan.jobs)]
    return "\n".join(lines) + "\n"


def _scheduler_states(folder, records) -> dict:
    """SLURM's state of each submitted job that has not recorded an end itself (via ``sacct``)."""
    plan = json.loads((folder / "plan.json").read_text()) if (folder / "plan.json").is_file() else {}
    if plan.get("executor") != "slurm" or shutil.which("sacct") is None:
        return {}
    from submitit.slurm.slurm import SlurmJob

    jobs = {key: SlurmJob(folder / "logs", r["submitted"]["job_id"]) for key, r in records.items()
            if r.get("submitted") and job_state(r) not in (DONE, FAILED)}
    return {key: job.state for key, job in jobs.items()}


def sweep_status(plan) -> dict:
    """Each job's state: done, running, pending, failed, blocked (a job it needs failed) or not submitted.

    Returns
    -------
    dict of str -> (str, dict or None)
        Job key -> (state, its latest record: error, log, host, ...).
    """
    folder = state_folder(plan.name)
    records = read_records(folder) if folder.is_dir() else {}
    scheduler = _scheduler_states(folder, records) if records else {}
    out = {}
    for job in plan.jobs:
        r = records.get(job.key)
        state = job_state(r, scheduler.get(job.key))
        if state in (PENDING, NOT_SUBMITTED) and any(out[d.key][0] in (FAILED, BLOCKED)
                                                     for d in plan.dependencies(job)):
            state = BLOCKED
        submitted, own = (r or {}).get("submitted") or {}, (r or {}).get("state") or {}
        latest = {**submitted, **{k: v for k, v in own.items() if v is not None}}
        out[job.key] = (state, latest or None)
    return out


def format_status(plan) -> str:
    """``--status``: jobs per stage and state, then every failed job with its error and log file."""
    folder = state_folder(plan.name)
    if not folder.is_dir():
        return f"sweep {plan.name}: nothing submitted yet (no state folder {folder}).\n"
    status = sweep_status(plan)
    lines = [f"sweep {plan.name} ({folder})", "", "| stage | jobs | " + " | ".join(STATUS_COLUMNS) + " |",
             "|---|---|" + "---|" * len(STATUS_COLUMNS)]
    for stage in STAGES:
        states = [status[j.key][0] for j in plan.stage(stage)]
        lines.append(f"| {stage} | {len(states)} | " + " | ".join(str(states.count(c)) for c in STATUS_COLUMNS) + " |")
    failed = [(key, info) for key, (state, info) in status.items() if state == FAILED]
    if failed:
        lines += ["", "failed jobs:"]
        for key, info in failed:
            info = info or {}
            lines.append(f"  {key}: {info.get('error') or 'ended without a record (killed? see its log)'}\n"
                         f"    log: {info.get('log') or '?'}  host: {info.get('host') or '?'}")
    return "\n".join(lines) + "\n"

"""Submitting a sweep with submitit: the checks made before anything is submitted, then the jobs.

- ``slurm``: every job is submitted at once, stage A as one job array, stage B as one array per
  model whose jobs depend on that model's stage-A jobs (``--dependency=afterok:...``), each
  stage-C job (a check notebook) depending on stages A and B and the stage-C job before it, the
  final step as one job depending on all of them; the command returns, and ``--status`` follows the
  jobs. A job that fails keeps its dependents from starting (SLURM's ``afterok``) and nothing else.
- ``local``: jobs run as processes on this machine, at most ``--jobs`` at a time (or one per
  visible GPU); a stage-B job is started once its model's stage-A jobs have succeeded. submitit's
  local executor starts every job it is given at once, so this module hands it a job only when
  a slot is free.
- ``debug``: the same, one job at a time, in this process.

For ``local`` and ``debug`` the final step runs in this process once every job has succeeded.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from ..cache import cache_root
from ._grid import SweepError
from ._jobs import SweepJob
from ._state import (
    DONE,
    FAILED,
    job_state,
    other_hosts,
    read_records,
    record_submitted,
    state_folder,
    sweeps_root,
    write_host_marker,
    write_plan,
)

#: The executors ``--executor`` takes.
EXECUTORS = ("slurm", "local", "debug")
#: Times a job that reaches its time limit is requeued (it resumes from its parts each time);
#: requeues after preemption do not count.
MAX_TIMEOUTS = 10


@dataclass
class SubmitOptions:
    """How a sweep's jobs are run (the command line's options).

    Attributes
    ----------
    executor : {"slurm", "local", "debug"}
    partition : str or None
        SLURM partition.
    gpus_per_job : int
        GPUs per job (SLURM ``--gpus-per-node``; locally, jobs run one per group of that many
        visible GPUs).
    time : int
        Time limit per job, minutes; a job still running then is requeued and resumes.
    array_parallelism : int
        SLURM: jobs of one array running at once.
    slurm_extra : dict of str -> str
        More ``sbatch`` options, e.g. ``{"account": "lab", "mem": "64G"}``.
    jobs : int
        Local CPU jobs at once.
    check_shared_cache : bool
        SLURM: make sure the compute nodes see this cache folder (:func:`check_shared_cache`).
    probe_timeout : float
        Seconds to wait for that check's probe job.
    """

    executor: str = "local"
    partition: object = None
    gpus_per_job: int = 0
    time: int = 240
    array_parallelism: int = 64
    slurm_extra: dict = field(default_factory=dict)
    jobs: int = 1
    check_shared_cache: bool = True
    probe_timeout: float = 900.0


@dataclass
class SweepReport:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    folder : Path
        The sweep's state folder.
    skipped : int
        Jobs done by an earlier run, not run again.
    submitted : dict of str -> int
        Jobs submitted (or run) per stage.
    failed : list of (str, str, str)
        (job key, error, log file) of each failed job.
    blocked : list of str
        Jobs not started because a job they depend on failed.
    final : dict or None
        The final step's result (local, debug), None if it did not run here.
    """

    folder: Path
    skipped: int = 0
    submitted: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    blocked: list = field(default_factory=list)
    final: object = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def parse_slurm_extra(pairs) -> dict:
    """``["KEY=VALUE", ...]`` (``--slurm-extra``) as a dict; a pair without ``=`` is a :class:`SweepError`."""
    extra = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise SweepError(f"--slurm-extra {pair!r} is not KEY=VALUE; e.g. --slurm-extra account=mylab "
                             "--slurm-extra mem=64G (each becomes an #SBATCH --KEY=VALUE line).")
        extra[key.strip().lstrip("-")] = value.strip()
    return extra


def cuda_available() -> bool:
    """True if torch sees a CUDA GPU here."""
    import torch

    return bool(torch.cuda.is_available())


def check_options(options: SubmitOptions) -> None:
    """The errors an executor's options can hold, found before anything is submitted.

    Raises
    ------
    SweepError
        An unknown executor; ``slurm`` without ``sbatch`` on ``PATH``; a GPU request on ``local``
        where torch sees no GPU; a count that is not positive.
    """
    if options.executor not in EXECUTORS:
        raise SweepError(f"unknown executor {options.executor!r}; use --executor slurm (jobs on a SLURM cluster), "
                         "local (jobs on this machine) or debug (one after the other, in this process).")
    for name, low in (("time", 1), ("jobs", 1), ("array_parallelism", 1), ("gpus_per_job", 0)):
        if int(getattr(options, name)) < low:
            raise SweepError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(options, name)}.")
    if options.executor == "slurm" and shutil.which("sbatch") is None:
        raise SweepError("--executor slurm needs SLURM's `sbatch`, which is not on PATH on this machine "
                         f"({socket.gethostname()}); run `brainattr sweep` on the cluster's login node (after "
                         "`module load slurm` where your site needs it), or use --executor local.")
    if options.executor == "local" and options.gpus_per_job > 0 and not cuda_available():
        raise SweepError(f"--gpus-per-job {options.gpus_per_job} asks for GPUs, but torch sees none on this machine "
                         "(torch.cuda.is_available() is False); use --gpus-per-job 0 with --jobs N for N CPU jobs, "
                         "or run on a GPU machine (or --executor slurm).")


def check_shared_cache(executor, timeout: float = 900.0, poll: float = 2.0) -> str:
    """Make sure a job of ``executor`` writes into the cache folder this process reads.

    A probe job leaves a marker (its host and a fresh token) in the cache folder *it* sees
    (:func:`brainattr.sweep.write_host_marker`); the check passes if this process finds it in
    its own ``<cache>/sweeps/hosts/``. A node-local cache (``/tmp``, a laptop's home folder not
    mounted on the nodes) fails it.

    Parameters
    ----------
    executor : submitit.Executor
        Set up like the sweep's jobs (partition, time), for a job of a few seconds.
    timeout : float
        Seconds to wait for the probe.
    poll : float

    Returns
    -------
    str
        The probe's host.

    Raises
    ------
    SweepError
        If the marker does not appear, or the probe does not finish in time.
    """
    token = uuid.uuid4().hex[:12]
    probe = executor.submit(write_host_marker, token)
    start = time.monotonic()
    while not probe.done():
        if time.monotonic() - start > timeout:
            probe.cancel(check=False)
            raise SweepError(f"the probe job {probe.job_id}, which checks that the compute nodes share the cache "
                             f"folder {cache_root()}, did not finish within {timeout:.0f} s (a busy queue?); rerun "
                             "with a longer --probe-timeout, or with --skip-cache-check if the folder is surely on "
                             "a file system every node mounts.")
        time.sleep(poll)
    markers = list((sweeps_root() / "hosts").glob(f"*-{token}.json"))
    if not markers:
        raise SweepError(f"the cache folder {cache_root()} is not shared with the compute nodes: the probe job "
                         f"{probe.job_id} ran, but its marker (token {token}) is not in {sweeps_root() / 'hosts'} "
                         f"as seen from {socket.gethostname()} (its log: {probe.paths.stderr}). Put the cache on a "
                         "file system every node mounts: export BRAINATTR_CACHE=/shared/path/brainattr-cache (e.g. "
                         "on the cluster's scratch or project space) before `brainattr sweep`.")
    return markers[0].name[:-len(f"-{token}.json")]


@contextlib.contextmanager
def _environment(**values):
    """Set environment variables for the block (the local executor copies them into its jobs)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _outcome(submitted):
    """(state, error) of a finished submitit job."""
    try:
        result = submitted.result()
    except Exception as exc:  # noqa: BLE001 - submitit wraps the job's own error
        return FAILED, str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else type(exc).__name__
    if isinstance(result, dict) and result.get("state") == FAILED:
        return FAILED, result.get("error", "")
    return DONE, ""


def _slots(options: SubmitOptions) -> list:
    """One entry per job that may run at once: the GPU ids it gets (empty for a CPU job)."""
    if options.executor == "debug":
        return [()]
    if options.gpus_per_job > 0:
        import torch

        n, g = torch.cuda.device_count(), int(options.gpus_per_job)
        if n < g:
            raise SweepError(f"--gpus-per-job {g}, but this machine has {n} visible GPU(s).")
        # the local executor sets each job's CUDA_VISIBLE_DEVICES from these: name the devices this process sees
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        ids = [int(v) for v in visible] if all(v.strip().isdigit() for v in visible) and len(visible) == n \
            else list(range(n))
        return [tuple(ids[i * g:(i + 1) * g]) for i in range(n // g)]
    return [()] * int(options.jobs)


def _run_here(plan, options, folder, todo, notebooks, echo, report) -> SweepReport:
    """``local`` and ``debug``: run the jobs, at most one per slot, each after its dependencies."""
    logs = folder / "logs"
    if options.executor == "debug":
        executor = submitit.DebugExecutor(logs)
    else:
        executor = submitit.LocalExecutor(logs, max_num_timeout=MAX_TIMEOUTS)
        executor.update_parameters(timeout_min=int(options.time))
    free = _slots(options)
    threads = max(1, (os.cpu_count() or 1) // len(free)) if not options.gpus_per_job else None
    pending, running, failed = list(todo), {}, set()
    while pending or running:
        for job in list(pending):
            deps = {d.key for d in plan.dependencies(job)}
            if deps & (failed | set(report.blocked)):
                pending.remove(job)
                report.blocked.append(job.key)
                continue
            if not free or deps & ({j.key for j in pending} | set(running)):
                continue
            gpus = free.pop(0)
            if options.executor == "local":
                executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
            blas = {k: threads for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")} if threads else {}
            with _environment(**blas):
                sub = executor.submit(SweepJob(plan, job.key, folder, threads=threads,
                                               raise_errors=options.executor != "debug",
                                               notebooks=notebooks if job.stage == "C" else None))
            record_submitted(folder, job.key, sub.job_id, sub.paths.stderr, options.executor)
            running[job.key] = (job, sub, gpus)
            pending.remove(job)
            report.submitted[job.stage] = report.submitted.get(job.stage, 0) + 1
        for key, (job, sub, gpus) in list(running.items()):
            if not sub.done():
                continue
            del running[key]
            free.append(gpus)
            state, error = _outcome(sub)
            if state == FAILED:
                failed.add(key)
                report.failed.append((key, error, str(sub.paths.stderr)))
                echo(f"brainattr sweep: FAILED {job.describe()}: {error}\n    log: {sub.paths.stderr}")
            else:
                echo(f"brainattr sweep: done {job.describe()}")
        if running:
            time.sleep(0.5)
    if not report.ok:
        echo(f"brainattr sweep: {len(report.failed)} job(s) failed, {len(report.blocked)} not started because of "
             "them; the final step did not run. Fix the cause and run the same command again: finished jobs are "
             "skipped, interrupted ones resume.")
        return report
    final = SweepJob(plan, "final", folder, raise_errors=False, notebooks=notebooks)
    result = final()
    report.submitted["final"] = 1
    if result.get("state") == FAILED:
        report.failed.append(("final", result.get("error", ""), "(this process)"))
    report.final = result
    return report


def _submit_slurm(plan, options, folder, todo, notebooks, echo, report) -> SweepReport:
    """``slurm``: submit every job at once, each array depending on the jobs it needs (``afterok``)."""
    executor = submitit.SlurmExecutor(folder / "logs", max_num_timeout=MAX_TIMEOUTS)
    params = dict(time=int(options.time), partition=options.partition, array_parallelism=int(options.array_parallelism),
                  gpus_per_node=int(options.gpus_per_job) or None, additional_parameters=options.slurm_extra or None,
                  setup=[f"export BRAINATTR_CACHE={cache_root()}", "export HF_HUB_OFFLINE=1",
                         "export TOKENIZERS_PARALLELISM=false"])
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    ids = {}

    def submit(jobs, stage, after):
        deps = sorted({ids[k] for k in after if k in ids})
        executor.update_parameters(job_name=f"brainattr-{stage}", dependency=f"afterok:{':'.join(deps)}" if deps
                                   else None)
        with executor.batch():
            subs = [executor.submit(SweepJob(plan, job.key, folder, notebooks=notebooks if job.stage in ("C", "final")
                                             else None)) for job in jobs]
        for job, sub in zip(jobs, subs):
            ids[job.key] = str(sub.job_id)
            record_submitted(folder, job.key, sub.job_id, sub.paths.stderr, "slurm")
        report.submitted[stage] = report.submitted.get(stage, 0) + len(jobs)

    stage_a = [j for j in todo if j.stage == "A"]
    if stage_a:
        submit(stage_a, "A", [])
    by_deps = {}
    for job in (j for j in todo if j.stage == "B"):
        by_deps.setdefault(tuple(d.key for d in plan.dependencies(job)), []).append(job)
    for deps, jobs in by_deps.items():
        submit(jobs, "B", deps)
    for job in (j for j in todo if j.stage == "C"):
        submit([job], "C", [d.key for d in plan.dependencies(job)])
    final = plan.job("final")
    submit([final], "final", [j.key for j in todo])
    echo(f"brainattr sweep: submitted {report.submitted} to SLURM (job ids in {folder / 'jobs'}, logs in "
         f"{folder / 'logs'}); follow them with `brainattr sweep --status` and the same --profile and -p options.")
    return report


def run_sweep(plan, options: SubmitOptions, notebooks=None, echo=print) -> SweepReport:
    """Check, then run or submit every job of ``plan`` that is not done yet, then the final step.

    Parameters
    ----------
    plan : Plan
    options : SubmitOptions
    notebooks : object, optional
        The book's notebook runner (:class:`brainattr.book.runner.SweepNotebooks`): stage C runs
        the check notebooks with its ``run_one``, the final step every notebook
        (:func:`brainattr.sweep.run_final`). None: stage C is left out and the final step only
        merges the tables.
    echo : callable

    Returns
    -------
    SweepReport

    Raises
    ------
    SweepError
        Before anything is submitted: bad options (:func:`check_options`), or, on SLURM, a cache
        folder the compute nodes do not share (:func:`check_shared_cache`, skipped once a node
        other than this one has left a marker).
    """
    check_options(options)
    if options.executor == "slurm" and options.check_shared_cache and not other_hosts():
        probe = submitit.SlurmExecutor(sweeps_root() / "hosts" / "probe-logs")
        probe.update_parameters(time=10, job_name="brainattr-probe", partition=options.partition,
                                additional_parameters=options.slurm_extra or None)
        host = check_shared_cache(probe, timeout=options.probe_timeout)
        echo(f"brainattr sweep: the cache folder {cache_root()} is shared with {host}")
    folder = state_folder(plan.name)
    folder.mkdir(parents=True, exist_ok=True)
    write_plan(folder, plan, options.executor)
    records = read_records(folder)
    done = {job.key for job in plan.jobs if job.stage != "final" and job_state(records.get(job.key)) == DONE}
    # the check notebooks need the book's runner: without it (--no-notebooks) stage C waits for a later run
    todo = [job for job in plan.jobs if job.stage != "final" and job.key not in done
            and (notebooks is not None or job.stage != "C")]
    report = SweepReport(folder=folder, skipped=len(done))
    echo(f"brainattr sweep: {plan.name}: {len(plan.jobs) - 1} jobs + the final step; {len(done)} done before, "
         f"{len(todo)} to run ({options.executor}); state in {folder}")
    if options.executor == "slurm":
        return _submit_slurm(plan, options, folder, todo, notebooks, echo, report)
    return _run_here(plan, options, folder, todo, notebooks, echo, report)

"""The book's whole grid as jobs on a cluster or on one machine: ``brainattr sweep``, on submitit.

A profile's grid (every model of chapter 2 and the chapters' model, every subject, the layers
of ``layer_step``, the held-out TRs of ``n_trs`` and ``fold``) is cut into jobs:

- stage A, one job per (model, layer): features and every subject's encoding model;
- stage B, one job per (model, analysed layer, chunk of TRs), started once the model's stage-A
  jobs succeeded: the attribution tables chapters 3-6 read, written as parts;
- stage C, one job per check notebook (chapter 7's maskings, chapter 8's controls), started once
  stages A and B succeeded: the notebook runs and fills the cache with what only it computes;
- a final step: merge the parts, merge the jobs' timings, run the notebooks (which then only read
  the cache).

Jobs are idempotent and resumable (a rerun skips what is done; a killed or preempted job resumes
from its written parts); the cache they share is safe for many writers
(:mod:`brainattr.cache`, :mod:`brainattr.attribution.store`). State, logs and timings live in
``<cache>/sweeps/<sweep>/`` (:mod:`._state`).

- :mod:`._grid`    :class:`SweepSettings`, :class:`Job`, :class:`Plan`, :func:`plan_sweep`
- :mod:`._jobs`    what each job runs; :class:`SweepJob`, the submitit callable
- :mod:`._state`   the state folder: records, host markers, merged timings
- :mod:`._submit`  the checks made before submitting, and the executors (slurm, local, debug)
- :mod:`._report`  ``--dry-run`` and ``--status`` as text
"""
from ._grid import (
    CHECK_PARAMETERS,
    STAGES,
    TRS_PER_JOB,
    Job,
    Plan,
    SweepError,
    SweepSettings,
    model_depth,
    plan_sweep,
    planned_trs,
    settings_from_notebooks,
)
from ._jobs import SweepJob, run_final, run_stage_a, run_stage_b, run_stage_c
from ._report import format_plan, format_status, sweep_status
from ._state import merge_timings, read_records, state_folder, write_host_marker
from ._submit import (
    EXECUTORS,
    SubmitOptions,
    SweepReport,
    check_options,
    check_shared_cache,
    cuda_available,
    parse_slurm_extra,
    run_sweep,
)

__all__ = ["CHECK_PARAMETERS", "EXECUTORS", "STAGES", "TRS_PER_JOB", "Job", "Plan", "SubmitOptions", "SweepError",
           "SweepJob", "SweepReport", "SweepSettings", "check_options", "check_shared_cache", "cuda_available",
           "format_plan", "format_status", "merge_timings", "model_depth", "parse_slurm_extra", "plan_sweep",
           "planned_trs", "read_records", "run_final", "run_stage_a", "run_stage_b", "run_stage_c", "run_sweep",
           "settings_from_notebooks", "state_folder", "sweep_status", "write_host_marker"]

"""What a sweep's jobs run: stage A (features, encoding), B (attribution parts), C (check notebooks), the final step.

Every job is idempotent: it computes only what the cache does not hold yet (encoding models are
read when stored; attribution resumes from the parts already written), so a rerun, a requeue
after preemption or a job killed half-way all end with the tables an uninterrupted run gives.
:class:`SweepJob` wraps a job for submitit: it records its state in the sweep's state folder,
logs its stages to its own file, and is :class:`submitit.helpers.Checkpointable`, so SLURM
requeues it on preemption or timeout.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import submitit

from ..cache import STAGE_LOG_ENV
from ._state import DONE, FAILED, RUNNING, failure_info, merge_timings, record_state, write_host_marker

#: What a sweep's jobs call themselves in the stage log (the compute page's "notebook" column).
SWEEP_NOTEBOOK = "sweep"


def _load(settings, model):
    """The subjects and the model, as the chapters load them."""
    from ..data import load_dataset
    from ..lm import load_model

    subjects = settings.subjects if isinstance(settings.subjects, int) else list(settings.subjects)
    data = load_dataset(settings.dataset, subjects, **settings.data_kwargs())
    return data, load_model(model, device=settings.device, precision=settings.precision, progress=False)


def run_stage_a(settings, job) -> None:
    """Stage A: the features of one layer and every subject's encoding model (cached; a stored fit is read)."""
    from ..encoding import encode_subjects

    data, lm = _load(settings, job.model)
    encode_subjects(lm, data, job.layer, context=settings.context, pooling=settings.pooling,
                    inner_folds=settings.inner_folds, progress=False, tr_features=settings.tr_features)


def chosen_layers(settings, lm, data) -> dict:
    """The analysed layers by group, as :func:`brainattr.pipeline.chapter_tables` chooses them (stage A's fits)."""
    from ..encoding import best_layers

    if settings.layers is not None:
        return {f"layer {int(layer)}": int(layer) for layer in settings.layers}
    best, _ = best_layers(lm, data, settings.layer_step, context=settings.context, pooling=settings.pooling,
                          inner_folds=settings.inner_folds, progress=False, tr_features=settings.tr_features)
    return {group: int(layer) for group, layer in best.items() if group in ("early", "middle", "late")}


def run_stage_b(settings, job, planned_trs) -> None:
    """Stage B: the attribution parts of one layer group and one chunk of held-out TRs.

    Writes what chapters 3-6 read for these TRs, with their settings, as parts (merged by the
    final step): GxI of BA for every subject; GxI of NWP, the final readout at the layer that
    carries it in :func:`brainattr.pipeline.attribute_layers` (the middle one) and the logit
    lens at this layer (:func:`brainattr.pipeline.logit_lens_tables`); at the layer
    :func:`brainattr.pipeline.gxi_and_ig` re-attributes, IG of the first subject on the chunk's
    share of its ``ig_trs`` TRs, and, for simulated subjects, the extra BA targets of chapter 3's
    ground-truth checks (:func:`brainattr.pipeline.ground_truth_attributions`: every subject's
    sparse-plant view, the first subject against its clean signal, and the Gradient × Activation
    rung), so that chapter reads them from the cache too. A model other than the primary one is
    attributed as chapter 4 attributes it: its own TRs (``other_model_trs``), no layers by hand,
    the logit lens only with ``other_model_lens``, no IG.

    Parameters
    ----------
    settings : SweepSettings
    job : Job
    planned_trs : array of int, shape (n_planned,)
        The plan's held-out TRs of this job's model (:meth:`Plan.trs_of`); checked against the
        encoding model's.
    """
    from ..attribution import AttributionSettings, evenly_spaced, held_out_trs
    from ..attribution.store import attribute_parts
    from ..data import has_ground_truth
    from ..encoding import encode_subjects

    primary = settings.is_primary(job.model)
    settings = settings.for_model(job.model)
    data, lm = _load(settings, job.model)
    chosen = chosen_layers(settings, lm, data)
    if job.group not in chosen:
        raise RuntimeError(f"{job.model} has no {job.group} layer among its scored layers ({chosen}); the plan "
                           "and stage A disagree: rerun `brainattr sweep` to plan again.")
    layer = chosen[job.group]
    groups = list(chosen.values())
    nwp_layer = chosen.get("middle", groups[len(groups) // 2])   # pipeline.attribute_layers' choice
    ig_layer = chosen.get("middle", groups[0])                    # ChapterTables.middle
    encodings = encode_subjects(lm, data, layer, context=settings.context, pooling=settings.pooling,
                                inner_folds=settings.inner_folds, progress=False, tr_features=settings.tr_features)
    all_trs = held_out_trs(encodings[0], settings.fold, settings.n_trs_of(job.model))
    if not np.array_equal(all_trs, np.asarray(planned_trs)):
        raise RuntimeError(f"the encoding model holds out {all_trs.size} TRs where the plan counted "
                           f"{len(planned_trs)}; the fit's trimming differs from the plan's: plan again.")
    trs = all_trs[job.trs[0]:job.trs[1]]
    base = AttributionSettings(context=settings.context, pooling=settings.pooling, voxel_set=settings.voxel_set,
                               methods=("gxi",), tr_features=settings.tr_features)
    tasks = ("ba", "nwp") if layer == nwp_layer else ("ba",)
    attribute_parts(lm, data, encodings, layer, base.replace(tasks=tasks), trs=trs, progress=False)
    if primary or settings.other_model_lens:
        attribute_parts(lm, data, encodings, layer, base.replace(tasks=("nwp",), nwp_readout="logit_lens"), trs=trs,
                        progress=False)
    if not primary or layer != ig_layer:
        return
    if has_ground_truth(data[0]):
        _ground_truth_parts(lm, data, encodings, layer, base, trs)
    if not settings.ig_trs:
        return
    ig_trs = evenly_spaced(all_trs, settings.ig_trs)
    ig_trs = ig_trs[np.isin(ig_trs, trs)]
    if ig_trs.size:
        one = base.replace(ig_steps=settings.ig_steps, ig_baseline=settings.ig_baseline, batch_size=1)
        attribute_parts(lm, data[:1], encodings[:1], layer, one.replace(methods=("ig",)), trs=ig_trs, progress=False)
        if layer != nwp_layer:  # gxi_and_ig also reads the final-readout NWP at this layer
            attribute_parts(lm, data[:1], encodings[:1], layer, one.replace(tasks=("nwp",)), trs=ig_trs,
                            progress=False)


def _ground_truth_parts(lm, data, encodings, layer, settings, trs):
    """The parts of :func:`brainattr.pipeline.ground_truth_attributions` for ``trs``: same targets, same keys."""
    from ..attribution.store import attribute_parts
    from ..pipeline import ground_truth_targets

    for _, targets, target_encodings, ba in ground_truth_targets(data, encodings, settings):
        attribute_parts(lm, targets, target_encodings, layer, ba, trs=trs, progress=False)


def run_stage_c(job, folder, notebooks) -> dict:
    """Stage C: run one check notebook (chapter 7's maskings, chapter 8's controls), which fills the cache.

    The notebook computes what only it computes (its maskings, its controls' encoding models and
    tables, stored in the cache), reading stages A and B's tables; its executed copy is kept in
    the state folder as the job's record. The final step runs it again, reading the cache only.

    Parameters
    ----------
    job : Job
        ``job.group`` names the notebook.
    folder : Path
        The sweep's state folder: the executed copy goes to ``notebooks/<name>.ipynb`` there.
    notebooks : object with a ``run_one(name, output)`` method
        The book's runner (:class:`brainattr.book.runner.SweepNotebooks`): it runs the notebook with
        the profile's parameters.

    Returns
    -------
    dict
        ``notebook``: the executed copy's path.
    """
    if notebooks is None:
        raise RuntimeError(f"stage C runs the notebook {job.group}, and this sweep was started without the "
                           "book's notebook runner: run it with `brainattr sweep` (without --no-notebooks).")
    output = Path(folder) / "notebooks" / f"{job.group}.ipynb"
    notebooks.run_one(job.group, output)
    return dict(notebook=str(output))


def run_final(plan, folder, notebooks=None) -> dict:
    """The final step: merge every table's parts, merge the jobs' timings, run the notebooks.

    Parameters
    ----------
    plan : Plan
    folder : Path
        The sweep's state folder.
    notebooks : callable, optional
        Called with the jobs' stage-log records once the tables are merged (the book's runner:
        it puts the records into the build's stage log and executes the notebooks, which then
        read the cache). None: stop after merging.

    Returns
    -------
    dict
        ``merged`` (table folders whose parts were merged) and ``timings`` (path).
    """
    from ..attribution.store import consolidate_tables

    merged = consolidate_tables()
    timings, stages = merge_timings(folder, plan)
    if notebooks is not None:
        notebooks(stages)
    return dict(merged=[str(p) for p in merged], timings=str(timings))


def _job_environment():
    """(job id, stderr log path) of the running submitit job; None for what is unknown (run by hand)."""
    try:
        env = submitit.JobEnvironment()
        job_id = str(env.job_id)
    except Exception:  # noqa: BLE001 - outside submitit
        return None, None
    try:
        return job_id, str(env.paths.stderr)
    except KeyError:  # the debug executor sets no SUBMITIT_FOLDER: the submitter records the log
        return job_id, None


class SweepJob(submitit.helpers.Checkpointable):
    """One job of a sweep, as submitit runs it; requeued as it is on preemption or timeout.

    Parameters
    ----------
    plan : Plan
    key : str
        The job's :attr:`Job.key`.
    folder : Path
        The sweep's state folder.
    threads : int, optional
        CPU threads for torch (local CPU jobs share the cores; the submitter sets BLAS's).
    raise_errors : bool
        Re-raise a failure after recording it (so SLURM marks the job failed and its dependents
        never start); False returns it (the debug executor would open a debugger otherwise).
    notebooks : callable, optional
        For stage C and the final step (:func:`run_stage_c`, :func:`run_final`).
    """

    def __init__(self, plan, key, folder, threads=None, raise_errors=True, notebooks=None):
        self.plan, self.key, self.folder = plan, key, Path(folder)
        self.threads, self.raise_errors, self.notebooks = threads, raise_errors, notebooks

    def __call__(self) -> dict:
        saved = {k: os.environ.get(k) for k in (STAGE_LOG_ENV, "BRAINATTR_NOTEBOOK")}
        os.environ[STAGE_LOG_ENV] = str(self.folder / "stages" / f"{self.key}.jsonl")  # this job's own stage log
        os.environ["BRAINATTR_NOTEBOOK"] = SWEEP_NOTEBOOK
        try:
            return self._recorded()
        finally:  # the final step runs in the submitting process: leave its environment as it was
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

    def _recorded(self) -> dict:
        """Run the job, recording its state (running, then done or failed) in the state folder."""
        job = self.plan.job(self.key)
        (self.folder / "stages").mkdir(parents=True, exist_ok=True)
        write_host_marker()
        job_id, log = _job_environment()
        record_state(self.folder, self.key, RUNNING, job_id=job_id, log=log)
        start = time.perf_counter()
        try:
            result = self._run(job)
        except Exception as exc:
            info = failure_info(exc)
            record_state(self.folder, self.key, FAILED, job_id=job_id, log=log,
                         seconds=round(time.perf_counter() - start, 2), **info)
            if self.raise_errors:
                raise
            return dict(state=FAILED, **info)
        record_state(self.folder, self.key, DONE, job_id=job_id, log=log, seconds=round(time.perf_counter() - start, 2))
        return dict(state=DONE, **(result or {}))

    def _run(self, job):
        if self.threads:  # BLAS threads come from the environment the job was started with
            import torch

            torch.set_num_threads(int(self.threads))
        if job.stage == "A":
            return run_stage_a(self.plan.settings, job)
        if job.stage == "B":
            return run_stage_b(self.plan.settings, job, self.plan.trs_of(job.model))
        if job.stage == "C":
            return run_stage_c(job, self.folder, self.notebooks)
        return run_final(self.plan, self.folder, self.notebooks)

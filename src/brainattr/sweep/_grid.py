"""A sweep's grid: its settings (read from a profile's notebook parameters) and its jobs.

Stage A has one job per (model, layer): the layer's features and every subject's encoding model.
Stage B has one job per (model, analysed layer, chunk of held-out TRs): GxI attribution of BA for
every subject, of NWP (the final readout at the layer that carries it, the logit lens at every
analysed layer) and, at the middle layer, IG on the few TRs the chapters re-attribute. The
analysed layers are the best early, middle and late layers (:func:`brainattr.encoding.best_layers`),
known only once stage A has scored every layer, so a stage-B job names its layer *group* and
reads the layer from stage A's fits when it runs. Stage C has one job per check notebook, the
chapters whose computations are their own (chapter 7's maskings, chapter 8's controls: another
model, another context): the job runs the notebook, which fills the cache. The final step merges
the parts and runs every notebook, which then only reads the cache.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np

from ..cache import cache_key

#: The stages, in the order they run.
STAGES = ("A", "B", "C", "final")
#: A notebook declaring one of these parameters is a check notebook, run as a stage-C job: chapter 7
#: (maskings) and chapter 8 (controls).
CHECK_PARAMETERS = ("mask_ks", "control_model")
#: Held-out TRs per stage-B job unless told otherwise (``--trs-per-job``).
TRS_PER_JOB = 64
#: The encoding fits' trimming and test gap (:func:`brainattr.encoding.fit_encoding`'s defaults).
_TRIM, _GAP = (20, 15), 5


class SweepError(ValueError):
    """Bad input for a sweep, found before anything is submitted."""


@dataclass(frozen=True)
class SweepSettings:
    """The science parameters a sweep's jobs share: those the chapters pass to the pipeline.

    Attributes
    ----------
    dataset, subjects, max_words, n_language_voxels, n_control_voxels, seed, text, data_options
        See :func:`brainattr.data.load_dataset` (``data_options`` is its ``options``).
    models : tuple of str
        Every model of the grid.
    device, precision
        See :func:`brainattr.lm.load_model`.
    context, pooling, inner_folds, layer_step, voxel_set, tr_features
        As the chapters use them (:func:`brainattr.pipeline.chapter_tables`).
    layers : tuple of int or None
        Layers analysed by hand; None: the best early, middle and late layer.
    n_trs, fold : int or None
        Evenly spaced held-out TRs of ``fold`` (None: every fold's).
    ig_trs, ig_steps, ig_baseline
        The TRs of the middle layer that the chapters also attribute with IG, for subject 1.
    model : str or None
        The primary model (chapter 4's ``model``; None: the first of ``models``): the others are
        attributed as chapter 4 attributes them (:meth:`n_trs_of`, :meth:`groups_of`).
    other_model_trs, other_model_groups, other_model_lens
        Chapter 4's settings for every model but ``model``: held-out TRs (None: ``n_trs``), layer
        groups (None: all) and whether their logit-lens NWP is read.
    checks : tuple of (str, str)
        The check notebooks (:data:`CHECK_PARAMETERS`), in the book's order, each with a hash of
        its parameters (so that changing one plans another sweep): one stage-C job each.
    """

    dataset: str = "builtin"
    models: tuple = ("smollm2-135m",)
    subjects: object = ("sub-01",)
    max_words: object = None
    n_language_voxels: int = 1000
    n_control_voxels: int = 500
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    context: int = 80
    pooling: str = "last"
    inner_folds: int = 5
    layer_step: int = 5
    layers: object = None
    n_trs: object = 48
    fold: object = None
    voxel_set: str = "language"
    ig_trs: int = 8
    ig_steps: int = 20
    ig_baseline: str = "eos"
    tr_features: str = "average"
    text: object = None
    data_options: object = None
    model: object = None
    other_model_trs: object = None
    other_model_groups: object = None
    other_model_lens: bool = True
    checks: tuple = ()

    def is_primary(self, model: str) -> bool:
        """Whether ``model`` is the one every test and verdict reads (all TRs, all groups, IG)."""
        return model == (self.model or self.models[0])

    def n_trs_of(self, model: str):
        """Held-out TRs attributed for ``model``: ``n_trs``, or ``other_model_trs`` for another model."""
        return self.n_trs if self.is_primary(model) or self.other_model_trs is None else self.other_model_trs

    def for_model(self, model: str) -> "SweepSettings":
        """These settings as ``model`` is attributed with: chapter 4 gives layers by hand to the primary model only."""
        return self if self.is_primary(model) else dataclasses.replace(self, layers=None)

    def groups_of(self, model: str, groups: list) -> list:
        """Of the layer groups ``groups``, those attributed for ``model`` (chapter 4's ``other_model_groups``)."""
        if self.is_primary(model) or self.other_model_groups is None:
            return list(groups)
        return [g for g in groups if g in set(self.other_model_groups)]

    def data_kwargs(self) -> dict:
        """Keyword arguments of :func:`brainattr.data.load_dataset` (after the name and subjects), as the chapters pass them."""
        return dict(max_words=self.max_words, n_language_voxels=self.n_language_voxels,
                    n_control_voxels=self.n_control_voxels, seed=self.seed, text=self.text, context=self.context,
                    options=self.data_options or None)


def _as_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def settings_from_notebooks(parameters: dict) -> SweepSettings:
    """The sweep's settings from every notebook's parameters (as the runner would inject them).

    The science comes from the chapter that attributes (the first notebook declaring ``layers``,
    ``voxel_set`` and ``n_trs``: chapter 4); the models are the ``models`` of the notebook that
    compares them (chapter 2) plus that chapter's ``model``, without repeats.

    Parameters
    ----------
    parameters : dict of str -> dict
        Notebook name -> every parameter's value (its own default where params.yml sets none),
        in params.yml order.

    Returns
    -------
    SweepSettings
        With :attr:`SweepSettings.checks`: the notebooks declaring one of :data:`CHECK_PARAMETERS`.

    Raises
    ------
    SweepError
        If no notebook declares the attribution parameters.
    """
    chapter = next((p for p in parameters.values() if {"layers", "voxel_set", "n_trs"} <= set(p)), None)
    if chapter is None:
        raise SweepError("no notebook declares `layers`, `voxel_set` and `n_trs` (the attribution chapters' "
                         f"parameters; notebooks: {', '.join(parameters)}), so the sweep cannot tell what the "
                         "book attributes; check notebooks_dir in params.yml.")
    compared = next((p["models"] for p in parameters.values() if "models" in p), [])
    models = tuple(dict.fromkeys([*(compared or []), *([chapter["model"]] if chapter.get("model") else [])]))
    names = {f.name for f in dataclasses.fields(SweepSettings)} - {"models", "checks"}
    values = {k: _as_tuple(chapter[k]) for k in names if k in chapter}
    checks = tuple((name, cache_key(**p)) for name, p in parameters.items() if set(CHECK_PARAMETERS) & set(p))
    return SweepSettings(models=models, checks=checks, **values)


@dataclass(frozen=True)
class Job:
    """One job of a sweep.

    Attributes
    ----------
    stage : {"A", "B", "C", "final"}
    model : str or None
    layer : int or None
        Stage A: the layer scored. Stage B: the layer when it was given by hand, else None.
    group : str or None
        Stage B: ``"early"``, ``"middle"``, ``"late"`` or ``"layer <l>"``. Stage C: the notebook run.
    trs : (int, int) or None
        Stage B: positions ``[start, stop)`` in the planned held-out TRs (:func:`planned_trs`).
    """

    stage: str
    model: object = None
    layer: object = None
    group: object = None
    trs: object = None

    @property
    def key(self) -> str:
        """A file-name-safe id, unique in its sweep, e.g. ``B-Qwen--Qwen2-1.5B-middle-trs00064-00128``."""
        if self.stage == "final":
            return "final"
        model = re.sub(r"[^A-Za-z0-9._-]+", "--", str(self.model))
        if self.stage == "A":
            return f"A-{model}-layer{int(self.layer):03d}"
        if self.stage == "C":
            return f"C-{self.group}"
        return f"B-{model}-{self.group.replace(' ', '')}-trs{self.trs[0]:05d}-{self.trs[1]:05d}"

    def describe(self) -> str:
        """One line for listings."""
        if self.stage == "final":
            return "final: merge the attribution parts, run the notebooks"
        if self.stage == "A":
            return f"A: {self.model}, layer {self.layer}: features + encoding models"
        if self.stage == "C":
            return f"C: notebook {self.group}: its own computations (into the cache)"
        return f"B: {self.model}, {self.group} layer, held-out TRs #{self.trs[0]}-{self.trs[1] - 1}: attribution"


@dataclass
class Plan:
    """A sweep's settings and jobs.

    Attributes
    ----------
    name : str
        The sweep's id (the state folder's name): the profile and a hash of the settings.
    settings : SweepSettings
    jobs : list of Job
        Stage A, then B, then the final step.
    trs : array of int, shape (n_planned,)
        The held-out TRs stage B attributes for the primary model (:func:`planned_trs`).
    depths : dict of str -> int
        Decoder blocks of each model.
    trs_per_job : int
    other_trs : array of int or None
        The held-out TRs of every other model, where ``other_model_trs`` gives them fewer.
    """

    name: str
    settings: SweepSettings
    jobs: list
    trs: np.ndarray
    depths: dict
    trs_per_job: int = TRS_PER_JOB
    other_trs: object = None
    _by_key: dict = field(default_factory=dict, repr=False)

    def trs_of(self, model: str) -> np.ndarray:
        """The held-out TRs whose positions ``model``'s stage-B jobs hold (``Job.trs``)."""
        if self.settings.is_primary(model) or self.other_trs is None:
            return self.trs
        return self.other_trs

    def __post_init__(self):
        self._by_key = {job.key: job for job in self.jobs}

    def stage(self, stage: str) -> list:
        """The jobs of one stage, in order."""
        return [job for job in self.jobs if job.stage == stage]

    def job(self, key: str) -> Job:
        return self._by_key[key]

    def dependencies(self, job: Job) -> list:
        """The jobs that must succeed before ``job`` starts.

        A stage-B job of a layer group needs every stage-A job of its model (the best layers are
        chosen among all scored layers); one of a layer given by hand, that layer's only. A
        stage-C job needs every job of stages A and B (its notebook reads their tables) and the
        stage-C job before it (check notebooks share tables, e.g. chapter 7 masks chapter 8's
        640-word ones: one after the other, they are computed once). The final step needs every
        other job.
        """
        if job.stage == "A":
            return []
        if job.stage == "final":
            return [j for j in self.jobs if j.stage != "final"]
        if job.stage == "C":
            checks = self.stage("C")
            before = checks[:checks.index(job)][-1:]
            return [j for j in self.jobs if j.stage in ("A", "B")] + before
        return [j for j in self.stage("A") if j.model == job.model and (job.layer is None or j.layer == job.layer)]

    def counts(self) -> dict:
        """Jobs per stage, dict of str -> int."""
        return {s: len(self.stage(s)) for s in STAGES}


def planned_trs(tr_runs, fold=None, n_trs=None) -> np.ndarray:
    """The held-out TRs stage B attributes, from the stimulus' runs alone (no fit needed).

    The same TRs as :func:`brainattr.attribution.held_out_trs` of an encoding model fitted with
    the default trimming and gap: the kept TRs of the test run of ``fold`` (None: of every run),
    then ``n_trs`` evenly spaced ones. A stage-B job checks them against its encoding model.

    Parameters
    ----------
    tr_runs : array of int, shape (n_stimulus_trs,)
    fold : int or None
    n_trs : int or None

    Returns
    -------
    array of int, shape (n_planned,)
    """
    from ..attribution.windows import evenly_spaced
    from ..trs import run_splits, trim_mask

    tr_runs = np.asarray(tr_runs)
    keep = trim_mask(tr_runs, _TRIM)
    tests = [np.flatnonzero(keep)[test] for _, test in run_splits(tr_runs, keep, _GAP)]
    if fold is not None and not 0 <= int(fold) < len(tests):
        raise SweepError(f"fold {fold} does not exist: the stimulus has {len(tests)} runs (folds 0-{len(tests) - 1}); "
                         "set -p fold to one of them, or null for every fold's TRs.")
    trs = np.sort(np.concatenate(tests)) if fold is None else tests[int(fold)]
    return evenly_spaced(trs, n_trs)


def model_depth(name: str) -> int:
    """Decoder blocks of a model, without loading its weights where possible.

    The paper's checkpoints from :data:`brainattr.lm.PAPER_MODELS`, other Hugging Face ids and
    folders from their ``config.json`` in the local cache, built-in and test models by loading
    them (they are small).

    Raises
    ------
    SweepError
        If the model is not available here (with how to get it).
    """
    from ..lm import BUILTIN_MODELS, PAPER_MODELS, load_model

    if name in PAPER_MODELS:
        return int(PAPER_MODELS[name]["n_layers"])
    if name not in BUILTIN_MODELS and not str(name).startswith(("tiny-random", "shape-")):
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(name, local_files_only=True)
            depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
            if depth:
                return int(depth)
        except (OSError, ValueError):
            pass
    try:
        return int(load_model(name, device="cpu", precision="fp32", progress=False).n_layers)
    except Exception as exc:  # noqa: BLE001 - any loading problem means the same fix
        raise SweepError(f"model {name!r} of the grid is not available on this machine ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); download it first on a node with internet "
                         f"(`huggingface-cli download {name}` into a shared HF_HOME), or fix its name with "
                         "-p models / -p model.") from None


def _groups(depth: int, settings: SweepSettings, grid: list) -> list:
    """The analysed layer groups of one model: the best-layer groups some scored layer falls in."""
    from ..encoding import best_layers_by_group

    if settings.layers is not None:
        return [f"layer {int(layer)}" for layer in settings.layers]
    return list(best_layers_by_group({layer: 0.0 for layer in grid}, depth))


def plan_sweep(settings: SweepSettings, trs_per_job: int = TRS_PER_JOB, name: str = "sweep") -> Plan:
    """Every job of a sweep: A per (model, layer), B per (model, layer group, TR chunk), C per check notebook, final.

    Parameters
    ----------
    settings : SweepSettings
    trs_per_job : int
        Held-out TRs per stage-B job.
    name : str
        The profile's name; the plan's :attr:`Plan.name` adds a hash of the settings.

    Returns
    -------
    Plan

    Raises
    ------
    SweepError
        If the grid has no job (no model, no subject, no held-out TR, no layer group).
    """
    from ..data import load_dataset
    from ..encoding import layer_grid

    if int(trs_per_job) < 1:
        raise SweepError(f"--trs-per-job must be at least 1, got {trs_per_job}.")
    subjects = settings.subjects
    why = ("it names no model (set `models` of chapter 2 or `model`)" if not settings.models else
           "it names no subject (set `subjects`)" if not subjects or subjects == 0 else None)
    if why:
        raise SweepError(f"the grid of profile {name!r} has no jobs: {why}.")
    first = subjects if isinstance(subjects, int) else list(subjects)[:1]
    stimulus = load_dataset(settings.dataset, first if isinstance(first, list) else 1,
                            **settings.data_kwargs())[0].stimulus
    trs = planned_trs(stimulus.tr_runs, settings.fold, settings.n_trs)
    other_trs = (planned_trs(stimulus.tr_runs, settings.fold, settings.other_model_trs)
                 if settings.other_model_trs is not None and len(settings.models) > 1 else None)
    if trs.size == 0:
        raise SweepError(f"the grid of profile {name!r} has no jobs: no held-out TR to attribute "
                         f"(n_trs={settings.n_trs}, fold={settings.fold}).")
    depths = {model: model_depth(model) for model in settings.models}
    stage_a, stage_b = [], []
    for model, depth in depths.items():
        primary = settings.is_primary(model)
        model_trs = trs if primary or other_trs is None else other_trs
        chunks = [(start, min(start + int(trs_per_job), model_trs.size))
                  for start in range(0, model_trs.size, int(trs_per_job))]
        grid = layer_grid(depth, settings.layer_step)
        own = settings.for_model(model)
        layers = sorted(set(grid) | {int(layer) for layer in (own.layers or ())})
        stage_a += [Job("A", model, layer=layer) for layer in layers]
        groups = settings.groups_of(model, _groups(depth, own, grid))
        if not groups and not primary and settings.other_model_groups is not None:
            raise SweepError(f"the grid of profile {name!r} has no stage-B jobs for {model}: none of "
                             f"other_model_groups {list(settings.other_model_groups)} is a layer group (early, "
                             "middle, late) with a scored layer; fix other_model_groups or lower layer_step.")
        if not groups:
            raise SweepError(f"the grid of profile {name!r} has no stage-B jobs for {model}: no scored layer "
                             f"(layers {grid}) falls in the early, middle or late third of its {depth} blocks; "
                             "lower layer_step or give the layers (-p layers '[...]').")
        for group in groups:
            layer = int(group.split()[1]) if group.startswith("layer ") else None
            stage_b += [Job("B", model, layer=layer, group=group, trs=chunk) for chunk in chunks]
    fields_ = dataclasses.asdict(settings)
    digest = cache_key(**fields_, trs_per_job=int(trs_per_job))[:8]
    stage_c = [Job("C", group=notebook) for notebook, _ in settings.checks]
    return Plan(name=f"{name}-{digest}", settings=settings, jobs=[*stage_a, *stage_b, *stage_c, Job("final")],
                trs=trs, depths=depths, trs_per_job=int(trs_per_job), other_trs=other_trs)

"""Chapter-level calls: the stages chained the way the book's chapters use them.

Each function here only strings together the public calls of the stage modules
(:mod:`brainattr.encoding`, :mod:`brainattr.attribution`, ...), so a reader can follow a chapter's
pipeline in one place and rerun it on other data.

- :func:`alignment_scores`: chapter 2's sweep, every subject's held-out r at every scored layer;
  :func:`alignment_by_model` the same summarised per model (the paper's Appendix G).
- :func:`chapter_tables`: the load step of chapters 4-7 (subjects, model, best layers, GxI tables)
  in one call, returning a :class:`ChapterTables`.
- :func:`attribute_layers`: BA for every layer and subject, NWP once; one long table.
- :func:`gxi_and_ig`: a few TRs of one subject re-attributed with GxI and IG (Appendix E).
- :func:`method_agreement`: how far GxI and IG agree on those TRs.
- :func:`logit_lens_tables`: NWP read out at each analysed layer (the logit lens), beside the
  final-layer NWP of :func:`chapter_tables` (chapters 4-6).
- :func:`truth_tables`, :func:`ground_truth_attributions`, :func:`recovery_table`,
  :func:`oracle_ladder`, :func:`noise_sweep`: chapter 3's checks against the simulated subjects'
  planted truth (scores position alone cannot pass, the sparse plant, the oracle ladder, noise).
- :func:`block_means`: per-TR quantities averaged over subjects and layers, with CIs over blocks of
  text whose windows share no word (the unit of every chapter's verdict).
- :func:`iou_against_nulls`: Fig. 2's IoU with the uniform and the position-preserving chance level.
- :func:`category_marks`, :func:`position_summary`: Fig. 4's and Fig. 5's quantities per TR.
- :func:`masking_effects`: chapter 7's fair masking sweep (all ``k`` by magnitude, a few by sign);
  :func:`masking_at_context` the same at the paper's 640-word context (chapter 8's tables);
  :func:`masking_verdict_rows`, :func:`masking_control_gaps` its rows against the paper and the control.
- :func:`verdict_table`: every chapter's "paper vs this run" table, each verdict from
  :func:`brainattr.stats.verdict` with the paper's range and direction read from
  :mod:`brainattr.claims`.
- :func:`condition_tables`, :func:`compare_conditions`: chapter 8's controls (another model,
  another context length).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import claims, stats
from .analysis import center_of_mass, important_words, overlap, word_weights
from .attribution import (
    COLUMNS,
    AttributionSettings,
    attribute,
    evenly_spaced,
    held_out_trs,
    voxel_mask,
)
from .cache import VERDICT_STAGE, log_stage
from .data import as_simulated, load_dataset, true_contributions_table
from .encoding import best_layers, encode_subjects, layer_grid
from .features import stimulus_tr_features
from .lm import load_model, with_precision
from .oracle import clean_target_dataset, fit_oracle, oracle_tables, with_noise
from .recovery import recovery_scores

#: Layer groups of the paper's Appendix B, in depth order.
LAYER_GROUPS = ("early", "middle", "late")
#: The ``task`` of NWP read out at the analysed layer (:func:`logit_lens_tables`).
LENS_TASK = "nwp_lens"


# --------------------------------------------------------------------------------------------
# Chapter 2: brain alignment per layer and per model
# --------------------------------------------------------------------------------------------
def alignment_scores(lm, datasets, layers, context=80, pooling="last", inner_folds=10, stride=16, progress=True,
                     tr_features="average"):
    """Held-out r of every voxel of every subject at each layer (chapter 2's sweep).

    One pass of the model extracts (and caches) the features of every layer
    (:func:`brainattr.features.stimulus_tr_features`); then, per layer, the subjects, who read the
    same text and so share the design matrix, are fitted together
    (:func:`brainattr.encoding.encode_subjects`, cached).

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    datasets : list of brainattr.schema.Dataset
        Subjects who read the same stimulus.
    layers : sequence of int
    context, pooling, stride, tr_features
        See :func:`brainattr.features.stimulus_tr_features`.
    inner_folds : int
        Inner CV folds choosing each voxel's ridge penalty.
    progress : bool

    Returns
    -------
    scores : pandas.DataFrame
        One row per (subject, layer, voxel): ``subject``, ``layer``, ``voxel`` (0..n_voxels-1),
        ``r`` (held-out Pearson r), ``label`` (the voxel's ROI) and ``voxels`` (``"language ROI"``
        or ``"control"``); ``n_subjects * n_layers * n_voxels`` rows.
    fits : dict of (str, int) -> brainattr.encoding.EncodingResult
        The encoding model of each (subject, layer).
    """
    layers = [int(layer) for layer in layers]
    # one pass of the model extracts (and caches) every layer; per layer it would rerun the lower blocks
    stimulus_tr_features(lm, datasets[0].stimulus, layers, context=context, pooling=pooling, stride=stride,
                         tr_features=tr_features)
    rows, fits = [], {}
    for layer in tqdm(layers, desc="layers", disable=not progress):
        encs = encode_subjects(lm, datasets, layer, context=context, pooling=pooling, stride=stride,
                               inner_folds=inner_folds, progress=False, tr_features=tr_features)
        for ds, enc in zip(datasets, encs):
            fits[ds.subject, layer] = enc
            rows.append(pd.DataFrame({"subject": ds.subject, "layer": layer, "voxel": np.arange(ds.n_voxels),
                                      "r": enc.scores, "label": ds.voxel_labels,
                                      "voxels": np.where(ds.voxel_is_language, "language ROI", "control")}))
    return pd.concat(rows, ignore_index=True), fits


def alignment_by_model(models, datasets, layer_step, context=80, pooling="last", inner_folds=10, device="auto",
                       precision="auto", loaded=None, progress=True):
    """Mean language-ROI r of each subject at every ``layer_step``-th layer of each model (Appendix G).

    Parameters
    ----------
    models : sequence of str
        Model names (see :func:`brainattr.lm.load_model`).
    datasets : list of brainattr.schema.Dataset
    layer_step : int
        Layers scored: :func:`brainattr.encoding.layer_grid` of each model.
    context, pooling, inner_folds
        See :func:`alignment_scores`.
    device, precision
        For the models loaded here.
    loaded : dict of str -> (LanguageModel, dict), optional
        Models already loaded and swept, keyed by name: ``(lm, fits)`` with ``fits`` the second
        output of :func:`alignment_scores` (read instead of refitted).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        One row per (model, subject, layer): ``model``, ``subject``, ``layer``, ``relative_depth``
        (layer / number of layers) and ``r`` (mean over the subject's language-ROI voxels).
    """
    loaded = dict(loaded or {})
    rows = []
    for name in models:
        if name in loaded:
            lm, fits = loaded[name]
        else:
            lm = load_model(name, device=device, precision=precision)
            fits = alignment_scores(lm, datasets, layer_grid(lm.n_layers, layer_step), context=context,
                                    pooling=pooling, inner_folds=inner_folds, progress=False)[1]
        for layer in tqdm(layer_grid(lm.n_layers, layer_step), desc=name, leave=False, disable=not progress):
            for ds in datasets:
                rows.append(dict(model=name, subject=ds.subject, layer=layer, relative_depth=layer / lm.n_layers,
                                 r=fits[ds.subject, layer].scores[ds.voxel_is_language].mean()))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Chapters 4-7: the attribution tables
# --------------------------------------------------------------------------------------------
def attribute_layers(lm, datasets, layers, settings=AttributionSettings(), n_trs=48, fold=0, trs=None,
                     nwp_layer=None, inner_folds=5, stride=16, progress=True):
    """BA for every layer and subject, NWP once; one long table (the input of every figure).

    For each layer, the encoding models come from :func:`brainattr.encoding.encode_subjects`
    (cached) and the tables from :func:`brainattr.attribution.attribute` (stored; a rerun only
    reads): one LM pass per layer serves every subject. NWP does not depend on the subject or the
    layer: it is computed once, in the same forward pass as the BA of ``nwp_layer``, and its rows
    are repeated under every (subject, layer) so that each group holds both tasks.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    datasets : list of brainattr.schema.Dataset
        Subjects who read the same stimulus.
    layers : sequence of int
    settings : brainattr.attribution.AttributionSettings
        Its ``tasks`` are ignored (BA everywhere; NWP once with the final readout, at every layer
        with ``nwp_readout="logit_lens"``); its ``context``, ``pooling`` and ``tr_features`` are
        also those of the encoding models' features.
    n_trs, fold : int or None
        Evenly spaced held-out TRs of ``fold`` (see :func:`brainattr.attribution.held_out_trs`),
        unless ``trs`` is given.
    trs : array of int, optional
    nwp_layer : int or None
        The layer whose pass also computes NWP (default: the middle one of ``layers``).
    inner_folds : int
        Of the encoding models (must match the fits to reuse them).
    stride : int
        Of the encoding models' feature extraction (see :func:`brainattr.features.stimulus_tr_features`).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``layer``, ``task``, ``method`` and
        :data:`brainattr.attribution.COLUMNS`; one row per (subject, layer, task, method, TR, window
        word), sorted in that order.
    """
    if settings.precision is not None:  # features, fits and tables all from the converted copy
        lm, settings = with_precision(lm, settings.precision), settings.replace(precision=None)
    layers = [int(layer) for layer in layers]
    nwp_layer = layers[len(layers) // 2] if nwp_layer is None else int(nwp_layer)
    order = [nwp_layer] + [layer for layer in layers if layer != nwp_layer]
    frames, nwp = [], {}
    per_layer_nwp = settings.nwp_readout != "final"
    for layer in tqdm(order, desc="attribution (layers, all subjects)", disable=not progress, leave=False):
        encs = encode_subjects(lm, datasets, layer, context=settings.context, pooling=settings.pooling,
                               stride=stride, inner_folds=inner_folds, progress=False,
                               tr_features=settings.tr_features)
        if trs is None:
            trs = held_out_trs(encs[0], fold, n_trs)
        # the final readout's NWP is the same at every layer: computed once; the logit lens reads layer L
        tasks = ("ba", "nwp") if layer == nwp_layer or per_layer_nwp else ("ba",)
        out = attribute(lm, datasets, encs, layer, settings.replace(tasks=tasks), trs=trs, progress=False)
        for ds, tables in zip(datasets, out):
            for (task, method), table in tables.items():
                if task == "nwp" and not per_layer_nwp:
                    nwp[method] = table.to_pandas()
                else:
                    frames.append(table.to_pandas().assign(subject=ds.subject, layer=layer, task=task, method=method))
    for method, df in nwp.items():
        frames += [df.assign(subject=ds.subject, layer=layer, task="nwp", method=method)
                   for layer in layers for ds in datasets]
    keys = ["subject", "layer", "task", "method"]
    out = pd.concat(frames, ignore_index=True)
    return out[keys + list(COLUMNS)].sort_values(keys + ["tr", "word_index"], kind="stable").reset_index(drop=True)


@dataclass
class ChapterTables:
    """What chapters 4-7 read: the subjects, the model, the analysed layers and their GxI tables.

    Attributes
    ----------
    data : list of brainattr.schema.Dataset
        The subjects (one stimulus).
    lm : brainattr.lm.LanguageModel
    groups : dict of str -> int
        The analysed layers by group name, in depth order: ``{"early": l1, "middle": l2, "late":
        l3}`` for the best layers, ``{"layer 4": 4, ...}`` for layers given by hand.
    tables : pandas.DataFrame
        :func:`attribute_layers`' table plus ``layer_group`` (the name of the row's layer in
        ``groups``): columns ``subject``, ``layer``, ``task``, ``method``,
        :data:`brainattr.attribution.COLUMNS`, ``layer_group``.
    gxi : pandas.DataFrame
        The rows of ``tables`` whose ``method`` is ``"gxi"``.
    settings : brainattr.attribution.AttributionSettings
        What the tables were computed with (context, pooling, voxel set, ...).
    inner_folds : int
        Of the encoding models.
    n_trs : int or None
        Evenly spaced held-out TRs of ``fold``.
    fold : int
    layer_scores : dict of int -> float or None
        Mean language-ROI r of each scored layer when the best layers were chosen here, else None.
    """

    data: list
    lm: object
    groups: dict
    tables: pd.DataFrame
    settings: AttributionSettings
    inner_folds: int
    n_trs: object
    fold: int = 0
    layer_scores: object = None
    gxi: pd.DataFrame = field(init=False, repr=False)

    def __post_init__(self):
        self.gxi = self.tables[self.tables["method"] == "gxi"]

    @property
    def group_order(self) -> list:
        """The group names, in depth order."""
        return list(self.groups)

    @property
    def middle(self) -> int:
        """The middle group's layer, or the first analysed layer when there is no middle group."""
        return self.groups.get("middle", next(iter(self.groups.values())))

    def encodings(self, layer) -> list:
        """The subjects' encoding models of ``layer`` (:func:`brainattr.encoding.encode_subjects`; cached)."""
        return encode_subjects(self.lm, self.data, int(layer), context=self.settings.context,
                               pooling=self.settings.pooling, inner_folds=self.inner_folds, progress=False)

    def __str__(self) -> str:
        return (f"{self.lm.name}, layers {self.groups}; {self.gxi.tr.nunique()} held-out TRs x {len(self.data)} "
                f"subjects, {self.settings.context}-word context")


def chapter_tables(dataset="builtin", model="smollm2-135m", subjects=("sub-01",), *, context=80, pooling="last",
                   inner_folds=5, layer_step=5, layers=None, groups=LAYER_GROUPS, nwp_layer=None, n_trs=48, fold=0,
                   voxel_set="language", methods=("gxi",), max_words=None, n_language_voxels=1000,
                   n_control_voxels=500, seed=0, device="auto", precision="auto", data=None, lm=None,
                   progress=True, tr_features="average", text=None, data_options=None):
    """Load the subjects and the model, choose the layers and attribute them: chapters 4-7's first step.

    1. the subjects (:func:`brainattr.data.load_dataset`) and the model
       (:func:`brainattr.lm.load_model`), unless given as ``data`` and ``lm``;
    2. the layers: the best-aligned layer of each third of the model
       (:func:`brainattr.encoding.best_layers`, the paper's Appendix B; chapter 2's cached fits),
       unless ``layers`` are given;
    3. GxI attribution of BA per subject and layer and of NWP once, for evenly spaced held-out TRs
       (:func:`attribute_layers`; stored, so a rerun only reads).

    Parameters
    ----------
    dataset, subjects, max_words, n_language_voxels, n_control_voxels, seed, text
        See :func:`brainattr.data.load_dataset`.
    data_options : dict or None
        More arguments of the dataset's loader (``load_dataset``'s ``options``).
    model, device, precision
        See :func:`brainattr.lm.load_model`.
    context, pooling, voxel_set, methods, tr_features
        See :class:`brainattr.attribution.AttributionSettings` (``tr_features`` also of the
        encoding models that choose the layers).
    inner_folds : int
        Of the encoding models (as in chapter 2, so its fits are reused).
    layer_step : int
        Layers scored to find the best ones (:func:`brainattr.encoding.layer_grid`).
    layers : sequence of int or None
        Layers to analyse, named ``"layer <l>"``; None: the best layer of each of ``groups``.
    groups : sequence of str
        With ``layers=None``, the groups kept of ``("early", "middle", "late")`` (chapter 7: the
        middle one only); a group none of the scored layers falls in is left out, and a
        ValueError says so when that leaves none.
    nwp_layer : int or None
        The layer whose forward pass also computes NWP (default: the middle group's, else the
        middle one of the layers).
    n_trs, fold : int or None
        Evenly spaced held-out TRs of ``fold`` attributed (None: all of them).
    data : list of brainattr.schema.Dataset, optional
        Subjects already loaded (the dataset arguments are then ignored).
    lm : brainattr.lm.LanguageModel, optional
        A model already loaded (``model``, ``device`` and ``precision`` are then ignored).
    progress : bool

    Returns
    -------
    ChapterTables
        ``tables`` has one row per (subject, layer, task, method, TR, window word): ``n_subjects x
        n_layers x 2 tasks x n_methods`` groups of ``n_trs`` windows each.
    """
    if data is None:
        data = load_dataset(dataset, subjects, max_words=max_words, n_language_voxels=n_language_voxels,
                            n_control_voxels=n_control_voxels, seed=seed, text=text, options=data_options)
    if lm is None:
        lm = load_model(model, device=device, precision=precision)
    layer_scores = None
    if layers is None:  # chapter 2's fits, read from the cache
        best, layer_scores = best_layers(lm, data, layer_step, context=context, pooling=pooling,
                                         inner_folds=inner_folds, progress=progress, tr_features=tr_features)
        chosen = {g: int(best[g]) for g in best if g in groups}
        if not chosen:
            raise ValueError(f"no scored layer of {lm.name} falls in the {' or '.join(groups)} group (scored layers: "
                             f"{sorted(layer_scores)}); lower layer_step or give the layers.")
    else:
        chosen = {f"layer {layer}": int(layer) for layer in layers}
    settings = AttributionSettings(context=context, pooling=pooling, methods=tuple(methods), voxel_set=voxel_set,
                                   tr_features=tr_features)
    tables = attribute_layers(lm, data, list(chosen.values()), settings=settings, n_trs=n_trs, fold=fold,
                              nwp_layer=chosen.get("middle") if nwp_layer is None else nwp_layer,
                              inner_folds=inner_folds, progress=progress)
    tables["layer_group"] = tables["layer"].map({layer: g for g, layer in chosen.items()})
    return ChapterTables(data=data, lm=lm, groups=chosen, tables=tables, settings=settings, inner_folds=inner_folds,
                         n_trs=n_trs, fold=fold, layer_scores=layer_scores)


def chapter_tables_by_model(models, model=None, dataset="builtin", subjects=("sub-01",), *, n_trs=48,
                            other_n_trs=None, other_groups=None, layers=None, max_words=None, n_language_voxels=1000,
                            n_control_voxels=500, seed=0, data=None, lm=None, progress=True, text=None,
                            data_options=None, **kwargs):
    """:func:`chapter_tables` of several models on the same subjects: chapters 4-6's figures per model.

    The primary model (``model``, else the first of ``models``) is attributed as
    :func:`chapter_tables` alone would (its tables feed the chapters' verdicts); every other model
    at its own best early, middle and late layer (chapter 2's fits of that model, read from the
    cache), on ``other_n_trs`` TRs and ``other_groups`` layer groups, so that a second model costs
    a fraction of the first. The subjects are loaded once.

    Parameters
    ----------
    models : sequence of str
        Models drawn (see :func:`brainattr.lm.load_model`); ``model`` is put first when missing,
        repeats are dropped.
    model : str or None
        The primary model (default: ``models[0]``).
    dataset, subjects, max_words, n_language_voxels, n_control_voxels, seed, data, progress
        As for :func:`chapter_tables`.
    n_trs : int or None
        Held-out TRs attributed for the primary model (None: all of them).
    other_n_trs : int or None
        For each other model (None: ``n_trs``). Fewer TRs keep the same spacing over the folds,
        hence fewer independent blocks of text behind each of its CIs.
    other_groups : sequence of str or None
        Layer groups of the other models (None: those of the primary, ``kwargs["groups"]`` or
        all three).
    layers : sequence of int or None
        Layers of the primary model given by hand (None: its best layers). Another model's layer
        numbers mean other depths, so the other models always use their best layers.
    lm : brainattr.lm.LanguageModel, optional
        The primary model already loaded.
    **kwargs
        Passed to every :func:`chapter_tables` call (``context``, ``pooling``, ``inner_folds``,
        ``layer_step``, ``groups``, ``fold``, ``voxel_set``, ``device``, ``precision``, ...).

    Returns
    -------
    dict of str -> ChapterTables
        One per model, the primary first, keyed by the names given.
    """
    names = list(dict.fromkeys(([model] if model else []) + list(models)))
    if not names:
        raise ValueError("chapter_tables_by_model needs at least one model: give `models` (or `model`).")
    if data is None:
        data = load_dataset(dataset, subjects, max_words=max_words, n_language_voxels=n_language_voxels,
                            n_control_voxels=n_control_voxels, seed=seed, text=text, options=data_options)
    groups = tuple(kwargs.pop("groups", LAYER_GROUPS))
    out = {}
    for k, name in enumerate(tqdm(names, desc="models", disable=not progress or len(names) == 1, leave=False)):
        primary = k == 0
        out[name] = chapter_tables(
            model=name, data=data, lm=lm if primary else None, layers=layers if primary else None,
            groups=groups if primary or other_groups is None else tuple(other_groups),
            n_trs=n_trs if primary or other_n_trs is None else other_n_trs, progress=progress, **kwargs)
    return out


def model_tables(chapters, logit_lens=True, progress=False):
    """Each model's GxI tables (and logit-lens NWP) in one long table with a ``model`` column.

    Parameters
    ----------
    chapters : dict of str -> ChapterTables
        :func:`chapter_tables_by_model`'s output.
    logit_lens : bool or sequence of str
        Add the :func:`logit_lens_tables` (``task`` = :data:`LENS_TASK`; stored, so a rerun only
        reads) of every model (True), of none (False) or of the models named (e.g. the primary
        one only: the logit lens of a model with a large vocabulary costs as much as its BA).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        The columns of ``ChapterTables.gxi`` plus ``model`` (a categorical in the order of
        ``chapters``): one row per (model, subject, layer, task, method, TR, window word).
    """
    lens = set(chapters) if logit_lens is True else set() if logit_lens is False else set(logit_lens)
    if lens - set(chapters):
        raise ValueError(f"logit_lens names {sorted(lens - set(chapters))}, not among the models {list(chapters)}.")
    frames = []
    for name, ch in chapters.items():
        frames += [ch.gxi.assign(model=name)]
        if name in lens:
            frames += [logit_lens_tables(ch, progress=progress).assign(model=name)]
    out = pd.concat(frames, ignore_index=True)
    out["model"] = pd.Categorical(out["model"], list(chapters), ordered=True)
    return out


def logit_lens_tables(ch, methods=("gxi",), progress=False):
    """NWP read out at each of the chapter's layers (the logit lens), shaped like ``ch.gxi``.

    :func:`chapter_tables` attributes NWP as the whole model's next-word loss (the final readout):
    the same scalar, hence the same table, for every layer group. The paper reports NWP's spread
    changing with depth, which needs an NWP of the layer: here the final norm and the LM head read
    layer L's hidden states (``AttributionSettings(nwp_readout="logit_lens")``), for the same
    subjects, layers and TRs. The BA tables are those of ``ch`` (read from the store, not
    recomputed); only NWP is attributed, through blocks 1..L.

    Parameters
    ----------
    ch : ChapterTables
    methods : tuple of str
        Attribution methods (GxI only keeps the cost low).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        The columns of ``ch.tables``, ``task`` = :data:`LENS_TASK`, one row per (subject, layer,
        method, TR, window word).
    """
    settings = ch.settings.replace(nwp_readout="logit_lens", methods=tuple(methods))
    out = attribute_layers(ch.lm, ch.data, list(ch.groups.values()), settings=settings, n_trs=ch.n_trs, fold=ch.fold,
                           inner_folds=ch.inner_folds, progress=progress)
    out = out[out["task"] == "nwp"].assign(task=LENS_TASK).reset_index(drop=True)
    out["layer_group"] = out["layer"].map({layer: g for g, layer in ch.groups.items()})
    return out


# --------------------------------------------------------------------------------------------
# Estimates with the right unit: blocks of text
# --------------------------------------------------------------------------------------------
#: Columns of :func:`block_means`.
BLOCK_COLUMNS = ["quantity", "estimate", "ci_low", "ci_high", "p", "n_blocks", "n_trs"]


# --------------------------------------------------------------------------------------------
# Chapter 3: attribution against the simulated subjects' planted truth
# --------------------------------------------------------------------------------------------

def truth_tables(datasets, trs, settings=AttributionSettings(), how="l2"):
    """Each simulated subject's planted word truth on ``trs``, in the BA target's units and voxel set.

    Parameters
    ----------
    datasets : list of Dataset
        Simulated subjects.
    trs : array of int
    settings : AttributionSettings
        Its ``voxel_set`` picks the voxels, as for the BA target.
    how : {"l2", "sum"}
        L2 norm over voxels (magnitudes, the default reading) or signed sum (the signed reading).

    Returns
    -------
    dict subject -> pandas.DataFrame
        :func:`brainattr.data.true_contributions_table` with ``units="response_sd"``.
    """
    return {ds.subject: true_contributions_table(ds, trs=trs, voxels=voxel_mask(settings.voxel_set, ds), how=how,
                                                 units="response_sd") for ds in datasets}


def plant_views(datasets, encodings):
    """Each subject and its encoding model restricted to the sparse-plant voxels (``meta["voxel_plant"]``).

    The BA target of such a view is the squared error over the plant voxels only, whose truth is
    a known, sparse set of words (character mentions): what precision@k scores.

    Returns
    -------
    (list of Dataset, list of EncodingResult)
    """
    views, encs = [], []
    for ds, enc in zip(datasets, encodings):
        plant = np.asarray(ds.meta.get("voxel_plant", np.zeros(ds.n_voxels, bool)), dtype=bool)
        if not plant.any():
            raise ValueError(f"{ds.subject} has no sparse-plant voxels (meta['voxel_plant']); simulate with "
                             "plant_share > 0.")
        views.append(ds.select_voxels(plant))
        encs.append(enc.select_voxels(np.flatnonzero(plant)))
    return views, encs


def ground_truth_attributions(lm, datasets, encodings, layer, trs, settings=AttributionSettings(), clean_subject=0):
    """The extra BA attributions of chapter 3's ground-truth checks, in one pass over the windows.

    Every subject's sparse-plant view (:func:`plant_views`), and one subject's BA target taken
    against the clean signal instead of its measured response (:func:`brainattr.oracle.clean_target_dataset`),
    ride as extra "subjects" of one :func:`brainattr.attribution.attribute` call: the language
    model runs once per batch, each extra target costs one backward pass.

    Returns
    -------
    dict
        ``("plant", subject)`` -> table for every subject, ``("clean", subject)`` -> table for
        ``datasets[clean_subject]``.
    """
    views, view_encs = plant_views(datasets, encodings)
    clean = clean_target_dataset(datasets[clean_subject])
    out = attribute(lm, [clean] + views, [encodings[clean_subject]] + view_encs, layer,
                    settings.replace(tasks=("ba",), methods=("gxi",)), trs=trs)
    tables = {("clean", clean.subject): out[0][("ba", "gxi")].to_pandas()}
    tables.update({("plant", v.subject): o[("ba", "gxi")].to_pandas() for v, o in zip(views, out[1:])})
    return tables


def recovery_table(sources, truths, plant_sources=None, plant_truths=None, how="abs", n_boot=1000, seed=0):
    """:func:`brainattr.recovery.recovery_scores` of several sources side by side.

    Parameters
    ----------
    sources : dict name -> (dict subject -> table)
    truths : dict subject -> truth table
    plant_sources : dict name -> (dict subject -> table), optional
        The sources' sparse-plant tables (precision@k), where they have them.
    plant_truths : dict subject -> truth table, optional
    how, n_boot, seed
        See :func:`brainattr.recovery.recovery_scores`.

    Returns
    -------
    pandas.DataFrame with a ``source`` and a ``score`` level in its index
    """
    plant_sources = plant_sources or {}
    return pd.concat({name: recovery_scores(tables, {s: truths[s] for s in tables}, plant_sources.get(name),
                                            plant_truths, how=how, n_boot=n_boot, seed=seed)
                      for name, tables in sources.items()}, names=["source"])


#: The oracle ladder's rungs: (label, features, encoder fitted on, target), most ideal first.
LADDER = (
    ("i. oracle LM, fit on clean signal, prediction", "oracle", "clean", "prediction"),
    ("ii. oracle LM, fit on measured, prediction", "oracle", "measured", "prediction"),
    ("iii. oracle LM, fit on measured, MSE vs clean", "oracle", "measured", "mse_clean"),
    ("iv. oracle LM, fit on measured, MSE vs measured", "oracle", "measured", "mse_measured"),
    ("v. the LM, fit on measured, MSE vs clean", "lm", "measured", "mse_clean"),
    ("vi. the LM, fit on measured, MSE vs measured (the pipeline)", "lm", "measured", "mse_measured"),
)


def oracle_ladder(dataset, lm_table, lm_clean_table, trs, settings=AttributionSettings(), inner_folds=5,
                  ig_table=None, lm_plant_table=None, n_boot=1000, seed=0):
    """Chapter 3's ladder for one subject: where recovery of the planted words is lost.

    Rungs (:data:`LADDER`) go from an oracle language model, whose layer features are the
    simulation's own drivers (:mod:`brainattr.oracle`), fitted on the clean signal and attributing
    its prediction, down to the real pipeline: noise in the fit, the squared-error target (against
    the clean signal, then the measured response), the LM's features. A last rung, when given, is
    Integrated Gradients on the LM (the first-order method). Each rung is scored by
    :func:`brainattr.recovery.recovery_scores` against the same truth.

    Parameters
    ----------
    dataset : Dataset
        One simulated subject.
    lm_table, lm_clean_table : attribution tables
        The LM's BA GxI against the measured response and against the clean signal, on ``trs``.
    trs : array of int
    settings : AttributionSettings
        Its ``voxel_set`` is the oracle's too.
    inner_folds : int
    ig_table : attribution table, optional
        The LM's BA IG on some of ``trs``.
    lm_plant_table : attribution table, optional
        The LM's BA GxI of the subject's sparse-plant view (:func:`ground_truth_attributions`): with
        it, the oracle is also fitted on the plant voxels and the oracle's measured-fit rungs and the
        pipeline's get precision@k, the positive control of that score.
    n_boot, seed

    Returns
    -------
    (ladder, tables) : (pandas.DataFrame, dict)
        ``ladder`` indexed by (rung, score); ``tables`` maps each rung to its attribution table.
    """
    voxels = np.flatnonzero(voxel_mask(settings.voxel_set, dataset))
    rows = lm_table[lm_table["tr"].isin(trs)]
    fits = {fit_on: fit_oracle(dataset, voxels, fit_on, inner_folds) for fit_on in ("clean", "measured")}
    oracle = {fit_on: oracle_tables(dataset, enc, voxels, rows) for fit_on, enc in fits.items()}
    lm = {"mse_measured": rows, "mse_clean": lm_clean_table[lm_clean_table["tr"].isin(trs)]}
    tables = {label: (oracle[fit_on][target] if features == "oracle" else lm[target])
              for label, features, fit_on, target in LADDER}
    if ig_table is not None and len(ig_table):
        tables["vii. the LM, Integrated Gradients, MSE vs measured"] = ig_table
    truth = truth_tables([dataset], trs, settings)[dataset.subject]
    plant, plant_truth = {}, None
    if lm_plant_table is not None:
        plant_mask = np.asarray(dataset.meta["voxel_plant"], dtype=bool)
        view, plant_voxels = dataset.select_voxels(plant_mask), np.flatnonzero(plant_mask)
        plant_fit = fit_oracle(dataset, plant_voxels, "measured", inner_folds)
        on_plant = oracle_tables(dataset, plant_fit, plant_voxels, rows, ("prediction", "mse_measured"))
        plant = {LADDER[1][0]: on_plant["prediction"], LADDER[3][0]: on_plant["mse_measured"],
                 LADDER[5][0]: lm_plant_table[lm_plant_table["tr"].isin(trs)]}
        plant_truth = {dataset.subject: truth_tables([view], trs, settings)[dataset.subject]}
    s = dataset.subject
    ladder = pd.concat({label: recovery_scores({s: t}, {s: truth}, {s: plant[label]} if label in plant else None,
                                               plant_truth, n_boot=n_boot, seed=seed)
                        for label, t in tables.items()}, names=["rung"])
    return ladder, tables


def noise_sweep(dataset, lm_rows, noise_levels, settings=AttributionSettings(), inner_folds=5, n_boot=1000, seed=0):
    """Recovery against noise: the oracle's squared-error target refitted at each noise level.

    The subject's noise is rescaled (:func:`brainattr.oracle.with_noise`, the same draw), the
    oracle's encoder is refitted, and its BA target (MSE vs the measured response) and prediction
    are attributed and scored. It shows from which noise level on the squared-error target stops
    telling which words drive the voxels, even for a perfect language model.

    Returns
    -------
    pandas.DataFrame with columns ``noise``, ``target``, ``mean_true_r`` (the voxels'
    corr(clean, response)), ``held_out_r`` (the oracle's mean BA) and the word-identity
    ``estimate``, ``ci_low``, ``ci_high``
    """
    voxels = np.flatnonzero(voxel_mask(settings.voxel_set, dataset))
    trs = np.unique(lm_rows["tr"])
    truth = truth_tables([dataset], trs, settings)[dataset.subject]
    clean = as_simulated(dataset).clean[:, voxels]
    out = []
    for noise in noise_levels:
        noisy = with_noise(dataset, noise)
        enc = fit_oracle(noisy, voxels, "measured", inner_folds)
        true_r = np.nanmean([np.corrcoef(clean[:, v], noisy.responses[:, voxels[v]])[0, 1]
                             for v in range(voxels.size)])
        for target, table in oracle_tables(noisy, enc, voxels, lm_rows, ("prediction", "mse_measured")).items():
            wi = recovery_scores({dataset.subject: table}, {dataset.subject: truth}, n_boot=n_boot,
                                 seed=seed).loc["word_identity"]
            out.append(dict(noise=float(noise), target=target, mean_true_r=float(true_r),
                            held_out_r=float(enc.scores.mean()), estimate=wi["estimate"], ci_low=wi["ci_low"],
                            ci_high=wi["ci_high"]))
    return pd.DataFrame(out)


def block_means(per_tr, values=(), span=1, by=(), ratios=None, n_resamples=10000, seed=0):
    """Means of per-TR quantities with 95 % CIs whose unit is a block of text, not a TR or a subject.

    For each group of ``by``, the rows of each TR are averaged first (over subjects, layer groups,
    thresholds: whatever else the rows differ by), because every subject read the same text and
    NWP is the same for all of them. The TRs are then put in blocks whose windows share no word
    (:func:`brainattr.stats.independent_blocks` with ``span``; TRs too close to a kept one are left
    out), and each quantity's mean gets the block bootstrap CI and sign-flip ``p`` of
    :func:`brainattr.stats.paired_difference` (against 0: make a difference column first to test
    a difference). A ratio of two means gets :func:`brainattr.stats.ratio_of_means`.

    Parameters
    ----------
    per_tr : pandas.DataFrame
        One row per (..., ``tr``) with numeric columns.
    values : sequence of str
        Columns whose mean is estimated.
    span : int or pandas.DataFrame
        Window span in TRs, or an attribution table to measure it from
        (:func:`brainattr.stats.window_span`).
    by : sequence of str
        One estimate per group of these columns.
    ratios : dict of str -> (str, str), optional
        Name -> (numerator column, denominator column): the ratio of their means.
    n_resamples, seed
        See :func:`brainattr.stats.paired_difference`.

    Returns
    -------
    pandas.DataFrame
        One row per (group, quantity): the ``by`` columns and :data:`BLOCK_COLUMNS`
        (``quantity``: the column or ratio name; ``estimate``; ``ci_low``, ``ci_high``; ``p``
        against 0, or against a ratio of 1; ``n_blocks``, the independent units; ``n_trs``, the
        TRs in them).
    """
    by, values, ratios = list(by), list(values), dict(ratios or {})
    if isinstance(span, pd.DataFrame) or hasattr(span, "to_pandas"):
        span = stats.window_span(span)
    needed = list(dict.fromkeys(values + [c for pair in ratios.values() for c in pair]))
    rows = []
    for key, g in per_tr.groupby(by, sort=True) if by else [((), per_tr)]:
        key = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        t = g.groupby("tr")[needed].mean()
        blocks = stats.independent_blocks(t.index.to_numpy(), span)
        for v in values:
            res = stats.paired_difference(t[v].to_numpy(), np.zeros(len(t)), blocks, n_resamples=n_resamples,
                                          seed=seed)
            rows.append({**key, "quantity": v, "estimate": res["mean_difference"], "ci_low": res["ci_low"],
                         "ci_high": res["ci_high"], "p": res["p"], "n_blocks": res["n_blocks"],
                         "n_trs": res["n_units"]})
        for name, (num, den) in ratios.items():
            res = stats.ratio_of_means(t[num].to_numpy(), t[den].to_numpy(), blocks, n_resamples=n_resamples,
                                       seed=seed)
            rows.append({**key, "quantity": name, "estimate": res["ratio"], "ci_low": res["ci_low"],
                         "ci_high": res["ci_high"], "p": res["p"], "n_blocks": res["n_blocks"],
                         "n_trs": res["n_units"]})
    return pd.DataFrame(rows, columns=by + BLOCK_COLUMNS)


def iou_against_nulls(tables, thresholds, by=("subject", "layer_group"), nwp_task="nwp", span=None, n_resamples=10000,
                      seed=0):
    """Fig. 2: IoU of the BA and NWP important words, with both chance levels and CIs over text blocks.

    Per group of ``by`` (one subject and layer), :func:`brainattr.stats.position_preserving_iou`
    gives each TR's IoU, the uniform chance level (random sets of the same sizes) and the
    position-preserving one (BA's set of TR i against NWP's set of a TR j whose window shares no
    word, compared by position). Then, per threshold, :func:`block_means` over the TRs (averaged
    over the groups first): the IoU, both nulls, the IoU minus the position-preserving null, and
    the ratio of the IoU to each null.

    Parameters
    ----------
    tables : pandas.DataFrame
        Long GxI table (``ChapterTables.gxi``, possibly with :func:`logit_lens_tables` rows).
    thresholds : sequence of float
    by : sequence of str
    nwp_task : str
        ``"nwp"`` (the final readout) or :data:`LENS_TASK`.
    span : int or None
        Window span in TRs (default: :func:`brainattr.stats.window_span` of ``tables``).
    n_resamples, seed
        See :func:`block_means`.

    Returns
    -------
    per_tr : pandas.DataFrame
        One row per (group, threshold, TR): the ``by`` columns, ``threshold``, ``tr``, ``iou``,
        ``random_iou`` (uniform null), ``position_null_iou``, ``difference`` (``iou -
        position_null_iou``); TRs without a null partner are dropped.
    summary : pandas.DataFrame
        One row per threshold: ``threshold``, ``iou`` with ``iou_ci_low``, ``iou_ci_high``;
        ``random_iou``, ``position_null_iou``; ``difference`` with ``ci_low``, ``ci_high``,
        ``p``; ``ratio`` (IoU / position-preserving null) with ``ratio_ci_low``,
        ``ratio_ci_high``; ``uniform_ratio`` (IoU / uniform null); ``n_blocks``, ``n_trs``.
    """
    by = list(by)
    span = stats.window_span(tables) if span is None else int(span)
    per_tr = []
    for key, g in tables.groupby(by, sort=True):
        _, p = stats.position_preserving_iou(g[g["task"] == "ba"], g[g["task"] == nwp_task], thresholds, span=span,
                                             n_resamples=200, seed=seed, return_per_tr=True)
        per_tr.append(p.assign(**dict(zip(by, key if isinstance(key, tuple) else (key,)))))
    per_tr = pd.concat(per_tr, ignore_index=True).rename(columns={"observed_iou": "iou", "uniform_null_iou": "random_iou"})
    per_tr = per_tr.dropna(subset=["position_null_iou"])
    per_tr["difference"] = per_tr["iou"] - per_tr["position_null_iou"]
    per_tr = per_tr[by + ["threshold", "tr", "iou", "random_iou", "position_null_iou", "difference"]]
    est = block_means(per_tr, ["iou", "random_iou", "position_null_iou", "difference"], span, by=["threshold"],
                      ratios={"ratio": ("iou", "position_null_iou"), "uniform_ratio": ("iou", "random_iou")},
                      n_resamples=n_resamples, seed=seed).set_index(["threshold", "quantity"])
    rows = []
    for th in sorted(per_tr["threshold"].unique()):
        e = est.loc[th]
        rows.append(dict(threshold=th, iou=e.loc["iou", "estimate"], iou_ci_low=e.loc["iou", "ci_low"],
                         iou_ci_high=e.loc["iou", "ci_high"], random_iou=e.loc["random_iou", "estimate"],
                         position_null_iou=e.loc["position_null_iou", "estimate"],
                         difference=e.loc["difference", "estimate"], ci_low=e.loc["difference", "ci_low"],
                         ci_high=e.loc["difference", "ci_high"], p=e.loc["difference", "p"],
                         ratio=e.loc["ratio", "estimate"], ratio_ci_low=e.loc["ratio", "ci_low"],
                         ratio_ci_high=e.loc["ratio", "ci_high"], uniform_ratio=e.loc["uniform_ratio", "estimate"],
                         n_blocks=e.loc["iou", "n_blocks"], n_trs=e.loc["iou", "n_trs"]))
    return per_tr, pd.DataFrame(rows)


def category_marks(ba, nwp, categories, thresholds=(0.10, 0.60, 0.80), how="abs"):
    """Fig. 4 per TR: the share of each category's window words that BA, NWP, both or one only mark.

    The per-TR version of :func:`brainattr.analysis.category_shares` (which pools over TRs), so
    that :func:`block_means` can put CIs on it. Shares are in % of the category's words in the
    TR's window; TRs whose window holds no word of a category are left out for it.

    Parameters
    ----------
    ba, nwp : pandas.DataFrame
        Attribution tables of the two tasks (same TRs and windows).
    categories : pandas.DataFrame of bool
        :func:`brainattr.analysis.word_categories`, indexed by stimulus word.
    thresholds : sequence of float
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame
        One row per (threshold, category, TR): ``threshold``, ``category``, ``tr``, ``n_words``
        (the category's words in the window), ``BA marks``, ``NWP marks``, ``both``, ``BA only``,
        ``NWP only`` (%).
    """
    ba_w = word_weights(ba, how)[["tr", "word_index"]]
    base = ba_w[ba_w["tr"].isin(word_weights(nwp, how)["tr"].unique())]
    sets = {name: important_words(t, thresholds, how)[["threshold", "tr", "word_index"]]
            for name, t in (("ba", ba), ("nwp", nwp))}
    rows = []
    for th in thresholds:
        df = base.copy()
        for name, s in sets.items():
            keys = set(zip(s.loc[np.isclose(s["threshold"], th), "tr"], s.loc[np.isclose(s["threshold"], th),
                                                                               "word_index"]))
            df[name] = [(tr, w) in keys for tr, w in zip(df["tr"], df["word_index"])]
        for cat in categories.columns:
            d = df[categories[cat].to_numpy()[df["word_index"].to_numpy()]]
            g = d.assign(both=d["ba"] & d["nwp"], ba_only=d["ba"] & ~d["nwp"], nwp_only=~d["ba"] & d["nwp"]).groupby("tr")
            part = 100 * g[["ba", "nwp", "both", "ba_only", "nwp_only"]].mean()
            part.columns = ["BA marks", "NWP marks", "both", "BA only", "NWP only"]
            rows.append(part.assign(n_words=g.size()).reset_index().assign(threshold=th, category=cat))
    out = pd.concat(rows, ignore_index=True)
    return out[["threshold", "category", "tr", "n_words", "BA marks", "NWP marks", "both", "BA only", "NWP only"]]


def position_summary(table, threshold=0.10, edge=5, how="abs"):
    """Fig. 5 per TR: recency, primacy and centre of mass of one attribution table.

    Parameters
    ----------
    table : pandas.DataFrame
        One task's attribution table (one subject and layer).
    threshold : float
        The important-word threshold t.
    edge : int
        How many positions count as the most recent and as the oldest words.
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame
        One row per TR: ``tr``, ``n_words`` (window length), ``recent`` and ``oldest`` (% of the
        TR's important words at positions ``0..edge-1`` and at the window's ``edge`` oldest
        positions), ``oldest_but_first`` (the same for the ``edge`` oldest positions after the
        window's very first word, which a model without a start token reads as its first token,
        an attention sink), ``even`` (% an even spread would put in ``edge`` positions, ``100 *
        edge / n_words``), ``com`` (centre of mass over all window words, in words back) and
        ``com_important`` (over the important words only).
    """
    words = word_weights(table, how)
    n_words = words.groupby("tr").size().rename("n_words")
    imp = important_words(table, [threshold], how).merge(n_words.reset_index(), on="tr")
    first = imp["n_words"] - 1  # position of the window's oldest word
    flags = imp.assign(recent=imp["position"] < edge, oldest=imp["position"] > first - edge,
                       oldest_but_first=(imp["position"] < first) & (imp["position"] >= first - edge))
    shares = 100 * flags.groupby("tr")[["recent", "oldest", "oldest_but_first"]].mean()
    out = pd.concat([n_words, shares], axis=1).reset_index()
    out["even"] = 100 * edge / out["n_words"]
    out["com"] = center_of_mass(table, how=how).reindex(out["tr"]).to_numpy()
    out["com_important"] = center_of_mass(table, threshold=threshold, how=how).reindex(out["tr"]).to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# Appendix E: GxI against IG on a few TRs
# --------------------------------------------------------------------------------------------
@dataclass
class MethodTables:
    """One subject's GxI and IG tables on the same few TRs of one layer (:func:`gxi_and_ig`).

    Attributes
    ----------
    subject : str
    layer : int
    trs : array of int, shape (n_trs,)
    tables : dict of (str, str) -> pandas.DataFrame
        ``(task, method)`` -> the attribution table (:data:`brainattr.attribution.COLUMNS`), for
        tasks ``"ba"``, ``"nwp"`` and methods ``"gxi"``, ``"ig"``.
    """

    subject: str
    layer: int
    trs: np.ndarray
    tables: dict

    def __getitem__(self, key):
        return self.tables[key]


def gxi_and_ig(ch, ig_trs=8, ig_steps=20, ig_baseline="zero", subject=0, layer=None):
    """Re-attribute a few TRs of one subject with GxI and with IG (the paper's Appendix E check).

    The TRs are ``ig_trs`` evenly spaced ones among the chapter's attributed TRs, the ones chapter 3
    attributes with IG, so both methods' tables are usually read from the store. TRs are
    attributed one at a time (``batch_size=1``), as in chapter 3.

    Parameters
    ----------
    ch : ChapterTables
    ig_trs : int
        How many TRs.
    ig_steps : int
        IG's integration steps (paper: 20).
    ig_baseline : {"zero", "pad", "eos"}
    subject : int
        Index of the subject in ``ch.data``.
    layer : int or None
        Default: ``ch.middle``.

    Returns
    -------
    MethodTables
    """
    layer = ch.middle if layer is None else int(layer)
    ds, enc = ch.data[subject], ch.encodings(layer)[subject]
    trs = evenly_spaced(held_out_trs(enc, fold=ch.fold, n=ch.n_trs), ig_trs)
    settings = ch.settings.replace(ig_steps=ig_steps, ig_baseline=ig_baseline, batch_size=1)
    tables = {}
    for method in ("gxi", "ig"):
        out, = attribute(ch.lm, [ds], [enc], layer, settings.replace(methods=(method,)), trs=trs, progress=False)
        tables.update({key: table.to_pandas() for key, table in out.items()})
    return MethodTables(subject=ds.subject, layer=layer, trs=trs, tables=tables)


def method_agreement(tables, threshold=0.1, tasks=("ba", "nwp")):
    """Per TR, how far GxI and IG agree: rank correlation of word weights and overlap of the top words.

    Parameters
    ----------
    tables : MethodTables or dict of (str, str) -> table
        ``(task, method)`` -> attribution table, methods ``"gxi"`` and ``"ig"``.
    threshold : float
        The important-word threshold of the IoU (default 10 %).
    tasks : sequence of str

    Returns
    -------
    pandas.DataFrame
        One row per (task, TR): ``task`` (upper case), ``tr``, ``spearman`` (of the two methods'
        normalised word weights), ``iou_top10`` and ``chance_top10`` (IoU of their important-word
        sets at ``threshold`` and its random baseline, :func:`brainattr.analysis.overlap`).
    """
    from scipy.stats import spearmanr

    rows = []
    for task in tasks:
        gxi, ig = tables[(task, "gxi")], tables[(task, "ig")]
        g = word_weights(gxi).set_index(["tr", "word_index"])["weight"]
        i = word_weights(ig).set_index(["tr", "word_index"])["weight"]
        paired = pd.concat([g.rename("gxi"), i.rename("ig")], axis=1, join="inner").reset_index()
        top = overlap(gxi, ig, [threshold]).set_index("tr")
        for tr, d in paired.groupby("tr"):
            rows.append(dict(task=task.upper(), tr=tr, spearman=spearmanr(d["gxi"], d["ig"]).statistic,
                             iou_top10=top.loc[tr, "iou"], chance_top10=top.loc[tr, "random_iou"]))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Chapter 7: the fair masking sweep
# --------------------------------------------------------------------------------------------
def masking_effects(lm, dataset, encoding, layer, ba_table, nwp_table, trs, ks=(1, 2, 4, 7, 8), signed_ks=(7,),
                    context=80, pooling="last", voxel_set="language", n_boot=1000, min_blocks=2, seed=0,
                    progress=False):
    """Chapter 7's masking check: :func:`brainattr.masking.masking_sweep` by magnitude at every ``k``, by sign at a few.

    Masking by magnitude (``"abs"``) runs for every ``k`` of ``ks``; masking the most positive and
    the most negative words (``"pos"``, ``"neg"``) only for ``signed_ks``, which keeps the number
    of maskings (the cost) down: about ``1 + 5 len(ks) + 10 len(signed_ks)`` per subject, each
    re-running only the tokens from its first masked word on
    (:func:`brainattr.masking.evaluate_variants`). The bootstrap resamples blocks of TRs
    (:func:`brainattr.masking.tr_blocks`: a block starts at the first TR whose window shares no
    word with the block's first TR), so no masked TR is left out; TRs farther apart than a
    window, as in the book's default, are each a block of their own.

    Parameters
    ----------
    lm, layer, context, pooling, voxel_set, seed
        As for :func:`brainattr.masking.masking_sweep`.
    dataset, encoding : one subject's, or lists of several subjects' (one encoding per dataset)
    ba_table : pandas.DataFrame, or a list of them (one per dataset)
        The subjects' GxI tables of BA at the layer.
    nwp_table : pandas.DataFrame
        The GxI table of NWP (the same for every subject).
    trs : array of int
        The TRs masked (a subset of the tables' TRs).
    ks, signed_ks : sequence of int or float
        Words masked per TR, by magnitude and by sign; a float in (0, 1) is a share of each
        window's words (:data:`brainattr.masking.PAPER_SHARE`: the paper's top 1 %).
    n_boot, min_blocks : int
        Bootstrap resamples; fewer blocks than ``min_blocks`` give no CI.
    progress : bool

    Returns
    -------
    pandas.DataFrame
        :func:`brainattr.masking.masking_sweep`'s summary, the rows of both sweeps (with several
        subjects, means over them).
    """
    from . import masking

    trs = np.asarray(sorted(int(t) for t in trs))
    several = isinstance(ba_table, (list, tuple))
    ba = [t[t["tr"].isin(trs)] for t in (ba_table if several else [ba_table])]
    nwp = nwp_table[nwp_table["tr"].isin(trs)]
    ba = ba if several else ba[0]
    kw = dict(context=context, pooling=pooling, voxel_set=voxel_set, n_boot=n_boot, blocks="windows",
              min_blocks=min_blocks, seed=seed, progress=progress)
    parts = [masking.masking_sweep(lm, dataset, encoding, layer, ba, nwp, ks=list(ks), signs=("abs",), **kw)]
    if len(signed_ks):
        parts.append(masking.masking_sweep(lm, dataset, encoding, layer, ba, nwp, ks=list(signed_ks),
                                           signs=("pos", "neg"), **kw))
    return pd.concat(parts, ignore_index=True)


def masking_at_context(lm, dataset, context=640, stride=256, n_trs=12, layer=None, share=0.01, signed=True,
                       pooling="last", voxel_set="language", inner_folds=5, n_boot=1000, min_blocks=5, seed=0,
                       progress=False):
    """Chapter 7's masking at a long context (the paper's 640 words): the top ``share`` of each window.

    The encoding model and the GxI tables are those of chapter 8's context control: the same call
    (:func:`condition_tables` of one subject with ``context``, ``stride``, ``n_trs`` held-out TRs
    of fold 0 and the model's middle layer), hence the same cache entries, so whichever chapter
    runs first computes them and the other reads them. Then :func:`masking_effects` masks the top
    ``share`` of each window's words (``ceil(share x words)``: 7 of a full 640-word window with its
    delay words), by magnitude and, with ``signed``, by sign, with the position-matched and the
    anywhere controls and both targets.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
        One subject.
    context, stride : int
        Words before the delay TRs; the feature extraction's step (as chapter 8's ``alt_context``,
        ``alt_stride``).
    n_trs : int or None
        Evenly spaced held-out TRs of fold 0 (chapter 8's ``n_trs``).
    layer : int or None
        Default: the model's middle layer, as :func:`condition_tables`.
    share : float
        Of each window's words, masked (0.01: the paper's top 1 %).
    signed : bool
        Also mask the most positive and the most negative words.
    pooling, voxel_set, inner_folds, n_boot, seed, progress
        As for :func:`condition_tables` and :func:`masking_effects`.
    min_blocks : int
        Fewer independent stretches of text than this give no CI (NaN), hence no verdict: 12 TRs
        of one fold read with 640-word windows fall in about 2.

    Returns
    -------
    summary : pandas.DataFrame
        :func:`masking_effects`' summary (``share`` filled, ``k`` the count of a full window).
    tables : pandas.DataFrame
        :func:`condition_tables`' GxI tables of the condition.
    cost : dict
        :func:`condition_tables`' cost (``encoding_s``, ``attribution_s``: near zero when read from
        the cache) plus ``masking_s`` and ``n_trs``.
    """
    settings = AttributionSettings(pooling=pooling, voxel_set=voxel_set)
    tables, cost = condition_tables(lm, [dataset], int(context), layer=layer, stride=stride, settings=settings,
                                    n_trs=n_trs, inner_folds=inner_folds)
    layer = int(cost["layer"])
    enc, = encode_subjects(lm, [dataset], layer, context=int(context), pooling=pooling, stride=stride,
                           inner_folds=inner_folds, progress=False)
    g = tables[tables["method"] == "gxi"]
    start = time.perf_counter()
    summary = masking_effects(lm, dataset, enc, layer, g[g["task"] == "ba"], g[g["task"] == "nwp"], g["tr"].unique(),
                              ks=[share], signed_ks=[share] if signed else [], context=int(context), pooling=pooling,
                              voxel_set=voxel_set, n_boot=n_boot, min_blocks=min_blocks, seed=seed, progress=progress)
    cost = dict(cost, masking_s=time.perf_counter() - start, n_trs=int(g["tr"].nunique()))
    return summary, tables, cost


def _masking_rows(summary, k=None):
    """The rows by magnitude at ``k`` of a masking summary, indexed (masked_task, selection, target), and ``k``."""
    from . import masking

    s = summary[summary["sign"] == "abs"]
    share = s["share"] if "share" in s else pd.Series(np.nan, index=s.index)
    if k is None:
        shares = share.dropna().unique()
        if len(shares) == 1:
            k = float(shares[0])
        else:
            k = masking.PAPER_K if masking.PAPER_K in set(s["k"]) else int(s["k"].max())
    s = s[share == k] if masking.is_share(k) else s[(s["k"] == k) & share.isna()]
    if s.empty:
        raise ValueError(f"the masking summary has no rows by magnitude at k = {k}; pass one of its k or shares.")
    return s.set_index(["masked_task", "selection", "target"]), k


def masking_verdict_rows(summary, claim_ids=("masking-nwp-ce", "masking-ba-r"), k=None, label=""):
    """Chapter 7's rows for :func:`verdict_table`: masking each task's top words by magnitude, against the paper.

    NWP: the cross-entropy after masking the top NWP words over the unmasked one (a ratio; the
    paper: more than doubles); BA: the % change of BA's r after masking the top BA words (the
    paper: about -100 %). The null of each is the same change after masking the same positions
    (what masking that many words there does anyway).

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`masking_effects`' summary.
    claim_ids : (str, str)
        The NWP and the BA claim of :mod:`brainattr.claims`.
    k : int, float or None
        The ``k`` compared (a float in (0, 1): the rows of that ``share``); None: the summary's
        only share if it has one, else :data:`brainattr.masking.PAPER_K` if swept, else the
        largest ``k``.
    label : str
        Put before each row's label (e.g. ``"640 words: "``).

    Returns
    -------
    list of tuple
        ``(claim_id, estimate, null, label)`` for :func:`verdict_table`.
    """
    from . import masking

    s, k = _masking_rows(summary, k)
    what = f"top {100 * k:g} %" if masking.is_share(k) else f"top {k}"
    rows = []
    for claim_id, task, target in zip(claim_ids, ("nwp", "ba"), ("nwp", "ba_r")):
        top = s.loc[(task, f"top {task.upper()}", target)]
        ctrl = s.loc[(task, "random same positions", target)]
        if target == "nwp":         # a ratio to the unmasked loss
            est = {"estimate": 1 + top.relative, "ci_low": 1 + top.rel_ci_low, "ci_high": 1 + top.rel_ci_high}
            null, text = 1 + ctrl.relative, "NWP loss / unmasked"
        else:                       # a % change
            est = {"estimate": 100 * top.relative, "ci_low": 100 * top.rel_ci_low, "ci_high": 100 * top.rel_ci_high}
            null, text = 100 * ctrl.relative, "% change of BA r"
        rows.append((claim_id, dict(est, n_blocks=top.n_blocks), null,
                     f"{label}{what} {task.upper()} words: {text}"))
    return rows


def masking_control_gaps(summary, k=None):
    """Whether each task's top words do more than random words at the same positions, at one ``k``.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`masking_effects`' summary.
    k : int, float or None
        As for :func:`masking_verdict_rows`.

    Returns
    -------
    pandas.DataFrame
        One row per masked task, scored on its own target (NWP: cross-entropy, up = worse; BA: r,
        down = worse): ``k``, ``top`` (% change after masking its top words) with ``top_ci_low``,
        ``top_ci_high``, ``control`` (% change after masking the same positions), ``n_blocks`` and
        ``beyond_control``: True when the top words' CI lies wholly on the harmful side of the
        control's estimate, False when it does not, None without a CI.
    """
    s, k = _masking_rows(summary, k)
    rows = []
    for task, target in (("nwp", "nwp"), ("ba", "ba_r")):
        top, ctrl = s.loc[(task, f"top {task.upper()}", target)], s.loc[(task, "random same positions", target)]
        beyond = None
        if np.isfinite(top.rel_ci_low) and np.isfinite(top.rel_ci_high):
            beyond = bool(top.rel_ci_low > ctrl.relative if target == "nwp" else top.rel_ci_high < ctrl.relative)
        rows.append(dict(task=task.upper(), target=target, k=k, top=100 * top.relative,
                         top_ci_low=100 * top.rel_ci_low, top_ci_high=100 * top.rel_ci_high,
                         control=100 * ctrl.relative, n_blocks=int(top.n_blocks), beyond_control=beyond))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# "Paper vs this run": one verdict rule
# --------------------------------------------------------------------------------------------
#: Columns of :func:`verdict_table`.
VERDICT_COLUMNS = ["claim", "paper", "paper_low", "paper_high", "direction", "estimate", "ci_low", "ci_high", "null",
                   "null used", "n_blocks", "verdict", "units", "in the paper"]


def verdict_table(rows):
    """A chapter's "paper vs this run" table: every verdict from :func:`brainattr.stats.verdict`.

    For each row, the paper's stated range (:func:`brainattr.claims.paper_range`) and direction
    (:func:`brainattr.claims.direction`) are read from the one table of the paper's claims, and
    :func:`brainattr.stats.verdict` compares them with this run's estimate and 95 % CI:
    "reproduced" when the CI overlaps the paper's range, "same direction" when the estimate lies
    on the paper's side of the null and the CI excludes the null, "not reproduced" otherwise,
    "not comparable" where the paper gives neither a number nor a direction (or this run has no
    CI). No chapter writes a verdict by hand.

    Parameters
    ----------
    rows : sequence of tuples
        ``(claim_id, estimate, null)`` or ``(claim_id, estimate, null, label)``: ``estimate`` is a
        mapping with ``estimate`` (or ``mean_difference``), ``ci_low``, ``ci_high`` (and
        optionally ``n_blocks``), e.g. a row of :func:`block_means` or of
        :func:`brainattr.stats.compare_auc_blocks`, in the claim's ``units`` (an empty mapping:
        no estimate, "not comparable"); ``null`` the no-effect value this
        run compares with (the claim's ``null`` says which); ``label`` replaces the claim's
        short label (e.g. to name a layer group or a threshold).

    Returns
    -------
    pandas.DataFrame
        :data:`VERDICT_COLUMNS`, one row per entry of ``rows``: the claim, the paper's statement,
        range (``paper_low``, ``paper_high``; NaN where open) and ``direction``; this run's
        ``estimate``, ``ci_low``, ``ci_high``, the ``null`` value and what it is (``null used``),
        ``n_blocks`` (independent units behind the CI), the ``verdict``, the ``units`` and where
        the claim is in the paper.
    """
    out = []
    for row in rows:
        claim_id, est, null, *label = row
        c = claims.claim(claim_id)
        low, high = claims.paper_range(claim_id)
        direction = claims.direction(claim_id)
        values = {k: est.get(k, np.nan) for k in ("estimate", "mean_difference", "ci_low", "ci_high", "n_blocks")}
        estimate = float(values["estimate"] if "estimate" in est else values["mean_difference"])
        ci_low, ci_high = float(values["ci_low"]), float(values["ci_high"])
        null_value = np.nan if null is None else float(null)
        verdict = stats.verdict(estimate, ci_low, ci_high, low, high,
                                null=0.0 if null is None else null_value, direction=direction)
        # the runner gathers these records into the figures index (brainattr.book.runner.verdicts_markdown)
        log_stage(VERDICT_STAGE, 0.0, claim_id=claim_id, claim=label[0] if label else c["claim"],
                  estimate=estimate, ci_low=ci_low, ci_high=ci_high, null=null_value, verdict=verdict,
                  paper=c["paper"], figure=c["figure"])
        out.append({"claim": label[0] if label else c["claim"], "paper": c["paper"],
                    "paper_low": np.nan if low is None else low, "paper_high": np.nan if high is None else high,
                    "direction": direction or "", "estimate": estimate, "ci_low": ci_low, "ci_high": ci_high,
                    "null": null_value, "null used": c["null"], "n_blocks": values["n_blocks"], "verdict": verdict,
                    "units": c["units"], "in the paper": c["figure"]})
    return pd.DataFrame(out, columns=VERDICT_COLUMNS)


def verdict_summary(table):
    """The verdicts of :func:`verdict_table` in plain words, one Markdown bullet per row.

    Each bullet names the claim, the verdict, this run's estimate with its 95 % CI and the null,
    and the paper's range or direction, so a chapter states what its numbers show (negative
    results included) whatever the run.

    Returns
    -------
    str
        Markdown.
    """
    def num(x):
        return "—" if not np.isfinite(x) else f"{x:.3g}"

    lines = []
    for _, r in table.iterrows():
        if np.isfinite(r["paper_low"]) or np.isfinite(r["paper_high"]):
            low, high = r["paper_low"], r["paper_high"]
            paper = (f"{num(low)}" if low == high else f"{num(low)} to {num(high)}" if np.isfinite(low) and
                     np.isfinite(high) else f"> {num(low)}" if np.isfinite(low) else f"< {num(high)}")
        else:
            paper = f"{r['direction']} than the null" if r["direction"] else "no number"
        null = num(r["null"])
        if r["null used"] and r["null used"] != null:
            null += f", {r['null used']}"
        lines.append(f"- **{r['claim']}**: {r['verdict']}. This run: {num(r['estimate'])} "
                     f"[{num(r['ci_low'])}, {num(r['ci_high'])}] ({r['units'] or 'no units'}; null {null}); "
                     f"the paper: {paper}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Chapter 8: controls
# --------------------------------------------------------------------------------------------
def condition_tables(lm, datasets, context, label=None, layer=None, stride=16, settings=AttributionSettings(),
                     n_trs=12, inner_folds=5):
    """Encoding models and GxI tables of BA and NWP for one (model, context) condition (chapter 8).

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    datasets : list of brainattr.schema.Dataset
    context : int
        Words read before each window's delay TRs (and each word's context in the features).
    label : str or None
        Name of the condition (default: ``"<model>, <context> words"``).
    layer : int or None
        Default: the model's middle layer, ``lm.n_layers // 2``.
    stride : int
        Feature extraction: words per window step (see :func:`brainattr.features.extract_word_embeddings`).
    settings : brainattr.attribution.AttributionSettings
        Pooling, voxel set, ...; its ``context`` is replaced by ``context``.
    n_trs : int or None
        Evenly spaced held-out TRs of fold 0.
    inner_folds : int

    Returns
    -------
    tables : pandas.DataFrame
        :func:`attribute_layers`' table plus ``condition``.
    cost : dict
        ``condition``, ``model``, ``layer``, ``context``, ``language_r`` (mean language-ROI r over
        subjects), ``encoding_s`` and ``attribution_s`` (seconds; a rerun reads the cache).
    """
    layer = lm.n_layers // 2 if layer is None else int(layer)
    label = f"{lm.name}, {context} words" if label is None else label
    settings = settings.replace(context=int(context))
    start = time.perf_counter()
    encs = encode_subjects(lm, datasets, layer, context=settings.context, pooling=settings.pooling, stride=stride,
                           inner_folds=inner_folds, progress=False)
    fitted = time.perf_counter()
    tables = attribute_layers(lm, datasets, [layer], settings=settings, n_trs=n_trs, inner_folds=inner_folds,
                              stride=stride, progress=False)
    r = np.mean([enc.scores[ds.voxel_is_language].mean() for ds, enc in zip(datasets, encs)])
    cost = dict(condition=label, model=lm.name, layer=layer, context=settings.context, language_r=r,
                encoding_s=fitted - start, attribution_s=time.perf_counter() - fitted)
    return tables.assign(condition=label), cost


def compare_conditions(tables, threshold=0.1):
    """IoU of the BA and NWP important words and each task's centre of mass, per condition.

    Parameters
    ----------
    tables : pandas.DataFrame
        :func:`condition_tables` outputs, concatenated.
    threshold : float
        The important-word threshold of the IoU.

    Returns
    -------
    pandas.DataFrame indexed by ``condition``
        ``iou``, ``chance`` (means over TRs, then over subjects), ``CoM BA`` and ``CoM NWP``
        (mean attribution-weighted position, words back from the most recent word).
    """
    rows = []
    for (cond, s), g in tables.groupby(["condition", "subject"]):
        o = overlap(g[g.task == "ba"], g[g.task == "nwp"], [threshold])
        row = dict(condition=cond, subject=s, iou=o["iou"].mean(), chance=o["random_iou"].mean())
        for task in ("ba", "nwp"):
            row[f"CoM {task.upper()}"] = center_of_mass(g[g.task == task]).mean()
        rows.append(row)
    return pd.DataFrame(rows).groupby("condition").mean(numeric_only=True)

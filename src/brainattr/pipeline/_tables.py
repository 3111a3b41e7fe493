"""Chapters 2 and 4-8: brain alignment per layer and model, the attribution tables, the controls."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..analysis import center_of_mass, overlap
from ..attribution import COLUMNS, AttributionSettings, attribute, held_out_trs
from ..data import load_dataset
from ..encoding import best_layers, encode_subjects, layer_grid
from ..features import stimulus_tr_features
from ..lm import load_model, with_precision


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
        """The subjects' encoding models of ``layer`` (:func:`brainattr.encoding.encode_subjects`; cached).

        Fitted on the tables' features (``settings``' ``context``, ``pooling`` and ``tr_features``).
        """
        return encode_subjects(self.lm, self.data, int(layer), context=self.settings.context,
                               pooling=self.settings.pooling, inner_folds=self.inner_folds, progress=False,
                               tr_features=self.settings.tr_features)

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
# Chapter 8: controls
# --------------------------------------------------------------------------------------------
def condition_tables(lm, datasets, context, label=None, layer=None, stride=16, settings=AttributionSettings(),
                     n_trs=12, inner_folds=5, fold=None, layer_step=None):
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
        Default: the middle layer of chapter 2's grid (:func:`brainattr.encoding.layer_grid` with
        ``layer_step``), whose features and fits chapter 2 stored; without ``layer_step``, ``lm.n_layers // 2``.
    stride : int
        Feature extraction: words per window step (see :func:`brainattr.features.extract_word_embeddings`).
    settings : brainattr.attribution.AttributionSettings
        Pooling, voxel set, ``tr_features`` (also of the encoding models' features), ...; its
        ``context`` is replaced by ``context``.
    n_trs : int or None
        Evenly spaced held-out TRs of ``fold`` (None: all of them).
    inner_folds : int
    fold : int or None
        Whose held-out TRs (:func:`brainattr.attribution.held_out_trs`): None, every fold's (the
        book's default, as in chapters 3-7: TRs spread over the whole text, so long windows still
        fall in several independent stretches of text); 0, 1, ...: one fold's, a stretch of text
        whose long windows overlap. The stored tables hold rows per TR, so the TRs of one choice
        never stand in for the other's.

    Returns
    -------
    tables : pandas.DataFrame
        :func:`attribute_layers`' table plus ``condition``.
    cost : dict
        ``condition``, ``model``, ``layer``, ``context``, ``language_r`` (mean language-ROI r over
        subjects), ``encoding_s`` and ``attribution_s`` (seconds; a rerun reads the cache).
    """
    if layer is None:
        grid = layer_grid(lm.n_layers, layer_step) if layer_step else [lm.n_layers // 2]
        layer = grid[len(grid) // 2]
    layer = int(layer)
    label = f"{lm.name}, {context} words" if label is None else label
    settings = settings.replace(context=int(context))
    start = time.perf_counter()
    encs = encode_subjects(lm, datasets, layer, context=settings.context, pooling=settings.pooling, stride=stride,
                           inner_folds=inner_folds, progress=False, tr_features=settings.tr_features)
    fitted = time.perf_counter()
    tables = attribute_layers(lm, datasets, [layer], settings=settings, n_trs=n_trs, fold=fold,
                              inner_folds=inner_folds, stride=stride, progress=False)
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

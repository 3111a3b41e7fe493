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
- :func:`condition_tables`, :func:`compare_conditions`: chapter 8's controls (another model,
  another context length).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .analysis import center_of_mass, overlap, word_weights
from .attribution import COLUMNS, AttributionSettings, attribute, evenly_spaced, held_out_trs
from .data import load_dataset
from .encoding import best_layers, encode_subjects, layer_grid
from .features import stimulus_tr_features
from .lm import load_model, with_precision

#: Layer groups of the paper's Appendix B, in depth order.
LAYER_GROUPS = ("early", "middle", "late")


# --------------------------------------------------------------------------------------------
# Chapter 2: brain alignment per layer and per model
# --------------------------------------------------------------------------------------------
def alignment_scores(lm, datasets, layers, context=80, pooling="last", inner_folds=10, stride=16, progress=True):
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
    context, pooling, stride
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
    stimulus_tr_features(lm, datasets[0].stimulus, layers, context=context, pooling=pooling, stride=stride)
    rows, fits = [], {}
    for layer in tqdm(layers, desc="layers", disable=not progress):
        encs = encode_subjects(lm, datasets, layer, context=context, pooling=pooling, stride=stride,
                               inner_folds=inner_folds, progress=False)
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
        with ``nwp_readout="logit_lens"``).
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
                               stride=stride, inner_folds=inner_folds, progress=False)
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
                   progress=True):
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
    dataset, subjects, max_words, n_language_voxels, n_control_voxels, seed
        See :func:`brainattr.data.load_dataset`.
    model, device, precision
        See :func:`brainattr.lm.load_model`.
    context, pooling, voxel_set, methods
        See :class:`brainattr.attribution.AttributionSettings`.
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
                            n_control_voxels=n_control_voxels, seed=seed)
    if lm is None:
        lm = load_model(model, device=device, precision=precision)
    layer_scores = None
    if layers is None:  # chapter 2's fits, read from the cache
        best, layer_scores = best_layers(lm, data, layer_step, context=context, pooling=pooling,
                                         inner_folds=inner_folds, progress=progress)
        chosen = {g: int(best[g]) for g in best if g in groups}
        if not chosen:
            raise ValueError(f"no scored layer of {lm.name} falls in the {' or '.join(groups)} group (scored layers: "
                             f"{sorted(layer_scores)}); lower layer_step or give the layers.")
    else:
        chosen = {f"layer {layer}": int(layer) for layer in layers}
    settings = AttributionSettings(context=context, pooling=pooling, methods=tuple(methods), voxel_set=voxel_set)
    tables = attribute_layers(lm, data, list(chosen.values()), settings=settings, n_trs=n_trs, fold=fold,
                              nwp_layer=chosen.get("middle") if nwp_layer is None else nwp_layer,
                              inner_folds=inner_folds, progress=progress)
    tables["layer_group"] = tables["layer"].map({layer: g for g, layer in chosen.items()})
    return ChapterTables(data=data, lm=lm, groups=chosen, tables=tables, settings=settings, inner_folds=inner_folds,
                         n_trs=n_trs, fold=fold, layer_scores=layer_scores)


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

"""Per-voxel (or per-parcel) attribution measures, for brain maps of the results.

BA's target is one scalar per TR, the mean squared error of the encoding model's prediction over a
voxel set (:func:`brainattr.attribution.voxel_mask`): its attribution says which words matter to
the set as a whole, not to each voxel. Three ways to a per-voxel measure:

1. attribute each voxel's prediction: one backward pass per voxel (or, the head being linear, one
   forward-mode pass per window word and layer): hundreds of times BA's single backward pass;
2. the centre of mass of each voxel's ridge-weight energy over the 4 delays: free, but a property
   of the fitted weights (how far back in *time* a voxel reads), not of attribution;
3. **per-region attribution**, this module's choice: BA's own target restricted to the voxels of
   one region (:func:`attribute_by_label`), for every region of the Dataset's labels (each
   language ROI and the controls of a simulated subject; each parcel of a parcel Dataset,
   :func:`brainattr.data.parcellate`). It is the paper's quantity, on fewer voxels; the engine's
   shared passes make it cheap: the regions enter :func:`brainattr.attribution.attribute` as copies
   of the subject whose language set is the region, so one forward pass per batch of windows
   serves every region and their gradients go back in one batched backward pass, at about the cost
   of attributing as many subjects (chapter 3's timing table gives that cost).

:func:`label_measures` summarises each region's attribution (the centre of mass of its word weights
over positions, the IoU of its important words with NWP's); :func:`to_voxels` paints a region's
value on its voxels, the input of :func:`brainattr.plots.marker_map`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .analysis import center_of_mass, overlap
from .attribution import COLUMNS, AttributionSettings, attribute


def label_masks(dataset, labels=None, min_voxels: int = 1) -> dict:
    """Boolean voxel masks of the Dataset's labels (its regions).

    Parameters
    ----------
    dataset : brainattr.schema.Dataset
    labels : sequence of str or None
        Labels to keep, in this order (default: every label, language ROIs first, then by name).
    min_voxels : int
        Labels with fewer voxels are left out.

    Returns
    -------
    dict of str -> array of bool, shape (n_voxels,)
    """
    voxel_labels = np.asarray(dataset.voxel_labels, dtype=str)
    if labels is None:
        is_language = {lab: bool(dataset.voxel_is_language[voxel_labels == lab].any()) for lab in np.unique(voxel_labels)}
        labels = sorted(is_language, key=lambda lab: (not is_language[lab], lab))
    unknown = [lab for lab in labels if lab not in set(voxel_labels)]
    if unknown:
        raise ValueError(f"labels {unknown} are not voxel labels of {dataset.name} {dataset.subject} "
                         f"(its labels: {sorted(set(voxel_labels))}).")
    masks = {str(lab): voxel_labels == lab for lab in labels}
    return {lab: m for lab, m in masks.items() if m.sum() >= int(min_voxels)}


def attribute_by_label(lm, dataset, encoding, layer, trs, settings=AttributionSettings(), labels=None,
                       min_voxels: int = 1, progress: bool = False) -> pd.DataFrame:
    """BA attribution with the target restricted to each region's voxels, one subject, one layer.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult
        The subject's encoding model of ``layer``.
    layer : int
    trs : array of int, shape (n_trs_sel,)
        Held-out TRs to attribute.
    settings : brainattr.attribution.AttributionSettings
        Context, pooling, methods, ...; its ``tasks`` and ``voxel_set`` are replaced (BA only, the
        region's voxels).
    labels, min_voxels
        The regions (:func:`label_masks`).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        ``label``, ``n_voxels`` (the region's), ``method`` and :data:`brainattr.attribution.COLUMNS`:
        one row per (region, method, TR, window word). Stored like every attribution table (a
        rerun reads it).
    """
    masks = label_masks(dataset, labels, min_voxels)
    # each region is a copy of the subject whose language set is the region: one LM pass serves them all
    copies = [replace(dataset, voxel_is_language=mask) for mask in masks.values()]
    out = attribute(lm, copies, [encoding] * len(copies), layer, settings.replace(tasks=("ba",), voxel_set="language"),
                    trs=trs, progress=progress)
    frames = [table.to_pandas().assign(label=label, n_voxels=int(masks[label].sum()), method=method)
              for label, tables in zip(masks, out) for (_, method), table in tables.items()]
    return pd.concat(frames, ignore_index=True)[["label", "n_voxels", "method", *COLUMNS]]


def label_measures(by_label, nwp=None, threshold: float = 0.10, how: str = "abs") -> pd.DataFrame:
    """Each region's attribution in two numbers: how far back it looks, and how much it agrees with NWP.

    Parameters
    ----------
    by_label : pandas.DataFrame
        :func:`attribute_by_label`'s table (one method).
    nwp : pandas.DataFrame or None
        NWP's attribution table of the same TRs (e.g. ``ChapterTables.gxi`` rows of task ``"nwp"``
        for one subject and layer); None skips the IoU.
    threshold : float
        Important-word threshold of the IoU.
    how : {"abs", "positive"}

    Returns
    -------
    pandas.DataFrame indexed by ``label``
        ``n_voxels``; ``com`` (attribution-weighted mean position over all window words, in words
        back from the most recent word, :func:`brainattr.analysis.center_of_mass`, mean over TRs);
        ``iou`` and ``random_iou`` (IoU of the region's and NWP's important words at ``threshold``
        and its chance level, :func:`brainattr.analysis.overlap`, means over TRs; with ``nwp``);
        ``n_trs``.
    """
    rows = []
    for label, g in by_label.groupby("label", sort=False):
        row = dict(label=label, n_voxels=int(g["n_voxels"].iloc[0]), com=center_of_mass(g, how=how).mean(),
                   n_trs=int(g["tr"].nunique()))
        if nwp is not None:
            o = overlap(g, nwp[nwp["tr"].isin(g["tr"].unique())], [threshold], how)
            row.update(iou=o["iou"].mean(), random_iou=o["random_iou"].mean())
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def to_voxels(values, dataset) -> np.ndarray:
    """Per-region values painted on the regions' voxels.

    Parameters
    ----------
    values : pandas.Series or dict
        Label -> value (e.g. a column of :func:`label_measures`).
    dataset : brainattr.schema.Dataset

    Returns
    -------
    array of float, shape (n_voxels,)
        NaN on voxels whose label has no value.
    """
    values = pd.Series(values, dtype=float)
    return pd.Series(np.asarray(dataset.voxel_labels, dtype=str)).map(values).to_numpy(dtype=float)

"""Scores on responses, numpy only: Pearson r per column and the noise ceiling from repeats."""
from __future__ import annotations

import numpy as np

from .schema import DataError


def pearson_r(y_true, y_pred):
    """Pearson correlation of each column.

    Parameters
    ----------
    y_true : array of shape (n_samples, n_voxels) or (n_samples,)
    y_pred : array of shape (n_samples, n_voxels) or (n_samples,)

    Returns
    -------
    r : array of float64, shape (n_voxels,) (a float for 1-D input)
        0 where either column is constant.
    """
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"y_true has shape {a.shape} but y_pred has shape {b.shape}; they must match.")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    num = (a * b).sum(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return float(r) if r.ndim == 0 else r


def noise_ceiling(repeats, bias_correction=True, zscore=True):
    """Explainable variance of each voxel from repeated presentations of one stimulus.

    The share of a voxel's variance that repeats across presentations: the variance over time
    of the mean over repeats, divided by the mean over repeats of the variance over time, with
    the bias correction ``ev - (1 - ev) / (n_repeats - 1)`` (Schoppe et al. 2016; the
    ``explainable_variance`` of the Gallant lab's voxelwise tutorials). Identical repeats give 1,
    independent noise about 0 (it can be negative).

    Parameters
    ----------
    repeats : array of shape (n_repeats, n_trs, n_voxels)
    bias_correction : bool
    zscore : bool
        Z-score every repeat over time first.

    Returns
    -------
    ev : array of float64, shape (n_voxels,)
        NaN for a voxel constant in some repeat.
    """
    Y = np.asarray(repeats, dtype=np.float64)
    if Y.ndim != 3 or Y.shape[0] < 2 or Y.shape[1] < 2:
        raise DataError(f"noise_ceiling needs repeats of shape (n_repeats >= 2, n_trs >= 2, n_voxels), got {Y.shape}.")
    with np.errstate(invalid="ignore", divide="ignore"):
        if zscore:
            Y = (Y - Y.mean(axis=1, keepdims=True)) / Y.std(axis=1, keepdims=True)
        mean_var = Y.var(axis=1, ddof=1).mean(axis=0)
        var_mean = Y.mean(axis=0).var(axis=0, ddof=1)
        ev = var_mean / mean_var
    if bias_correction:
        ev = ev - (1 - ev) / (Y.shape[0] - 1)
    return ev

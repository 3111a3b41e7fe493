"""The oracle language model: a positive control for attribution on simulated subjects.

The oracle's "layer features" of each word are the simulation's own word drivers
(:attr:`brainattr.data.simulate.SimulatedSubject.drivers`), averaged per TR and delayed exactly as
an LM's features are, so the encoding model on top of it is as well specified as the TR
averaging allows. Its head is linear, so Gradient × Input of any of its targets is exact and is
computed here in closed form: word ``j`` of delay TR ``s = t - d`` (one of ``n_s`` words) adds

    c[j, v] = (x_j / sd / n_s) @ W_d[:, v]

to the prediction of voxel ``v`` (``x_j`` its drivers, ``sd`` the run's feature scale, ``W_d``
the fold's ridge weights of delay ``d``; the feature means go to the intercept). The three
targets of the ladder, from the most to the least direct:

- ``prediction``: ``||c[j]||`` over the voxel set, aggregated as the truth is and in its units
  (each voxel's contribution in units of its measured response's standard deviation, whatever
  the encoder was fitted on);
- ``mse_clean``: GxI of the squared error against the clean signal,
  ``(2 / |V|) sum_v (yhat_v - clean_v) c[j, v]``;
- ``mse_measured``: the same against the measured (noisy) response, the paper's BA target.

The oracle's tables have the rows of an LM's attribution table (same TRs and window words; words
outside the delay TRs score 0), so :mod:`brainattr.recovery` scores both alike.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .data import as_simulated
from .encoding import fit_encoding
from .trs import tr_average

#: The ladder's oracle targets, from the most direct to the paper's.
ORACLE_TARGETS = ("prediction", "mse_clean", "mse_measured")


def oracle_features(dataset) -> np.ndarray:
    """Per-TR averaged word drivers of a simulated subject: the oracle's layer features.

    Returns
    -------
    array of float64, shape (n_trs, n_drivers)
    """
    sim = as_simulated(dataset)
    stim = sim.stimulus
    return tr_average(sim.drivers[None], stim.word_trs, stim.n_trs)[0]


def with_noise(dataset, noise: float):
    """The simulated subject with its noise rescaled to standard deviation ``noise`` (same realisation).

    ``responses = clean + (noise / noise_0) * (responses_0 - clean)``, so a sweep over noise levels
    changes only the noise's size, not its draw. ``noise=0`` gives the clean signal.

    Returns
    -------
    Dataset
        A copy with new responses; ``meta["simulation"]`` is kept (the truth is the same).
    """
    noise0 = float(dataset.meta["simulation"]["noise"])
    if float(noise) == noise0:
        return dataset  # bit for bit: its fits stay cached
    sim = as_simulated(dataset)
    measured = dataset.responses.astype(np.float64)
    clean = sim.clean
    responses = clean + (float(noise) / noise0) * (measured - clean)
    return replace(dataset, responses=responses.astype(dataset.responses.dtype),
                   meta=dict(dataset.meta, noise_level=float(noise)))


def fit_oracle(dataset, voxels, fit_on: str = "measured", inner_folds: int = 5):
    """The encoding model of the oracle's features for one simulated subject.

    Parameters
    ----------
    dataset : Dataset
        A simulated subject (its truth is re-created from ``meta["simulation"]``).
    voxels : array of int, shape (n_voxels_sel,)
        Voxel columns to fit (the BA target's voxel set).
    fit_on : {"measured", "clean"}
        Fit on the measured responses or on the noise-free signal.
    inner_folds : int

    Returns
    -------
    EncodingResult
        Over the ``voxels`` columns, in z-scored units of the ``fit_on`` responses.
    """
    if fit_on not in ("measured", "clean"):
        raise ValueError(f"fit_on must be 'measured' or 'clean', got {fit_on!r}.")
    sim = as_simulated(dataset)
    Y = (sim.clean if fit_on == "clean" else dataset.responses.astype(np.float64))[:, voxels]
    return fit_encoding(oracle_features(dataset), Y, dataset.stimulus.tr_runs, inner_folds=inner_folds,
                        progress=False, cache=True)


def oracle_tables(dataset, encoding, voxels, rows, targets=ORACLE_TARGETS) -> dict:
    """Exact Gradient × Input of the oracle's targets, laid out as attribution tables.

    Parameters
    ----------
    dataset : Dataset
        The simulated subject.
    encoding : EncodingResult
        :func:`fit_oracle` of ``dataset`` over ``voxels``.
    voxels : array of int, shape (n_voxels_sel,)
    rows : pandas.DataFrame
        An attribution table whose ``tr``, ``word_index``, ``position`` (and other) columns are
        kept: the TRs and window words to score.
    targets : sequence of str
        Any of :data:`ORACLE_TARGETS`.

    Returns
    -------
    dict target -> pandas.DataFrame
        ``rows`` with ``attribution`` and ``abs_attribution`` set (0 for words outside the delay TRs).
    """
    unknown = set(targets) - set(ORACLE_TARGETS)
    if unknown:
        raise ValueError(f"unknown oracle target(s) {sorted(unknown)}; use {ORACLE_TARGETS}.")
    sim = as_simulated(dataset)
    stim = dataset.stimulus
    X = sim.drivers
    clean = sim.clean[:, voxels]
    measured = dataset.responses.astype(np.float64)[:, voxels]
    measured_sd = measured.std(axis=0)
    base = rows.to_pandas() if hasattr(rows, "to_pandas") else rows.copy()
    scores = {t: np.zeros(len(base)) for t in targets}
    for tr, idx in base.groupby("tr").indices.items():
        head = encoding.head(int(tr))
        # z-scored units of the fit -> units of the measured response's sd (the truth's units)
        to_truth_units = encoding.response_stds[_run_position(encoding, int(tr))] / np.where(measured_sd > 0, measured_sd, np.inf)
        contrib = {}  # word index -> (n_voxels,) contribution to the prediction
        yhat = np.asarray(head["intercept"], dtype=np.float64).copy()
        for d, src in enumerate(head["source_trs"]):
            if src < 0:
                continue
            words = np.flatnonzero(stim.word_trs == src)
            if words.size == 0:
                continue
            W = np.asarray(head["weights"][d], dtype=np.float64)
            z = (X[words].mean(0) - head["mean"]) / head["std"]
            yhat += z @ W
            for j, c in zip(words, (X[words] / head["std"] / words.size) @ W):
                contrib[int(j)] = c
        residual = {"mse_clean": yhat - encoding.measured_tr(int(tr), clean),
                    "mse_measured": yhat - encoding.measured_tr(int(tr), measured)}
        for k, j in zip(idx, base["word_index"].to_numpy()[idx]):
            c = contrib.get(int(j))
            if c is None:
                continue
            for t in targets:
                scores[t][k] = (np.linalg.norm(c * to_truth_units) if t == "prediction"
                                else 2.0 / c.size * float(residual[t] @ c))
    out = {}
    for t in targets:
        df = base.copy()
        df["attribution"] = scores[t]
        df["abs_attribution"] = np.abs(scores[t])
        out[t] = df
    return out


def _run_position(encoding, tr: int) -> int:
    """Row of ``encoding``'s per-run statistics for stimulus TR ``tr``."""
    return int(np.searchsorted(encoding.runs, encoding.tr_runs[tr]))


def clean_target_dataset(dataset):
    """The subject with its measured responses replaced by the clean signal (for the ``mse_clean`` target of an LM)."""
    return replace(dataset, responses=as_simulated(dataset).clean.astype(dataset.responses.dtype),
                   meta=dict(dataset.meta, target="clean"))


__all__ = ["ORACLE_TARGETS", "oracle_features", "with_noise", "fit_oracle", "oracle_tables", "clean_target_dataset"]

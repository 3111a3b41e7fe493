"""The BA head: the fitted ridge weights on top of the frozen LM, as a differentiable module."""
from __future__ import annotations

import numpy as np
import torch


class BAHead(torch.nn.Module):
    """Predicted voxel activity of one TR from the averaged word states of its delay TRs.

    ``y = sum_d present_d * ((x_d - mean) / std) @ W_d + b``: the fold's ridge weights split
    per delay (the functions g_d of the paper), applied to per-run z-scored features, exactly as
    :meth:`brainattr.encoding.EncodingResult.predict_tr` does. A delay before the run's start has
    ``present_d = False`` (its block of the delayed design is zero); a delay TR without words
    has ``x_d = 0``, as in :func:`brainattr.trs.tr_average`.

    Parameters
    ----------
    weights : array of shape (n_delays, n_features, n_voxels)
    intercept : array of shape (n_voxels,)
    mean, std : arrays of shape (n_features,)
        Feature z-scoring of the TR's run.
    """

    def __init__(self, weights, intercept, mean, std):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(np.asarray(weights), dtype=torch.float32))
        self.register_buffer("intercept", torch.as_tensor(np.asarray(intercept), dtype=torch.float32))
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32))

    @classmethod
    def from_encoding(cls, encoding, tr, voxels=None, fold=None):
        """The head predicting TR ``tr`` for the voxels in ``voxels`` (bool mask or None).

        ``fold`` defaults to the fold that held ``tr`` out (the model that never saw it).
        """
        h = encoding.head(int(tr), fold)
        sel = slice(None) if voxels is None else np.asarray(voxels, dtype=bool)
        return cls(h["weights"][:, :, sel], h["intercept"][sel], h["mean"], h["std"])

    def forward(self, tr_features, present):
        """Predict.

        Parameters
        ----------
        tr_features : tensor of shape (batch, n_delays, n_features)
            Un-normalised per-TR averaged word states of the delay TRs.
        present : tensor of bool, shape (batch, n_delays)

        Returns
        -------
        prediction : tensor of shape (batch, n_voxels)
        """
        dtype = tr_features.dtype
        z = (tr_features - self.mean.to(dtype)) / self.std.to(dtype)
        z = z * present.to(dtype)[..., None]
        return torch.einsum("bdh,dhv->bv", z, self.weights.to(dtype)) + self.intercept.to(dtype)


def tr_features_from_states(states, pool):
    """Per-delay-TR averaged word vectors from token states.

    Parameters
    ----------
    states : tensor of shape (batch, n_tokens, hidden)
    pool : tensor of shape (batch, n_delays, n_tokens)
        Averaging weights: for ``pooling="last"``, ``1 / n_words`` at each word's last token; for
        ``"mean"``, ``1 / (n_words * n_tokens_of_word)`` on each of its tokens (see
        :func:`brainattr.trs.tr_average` and ``_pool``).

    Returns
    -------
    tr_features : tensor of shape (batch, n_delays, hidden)
    """
    return torch.einsum("bdt,bth->bdh", pool.to(states.dtype), states)


def head_for(encoding, tr, voxels, heads, device):
    """The BA head of TR ``tr``, built once per (fold, run) in ``heads``: only the fold's weights
    and the run's feature z-scoring differ between TRs."""
    key = (encoding.fold_of(int(tr)), int(encoding.tr_runs[int(tr)]))
    if key not in heads:
        heads[key] = BAHead.from_encoding(encoding, int(tr), voxels).to(device)
    return heads[key]

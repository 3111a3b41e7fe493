"""Finite-difference check of the BA and NWP gradients (shared by the attribution tests)."""
import numpy as np
import torch

from brainattr.attribution.methods import input_gradients
from brainattr.attribution.targets import compute_targets


def assert_gradients_match_finite_differences(lm, layer, head, batch, measured, rtol, atol, nonzero=False):
    """The analytic directional derivative of both targets equals a central difference.

    ``lm``, ``head`` and ``measured`` should be float64. The direction is random on the window's
    tokens, on the scale of the embeddings. The model runs in float64, but some norms (and Mamba's
    residual stream) compute in float32: a relative step of 1e-3 keeps the rounding error (~1e-7 /
    eps) and the truncation error (~eps^2) both below the tolerance.
    """
    tasks = ("ba", "nwp")
    emb = lm.model.get_input_embeddings()(batch["ids"]).detach().requires_grad_(True)
    targets = compute_targets(lm, layer, head, emb, batch, measured, tasks)
    grads = input_gradients(targets, emb)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(emb.shape, generator=gen, dtype=torch.float64) * batch["attr"][..., None]
    v = v * float(emb.detach().std())
    eps = 1e-3
    with torch.no_grad():
        plus = compute_targets(lm, layer, head, emb + eps * v, batch, measured, tasks)
        minus = compute_targets(lm, layer, head, emb - eps * v, batch, measured, tasks)
    for task in tasks:
        fd = (plus[task] - minus[task]) / (2 * eps)
        analytic = (grads[task] * v).sum((1, 2))
        if nonzero:  # a derivative of 0 would match 0 trivially
            assert float(analytic.abs().min()) > 1e-4 * float(targets[task].detach().abs().max())
        np.testing.assert_allclose(analytic.numpy(), fd.numpy(), rtol=rtol, atol=atol)

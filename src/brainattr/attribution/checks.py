"""Checks of the attributions themselves: bf16 vs fp32, IG completeness, the targets along IG's path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..lm import with_precision
from .batch import collate, make_instance, tokenized_text
from .engine import compute_attributions
from .head import BAHead
from .methods import ig_baseline_embeddings
from .settings import AttributionSettings
from .targets import compute_targets
from .windows import tr_window, voxel_mask


def compare_precision(lm, dataset, encoding, layer, trs, dtype=None, settings=AttributionSettings()):
    """GxI attributions at the model's precision against those of a copy in another precision.

    The check behind running in bfloat16 on a GPU: per TR, the Spearman correlation of the word
    attributions and their largest difference relative to the largest attribution, plus the
    relative difference of the target itself.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult
    layer : int
    trs : array of int, shape (n_trs_sel,)
    dtype : torch.dtype, str or None
        The other precision; None: float32 for a 16-bit model, bfloat16 for a float32 one.
    settings : AttributionSettings
        Of :func:`compute_attributions` (``context``, ``tasks``, ``voxel_set``, ...); GxI only.

    Returns
    -------
    pandas.DataFrame
        One row per (task, TR): ``task``, ``tr``, ``spearman``, ``max_difference`` (relative to the
        largest |attribution| of the reference), ``target_difference`` (relative), and the two
        precisions ``precision`` / ``reference``.
    """
    from scipy.stats import spearmanr

    mine = next(lm.model.parameters()).dtype
    if dtype is None:
        dtype = torch.float32 if mine in (torch.float16, torch.bfloat16) else torch.bfloat16
    other = with_precision(lm, dtype)
    settings = settings.replace(methods=("gxi",), precision=None)
    # the reference is the wider of the two
    low, high = (lm, other) if torch.finfo(mine).bits < torch.finfo(next(other.model.parameters()).dtype).bits \
        else (other, lm)
    a, = compute_attributions(low, [dataset], [encoding], layer, trs, settings, progress=False)
    b, = compute_attributions(high, [dataset], [encoding], layer, trs, settings, progress=False)
    rows = []
    for (task, _), ta in a.items():
        tb = b[(task, "gxi")]
        for tr, ga in ta.groupby("tr"):
            gb = tb[tb["tr"] == tr]
            x, y = ga["attribution"].to_numpy(), gb["attribution"].to_numpy()
            scale = np.abs(y).max() or 1.0
            t_a, t_b = float(ga["target"].iloc[0]), float(gb["target"].iloc[0])
            rows.append(dict(task=task, tr=int(tr), spearman=float(spearmanr(x, y).statistic),
                             max_difference=float(np.abs(x - y).max() / scale),
                             target_difference=abs(t_a - t_b) / (abs(t_b) or 1.0),
                             precision=str(next(low.model.parameters()).dtype).replace("torch.", ""),
                             reference=str(next(high.model.parameters()).dtype).replace("torch.", "")))
    return pd.DataFrame(rows)


def ig_completeness(table):
    """IG completeness per TR: sum of attributions vs F(input) - F(baseline).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An IG table (its ``baseline_target`` is filled).

    Returns
    -------
    pandas.DataFrame indexed by ``tr`` with columns ``sum_attribution``, ``delta`` (F(x) - F(0)) and
    ``relative_error`` (``|sum - delta| / |delta|``).
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    if df["baseline_target"].isna().all():
        raise ValueError("this table has no baseline values; completeness applies to IG tables only.")
    g = df.groupby("tr").agg(sum_attribution=("attribution", "sum"), target=("target", "first"),
                             baseline=("baseline_target", "first"))
    g["delta"] = g["target"] - g["baseline"]
    g["relative_error"] = (g["sum_attribution"] - g["delta"]).abs() / g["delta"].abs()
    return g[["sum_attribution", "delta", "relative_error"]]


def ig_path(lm, dataset, encoding, layer, tr, alphas, settings=AttributionSettings()):
    """The targets along IG's straight path from the baseline to the input, for one TR.

    A diagnostic for the completeness check: IG integrates the gradient along
    ``x(alpha) = b + alpha * (x - b)`` (window tokens only), so the sum of its attributions equals
    ``F(x(1)) - F(x(0))`` only if the quadrature resolves every rise and fall of ``F`` along it.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult
    layer : int
    tr : int
    alphas : sequence of float
        Points of the path, 0 = baseline, 1 = input.
    settings : AttributionSettings
        ``context``, ``pooling``, ``tr_features``, ``tasks``, ``voxel_set`` and ``ig_baseline`` are used.

    Returns
    -------
    pandas.DataFrame with columns ``alpha`` and one per task.
    """
    tasks, context, pooling = settings.tasks, settings.context, settings.pooling
    layer = lm.check_layer(int(layer))
    window = tr_window(dataset.stimulus, encoding, int(tr), context)
    text = tokenized_text(lm, dataset.stimulus, settings.tr_features)
    inst = make_instance(text, window, pooling, with_next="nwp" in tasks)
    device = next(lm.model.parameters()).device
    batch = collate([inst], lm.tokenizer.pad_token_id, device)
    head, measured = None, torch.zeros((1, 1), device=device)
    if "ba" in tasks:
        vox = voxel_mask(settings.voxel_set, dataset, encoding)
        head = BAHead.from_encoding(encoding, tr, vox).to(device)
        measured = torch.as_tensor(encoding.measured_tr(tr, dataset.responses)[vox][None], dtype=torch.float32,
                                   device=device)
    alphas = np.asarray(alphas, dtype=np.float64)
    emb = lm.model.get_input_embeddings()(batch["ids"]).detach()
    base = ig_baseline_embeddings(lm, emb, batch["attr"], settings.ig_baseline)
    rows = {t: [] for t in tasks}
    with torch.no_grad():
        for k in range(0, alphas.size, 8):
            a = torch.as_tensor(alphas[k:k + 8], dtype=emb.dtype, device=device)[:, None, None]
            x = base + a * (emb - base)
            rep = {key: v.expand(x.shape[0], *v.shape[1:]) for key, v in batch.items()}
            values = compute_targets(lm, layer, head, x, rep, measured.expand(x.shape[0], -1), tasks)
            for t in tasks:
                rows[t].append(values[t].double().cpu().numpy())
    return pd.DataFrame({"alpha": alphas, **{t: np.concatenate(rows[t]) for t in tasks}})

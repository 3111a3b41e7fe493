"""Features: the LM's word embeddings at a layer, and their per-TR averages (cached).

Every word gets a contextual embedding from layer L given up to ``context`` preceding words
(:func:`extract_word_embeddings`), its sub-word tokens pooled (``last`` or ``mean``); the
embeddings of the words shown in one TR are then averaged, or Lanczos-resampled to the TRs
(:func:`stimulus_tr_features`, through the weights of :func:`brainattr.trs.word_tr_weights`).
Z-scoring, delays and trimming follow in :mod:`brainattr.trs`.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import atomic_path, cache_dir, cache_key, stage_timer
from .lm import check_context_fits, layer_states, special_prefix, word_token_spans
from .trs import word_tr_weights


def context_windows(n_words, context, stride):
    """Blocks of target words and the window of words each block is read in.

    Targets ``[t0, t1)`` are read in the window ``[max(0, t0 - context), t1)``, so every target
    word sees at least ``min(context, its index)`` and at most ``context + stride - 1`` preceding
    words. ``stride=1`` gives every word exactly ``context`` preceding words (the exact mode).

    Returns
    -------
    windows : array of int, shape (n_windows, 3)
        Rows ``(window_start, target_start, target_end)`` in word indices.
    """
    if context < 0 or stride < 1:
        raise ValueError(f"context must be >= 0 and stride >= 1, got context={context}, stride={stride}.")
    t0 = np.arange(0, n_words, stride)
    t1 = np.minimum(t0 + stride, n_words)
    return np.stack([np.maximum(0, t0 - context), t0, t1], axis=1)


def _pool(states, spans, offset, pooling):
    """Word vectors from token states: (n_tokens, H) -> (n_targets, H)."""
    if pooling == "last":
        return states[spans[:, 1] - 1 - offset]
    if pooling == "mean":
        return torch.stack([states[a - offset:b - offset].mean(0) for a, b in spans])
    raise ValueError(f"unknown pooling {pooling!r}; use 'last' or 'mean'.")


def extract_word_embeddings(lm, words, layers, context=80, pooling="last", mode="fast", stride=16,
                            batch_size=8, progress=True):
    """Contextual embedding of every word from the chosen layers.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    words : sequence of str, length n_words
    layers : sequence of int
        Layer indices (0 = embeddings, ``lm.n_layers`` = last block).
    context : int
        Preceding words each word is read with (paper: 640; control: 80).
    pooling : {"last", "mean"}
        How a word's sub-word token states become one vector.
    mode : {"fast", "exact"}
        ``fast``: one forward pass serves ``stride`` consecutive target words, which then see
        between ``context`` and ``context + stride - 1`` preceding words. ``exact``: one window
        per word, each with exactly ``context`` preceding words (``stride=1``).
    stride : int
        Target words per window in fast mode (16 ≈ the 4 delay TRs of one attribution window).
    batch_size : int
        Windows per forward pass.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    embeddings : array of float32, shape (n_layers_requested, n_words, hidden)
        In the order of ``layers``.
    """
    layers = [lm.check_layer(layer) for layer in layers]
    if mode not in ("fast", "exact"):
        raise ValueError(f"unknown mode {mode!r}; use 'fast' or 'exact'.")
    stride = 1 if mode == "exact" else int(stride)
    token_ids, spans = word_token_spans(words, lm.tokenizer)
    prefix = special_prefix(lm.tokenizer)
    windows = context_windows(len(spans), int(context), stride)
    lengths = spans[windows[:, 2] - 1, 1] - spans[windows[:, 0], 0] + len(prefix)
    check_context_fits(lm, int(lengths.max()), context)
    device = next(lm.model.parameters()).device
    out = np.zeros((len(layers), len(spans), lm.hidden_size), dtype=np.float32)
    order = np.argsort(-lengths, kind="stable")  # similar lengths together: less padding
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pad = lm.tokenizer.pad_token_id
    with torch.no_grad():
        for batch in tqdm(batches, desc=f"{lm.name} embeddings", disable=not progress, leave=False):
            n_max = int(lengths[batch].max())
            ids = torch.full((len(batch), n_max), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), n_max), dtype=torch.long)
            for row, w in enumerate(batch):
                seq = np.concatenate([prefix, token_ids[spans[windows[w, 0], 0]:spans[windows[w, 2] - 1, 1]]])
                ids[row, :len(seq)] = torch.as_tensor(seq)
                mask[row, :len(seq)] = 1
            states = layer_states(lm.model, layers, input_ids=ids.to(device), attention_mask=mask.to(device))
            for row, w in enumerate(batch):
                start, t0, t1 = windows[w]
                offset = spans[start, 0] - len(prefix)
                for k, layer in enumerate(layers):
                    out[k, t0:t1] = _pool(states[layer][row], spans[t0:t1], offset, pooling).float().cpu().numpy()
    return out



def stimulus_tr_features(lm, stimulus, layers, context=80, pooling="last", mode="fast", stride=16,
                         batch_size=8, cache=True, progress=True, tr_features="average"):
    """Per-TR averaged (or Lanczos-resampled) word embeddings of a stimulus for several layers, cached on disk.

    The cache (``brainattr.cache.cache_dir("features")``) is keyed by model, layer, context,
    pooling, mode/stride, the stimulus fingerprint and, for ``"lanczos"``, the method (the
    default keeps the keys of the averages cached before the method existed); missing layers are
    computed in one pass.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    stimulus : brainattr.schema.Stimulus
    layers : sequence of int
    context, pooling, mode, stride, batch_size, progress
        See :func:`extract_word_embeddings`.
    cache : bool
    tr_features : {"average", "lanczos"}
        How word embeddings become TR features (:func:`brainattr.trs.word_tr_weights`): the mean
        of the words shown in each TR (the paper's), or Lanczos resampling (listening data).

    Returns
    -------
    features : dict of int -> array of float32, shape (n_trs, hidden)
    """

    layers = [lm.check_layer(layer) for layer in layers]
    stride = 1 if mode == "exact" else stride
    weights = word_tr_weights(stimulus, tr_features)   # checks the method before any work
    method = {} if tr_features == "average" else {"tr_features": tr_features}
    folder = cache_dir("features", cache_key(model=lm.name, prefix=special_prefix(lm.tokenizer),
                                             stimulus=stimulus.fingerprint, context=context,
                                             pooling=pooling, stride=stride, hidden=lm.hidden_size, **method))
    result, missing = {}, []
    for layer in layers:
        path = folder / f"layer_{layer:03d}.npy"
        if cache and path.exists():
            result[layer] = np.load(path)
        else:
            missing.append(layer)
    if missing:
        with stage_timer("feature extraction", model=lm.name, layers=len(missing), words=stimulus.n_words,
                         context=int(context)):
            emb = extract_word_embeddings(lm, stimulus.words, missing, context=context, pooling=pooling, mode=mode,
                                          stride=stride, batch_size=batch_size, progress=progress)
        per_tr = weights.astype(emb.dtype) @ emb      # (layers, n_words, hidden) -> (layers, n_trs, hidden)
        for k, layer in enumerate(missing):
            result[layer] = per_tr[k]
            if cache:
                with atomic_path(folder / f"layer_{layer:03d}.npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, per_tr[k])
    return {layer: result[layer] for layer in layers}

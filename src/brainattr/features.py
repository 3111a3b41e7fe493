"""Features: LM word embeddings, per-TR averaging, per-run z-scoring, delays, trimming.

The pipeline for one layer (paper, Sec. 3; Toneva & Wehbe 2019 conventions):

1. every word gets a contextual embedding from layer L given up to ``context`` preceding words
   (:func:`extract_word_embeddings`), its sub-word tokens pooled (``last`` or ``mean``);
2. the embeddings of the words shown in one TR are averaged (:func:`tr_average`);
3. each run is z-scored per feature (:func:`zscore_runs`);
4. the encoder input for TR t concatenates TRs t-1 ... t-4 of the same run (:func:`make_delayed`);
5. the first and last TRs of each run are dropped (:func:`trim_mask`).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from tqdm.auto import tqdm

from .io import cache_dir, cache_key, stage_timer
from .models import decoder_layers

#: Hemodynamic delays in TRs (paper: the 4 previous TRs, 2-8 s at TR = 2 s).
DELAYS = (1, 2, 3, 4)
#: TRs dropped at the start and end of each run (Toneva & Wehbe 2019: 20 and 15).
TRIM = (20, 15)


def tr_average(word_embeddings, word_trs, n_trs):
    """Average the embeddings of the words shown in each TR.

    Parameters
    ----------
    word_embeddings : array of shape (..., n_words, n_features)
    word_trs : array of int, shape (n_words,)
        TR of each word (``Stimulus.word_trs``); words with -1 are ignored.
    n_trs : int

    Returns
    -------
    tr_features : array of shape (..., n_trs, n_features)
        Zero for TRs in which no word was shown.
    """
    word_embeddings = np.asarray(word_embeddings)
    word_trs = np.asarray(word_trs)
    ok = word_trs >= 0
    onehot = np.zeros((n_trs, len(word_trs)), dtype=word_embeddings.dtype)
    onehot[word_trs[ok], np.flatnonzero(ok)] = 1.0
    counts = onehot.sum(axis=1, keepdims=True)
    onehot /= np.maximum(counts, 1.0)
    return onehot @ word_embeddings


def zscore_runs(X, runs, eps=1e-8):
    """Z-score each column within each run.

    Parameters
    ----------
    X : array of shape (n_trs, n_features)
    runs : array of int, shape (n_trs,)

    Returns
    -------
    Xz : array of shape (n_trs, n_features), float32
    means : array of shape (n_runs, n_features)
    stds : array of shape (n_runs, n_features)
        Standard deviations; columns constant within a run get 1 (they z-score to 0).
    """
    X = np.asarray(X, dtype=np.float64)
    runs = np.asarray(runs)
    run_ids = np.unique(runs)
    means = np.stack([X[runs == r].mean(axis=0) for r in run_ids])
    stds = np.stack([X[runs == r].std(axis=0) for r in run_ids])
    stds = np.where(stds > eps, stds, 1.0)
    run_pos = np.searchsorted(run_ids, runs)
    Xz = (X - means[run_pos]) / stds[run_pos]
    return Xz.astype(np.float32), means, stds


def make_delayed(X, runs, delays=DELAYS):
    """Concatenate delayed copies of ``X`` without crossing run borders.

    Parameters
    ----------
    X : array of shape (n_trs, n_features)
    runs : array of int, shape (n_trs,)
    delays : sequence of int
        Row t of block d holds ``X[t - delays[d]]`` (zero before the run's start).

    Returns
    -------
    X_delayed : array of shape (n_trs, len(delays) * n_features)
        Blocks in the order of ``delays``: columns ``[d*n_features:(d+1)*n_features]`` hold delay
        ``delays[d]`` (the layout :func:`split_by_delay` undoes).
    """
    X = np.asarray(X)
    runs = np.asarray(runs)
    out = np.zeros((X.shape[0], len(delays) * X.shape[1]), dtype=X.dtype)
    for d, delay in enumerate(delays):
        shifted = np.zeros_like(X)
        if delay > 0:
            shifted[delay:] = X[:-delay]
            same_run = np.zeros(len(runs), dtype=bool)
            same_run[delay:] = runs[delay:] == runs[:-delay]
            shifted[~same_run] = 0
        else:
            shifted = X.copy()
        out[:, d * X.shape[1]:(d + 1) * X.shape[1]] = shifted
    return out


def split_by_delay(W, n_delays):
    """Split stacked weights into one block per delay.

    Parameters
    ----------
    W : array of shape (n_delays * n_features, n_targets)

    Returns
    -------
    W_by_delay : array of shape (n_delays, n_features, n_targets)
    """
    W = np.asarray(W)
    return W.reshape(n_delays, W.shape[0] // n_delays, *W.shape[1:])


def trim_mask(runs, trim=TRIM):
    """Boolean mask of the TRs kept after dropping the first and last TRs of each run.

    Parameters
    ----------
    runs : array of int, shape (n_trs,)
    trim : (int, int)
        TRs dropped at the start and at the end of each run.

    Returns
    -------
    keep : array of bool, shape (n_trs,)
    """
    runs = np.asarray(runs)
    keep = np.zeros(len(runs), dtype=bool)
    start, end = trim
    for r in np.unique(runs):
        idx = np.flatnonzero(runs == r)
        if idx.size <= start + end:
            raise ValueError(f"run {r} has {idx.size} TRs, too few to trim {start} + {end}; lower `trim`.")
        keep[idx[start: idx.size - end]] = True
    return keep


# --------------------------------------------------------------------------------------------
# Words and tokens
# --------------------------------------------------------------------------------------------
def word_token_spans(words, tokenizer):
    """Tokenize the text once and find the tokens of every word from character offsets.

    The text is the words joined by single spaces. A token belongs to the word that holds the
    token's last character (its first character may be the space before the word, as in
    byte-level BPE ``Ġword`` tokens); a whitespace-only token belongs to the next word. Tokens
    are never decoded, so this works for byte-level (``Ġ``) and SentencePiece (``▁``) tokenizers.

    Parameters
    ----------
    words : sequence of str, length n_words
    tokenizer : transformers.PreTrainedTokenizerFast

    Returns
    -------
    token_ids : array of int64, shape (n_tokens,)
        Token ids of the whole text, without special tokens.
    spans : array of int, shape (n_words, 2)
        ``[start, end)`` token indices of each word.
    """
    words = [str(w) for w in words]
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("word alignment needs a fast tokenizer (offset mapping); load the model's "
                        "tokenizer with use_fast=True.")
    text = " ".join(words)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    token_word = np.empty(len(enc["input_ids"]), dtype=int)
    for k, (a, b) in enumerate(enc["offset_mapping"]):
        pos = max(b - 1, a)
        while pos < len(text) - 1 and text[pos].isspace():
            pos += 1  # a bare-space token starts the next word
        token_word[k] = np.searchsorted(starts, pos, side="right") - 1
    if np.any(np.diff(token_word) < 0):
        raise ValueError("tokens are not in word order; the tokenizer's offsets look wrong.")
    spans = np.zeros((len(words), 2), dtype=int)
    spans[:, 0] = np.searchsorted(token_word, np.arange(len(words)), side="left")
    spans[:, 1] = np.searchsorted(token_word, np.arange(len(words)), side="right")
    empty = np.flatnonzero(spans[:, 1] <= spans[:, 0])
    if empty.size:
        raise ValueError(f"{empty.size} word(s) got no token, first {words[empty[0]]!r}; words must be non-empty.")
    return np.asarray(enc["input_ids"], dtype=np.int64), spans


def special_prefix(tokenizer):
    """Token ids a fresh input starts with (e.g. a BOS token), list of int; empty if none.

    Found by encoding a short text with and without special tokens: whatever the tokenizer puts
    before the plain tokens is the prefix (Gemma's ``<bos>``, Llama-3's ``<|begin_of_text|>``,
    Mistral/Zamba2's ``<s>``; nothing for GPT-2, GPT-NeoX/Mamba or Qwen2). Special tokens a
    tokenizer appends (an EOS) are not part of it.
    """
    for text in ("a", "the"):
        plain = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(text)["input_ids"])
        for start in range(len(full) - len(plain) + 1):
            if plain and full[start:start + len(plain)] == plain:
                return full[:start]
    # the plain tokens changed with special tokens on (e.g. a SentencePiece prefix space): keep the BOS
    bos = getattr(tokenizer, "bos_token_id", None)
    full = list(tokenizer("a")["input_ids"])
    return [bos] if bos is not None and full and full[0] == bos else []


# --------------------------------------------------------------------------------------------
# Hidden states of chosen layers, without running deeper blocks
# --------------------------------------------------------------------------------------------
class _StopForward(Exception):
    pass


def _base_model(model):
    """The model without its LM head (``model.model``, ``model.backbone``, ``model.transformer``...)."""
    return getattr(model, getattr(model, "base_model_prefix", ""), model)


def _forward_kwargs(module, **kwargs):
    """The keyword arguments ``module.forward`` takes, None values dropped.

    A name its signature lacks is dropped unless the signature has ``**kwargs`` (then the model
    swallows or uses it, the Hugging Face convention); so ``attention_mask`` / ``use_cache`` reach the
    families that take them and are not forced on those that do not.
    """
    params = inspect.signature(module.forward).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {k: v for k, v in kwargs.items() if v is not None and (k in params or var_kw)}


def _block_output(output):
    """A decoder block's hidden states: transformer blocks return tuples, Mamba/Zamba2 blocks a tensor."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _block_input(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def layer_states(model, layers, input_ids=None, inputs_embeds=None, attention_mask=None):
    """Hidden states of the chosen layers; blocks deeper than ``max(layers)`` are never run.

    Layer 0 is the input of the first decoder block (the token embeddings, after any model-specific
    scaling such as Gemma's sqrt(hidden)); layer ``l`` is the output of decoder block ``l`` before
    the final norm (for Mamba, whose blocks keep the residual stream in float32, that float32
    stream). Gradients flow when ``inputs_embeds`` requires grad. Works for the layouts of
    :func:`brainattr.models.decoder_layers` (Llama, Falcon3, Gemma 1-3, Qwen2, classic Falcon,
    Mamba, Zamba2).

    Parameters
    ----------
    model : transformers.PreTrainedModel
    layers : sequence of int
    input_ids : tensor of int64, shape (batch, n_tokens), optional
    inputs_embeds : tensor of shape (batch, n_tokens, hidden), optional
    attention_mask : tensor of shape (batch, n_tokens), optional
        1 for real tokens, 0 for right padding. Passed to families that take it; padding on the
        right never changes the states of the real tokens of a causal model, masked or not.

    Returns
    -------
    states : dict of int -> tensor of shape (batch, n_tokens, hidden)
    """
    layers = sorted(set(int(layer) for layer in layers))
    blocks = decoder_layers(model)
    deepest = layers[-1]
    states, handles = {}, []

    def first_input(module, args, kwargs):
        states[0] = _block_input(args, kwargs)
        if deepest == 0:
            raise _StopForward

    def output_of(index):
        def hook(module, args, output):
            states[index] = _block_output(output)
            if index == deepest:
                raise _StopForward
        return hook

    if 0 in layers:
        handles.append(blocks[0].register_forward_pre_hook(first_input, with_kwargs=True))
    for layer in layers:
        if layer > 0:
            handles.append(blocks[layer - 1].register_forward_hook(output_of(layer)))
    base = _base_model(model)  # skip the LM head
    try:
        base(**_forward_kwargs(base, input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               use_cache=False))
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return {layer: states[layer] for layer in layers}


# --------------------------------------------------------------------------------------------
# Word embeddings with a sliding context
# --------------------------------------------------------------------------------------------
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
    lm : brainattr.models.LanguageModel
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


def check_context_fits(lm, n_tokens, context):
    """Raise ValueError when windows of ``n_tokens`` tokens exceed the model's positions."""
    if lm.max_positions is not None and n_tokens > lm.max_positions:
        raise ValueError(f"a context of {context} words needs windows of up to {n_tokens} tokens, but {lm.name} "
                         f"accepts at most {lm.max_positions} positions; lower `context` (or `stride`).")


def stimulus_tr_features(lm, stimulus, layers, context=80, pooling="last", mode="fast", stride=16,
                         batch_size=8, cache=True, progress=True):
    """Per-TR averaged word embeddings of a stimulus for several layers, cached on disk.

    The cache (``brainattr.io.cache_dir("features")``) is keyed by model, layer, context,
    pooling, mode/stride and the stimulus fingerprint; missing layers are computed in one pass.

    Parameters
    ----------
    lm : brainattr.models.LanguageModel
    stimulus : brainattr.dataset.Stimulus
    layers : sequence of int
    context, pooling, mode, stride, batch_size, progress
        See :func:`extract_word_embeddings`.
    cache : bool

    Returns
    -------
    features : dict of int -> array of float32, shape (n_trs, hidden)
    """
    from .io import atomic_path

    layers = [lm.check_layer(layer) for layer in layers]
    stride = 1 if mode == "exact" else stride
    folder = cache_dir("features", cache_key(model=lm.name, stimulus=stimulus.fingerprint, context=context,
                                             pooling=pooling, stride=stride, hidden=lm.hidden_size))
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
        per_tr = tr_average(emb, stimulus.word_trs, stimulus.n_trs)
        for k, layer in enumerate(missing):
            result[layer] = per_tr[k]
            if cache:
                with atomic_path(folder / f"layer_{layer:03d}.npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, per_tr[k])
    return {layer: result[layer] for layer in layers}

"""The masking check (the paper's Appendix C): replace the most important words, see what breaks.

For each attributed TR, the words of its important-word set at a small threshold (the paper: the
top 1 % of the attribution) are replaced by words drawn at random from the stimulus vocabulary,
and both targets are evaluated again on the altered window:

- NWP: the cross-entropy of the next word (:func:`evaluate_windows`);
- BA: the head's predicted activity, scored as the Pearson r over the attributed TRs between
  predicted and measured activity of each voxel (:func:`masked_scores`).

Three maskings are compared: the top BA words, the top NWP words, and (the control the paper's
reviewers asked for) the same number of words chosen at random in the window.

:func:`masking_sweep` makes the comparison fair: ``k`` words (or a share of the window,
:func:`share_k`) by magnitude or sign (:func:`top_k_words`), random controls at the same positions
(:func:`same_position_words`) and anywhere, both targets under every masking, and CIs over blocks
of TRs whose windows do not overlap (:func:`tr_blocks`, :func:`bootstrap_counts`).

:func:`evaluate_variants` scores all the maskings of a window at the cost of the tokens they
change: the window's unmasked beginning runs once and its keys and values are kept.
"""
from __future__ import annotations

import copy
import inspect
import math

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .analysis import important_words
from .attribution import tr_features_from_states, tr_window, voxel_mask
from .attribution.batch import collate, make_instance, tokenized_text
from .attribution.head import head_for
from .attribution.settings import NWP_READOUTS
from .attribution.targets import final_norm, nwp_loss
from .lm import (
    base_model,
    block_input,
    block_output,
    decoder_layers,
    forward_kwargs,
    word_token_spans,
)
from .metrics import pearson_r
from .schema import Dataset


def _word_tokens(word, tokenizer, first=False):
    """Token ids of ``word`` as it is tokenized inside running text (after a space unless ``first``)."""
    words = [word] if first else ["x", word]
    ids, spans = word_token_spans(words, tokenizer)
    return ids[spans[-1, 0]:spans[-1, 1]]


def _substituted(text, replacements, tokenizer):
    """The tokenized stimulus with some words swapped for others, re-tokenized in place.

    Equals tokenizing the altered text from scratch for tokenizers that pre-split at spaces
    (byte-level BPE, SentencePiece metaspace; tested), at the cost of the replaced words only.

    Parameters
    ----------
    text : brainattr.attribution.TokenizedText
    replacements : dict of int -> str
        Stimulus word index -> new word.
    tokenizer : transformers.PreTrainedTokenizerFast

    Returns
    -------
    A copy of ``text`` with new ``token_ids`` and ``spans``.
    """
    if not replacements:
        return text
    segments, spans, prev, offset = [], text.spans.copy(), 0, 0
    for i in sorted(int(k) for k in replacements):
        a, b = text.spans[i]
        new = _word_tokens(str(replacements[i]), tokenizer, first=i == 0)
        segments += [text.token_ids[prev:a], new]
        prev = b
        spans[i] = (a + offset, a + offset + len(new))
        delta = len(new) - (b - a)
        spans[i + 1:] += delta
        offset += delta
    segments.append(text.token_ids[prev:])
    out = copy.copy(text)
    out.token_ids, out.spans = np.concatenate(segments).astype(np.int64), spans
    return out


def evaluate_windows(lm, dataset, encoding, layer, trs, context=80, pooling="last", replacements=None,
                     batch_size=8, progress=False, nwp_readout="final", tr_features="average"):
    """BA prediction and NWP cross-entropy of each TR's window, optionally with words replaced.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult
        Fitted on ``layer``; each TR uses the fold that held it out.
    layer : int
    trs : array of int, shape (n_trs_sel,)
    context : int
    pooling : {"last", "mean"}
    replacements : dict of int -> dict of int -> str, optional
        Per TR, the words to replace in its window (stimulus word index -> new word).
    batch_size : int
    progress : bool
    nwp_readout : {"final", "logit_lens"}
        The whole model's next-word loss, or layer ``layer``'s read through the final norm and
        the LM head (as :class:`brainattr.attribution.AttributionSettings` ``nwp_readout``).
    tr_features : {"average", "lanczos"}
        The encoding model's pooling of words into TRs (``AttributionSettings.tr_features``), the head's too.

    Returns
    -------
    prediction : array of float64, shape (n_trs_sel, n_voxels)
        The head's predicted (z-scored) activity of every voxel.
    nwp_loss : array of float64, shape (n_trs_sel,)
        Mean cross-entropy over the next word's tokens (NaN at the end of the text).
    """
    prediction, nwp = evaluate_variants(lm, dataset, [encoding], layer, trs, [replacements or {}], context, pooling,
                                        nwp_readout, reuse_prefix=False, batch_size=batch_size, progress=progress,
                                        tr_features=tr_features)
    return prediction[0][0], nwp[0]


# ---------------------------------------------------------------- many maskings of the same windows
def _cache_keyword(model):
    """The keyword by which the base model's forward takes a key/value cache that a masked window
    can continue exactly, or None.

    ``"cache"`` (``"past_key_values"`` before transformers renamed it). None for models without one
    (Mamba's recurrent state) and for attention over a sliding window (Gemma 2 and 3), whose cache
    drops old keys: there every window runs in full.
    """
    params = inspect.signature(base_model(model).forward).parameters
    keyword = next((name for name in ("cache", "past_key_values") if name in params), None)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    types = getattr(config, "layer_types", None)
    if types is not None:
        sliding = any(t != "full_attention" for t in types)
    else:
        sliding = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
    return None if sliding else keyword


class _Stop(Exception):
    """Raised by a hook once the last layer needed has run."""


def _forward(model, layer, embeds, mask=None, cache=None, keyword=None, final=True):
    """Layer ``layer``'s states and (with ``final``) the final normed states of a pass over ``embeds``.

    ``cache``, a ``transformers.DynamicCache`` passed by ``keyword``, holds the keys and values of
    the tokens before ``embeds`` (positions continue from there) and is extended in place. Without
    ``final`` the pass stops after block ``layer`` (the logit lens reads no deeper).

    Returns
    -------
    states : tensor of shape (batch, n_tokens, hidden)
    final_states : tensor of shape (batch, n_tokens, hidden), or None without ``final``
    """
    blocks = decoder_layers(model)
    captured = {}

    def keep(x):
        captured["x"] = x
        if not final:
            raise _Stop

    if layer == 0:
        handle = blocks[0].register_forward_pre_hook(lambda m, args, kwargs: keep(block_input(args, kwargs)),
                                                     with_kwargs=True)
    else:
        handle = blocks[layer - 1].register_forward_hook(lambda m, args, output: keep(block_output(output)))
    base = base_model(model)
    kwargs = dict(inputs_embeds=embeds, attention_mask=mask, use_cache=cache is not None)
    if cache is not None:
        kwargs[keyword] = cache
    out = None
    try:
        out = base(**forward_kwargs(base, **kwargs))
    except _Stop:
        pass
    finally:
        handle.remove()
    if out is None:
        return captured["x"], None
    return captured["x"], out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _cache_prefix(cache, n, batch=1):
    """A new cache holding the first ``n`` tokens' keys and values of a one-window ``cache`` (left
    unchanged), repeated for ``batch`` windows."""
    from transformers import DynamicCache

    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys[..., :n, :].expand(batch, -1, -1, -1), layer.values[..., :n, :].expand(batch, -1, -1, -1),
                   i)
    return out


def _continuable(cache):
    """Whether ``cache`` keeps every past key and value in plain tensors (only then is its prefix exact)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.keys is not None for layer in layers)


def _first_difference(a, b):
    """The first position where token sequences ``a`` and ``b`` differ (the shorter length if none)."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def evaluate_variants(lm, dataset, encodings, layer, trs, variants, context=80, pooling="last", nwp_readout="final",
                      reuse_prefix=True, batch_size=8, progress=False, tr_features="average"):
    """BA predictions and NWP cross-entropies of each TR's window under several sets of replaced words.

    A causal model's states at a token depend only on the tokens up to it, so a window whose words
    are replaced from its token ``p`` on has the unmasked window's states before ``p``. With
    ``reuse_prefix``, each TR's unmasked window runs once and keeps its keys and values; each
    variant then runs only its tokens from the first one that differs, attending to the kept keys
    and values of the tokens before; the variants of a TR run ``batch_size`` at a time, those that
    change late together, each batch from its earliest change on. Masking the recent words of a
    long window then costs a few tokens instead of the whole window; masking its first word costs
    a whole pass. The results equal full passes up to float rounding (tested). Models whose cache
    cannot be continued exactly (:func:`_cache_keyword`: sliding-window attention, recurrent
    states) run each TR's variants in full, ``batch_size`` at a time; ``reuse_prefix=False`` runs
    each variant's windows in full, ``batch_size`` TRs at a time. Every encoding model reads the
    same pass.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    dataset : brainattr.schema.Dataset
        Gives the stimulus.
    encodings : list of brainattr.encoding.EncodingResult
        Fitted on ``layer`` and ``dataset``'s stimulus (e.g. one per subject); each TR uses the
        fold that held it out (the windows follow the first).
    layer : int
    trs : array of int, shape (n_trs_sel,)
    variants : list of dict of int -> dict of int -> str
        Per variant, per TR the words to replace (stimulus word index -> new word), as
        :func:`evaluate_windows`' ``replacements``; ``{}`` is the unmasked windows.
    context : int
    pooling : {"last", "mean"}
    nwp_readout : {"final", "logit_lens"}
        As for :func:`evaluate_windows`.
    reuse_prefix : bool
    batch_size : int
        Windows per pass.
    progress : bool
    tr_features : {"average", "lanczos"}
        As for :func:`evaluate_windows`: that of the encoding models' features.

    Returns
    -------
    prediction : list of arrays of float64, shape (n_variants, n_trs_sel, n_voxels_e)
        Per encoding model, its predicted (z-scored) activity of every voxel.
    nwp_loss : array of float64, shape (n_variants, n_trs_sel)
        Mean cross-entropy over the next word's tokens (NaN at the end of the text).
    """
    trs = np.atleast_1d(np.asarray(trs, dtype=int))
    layer = lm.check_layer(int(layer))
    if nwp_readout not in NWP_READOUTS:
        raise ValueError(f"unknown NWP readout {nwp_readout!r}; use one of {NWP_READOUTS}.")
    model, device = lm.model, next(lm.model.parameters()).device
    text = tokenized_text(lm, dataset.stimulus, tr_features)
    windows = []
    for tr in trs:
        window = tr_window(dataset.stimulus, encodings[0], int(tr), context)
        if window is None:
            raise ValueError(f"TR {tr} has no word in its delay TRs; drop it.")
        windows.append(window)
    prediction = [np.zeros((len(variants), trs.size, enc.n_voxels)) for enc in encodings]
    nwp = np.full((len(variants), trs.size), np.nan)
    heads = [{} for _ in encodings]
    final = nwp_readout == "final"
    norm = None if final else final_norm(model)

    def instance(v, i):
        altered = _substituted(text, variants[v].get(int(trs[i]), {}), lm.tokenizer)
        return make_instance(altered, windows[i], pooling, with_next=windows[i].next_word >= 0)

    def score(items, states, final_states, batch):
        """Every encoding's prediction and the NWP loss of the windows ``items``: (variant, TR position, instance)."""
        feats = tr_features_from_states(states, batch["pool"])
        loss = nwp_loss(model, final_states, batch) if final else nwp_loss(model, states, batch, norm=norm)
        for j, (v, i, inst) in enumerate(items):
            for e, enc in enumerate(encodings):
                head = head_for(enc, inst.window.tr, None, heads[e], device)
                prediction[e][v, i] = head(feats[j:j + 1], batch["present"][j:j + 1])[0].double().cpu().numpy()
            if inst.nwp_range[1] > inst.nwp_range[0]:
                nwp[v, i] = float(loss[j])

    def run(items, start=0, base=None):
        """Run the windows ``items`` (of one TR when ``start > 0``), right-padded into one batch, from
        their token ``start`` on; ``base`` = (cache, keyword, states, final states) of the unmasked
        window gives the tokens before. Score them."""
        batch = collate([inst for _, _, inst in items], lm.tokenizer.pad_token_id, device)
        emb = model.get_input_embeddings()(batch["ids"][:, start:])
        if start == 0:
            score(items, *_forward(model, layer, emb, batch["mask"], final=final), batch)
            return
        cache, keyword, base_states, base_final = base
        states, final_states = _forward(model, layer, emb, batch["mask"], _cache_prefix(cache, start, len(items)),
                                        keyword, final=final)
        states = torch.cat([base_states[:, :start].expand(len(items), -1, -1), states], 1)
        if final:
            final_states = torch.cat([base_final[:, :start].expand(len(items), -1, -1), final_states], 1)
        score(items, states, final_states, batch)

    with torch.no_grad():
        if not reuse_prefix:                # every window in full, batch_size TRs at a time
            for v in tqdm(range(len(variants)), desc="maskings", disable=not progress, leave=False):
                for k in range(0, trs.size, batch_size):
                    run([(v, i, instance(v, i)) for i in range(k, min(k + batch_size, trs.size))])
            return prediction, nwp
        from transformers import DynamicCache

        keyword = _cache_keyword(model)
        for i in tqdm(range(trs.size), desc="windows", disable=not progress, leave=False):
            base = make_instance(text, windows[i], pooling, with_next=windows[i].next_word >= 0)   # unmasked
            cache = DynamicCache() if keyword else None
            ids = torch.as_tensor(base.ids, device=device)[None]
            base_states, base_final = _forward(model, layer, model.get_input_embeddings()(ids), cache=cache,
                                               keyword=keyword, final=final)
            exact = keyword is not None and _continuable(cache)
            todo, done = [], {}
            for v in range(len(variants)):
                inst = instance(v, i)
                key = inst.ids.tobytes()
                if key in done:             # the same tokens as another variant (e.g. no word replaced here)
                    done[key].append(v)
                    continue
                done[key] = [v]
                if np.array_equal(inst.ids, base.ids):
                    score([(v, i, inst)], base_states, base_final, collate([inst], lm.tokenizer.pad_token_id, device))
                    continue
                # the first changed token (0: run it all); at least one token is always run
                start = min(_first_difference(base.ids, inst.ids), len(inst.ids) - 1) if exact else 0
                todo.append((start, v, inst))
            # variants that change late run together, each batch from its earliest change on
            todo.sort(key=lambda item: -item[0])
            for k in range(0, len(todo), batch_size):
                group = todo[k:k + batch_size]
                run([(v, i, inst) for _, v, inst in group], min(start for start, _, _ in group),
                    (cache, keyword, base_states, base_final))
            for same in done.values():
                for v in same[1:]:
                    for pred in prediction:
                        pred[v, i] = pred[same[0], i]
                    nwp[v, i] = nwp[same[0], i]
    return prediction, nwp


def random_replacements(stimulus, selected, seed=0):
    """Random stimulus words for the selected words of each TR.

    Parameters
    ----------
    stimulus : brainattr.schema.Stimulus
    selected : dict of int -> array of int
        Per TR, the stimulus word indices to replace.
    seed : int

    Returns
    -------
    dict of int -> dict of int -> str
        Per TR, word index -> a word drawn uniformly from the stimulus vocabulary, never the word
        it replaces.
    """
    vocab = np.unique(stimulus.words)
    rng = np.random.default_rng(seed)
    out = {}
    for tr, idx in selected.items():
        rep = {}
        for i in np.asarray(idx, dtype=int):
            w = vocab[rng.integers(vocab.size)]
            while w == stimulus.words[i] and vocab.size > 1:
                w = vocab[rng.integers(vocab.size)]
            rep[int(i)] = str(w)
        out[int(tr)] = rep
    return out


def masked_words(table, threshold=0.01, how="abs"):
    """Per TR, the stimulus word indices of the important-word set at ``threshold``.

    Returns
    -------
    dict of int -> array of int
    """
    imp = important_words(table, [threshold], how)
    return {int(tr): g["word_index"].to_numpy() for tr, g in imp.groupby("tr")}


def random_words(table, sizes, seed=0):
    """Per TR, ``sizes[tr]`` window words chosen uniformly at random (the control masking).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table (gives each TR's window).
    sizes : dict of int -> int
    seed : int

    Returns
    -------
    dict of int -> array of int
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    rng = np.random.default_rng(seed)
    return {int(tr): rng.choice(g["word_index"].to_numpy(), size=min(int(sizes[tr]), len(g)), replace=False)
            for tr, g in df.groupby("tr") if int(tr) in sizes}


def masked_scores(prediction, dataset, encoding, trs, voxels):
    """Held-out r over the attributed TRs of each voxel, from predicted activity.

    Parameters
    ----------
    prediction : array of shape (n_trs_sel, n_voxels)
    dataset : brainattr.schema.Dataset
    encoding : brainattr.encoding.EncodingResult
    trs : array of int, shape (n_trs_sel,)
    voxels : array of bool, shape (n_voxels,)

    Returns
    -------
    r : array of float64, shape (n_selected_voxels,)
    """
    measured = np.stack([encoding.measured_tr(int(t), dataset.responses) for t in trs])
    return pearson_r(measured[:, voxels], prediction[:, voxels])



# ---------------------------------------------------------------- the fair sweep (review point 9)
#: The paper's "top 1 %" as a number of words: 1 % of a 640-word context plus the ~16 words of the
#: delay TRs is 6.6 words, so 6 or 7 words; the sweep takes 7.
PAPER_K = 7
#: The paper's "top 1 %" as a share of each window's words (a ``k`` of :func:`masking_sweep` below 1).
PAPER_SHARE = 0.01
#: How words are ranked: by magnitude, by the largest positive or by the most negative attribution.
SIGNS = ("abs", "pos", "neg")
#: What each masking is scored on: NWP's cross-entropy, BA's r over the TRs (mean over voxels), and
#: BA's attribution target itself, the squared error of each TR (mean over voxels).
TARGETS = ("nwp", "ba_r", "ba_mse")
#: The masked word sets of :func:`masking_sweep`.
SELECTIONS = ("top BA", "top NWP", "random same positions", "random anywhere")
_SWEEP_COLUMNS = ("masked_task", "selection", "sign", "k", "target", "n_masked", "baseline", "value", "effect",
                  "ci_low", "ci_high", "relative", "rel_ci_low", "rel_ci_high", "n_trs", "n_blocks", "share",
                  "n_subjects")


def _frame(table):
    return table.to_pandas() if hasattr(table, "to_pandas") else table


def is_share(k):
    """Whether ``k`` of a sweep is a share of each window's words (a float in (0, 1)) rather than a count."""
    return isinstance(k, (float, np.floating)) and 0 < float(k) < 1


def share_k(table, share=PAPER_SHARE):
    """Per TR, ``share`` of its window's words, rounded up: the paper's "top 1 %" as a number of words.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table (one row per window word).
    share : float
        In (0, 1).

    Returns
    -------
    dict of int -> int
        Per TR, at least 1 word (7 for a full 640-word window with its ~16 delay words; fewer in the
        shorter windows at the start of the text).
    """
    if not is_share(share):
        raise ValueError(f"share must be a fraction in (0, 1), got {share!r} (0.01 for the paper's top 1 %).")
    n_words = _frame(table).groupby("tr").size()
    # rounded before the ceiling, so that 0.01 x 700 words is 7 words, not 8
    return {int(tr): max(1, math.ceil(round(float(share) * int(n), 9))) for tr, n in n_words.items()}


def top_k_words(table, k, sign="abs"):
    """Per TR, the ``k`` words with the strongest attribution of ``sign``, strongest first.

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        An attribution table.
    k : int or dict of int -> int
        Words per TR, the same for every TR or per TR (e.g. :func:`share_k`; a TR it lacks gets none).
    sign : {"abs", "pos", "neg"}
        ``"abs"``: the largest ``|attribution|`` (as :func:`masked_words`); ``"pos"``: the largest
        positive attributions; ``"neg"``: the most negative ones. A TR with fewer than ``k`` words
        of that sign gives fewer (a zero attribution has no sign). Ties go to the more recent word,
        as in :func:`brainattr.analysis.important_words`.

    Returns
    -------
    dict of int -> array of int
        Stimulus word indices, in rank order.
    """
    if sign not in SIGNS:
        raise ValueError(f"unknown sign {sign!r}; use one of {SIGNS}.")
    df = _frame(table)
    score = {"abs": df["attribution"].abs(), "pos": df["attribution"], "neg": -df["attribution"]}[sign]
    df = df.assign(_score=score.to_numpy())
    if sign != "abs":
        df = df[df["_score"] > 0]
    df = df.sort_values(["tr", "_score", "position", "word_index"], ascending=[True, False, True, True],
                        kind="stable")
    per_tr = k if isinstance(k, dict) else None
    out = {int(tr): g["word_index"].to_numpy()[:int(per_tr.get(int(tr), 0) if per_tr is not None else k)]
           for tr, g in df.groupby("tr")}
    return {int(tr): out.get(int(tr), np.zeros(0, dtype=np.int64)) for tr in np.unique(_frame(table)["tr"])}


def _windows(table):
    """Per TR, the end (one past the most recent word) and the number of words of its window."""
    g = _frame(table).groupby("tr")["word_index"]
    return {int(tr): (int(hi) + 1, int(n)) for tr, hi, n in zip(g.max().index, g.max(), g.size())}


def _derangement(n, rng):
    """A random permutation of ``range(n)`` without fixed points (the identity for ``n < 2``)."""
    if n < 2:
        return np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def same_position_words(table, selected, seed=0):
    """The position-matched control: per TR, the words at the window positions another TR's
    selection holds.

    Masking "random words at the masked words' positions" of the same TR would mask the same words
    again, so the control keeps the positions and changes the TR: the TRs are paired by a random
    derangement, and TR ``i`` masks the words at the positions (0 = most recent word) that the
    selection of its partner ``j`` masks in ``j``'s window. Over all TRs the masked positions are
    then the selection's own, position for position (when every partner has as many words as TR
    ``i`` and they fit in ``i``'s window), while the words are no longer the ones its attribution
    picked. A masking that hurts through position alone hurts as much under this control. A
    partner with fewer words, or positions beyond ``i``'s window, is completed with positions
    drawn from those the selection holds in other TRs (then any free position).

    Parameters
    ----------
    table : pandas.DataFrame or datasets.Dataset
        The attribution table the selection came from (gives each TR's window).
    selected : dict of int -> array of int
        Per TR, the masked stimulus word indices, in rank order (:func:`top_k_words`).
    seed : int or sequence of int

    Returns
    -------
    dict of int -> array of int
        Per TR, as many stimulus word indices as ``selected[tr]``.
    """
    windows = _windows(table)
    trs = sorted(int(t) for t in selected)
    pos = {tr: windows[tr][0] - 1 - np.asarray(selected[tr], dtype=np.int64) for tr in trs}
    rng = np.random.default_rng(seed)
    partner = _derangement(len(trs), rng)
    pooled = np.concatenate([pos[tr] for tr in trs]) if trs else np.zeros(0, np.int64)
    out = {}
    for i, tr in enumerate(trs):
        end, n_words = windows[tr]
        want = len(pos[tr])
        take = [int(p) for p in pos[trs[partner[i]]][:want] if p < n_words]
        for p in list(rng.permutation(pooled)) + list(rng.permutation(n_words)):
            if len(take) >= want:
                break
            if p < n_words and int(p) not in take:
                take.append(int(p))
        out[tr] = end - 1 - np.asarray(take, dtype=np.int64)
    return out


def tr_blocks(table):
    """Blocks of TRs for the bootstrap: a block starts at the first TR whose window shares no word
    with the window of the block's first TR.

    So the first windows of two blocks never overlap, and TRs two blocks apart share no word
    (neighbouring blocks still may: the dependence a non-overlapping block bootstrap ignores).

    Returns
    -------
    pandas.Series
        Block number (0, 1, ...) of each TR, indexed by TR in increasing order.
    """
    w = _frame(table).groupby("tr")["word_index"].agg(["min", "max"]).sort_index()
    blocks, block, end = [], -1, -np.inf
    for lo, hi in zip(w["min"], w["max"]):
        if lo > end:
            block, end = block + 1, hi
        blocks.append(block)
    return pd.Series(blocks, index=w.index.astype(int), name="block")


def bootstrap_counts(blocks, n_boot=1000, seed=0):
    """How often each TR enters each bootstrap resample of whole blocks.

    Parameters
    ----------
    blocks : array of int, shape (n_trs,)
        Block of each TR (:func:`tr_blocks`; ``arange(n_trs)`` resamples single TRs).
    n_boot : int
    seed : int

    Returns
    -------
    counts : array of float64, shape (1 + n_boot, n_trs)
        Row 0 is the sample itself (all ones); rows 1.. draw as many blocks as there are, with
        replacement.
    """
    _, inv = np.unique(np.asarray(blocks), return_inverse=True)
    n_blocks = int(inv.max()) + 1 if inv.size else 0
    rng = np.random.default_rng(seed)
    picks = rng.integers(n_blocks, size=(int(n_boot), n_blocks))
    per_block = np.zeros((int(n_boot), n_blocks))
    np.add.at(per_block, (np.arange(int(n_boot))[:, None], picks), 1.0)
    return np.vstack([np.ones(inv.size), per_block[:, inv]])


def _weighted_mean(counts, x):
    return counts @ x / counts.sum(1)


def _weighted_r(counts, measured, prediction):
    """Mean over voxels of the Pearson r over TRs, for each row of TR weights, shape (n_rows,)."""
    measured, prediction = measured - measured.mean(0), prediction - prediction.mean(0)  # (moments lose less)
    n = counts.sum(1)[:, None]
    mx, my = counts @ measured / n, counts @ prediction / n
    cov = counts @ (measured * prediction) / n - mx * my
    vx = np.maximum(counts @ measured ** 2 / n - mx ** 2, 0.0)
    vy = np.maximum(counts @ prediction ** 2 / n - my ** 2, 0.0)
    den = np.sqrt(vx * vy)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 1e-12, cov / np.where(den > 1e-12, den, 1.0), 0.0)
    return r.mean(1)


def masking_plans(ba_table, nwp_table, ks=(1, 2, 4, PAPER_K, 8), signs=SIGNS, tasks=("ba", "nwp"), n_draws=1,
                  seed=0):
    """The word sets :func:`masking_sweep` masks: per (masked task, selection, sign, k), one per draw.

    The top words of a task (:func:`top_k_words`), the words at the same positions in other TRs'
    windows (:func:`same_position_words`), and as many words anywhere in the window
    (:func:`random_words`). A draw's replacement words come from a seed of (``seed``, ``k``, draw)
    alone, so a top set and its controls get the same stream of random words, and the control
    anywhere is one draw for every task and sign with the same sizes.

    Parameters
    ----------
    ba_table, nwp_table : pandas.DataFrame or datasets.Dataset
        Attribution tables of the same TRs.
    ks : sequence of int or float
        Words masked per TR: an int is that many in every window; a float in (0, 1) is that share
        of each window's words, rounded up (:func:`share_k`; :data:`PAPER_SHARE` is the paper's
        top 1 %).
    signs, tasks, n_draws, seed
        As for :func:`masking_sweep`.

    Returns
    -------
    list of dict
        ``masked_task``, ``selection``, ``sign``, ``k`` (int: the largest per-TR count of a share),
        ``share`` (the share, NaN for a fixed count) and ``draws``: a list of (selected words per
        TR, replacement seed) pairs.
    """
    tables = {"ba": _frame(ba_table), "nwp": _frame(nwp_table)}
    plans = []
    for k in ks:
        if not (is_share(k) or (float(k) == int(k) and int(k) >= 1)):
            raise ValueError(f"k {k!r} is neither a number of words (1, 2, ...) nor a share of the window in (0, 1).")
    for t, task in enumerate(tasks):
        for s, sign in enumerate(signs):
            for k in ks:
                per_tr = share_k(tables[task], k) if is_share(k) else int(k)
                k_int = max(per_tr.values(), default=0) if is_share(k) else per_tr
                top = top_k_words(tables[task], per_tr, sign)
                sizes = {tr: len(v) for tr, v in top.items()}
                seeds = [(int(seed), k_int, d) for d in range(int(n_draws))]    # replacement words of each draw
                draws = {f"top {task.upper()}": [(top, r) for r in seeds],
                         "random same positions": [(same_position_words(tables[task], top, seed=(*r, t, s)), r)
                                                   for r in seeds],
                         "random anywhere": [(random_words(tables[task], sizes, seed=r), r) for r in seeds]}
                plans += [dict(masked_task=task, selection=name, sign=sign, k=k_int,
                               share=float(k) if is_share(k) else np.nan, draws=d) for name, d in draws.items()]
    return plans


def _plan_key(selected, rep_seed):
    return tuple((int(tr), tuple(sorted(int(i) for i in idx))) for tr, idx in sorted(selected.items())), rep_seed


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _subject_scores(prediction, nwp, measured, vox):
    """One subject's scores of one variant: NWP's cross-entropy and the squared error per TR, the prediction."""
    return dict(nwp=nwp, ba_mse=((prediction[:, vox] - measured) ** 2).mean(1), prediction=prediction[:, vox])


def _statistic(target, evaluations, counts, measured):
    """A target's value under each row of TR weights, averaged over subjects and draws, shape (1 + n_boot,).

    ``evaluations``: per draw, per subject, :func:`_subject_scores`; ``measured``: per subject, the
    measured activity of its voxels, shape (n_trs, n_voxels_s).
    """
    if target == "ba_r":
        return np.mean([[_weighted_r(counts, m, e["prediction"]) for e, m in zip(draw, measured)]
                        for draw in evaluations], axis=(0, 1))
    return np.mean([[_weighted_mean(counts, e[target]) for e in draw] for draw in evaluations], axis=(0, 1))


def _effect_row(target, plan_stat, none_stat, ci):
    """Point effect (row 0) and percentile CIs (rows 1..) of the change and of the relative change."""
    effect = plan_stat - none_stat
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = effect / np.abs(none_stat)
    q = [50 * (1 - ci), 50 * (1 + ci)]
    lo, hi = np.percentile(effect[1:], q) if effect.size > 1 else (np.nan, np.nan)
    rlo, rhi = np.nanpercentile(relative[1:], q) if relative.size > 1 else (np.nan, np.nan)
    return dict(target=target, baseline=none_stat[0], value=plan_stat[0], effect=effect[0], ci_low=lo, ci_high=hi,
                relative=relative[0], rel_ci_low=rlo, rel_ci_high=rhi)


def masking_sweep(lm, dataset, encoding, layer, ba_table, nwp_table, ks=(1, 2, 4, PAPER_K, 8), signs=SIGNS,
                  tasks=("ba", "nwp"), context=80, pooling="last", voxel_set="language", nwp_readout="final",
                  n_draws=1, n_boot=1000, ci=0.95, blocks="windows", min_blocks=2, seed=0, batch_size=8,
                  return_per_tr=False, progress=False, tr_features="average"):
    """The fair masking check: top-k words by sign, matched random controls, both targets, bootstrap CIs.

    For each masked task (whose attribution ranks the words), sign and ``k``, the top words, the
    words at the same positions of other TRs (:func:`same_position_words`) and as many words
    anywhere in the window are replaced with random stimulus words (:func:`random_replacements`),
    and every target is evaluated on the altered windows (:func:`evaluate_variants`): NWP's
    cross-entropy (``"nwp"``), BA's r over the TRs averaged over ``voxel_set`` (``"ba_r"``, the
    paper's score) and BA's squared error per TR averaged over ``voxel_set`` (``"ba_mse"``, the
    target BA's attribution explains). So the cross-task bars (BA's top words scored on NWP, NWP's
    top words on BA) come with the same controls. A positive attribution of either target (an
    error) marks a word that raises it: masking the top ``"pos"`` words should lower it, the top
    ``"neg"`` words raise it.

    Several subjects (lists of datasets, encodings and BA tables): each subject's BA words are
    masked and scored on its own encoding model, NWP's words are the same for all; every value is
    the mean over subjects, and one forward pass serves every subject whose masked words agree.

    CIs: percentile bootstrap over TRs, paired (every masking is resampled with the same TRs as
    the unmasked windows, and for every subject), resampling blocks of TRs whose windows do not
    overlap (:func:`tr_blocks`; ``blocks="trs"``: single TRs, which overstates the precision when
    windows share words). Subjects are not resampled: the CI is over text, for these subjects.
    Random draws (``n_draws``) are averaged before the bootstrap, so the CIs do not include the
    spread between draws. Word sets with equal content are evaluated once.

    Parameters
    ----------
    lm, layer, context, pooling
        As for :func:`evaluate_windows`; ``context`` and ``pooling`` those of the tables.
    dataset : brainattr.schema.Dataset or list of them
        One subject, or several who read the same stimulus.
    encoding : brainattr.encoding.EncodingResult or list of them
        Fitted on ``layer``, one per dataset.
    ba_table : pandas.DataFrame or datasets.Dataset, or a list of them (one per dataset)
    nwp_table : pandas.DataFrame or datasets.Dataset
        Attribution tables of the two tasks (GxI) for the same TRs; only their common TRs are used.
    ks : sequence of int or float
        Words masked per TR (:data:`PAPER_K`: the paper's top 1 % of a 640-word window); a float
        in (0, 1) is a share of each window's words (:func:`share_k`; :data:`PAPER_SHARE`).
    signs : sequence of {"abs", "pos", "neg"}
    tasks : sequence of {"ba", "nwp"}
        Whose attribution ranks the masked words.
    voxel_set : str or array of bool
        Voxels of ``"ba_r"`` and ``"ba_mse"`` (:func:`brainattr.attribution.voxel_mask`).
    nwp_readout : {"final", "logit_lens"}
        How the ``"nwp"`` target is read out (that of ``nwp_table``).
    n_draws : int
        Random draws of every masking (its replacement words; the controls' positions and words).
    n_boot : int
    ci : float
        Coverage of the intervals.
    blocks : {"windows", "trs"} or mapping of int -> int
        ``"windows"``: :func:`tr_blocks`; ``"trs"``: single TRs; or a block id per TR, e.g.
        ``dict(zip(trs, brainattr.stats.independent_blocks(trs, ba_table)))`` (strictly independent
        blocks); TRs with id -1 or no id are left out of every estimate.
    min_blocks : int
        Fewer blocks than this give no CI (NaN): with 2 or 3 blocks the bootstrap's percentiles are
        little more than the blocks' own values.
    seed : int
    batch_size : int
        Windows per pass for models that run every masked window in full (see
        :func:`evaluate_variants`).
    return_per_tr : bool
        Also return each evaluation's per-TR scores.
    progress : bool
    tr_features : {"average", "lanczos"}
        As for :func:`evaluate_windows`: that of the encoding models' features.

    Returns
    -------
    summary : pandas.DataFrame
        One row per (masked_task, selection, sign, k, target): ``n_masked`` (mean words replaced
        per TR), ``baseline`` (unmasked), ``value`` (masked), ``effect`` = value - baseline with
        ``ci_low``, ``ci_high``, ``relative`` = effect / |baseline| with ``rel_ci_low``,
        ``rel_ci_high`` (CIs NaN with fewer than ``min_blocks`` blocks), ``n_trs``, ``n_blocks``, ``share``
        (the share of the window ``k`` stands for, NaN for a fixed count) and ``n_subjects``. The
        ``"random anywhere"`` rows of one ``k`` are usually the same draw for every masked task
        and sign.
    per_tr : pandas.DataFrame, only with ``return_per_tr``
        One row per (masked_task, selection, sign, k, draw, subject, tr): ``nwp``, ``ba_mse``.
    """
    datasets, encodings = _as_list(dataset), _as_list(encoding)
    ba_tables = [_frame(t) for t in _as_list(ba_table)]
    if not all(isinstance(d, Dataset) for d in datasets):
        raise TypeError("dataset must be a brainattr.schema.Dataset (or a list of them, one per subject).")
    if not len(datasets) == len(encodings) == len(ba_tables):
        raise ValueError(f"one encoding and one BA table per dataset: got {len(datasets)} dataset(s), "
                         f"{len(encodings)} encoding(s) and {len(ba_tables)} BA table(s).")
    if isinstance(blocks, str) and blocks not in ("windows", "trs"):
        raise ValueError(f"unknown blocks {blocks!r}; use 'windows', 'trs' or a block id per TR.")
    nwp = _frame(nwp_table)
    trs = nwp["tr"].unique()
    for ba in ba_tables:
        trs = np.intersect1d(trs, ba["tr"].unique())
    trs = trs.astype(int)
    if not isinstance(blocks, str):
        given = pd.Series(blocks, dtype=float).reindex(trs).fillna(-1).astype(int)
        trs, block_ids = trs[given.to_numpy() >= 0], given[given >= 0].to_numpy()
    ba_tables, nwp = [ba[ba["tr"].isin(trs)] for ba in ba_tables], nwp[nwp["tr"].isin(trs)]
    voxes = [voxel_mask(voxel_set, d, e) for d, e in zip(datasets, encodings)]
    measured = [np.stack([e.measured_tr(int(t), d.responses) for t in trs])[:, v]
                for d, e, v in zip(datasets, encodings, voxes)]

    # every subject's plans; the variants (word sets with their replacement words) each evaluated once
    plans = [masking_plans(ba, nwp, ks, signs, tasks, n_draws, seed) for ba in ba_tables]
    variants, index = [{}], {_plan_key({}, ()): 0}
    for subject_plans in plans:
        for plan in subject_plans:
            for sel, rep_seed in plan["draws"]:
                key = _plan_key(sel, rep_seed)
                if key not in index:
                    index[key] = len(variants)
                    variants.append(random_replacements(datasets[0].stimulus, sel, seed=list(rep_seed)))
    prediction, loss = evaluate_variants(lm, datasets[0], encodings, layer, trs, variants, context, pooling,
                                         nwp_readout, batch_size=batch_size, progress=progress,
                                         tr_features=tr_features)

    def scores(s, sel, rep_seed):
        v = index[_plan_key(sel, rep_seed)]
        return _subject_scores(prediction[s][v], loss[v], measured[s], voxes[s])

    if isinstance(blocks, str):
        block_ids = tr_blocks(nwp).loc[trs].to_numpy() if blocks == "windows" else np.arange(trs.size)
    n_blocks = len(np.unique(block_ids))
    counts = bootstrap_counts(block_ids, n_boot if n_blocks >= max(2, int(min_blocks)) else 0, seed)  # else no CI
    none = [[scores(s, {}, ()) for s in range(len(datasets))]]
    rows, per_tr = [], []
    for p, plan in enumerate(plans[0]):
        subject_plans = [plans[s][p] for s in range(len(datasets))]
        evaluations = [[scores(s, *subject_plans[s]["draws"][d]) for s in range(len(datasets))]
                       for d in range(len(plan["draws"]))]
        info = {k: plan[k] for k in ("masked_task", "selection", "sign", "k")}
        n_masked = np.mean([len(sel.get(int(t), ())) for sp in subject_plans for sel, _ in sp["draws"] for t in trs])
        for target in TARGETS:
            row = _effect_row(target, _statistic(target, evaluations, counts, measured),
                              _statistic(target, none, counts, measured), ci)
            rows.append(dict(info, n_masked=n_masked, n_trs=int(trs.size), n_blocks=n_blocks, share=plan["share"],
                             n_subjects=len(datasets), **row))
        if return_per_tr:
            per_tr += [pd.DataFrame(dict(info, share=plan["share"], draw=d, subject=datasets[s].subject, tr=trs,
                                         nwp=e["nwp"], ba_mse=e["ba_mse"]))
                       for d, draw in enumerate(evaluations) for s, e in enumerate(draw)]
    summary = pd.DataFrame(rows, columns=list(_SWEEP_COLUMNS))
    if return_per_tr:
        per_tr[:0] = [pd.DataFrame(dict(masked_task="none", selection="none", sign="none", k=0, share=np.nan, draw=0,
                                        subject=datasets[s].subject, tr=trs, nwp=e["nwp"], ba_mse=e["ba_mse"]))
                      for s, e in enumerate(none[0])]
        return summary, pd.concat(per_tr, ignore_index=True)
    return summary


__all__ = ["evaluate_windows", "evaluate_variants", "random_replacements", "masked_words", "random_words",
           "masked_scores", "PAPER_K", "PAPER_SHARE", "SIGNS", "TARGETS", "SELECTIONS", "is_share", "share_k",
           "top_k_words", "same_position_words", "tr_blocks", "bootstrap_counts", "masking_plans", "masking_sweep"]

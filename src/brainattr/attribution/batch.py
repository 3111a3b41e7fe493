"""Instances and batches: one TR window's token ids, pooling and attribution masks, padded together."""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ..lm import special_prefix, word_token_spans
from ..trs import word_tr_weights
from .windows import Window


@dataclass
class Instance:
    window: Window
    ids: np.ndarray            # (n,) prefix + window tokens + next-word tokens
    attr_range: tuple          # [p0, p1) positions of the window's tokens in ids
    token_word: np.ndarray     # (p1 - p0,) stimulus word of each window token
    pool: np.ndarray           # (n_delays, p1) averaging weights over positions
    present: np.ndarray        # (n_delays,) bool
    nwp_range: tuple           # [q0, q1) positions of the next word's tokens (empty if none)


class TokenizedText:
    """Tokenization of the whole stimulus, done once (same slicing as feature extraction).

    ``tr_weights`` (n_trs, n_words) are the word-to-TR weights of the encoding model's features
    (:func:`brainattr.trs.word_tr_weights`, method ``tr_features``): the head pools each delay
    TR's word states with the same row, so it reproduces the encoding model's input exactly.
    """

    def __init__(self, lm, stimulus, tr_features="average"):
        self.token_ids, self.spans = word_token_spans(stimulus.words, lm.tokenizer)
        self.prefix = np.asarray(special_prefix(lm.tokenizer), dtype=np.int64)
        self.word_trs = stimulus.word_trs
        self.tr_features = tr_features
        self.tr_weights = word_tr_weights(stimulus, tr_features)


#: The last few tokenizations (:func:`tokenized_text`), each kept with its tokenizer.
_TOKENIZED = OrderedDict()
_TOKENIZED_KEPT = 4


def tokenized_text(lm, stimulus, tr_features="average"):
    """:class:`TokenizedText` of ``stimulus``, remembered for the last few (tokenizer, text, TR features).

    Tokenizing a 5,000-word text takes tens of milliseconds, as long as attributing a batch of
    TRs on a GPU: a sweep's parts (:func:`brainattr.attribution.attribute`) and repeated calls
    reuse it. The entry holds its tokenizer, so an entry is only found for the same object.
    """
    key = (id(lm.tokenizer), stimulus.fingerprint, tr_features)
    hit = _TOKENIZED.get(key)
    if hit is not None and hit[0] is lm.tokenizer:
        _TOKENIZED.move_to_end(key)
        return hit[1]
    text = TokenizedText(lm, stimulus, tr_features)
    _TOKENIZED[key] = (lm.tokenizer, text)
    while len(_TOKENIZED) > _TOKENIZED_KEPT:
        _TOKENIZED.popitem(last=False)
    return text


def covering_window(text, window):
    """``window`` widened, if needed, to every word that the pooling rows of its delay TRs weigh.

    Per-TR averaging weighs only the words of the delay TRs, which the window already holds; the
    Lanczos kernel also weighs words up to 3 TRs before and after them. The window then reaches
    its last weighed word (positions count back from it) and the NWP target is the word after it.

    Returns
    -------
    Window
        ``window`` itself when it already covers them.
    """
    rows = [text.tr_weights[s] for s in window.source_trs if s >= 0]
    weighed = np.flatnonzero(np.any(np.stack(rows) != 0, axis=0)) if rows else np.zeros(0, int)
    if weighed.size == 0 or (weighed[0] >= window.start and weighed[-1] < window.end):
        return window
    start, end = min(window.start, int(weighed[0])), max(window.end, int(weighed[-1]) + 1)
    n_words = len(text.spans)
    return dataclasses.replace(window, start=start, end=end, next_word=end if end < n_words else -1)


def make_instance(text, window, pooling, with_next):
    window = covering_window(text, window)
    spans, prefix = text.spans, text.prefix
    t0, t1 = spans[window.start, 0], spans[window.end - 1, 1]
    nxt = window.next_word if with_next else -1
    tail = text.token_ids[spans[nxt, 0]:spans[nxt, 1]] if nxt >= 0 else np.zeros(0, np.int64)
    ids = np.concatenate([prefix, text.token_ids[t0:t1], tail]).astype(np.int64)
    p0 = len(prefix)
    p1 = p0 + (t1 - t0)
    token_word = np.searchsorted(spans[:, 1], np.arange(t0, t1), side="right")
    # one row of the encoding model's word-to-TR weights per delay TR: 1 / n_words for averaging
    pool = np.zeros((len(window.source_trs), p1), dtype=np.float32)
    for d, src in enumerate(window.source_trs):
        if src < 0:
            continue
        row = text.tr_weights[src]
        for w in np.flatnonzero(row):
            a, b = spans[w] - t0 + p0
            if pooling == "last":
                pool[d, b - 1] += row[w]
            elif pooling == "mean":
                pool[d, a:b] += row[w] / (b - a)
            else:
                raise ValueError(f"unknown pooling {pooling!r}; use 'last' or 'mean'.")
    present = np.array([s >= 0 for s in window.source_trs])
    return Instance(window, ids, (p0, p1), token_word, pool, present, (p1, p1 + len(tail)))


def collate(instances, pad_id, device):
    """Right-padded tensors for a batch (right padding keeps position ids as in feature extraction)."""
    n = max(len(i.ids) for i in instances)
    B, D = len(instances), len(instances[0].present)
    ids = torch.full((B, n), int(pad_id), dtype=torch.long)
    mask = torch.zeros((B, n), dtype=torch.long)
    attr = torch.zeros((B, n), dtype=torch.bool)
    pool = torch.zeros((B, D, n))
    present = torch.zeros((B, D), dtype=torch.bool)
    k = max(max(i.nwp_range[1] - i.nwp_range[0] for i in instances), 1)
    nwp_pos = torch.zeros((B, k), dtype=torch.long)
    nwp_labels = torch.zeros((B, k), dtype=torch.long)
    nwp_mask = torch.zeros((B, k))
    for b, inst in enumerate(instances):
        ids[b, :len(inst.ids)] = torch.as_tensor(inst.ids)
        mask[b, :len(inst.ids)] = 1
        attr[b, inst.attr_range[0]:inst.attr_range[1]] = True
        pool[b, :, :inst.pool.shape[1]] = torch.as_tensor(inst.pool)
        present[b] = torch.as_tensor(inst.present)
        q0, q1 = inst.nwp_range
        if q1 > q0:
            # teacher forcing: the logits at position p predict token p + 1
            nwp_pos[b, :q1 - q0] = torch.arange(q0 - 1, q1 - 1)
            nwp_labels[b, :q1 - q0] = torch.as_tensor(inst.ids[q0:q1])
            nwp_mask[b, :q1 - q0] = 1.0
    out = dict(ids=ids, mask=mask, attr=attr, pool=pool, present=present, nwp_pos=nwp_pos,
               nwp_labels=nwp_labels, nwp_mask=nwp_mask)
    return {k: v.to(device) for k, v in out.items()}

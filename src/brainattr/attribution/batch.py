"""Instances and batches: one TR window's token ids, pooling and attribution masks, padded together."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..lm import special_prefix, word_token_spans
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
    """Tokenization of the whole stimulus, done once (same slicing as feature extraction)."""

    def __init__(self, lm, stimulus):
        self.token_ids, self.spans = word_token_spans(stimulus.words, lm.tokenizer)
        self.prefix = np.asarray(special_prefix(lm.tokenizer), dtype=np.int64)
        self.word_trs = stimulus.word_trs


def make_instance(text, window, pooling, with_next):
    spans, prefix = text.spans, text.prefix
    t0, t1 = spans[window.start, 0], spans[window.end - 1, 1]
    nxt = window.next_word if with_next else -1
    tail = text.token_ids[spans[nxt, 0]:spans[nxt, 1]] if nxt >= 0 else np.zeros(0, np.int64)
    ids = np.concatenate([prefix, text.token_ids[t0:t1], tail]).astype(np.int64)
    p0 = len(prefix)
    p1 = p0 + (t1 - t0)
    token_word = np.searchsorted(spans[:, 1], np.arange(t0, t1), side="right")
    pool = np.zeros((len(window.source_trs), p1), dtype=np.float32)
    for d, src in enumerate(window.source_trs):
        if src < 0:
            continue
        words = np.flatnonzero(text.word_trs == src)
        for w in words:
            a, b = spans[w] - t0 + p0
            if pooling == "last":
                pool[d, b - 1] += 1.0 / len(words)
            elif pooling == "mean":
                pool[d, a:b] += 1.0 / (len(words) * (b - a))
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

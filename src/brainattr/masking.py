"""The masking check (the paper's Appendix C): replace the most important words, see what breaks.

For each attributed TR, the words of its important-word set at a small threshold (the paper: the
top 1 % of the attribution) are replaced by words drawn at random from the stimulus vocabulary,
and both targets are evaluated again on the altered window:

- NWP: the cross-entropy of the next word (:func:`evaluate_windows`);
- BA: the head's predicted activity, scored as the Pearson r over the attributed TRs between
  predicted and measured activity of each voxel (:func:`masked_scores`).

Three maskings are compared: the top BA words, the top NWP words, and (the control the paper's
reviewers asked for) the same number of words chosen at random in the window.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .analysis import important_words
from .attribution import tr_features_from_states, tr_window, voxel_mask
from .attribution.batch import TokenizedText, collate, make_instance
from .attribution.head import head_for
from .attribution.targets import full_forward, nwp_loss
from .lm import word_token_spans
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
                     batch_size=8, progress=False):
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

    Returns
    -------
    prediction : array of float64, shape (n_trs_sel, n_voxels)
        The head's predicted (z-scored) activity of every voxel.
    nwp_loss : array of float64, shape (n_trs_sel,)
        Mean cross-entropy over the next word's tokens (NaN at the end of the text).
    """
    trs = np.atleast_1d(np.asarray(trs, dtype=int))
    replacements = replacements or {}
    layer = lm.check_layer(int(layer))
    device = next(lm.model.parameters()).device
    text = TokenizedText(lm, dataset.stimulus)
    instances = []
    for tr in trs:
        window = tr_window(dataset.stimulus, encoding, int(tr), context)
        if window is None:
            raise ValueError(f"TR {tr} has no word in its delay TRs; drop it.")
        altered = _substituted(text, replacements.get(int(tr), {}), lm.tokenizer)
        instances.append(make_instance(altered, window, pooling, with_next=window.next_word >= 0))
    prediction = np.zeros((trs.size, encoding.n_voxels))
    nwp = np.full(trs.size, np.nan)
    heads = {}
    for k in tqdm(range(0, trs.size, batch_size), desc="windows", disable=not progress, leave=False):
        chunk = instances[k:k + batch_size]
        batch = collate(chunk, lm.tokenizer.pad_token_id, device)
        with torch.no_grad():
            emb = lm.model.get_input_embeddings()(batch["ids"])
            states, final = full_forward(lm.model, layer, emb, batch["mask"])
            loss = nwp_loss(lm.model, final, batch)
            feats = tr_features_from_states(states, batch["pool"])
            for j, inst in enumerate(chunk):
                head = head_for(encoding, inst.window.tr, None, heads, device)
                prediction[k + j] = head(feats[j:j + 1], batch["present"][j:j + 1])[0].double().cpu().numpy()
                if inst.nwp_range[1] > inst.nwp_range[0]:
                    nwp[k + j] = float(loss[j])
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


def masking_check(lm, dataset, encoding, layer, ba_table, nwp_table, threshold=0.01, context=80, pooling="last",
                  voxel_set="language", seed=0, progress=False):
    """The paper's Appendix C for one subject and layer, with the random-word control.

    Parameters
    ----------
    lm, dataset, encoding, layer, context, pooling
        As for :func:`evaluate_windows`.
    ba_table, nwp_table : pandas.DataFrame or datasets.Dataset
        GxI tables of the two tasks for the same TRs.
    threshold : float
        Important-word threshold of the masked set (paper: 0.01, "the top 1 %").
    voxel_set : str or array of bool
        Voxels whose r is reported (:func:`brainattr.attribution.voxel_mask`).
    seed : int

    Returns
    -------
    per_tr : pandas.DataFrame
        One row per (masking, TR): ``masking`` in ``"none"``, ``"top BA"``, ``"top NWP"``,
        ``"random"``; ``nwp_loss``; ``n_masked``.
    per_voxel : pandas.DataFrame
        One row per (masking, voxel): ``r`` over the attributed TRs.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError("dataset must be a brainattr.schema.Dataset.")
    ba = ba_table.to_pandas() if hasattr(ba_table, "to_pandas") else ba_table
    trs = np.intersect1d(ba["tr"].unique(), (nwp_table.to_pandas() if hasattr(nwp_table, "to_pandas")
                                             else nwp_table)["tr"].unique())
    vox = voxel_mask(voxel_set, dataset, encoding)
    top_ba = masked_words(ba_table, threshold)
    top_nwp = masked_words(nwp_table, threshold)
    rand = random_words(ba, {tr: len(top_ba[tr]) for tr in top_ba}, seed=seed)
    plans = {"none": {}, "top BA": top_ba, "top NWP": top_nwp, "random": rand}
    per_tr, per_voxel = [], []
    for k, (name, selected) in enumerate(plans.items()):
        reps = random_replacements(dataset.stimulus, {tr: selected[tr] for tr in trs if tr in selected},
                                   seed=seed + k)
        pred, loss = evaluate_windows(lm, dataset, encoding, layer, trs, context, pooling, reps, progress=progress)
        per_tr.append(pd.DataFrame({"masking": name, "tr": trs, "nwp_loss": loss,
                                    "n_masked": [len(reps.get(int(t), {})) for t in trs]}))
        per_voxel.append(pd.DataFrame({"masking": name, "voxel": np.flatnonzero(vox),
                                       "r": masked_scores(pred, dataset, encoding, trs, vox)}))
    return pd.concat(per_tr, ignore_index=True), pd.concat(per_voxel, ignore_index=True)


__all__ = ["evaluate_windows", "random_replacements", "masked_words", "random_words", "masked_scores",
           "masking_check"]

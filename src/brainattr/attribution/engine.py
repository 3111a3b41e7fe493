"""The engine: batches of TR windows through the LM, every subject's head at once, OOM splitting."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..cache import log_stage
from ..lm import check_context_fits, layer_states, with_precision
from .batch import collate, make_instance, tokenized_text
from .head import head_for, tr_features_from_states
from .methods import gradient_x_activation, gradient_x_input, integrated_gradients, is_out_of_memory
from .settings import CPU_BATCH_SIZE, AttributionSettings
from .targets import target_name
from .windows import select_windows, tr_window, voxel_mask

#: Columns of an attribution table, in order.
COLUMNS = ("tr", "fold", "word_index", "position", "word", "attribution", "abs_attribution", "target",
           "baseline_target")



def check_same_text(datasets, encodings):
    if len(datasets) != len(encodings) or not datasets:
        raise ValueError(f"give one encoding model per subject: {len(datasets)} datasets, {len(encodings)} "
                         "encodings.")
    first, enc0 = datasets[0], encodings[0]
    for ds, enc in zip(datasets[1:], encodings[1:]):
        same = (ds.stimulus.fingerprint == first.stimulus.fingerprint
                and np.array_equal(enc.tr_runs, enc0.tr_runs) and np.array_equal(enc.keep, enc0.keep)
                and tuple(enc.delays) == tuple(enc0.delays))
        if not same:
            raise ValueError(f"{ds.subject} did not read the same text with the same runs, trimming and delays as "
                             f"{first.subject}; attribute subjects of different stimuli or encoding settings in "
                             "separate calls.")


def auto_batch_size(n_tokens, hidden, n_blocks, n_subjects=1, bytes_per_value=2, free_bytes=None, cap=64):
    """TRs per batch that should fit in a GPU's free memory for one GxI pass.

    Estimate of the memory one instance needs: the activations a decoder block keeps for the
    backward pass, about ``34 * hidden`` values per token (Korthikanti et al. 2022, with a fused
    attention kernel that keeps no ``n_tokens^2`` matrix), for each block run; the subjects' input
    gradients (``n_subjects * hidden`` float32 values per token); and the batched backward's
    working memory, one block's activations per subject. The result uses 70 % of ``free_bytes``;
    running out anyway is handled by splitting batches (:func:`compute_attributions`).

    Parameters
    ----------
    n_tokens : int
        Tokens of the longest instance.
    hidden, n_blocks : int
        Hidden size and decoder blocks run (layer L for BA alone, all of them with NWP).
    n_subjects : int
    bytes_per_value : int
        2 for bf16, 4 for fp32.
    free_bytes : int or None
        Free device memory; None reads it from CUDA.
    cap : int

    Returns
    -------
    int, at least 1
    """
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info()
    per_token = hidden * (34 * n_blocks * bytes_per_value + 4 * n_subjects + 34 * n_subjects * bytes_per_value)
    per_instance = max(int(n_tokens), 1) * per_token
    return int(max(1, min(cap, 0.7 * free_bytes // per_instance)))


def resolve_batch_size(lm, layer, instances, n_subjects, settings):
    """The TRs per batch ``settings.batch_size`` stands for: itself, or for ``"auto"`` an estimate
    from the GPU's free memory (:func:`auto_batch_size`; :data:`CPU_BATCH_SIZE` on a CPU).

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
        In the precision it will run in (the estimate counts its bytes per value).
    layer : int
    instances : list
        The TR windows' instances (``.ids``: the token ids of one window).
    n_subjects : int
    settings : AttributionSettings

    Returns
    -------
    int
    """
    if settings.batch_size != "auto":
        return int(settings.batch_size)
    param = next(lm.model.parameters())
    if param.device.type != "cuda" or not instances:
        return CPU_BATCH_SIZE
    full = "nwp" in settings.tasks and settings.nwp_readout == "final"
    blocks = lm.n_layers if full else max(layer, 1)  # BA alone stops at layer L
    return auto_batch_size(max(len(i.ids) for i in instances), lm.hidden_size, blocks, n_subjects,
                           param.element_size())


def batch_size_for(lm, datasets, encodings, layer, trs, settings):
    """The batch size :func:`compute_attributions` will use for these subjects and TRs.

    ``settings.batch_size`` itself, or for ``"auto"`` on a GPU the estimate from its free memory
    and the longest of the TRs' windows (:func:`resolve_batch_size`): what callers that split the
    TRs into parts (:func:`brainattr.attribution.attribute`) size their parts by.

    Returns
    -------
    int
    """
    if settings.batch_size != "auto" or next(lm.model.parameters()).device.type != "cuda":
        return resolve_batch_size(lm, layer, [], len(datasets), settings)
    stimulus = datasets[0].stimulus
    text = tokenized_text(lm, stimulus, settings.tr_features)
    instances = [make_instance(text, w, settings.pooling, with_next="nwp" in settings.tasks)
                 for w in select_windows(stimulus, encodings[0], trs, settings.context)]
    return resolve_batch_size(lm, int(layer), instances, len(datasets), settings)


def _out_of_memory(lm, n_tokens, batch_size, method, ig_rows):
    knob = "ig_rows" if method == "ig" else "batch_size"
    return MemoryError(
        f"out of memory attributing one TR window of {n_tokens} tokens with {lm.name} ({method}, batch of "
        f"{batch_size}, {knob}={ig_rows if method == 'ig' else batch_size}). Lower `context` (fewer words per window), "
        "load the model in bfloat16 (`load_model(..., precision='bf16')`), attribute fewer subjects per call, or "
        "use a device with more memory.")


def compute_attributions(lm, datasets, encodings, layer, trs, settings=AttributionSettings(), progress=True):
    """Attribute BA and/or NWP for the given TRs of several subjects of one text, in memory.

    The LM runs once per batch of TR windows: each subject's BA head reads the same layer-L
    states, and the subjects' gradients go back through the LM in one batched backward pass
    (vector-Jacobian products with one cotangent per subject). NWP does not depend on the subject
    and is computed once. :func:`brainattr.attribution.attribute` stores the same tables and
    resumes killed runs. With ``settings.nwp_readout="logit_lens"`` NWP is read out from layer L
    (:func:`brainattr.attribution.targets.compute_targets`), and one forward pass up to layer L
    serves both tasks.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
    datasets : list of brainattr.schema.Dataset
        Subjects who read the same stimulus (responses and voxel labels).
    encodings : list of brainattr.encoding.EncodingResult
        One per subject, fitted on ``layer`` of ``lm`` with the same runs, trimming, delays and
        pooling, TR features (and context) as here.
    layer : int
    trs : array of int, shape (n_trs_sel,)
        Held-out (kept) stimulus TRs; each uses the fold that held it out.
    settings : AttributionSettings
        Context, pooling, TR features, tasks, methods, voxel set, IG steps and baseline, batch size, precision.
    progress : bool

    Returns
    -------
    list of dict (task, method) -> pandas.DataFrame
        One dict per subject; the NWP tables are the same objects in every subject's dict. Columns
        :data:`COLUMNS`: ``tr``, ``fold``, ``word_index`` (stimulus word), ``position`` (0 = most
        recent word), ``word``, ``attribution`` (signed), ``abs_attribution``, ``target`` (the
        scalar explained, at the input), ``baseline_target`` (at the IG baseline; NaN for GxI).
    """
    if settings.precision is not None:
        lm = with_precision(lm, settings.precision)
    tasks, methods, context, pooling = settings.tasks, settings.methods, settings.context, settings.pooling
    voxel_set, batch_size, ig_rows = settings.voxel_set, settings.batch_size, settings.ig_rows
    check_same_text(datasets, encodings)
    layer = lm.check_layer(int(layer))
    stimulus, enc0 = datasets[0].stimulus, encodings[0]
    text = tokenized_text(lm, stimulus, settings.tr_features)
    windows = select_windows(stimulus, enc0, trs, context)
    voxes = [voxel_mask(voxel_set, ds, enc) for ds, enc in zip(datasets, encodings)] if "ba" in tasks else []
    instances = [make_instance(text, w, pooling, with_next="nwp" in tasks) for w in windows]
    if "nwp" in tasks:
        no_next = [i.window.tr for i in instances if i.nwp_range[1] == i.nwp_range[0]]
        if no_next:
            raise ValueError(f"TR(s) {no_next} have no following word (end of the text), so NWP is undefined; "
                             "drop them or attribute 'ba' only.")
    if instances:
        check_context_fits(lm, max(len(i.ids) for i in instances), context)
    device = next(lm.model.parameters()).device
    batch_size = resolve_batch_size(lm, layer, instances, len(datasets), settings)
    ig_rows = int(ig_rows)
    targets = tuple(target_name(t, settings.nwp_readout) for t in tasks)   # what the methods explain

    # group by (fold, run): one head per group and subject; similar lengths together (less padding)
    groups = {}
    for inst in instances:
        groups.setdefault((inst.window.fold, int(enc0.tr_runs[inst.window.tr])), []).append(inst)
    queue = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda i: -len(i.ids))
        queue += [members[k:k + batch_size] for k in range(0, len(members), batch_size)]
    heads = [{} for _ in datasets]
    seconds = dict.fromkeys(methods, 0.0)
    rows = [{(t, m): [] for t in tasks for m in methods} for _ in datasets]
    with tqdm(total=len(instances) * len(methods), desc="attribution", disable=not progress, leave=False) as bar:
        while queue:
            batch_inst = queue.pop(0)
            tr0 = batch_inst[0].window.tr
            # one head and one measured activity per subject (empty lists for NWP alone)
            head = [head_for(enc, tr0, vox, cache, device) for enc, vox, cache in zip(encodings, voxes, heads)]
            measured = [torch.as_tensor(np.stack([enc.measured_tr(i.window.tr, ds.responses)[vox]
                                                  for i in batch_inst]), dtype=torch.float32, device=device)
                        for ds, enc, vox in zip(datasets, encodings, voxes)]
            batch = collate(batch_inst, lm.tokenizer.pad_token_id, device)
            done = {}
            try:
                for method in methods:
                    started = time.perf_counter()
                    if method in ("gxi", "gxa"):
                        grad_x = gradient_x_input if method == "gxi" else gradient_x_activation
                        attrs, values = grad_x(lm, layer, head, batch, measured, targets)
                        base = {t: None for t in targets}
                    else:
                        attrs, values, base = integrated_gradients(lm, layer, head, batch, measured, targets,
                                                                   settings.ig_steps, ig_rows, settings.ig_baseline)
                    seconds[method] += time.perf_counter() - started
                    done[method] = tuple(_by_task(x, tasks, settings.nwp_readout) for x in (attrs, values, base))
            except (RuntimeError, MemoryError) as err:
                if not is_out_of_memory(err):
                    raise
                del batch, head, measured
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if len(batch_inst) > 1:          # split the batch and retry both halves
                    half = (len(batch_inst) + 1) // 2
                    queue[:0] = [batch_inst[:half], batch_inst[half:]]
                    warnings.warn(f"out of memory with a batch of {len(batch_inst)} TRs; retrying as {half} + "
                                  f"{len(batch_inst) - half}.", stacklevel=2)
                    continue
                if "ig" in methods and ig_rows > 1:
                    ig_rows //= 2
                    queue.insert(0, batch_inst)
                    warnings.warn(f"out of memory in IG; retrying with ig_rows={ig_rows}.", stacklevel=2)
                    continue
                raise _out_of_memory(lm, len(batch_inst[0].ids), len(batch_inst), methods[-1], ig_rows) from err
            for method, (attrs, values, base) in done.items():
                for t in tasks:
                    # BA arrays have a leading subject axis; NWP's are the subjects' common ones
                    for k in range(len(datasets)) if t == "ba" else [0]:
                        a, v, b = (x[k] if t == "ba" and x is not None else x for x in (attrs[t], values[t], base[t]))
                        rows[k][(t, method)].append(_word_rows(batch_inst, a, v, b, stimulus))
                bar.update(len(batch_inst))
    for method in methods:
        if instances:
            log_stage("attribution", seconds[method], model=lm.name, layer=layer, method=method,
                      tasks="+".join(targets),
                      trs=len(instances), context=int(context), ig_steps=settings.ig_steps if method == "ig" else None,
                      subjects=len(datasets))
    out = []
    for k in range(len(datasets)):
        tables = {}
        for key, parts in rows[k].items():
            if key[0] == "nwp" and k > 0:
                tables[key] = out[0][key]
                continue
            df = pd.concat(parts, ignore_index=True) if parts else empty_table()
            tables[key] = df.sort_values(["tr", "word_index"], kind="stable").reset_index(drop=True)
        out.append(tables)
    return out


def _by_task(values, tasks, nwp_readout):
    """The methods' outputs, keyed by target name (:func:`target_name`), keyed by task again."""
    return {t: values[target_name(t, nwp_readout)] for t in tasks}


def _word_rows(instances, token_attr, values, base, stimulus):
    """Sum token attributions (batch, n) into one row per window word, one table for the batch."""
    token_attr = token_attr.detach().double().cpu().numpy()
    values = values.detach().double().cpu().numpy()
    base = np.full(len(instances), np.nan) if base is None else base.detach().double().cpu().numpy()
    # one table per batch, not per window: building thousands of small frames cost more than the GPU pass
    per_word, word_index, n_words = [], [], []
    for b, inst in enumerate(instances):
        w = inst.window
        p0, p1 = inst.attr_range
        per_word.append(np.bincount(inst.token_word - w.start, weights=token_attr[b, p0:p1],
                                    minlength=w.end - w.start))
        word_index.append(np.arange(w.start, w.end, dtype=np.int64))
        n_words.append(w.end - w.start)
    attribution, idx = np.concatenate(per_word), np.concatenate(word_index)
    last = np.repeat([inst.window.end - 1 for inst in instances], n_words)
    return pd.DataFrame({
        "tr": np.repeat(np.array([inst.window.tr for inst in instances], dtype=np.int64), n_words),
        "fold": np.repeat(np.array([inst.window.fold for inst in instances], dtype=np.int64), n_words),
        "word_index": idx, "position": (last - idx).astype(np.int64), "word": stimulus.words[idx].astype(object),
        "attribution": attribution, "abs_attribution": np.abs(attribution),
        "target": np.repeat(values, n_words), "baseline_target": np.repeat(base, n_words)})


def empty_table():
    return pd.DataFrame({c: pd.Series(dtype=object if c == "word" else (np.float64 if "target" in c or "attrib" in c
                                                                          else np.int64)) for c in COLUMNS})


def predict_trs(lm, stimulus, encoding, layer, trs, context=80, pooling="last", batch_size=8,
                tr_features="average"):
    """The BA head's predicted activity of TRs (all voxels), from the LM run on each TR's window.

    Equals ``encoding.predict_tr(tr, features)`` when the features were extracted with every word
    seeing the same preceding words as in the window (e.g. a context reaching the text's start).

    Parameters
    ----------
    lm, stimulus, encoding, layer, trs, context, pooling
        As for :func:`compute_attributions`.
    batch_size : int
    tr_features : {"average", "lanczos"}
        As ``AttributionSettings.tr_features``: the method of the encoding model's features.

    Returns
    -------
    prediction : array of float64, shape (n_trs_sel, n_voxels)
    """
    layer = lm.check_layer(int(layer))
    text = tokenized_text(lm, stimulus, tr_features)
    trs = np.atleast_1d(np.asarray(trs, dtype=int))
    device = next(lm.model.parameters()).device
    out = np.zeros((trs.size, encoding.n_voxels))
    heads = {}
    for k in range(0, trs.size, batch_size):
        chunk = trs[k:k + batch_size]
        wins = [tr_window(stimulus, encoding, t, context) for t in chunk]
        if any(w is None for w in wins):
            raise ValueError("a TR has no word in its delay TRs; its prediction is the intercept alone.")
        insts = [make_instance(text, w, pooling, with_next=False) for w in wins]
        batch = collate(insts, lm.tokenizer.pad_token_id, device)
        with torch.no_grad():
            states = layer_states(lm.model, [layer], input_ids=batch["ids"], attention_mask=batch["mask"])[layer]
            feats = tr_features_from_states(states, batch["pool"])
            for j, t in enumerate(chunk):
                head = head_for(encoding, t, None, heads, device)
                out[k + j] = head(feats[j:j + 1], batch["present"][j:j + 1])[0].double().cpu().numpy()
    return out

"""Stored runs: one table per (dataset, subject, model, layer, context, task, method), written in atomic parts.

Many processes may attribute into one table at once (``brainattr sweep`` runs one job per chunk of
TRs): each writes only its own parts, each part atomically and under a name no other part has;
merging the parts into the table (:func:`consolidate_table`) and reading which TRs are done
happen under the table folder's lock (:data:`LOCK_FILE`), so no writer's rows are lost and no
reader sees a table being replaced.
"""
from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..cache import (
    array_hash,
    atomic_dir,
    cache_dir,
    cache_key,
    file_lock,
    remove_dead_temporaries,
    restore_dir,
)
from ..lm import special_prefix, with_precision
from .engine import batch_size_for, check_same_text, compute_attributions, empty_table
from .settings import AttributionSettings
from .windows import held_out_trs, voxel_mask

#: Version of the stored table layout; bump when columns or semantics change.
TABLE_VERSION = 1
#: Lock file in each table's folder, held while the parts are merged or the table is read.
LOCK_FILE = ".lock"


def table_path(dataset, model, layer, context, task, method, settings=""):
    """Folder of one stored attribution table.

    ``cache_dir("attributions")/<dataset>/<subject>/<model>/layer-LLL_ctx-C/<task>_<method>[-<settings>]``;
    ``settings`` is a hash of everything else that changes the numbers (pooling, voxels,
    encoding weights, IG steps).
    """
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "--", str(s))  # noqa: E731 - HF ids hold '/'
    leaf = f"{task}_{method}" + (f"-{settings}" if settings else "")
    return cache_dir("attributions", safe(dataset.name), safe(dataset.subject), safe(model),
                     f"layer-{int(layer):03d}_ctx-{int(context)}") / leaf


@contextlib.contextmanager
def _quiet_datasets():
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if was:
            datasets.enable_progress_bars()


def _write(path, df, replace=True):
    """Write ``df`` as a ``datasets`` Arrow folder, atomically (renamed into place when complete).

    ``replace=False`` keeps a folder that another writer put at ``path`` meanwhile (a part:
    whoever wrote it computed the same rows).
    """
    with _quiet_datasets() as datasets:
        ds = datasets.Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False)
        with atomic_dir(path, replace=replace) as tmp:
            ds.save_to_disk(str(tmp))


def _read(path):
    with _quiet_datasets() as datasets:
        return datasets.load_from_disk(str(path))


def _lock(folder):
    """The lock of one table folder (:func:`brainattr.cache.file_lock` on :data:`LOCK_FILE`)."""
    return file_lock(folder / LOCK_FILE)


def _parts(folder):
    parts = folder / "parts"
    if not parts.exists():
        return []
    # hidden '.part-*.tmp' folders are writes in progress (another job's: left alone) or writes a
    # killed run never finished (their writer is dead: cleaned)
    remove_dead_temporaries(parts)
    return sorted(p for p in parts.iterdir() if p.name.startswith("part-"))


def _done_trs(folder):
    """TRs held by the table or a finished part of ``folder``, set of int (read under its lock)."""
    done = set()
    with _lock(folder):
        restore_dir(folder / "table")
        if (folder / "table").exists():
            done |= set(np.unique(_read(folder / "table")["tr"]).tolist())
        for p in _parts(folder):
            done |= set(np.unique(_read(p)["tr"]).tolist())
    return done


def consolidate_table(folder) -> bool:
    """Merge the finished parts of one table folder into its ``table`` (atomically), then drop them.

    Runs under the folder's lock, so concurrent calls (every job of a sweep may make one) merge
    each part once: a part written while another process merges stays for the next call. Rows
    of a TR already in the table (a part merged before a kill) are skipped.

    Parameters
    ----------
    folder : Path
        A table folder (:func:`table_path`).

    Returns
    -------
    bool
        True if parts were merged.
    """
    folder = Path(folder)
    with _lock(folder):
        restore_dir(folder / "table")  # a swap cut between its two renames
        parts = _parts(folder)
        if not parts:
            return False
        frames, seen = [], set()
        if (folder / "table").exists():
            frames.append(_read(folder / "table").to_pandas())
            seen = set(frames[0]["tr"].unique().tolist())
        for p in parts:
            df = _read(p).to_pandas()
            df = df[~df["tr"].isin(seen)]  # a part already merged before a kill: skip its rows
            seen |= set(df["tr"].unique().tolist())
            frames.append(df)
        merged = pd.concat(frames, ignore_index=True).sort_values(["tr", "word_index"], kind="stable")
        _write(folder / "table", merged)
        for p in parts:
            shutil.rmtree(p, ignore_errors=True)
    return True


def consolidate_tables(root=None) -> list:
    """:func:`consolidate_table` on every stored table folder that holds parts.

    Parameters
    ----------
    root : Path, optional
        Where to look (default: ``cache_dir("attributions")``).

    Returns
    -------
    list of Path
        The folders whose parts were merged.
    """
    root = Path(root) if root is not None else cache_dir("attributions")
    folders = sorted({p.parent for p in root.rglob("parts") if p.is_dir()})
    return [f for f in folders if consolidate_table(f)]


def read_table(folder):
    """The merged table of one folder (under its lock), or None if it has none yet.

    Returns
    -------
    datasets.Dataset or None
        Memory-mapped; a later merge replaces the folder's files by renaming, which leaves this
        one readable.
    """
    folder = Path(folder)
    with _lock(folder):
        restore_dir(folder / "table")
        return _read(folder / "table") if (folder / "table").exists() else None


def _table_folders(lm, datasets, encodings, voxes, layer, settings):
    """Folder of every stored table, keyed (subject index, task, method)."""
    tasks, methods, context = settings.tasks, settings.methods, settings.context
    ig_steps, ig_baseline = settings.ig_steps, settings.ig_baseline
    common = dict(version=TABLE_VERSION, stimulus=datasets[0].stimulus.fingerprint, hidden=lm.hidden_size,
                  n_layers=lm.n_layers, prefix=special_prefix(lm.tokenizer))
    # averaging keeps the keys it had before TR features were selectable; Lanczos changes the pooling
    # (BA) and widens the windows (both tasks: the NWP target is the word after the widened window)
    if settings.tr_features != "average":
        common["tr_features"] = settings.tr_features
    # the zero baseline keeps the key it had before baselines were selectable
    ig_params = ig_steps if ig_baseline == "zero" else (ig_steps, ig_baseline)
    folders = {}
    for m in methods:
        fields = dict(common, method_params=ig_params if m == "ig" else None)
        for k, ds in enumerate(datasets):
            if "nwp" in tasks:
                # the final readout keeps the key it had before readouts were selectable
                nwp = fields if settings.nwp_readout == "final" else dict(fields, nwp_readout=settings.nwp_readout)
                folders[(k, "nwp", m)] = table_path(ds, lm.name, layer, context, "nwp", m, cache_key(**nwp)[:10])
            if "ba" in tasks:
                enc, vox = encodings[k], voxes[k]
                ba = dict(fields, pooling=settings.pooling, voxels=array_hash(vox), responses=array_hash(ds.responses),
                          encoding=array_hash(enc.weights, enc.intercepts, enc.feature_means, enc.feature_stds,
                                              enc.response_means, enc.response_stds))
                folders[(k, "ba", m)] = table_path(ds, lm.name, layer, context, "ba", m, cache_key(**ba)[:10])
    return folders


def _prepare(lm, datasets, encodings, settings, trs, fold, n_trs):
    """The model in the settings' precision, the settings without it, and the sorted TRs."""
    check_same_text(datasets, encodings)
    if settings.precision is not None:
        lm = with_precision(lm, settings.precision)
        settings = settings.replace(precision=None)
    if trs is None:
        trs = held_out_trs(encodings[0], fold, n_trs)
    return lm, settings, np.unique(np.atleast_1d(np.asarray(trs, dtype=int)))


def _write_missing_parts(lm, datasets, encodings, layer, settings, trs, part_size, progress):
    """Compute and write, part by part, the TRs some table still misses; return the table folders."""
    tasks, methods = settings.tasks, settings.methods
    voxes = [voxel_mask(settings.voxel_set, ds, enc) for ds, enc in zip(datasets, encodings)] if "ba" in tasks else []
    folders = _table_folders(lm, datasets, encodings, voxes, layer, settings)
    done = {k: _done_trs(f) for k, f in folders.items()}
    todo = [tr for tr in trs if any(tr not in d for d in done.values())]
    if not todo:
        return folders
    # four batches per part; "auto" on a GPU is sized from its free memory (tens of TRs, not CPU_BATCH_SIZE)
    part_size = int(part_size or 4 * batch_size_for(lm, datasets, encodings, layer, todo, settings))
    chunks = [todo[i:i + part_size] for i in range(0, len(todo), part_size)]
    for chunk in tqdm(chunks, desc="attribution parts", disable=not progress or len(chunks) < 2, leave=False):
        # compute only what some table still misses for this chunk
        missing = [key for key in folders if any(tr not in done[key] for tr in chunk)]
        need_t = tuple(t for t in tasks if any(key[1] == t for key in missing))
        need_m = tuple(m for m in methods if any(key[2] == m for key in missing))
        need_k = sorted({key[0] for key in missing})
        results = compute_attributions(lm, [datasets[k] for k in need_k], [encodings[k] for k in need_k], layer,
                                       chunk, settings.replace(tasks=need_t, methods=need_m), progress=False)
        for k, result in zip(need_k, results):
            for (t, m), df in result.items():
                if (k, t, m) in missing:
                    # a part holds only this writer's TRs; a same-named part another writer finished first is kept
                    _write(folders[(k, t, m)] / "parts" / f"part-{int(chunk[0]):06d}-{int(chunk[-1]):06d}", df,
                           replace=False)
                    done[(k, t, m)] |= set(int(x) for x in chunk)
    return folders


def attribute_parts(lm, datasets, encodings, layer, settings=AttributionSettings(), trs=None, fold=0, n_trs=None,
                    part_size=None, progress=True):
    """Compute and store, as parts, the TRs of :func:`attribute` that its tables still miss; merge nothing.

    What a job of a sweep calls: several such calls, in several processes, may write into the
    same tables at once (each writes only its own parts); one :func:`consolidate_table` per
    folder (or :func:`consolidate_tables`) then merges them. Resumable like :func:`attribute`:
    the TRs of finished parts are not recomputed.

    Parameters
    ----------
    lm, datasets, encodings, layer, settings, trs, fold, n_trs, part_size, progress
        As for :func:`attribute`.

    Returns
    -------
    dict of (int, str, str) -> Path
        (subject index, task, method) -> the table folder (:func:`table_path`).
    """
    lm, settings, trs = _prepare(lm, datasets, encodings, settings, trs, fold, n_trs)
    return _write_missing_parts(lm, datasets, encodings, layer, settings, trs, part_size, progress)


def attribute(lm, datasets, encodings, layer, settings=AttributionSettings(), trs=None, fold=0, n_trs=None,
              part_size=None, cache=True, progress=True):
    """Attribute BA and NWP for held-out TRs of several subjects, stored as tidy tables; resumable.

    Each subject's (task, method) table lives in :func:`table_path`; the TRs are computed in parts
    of ``part_size`` TRs, each written atomically as soon as it is done, and merged into one table
    at the end. A run killed at any point leaves only complete parts (or the previous table); the
    next call computes only the TRs still missing. One LM pass serves every subject
    (:func:`brainattr.attribution.compute_attributions`); NWP, which does not depend on the
    subject, is computed once (and its small table stored under each subject). Subjects whose
    tables are complete are not recomputed.

    Parameters
    ----------
    lm : brainattr.lm.LanguageModel
        ``lm.name``, ``layer`` and ``settings.context`` name the stored tables.
    datasets : list of brainattr.schema.Dataset
        Subjects of one stimulus.
    encodings : list of brainattr.encoding.EncodingResult
        One per subject, fitted with the same runs, trimming and delays.
    layer : int
    settings : AttributionSettings
    trs : array of int or None
        Stimulus TRs to attribute; default: the held-out TRs of ``fold``.
    fold : int or None
        Fold whose held-out TRs are used when ``trs`` is None (None: every fold).
    n_trs : int or None
        Keep ``n_trs`` evenly spaced TRs of those (see :func:`held_out_trs`).
    part_size : int or None
        TRs per stored part (default: four batches, ``4 * batch_size``; with ``batch_size="auto"`` four of
        the batches a GPU holds (:func:`batch_size_for`), or 16 on a CPU).
    cache : bool
        False: compute in memory, store nothing.
    progress : bool

    Returns
    -------
    list of dict (task, method) -> datasets.Dataset
        One per subject. Columns :data:`COLUMNS`, restricted to the requested TRs, sorted by TR and
        word. Use ``.to_pandas()`` for analysis and :func:`brainattr.analysis.word_weights` for
        normalised scores.
    """
    lm, settings, trs = _prepare(lm, datasets, encodings, settings, trs, fold, n_trs)
    tasks, methods = settings.tasks, settings.methods
    if not cache:
        results = compute_attributions(lm, datasets, encodings, layer, trs, settings, progress)
        with _quiet_datasets() as hf:
            nwp = {k: hf.Dataset.from_pandas(v, preserve_index=False) for k, v in results[0].items() if k[0] == "nwp"}
            return [{k: nwp[k] if k in nwp else hf.Dataset.from_pandas(v, preserve_index=False)
                     for k, v in r.items()} for r in results]

    folders = _write_missing_parts(lm, datasets, encodings, layer, settings, trs, part_size, progress)
    tables = {}
    for key, folder in folders.items():
        consolidate_table(folder)
        table = read_table(folder)
        if table is None:
            with _quiet_datasets() as hf:
                table = hf.Dataset.from_pandas(empty_table(), preserve_index=False)
        keep = np.isin(np.asarray(table["tr"]), trs)
        if not keep.all():
            # in memory: never write index/cache files into the stored table's folder
            table = table.select(np.flatnonzero(keep), keep_in_memory=True)
        tables[key] = table
    return [{(t, m): tables[(k, t, m)] for t in tasks for m in methods} for k in range(len(datasets))]

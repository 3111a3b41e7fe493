"""The data room: every dataset in the one :mod:`brainattr.schema` schema, and where each comes from.

One way in: :func:`load_dataset` ``(name, subjects, ...)`` looks ``name`` up in :data:`DATASETS`
(name -> loader function) and returns one :class:`~brainattr.schema.Dataset` per subject. A new
dataset (BIDS, Narratives, LeBel et al. 2023, ...) plugs in with a module here and one entry there.

Modules, each importing only the ones listed below it (and :mod:`brainattr.schema`,
:mod:`brainattr.trs`, :mod:`brainattr.metrics`, :mod:`brainattr.cache`); nothing here imports
torch or the language-model, encoding or attribution rooms, and spaCy, nibabel/nilearn, h5py,
scipy.io/signal and pooch are imported only when used:

- :mod:`~brainattr.data.ground_truth`  exact per-word contributions of the simulated subjects
- :mod:`~brainattr.data.simulate`      word drivers, HRF, simulated subjects (the ``"builtin"`` dataset)
- :mod:`~brainattr.data.atlas`         Harvard-Oxford labelled MNI voxels: language ROIs, control regions
- :mod:`~brainattr.data.builtin`       the built-in stimulus (Pride and Prejudice ch. 1-5, the text file
  beside this module) and its RSVP timing
- :mod:`~brainattr.data.download`      fetch the real datasets' public files (pooch)
- :mod:`~brainattr.data.harry_potter`  Harry Potter chapter 9 (Wehbe et al. 2014), ``"hp"``, ``"hp-mat"``, ``"hp-npy"``
- :mod:`~brainattr.data.moth`          Moth Radio Hour, reading (Deniz et al. 2019), ``"moth"``
- :mod:`~brainattr.data.emma`          simulated subjects reading Emma in the Moth-reading design (App. D), ``"emma"``
- :mod:`~brainattr.data.parcels`       parcel-wise data: voxels averaged within atlas parcels (``parcels=``)
- :mod:`~brainattr.data.narratives`    Narratives (Nastase et al. 2021, OpenNeuro ds002345), ``"narratives"``
- :mod:`~brainattr.data.lebel`         LeBel et al. 2023 (OpenNeuro ds003020), ``"lebel"``
- :mod:`~brainattr.data.bids`          any BIDS folder (``"bids"``) or already-masked arrays (``"arrays"``)
- :mod:`~brainattr.data.text`          any text as the stimulus of simulated subjects (``text=``)
- :mod:`~brainattr.data.textgrid`      Praat TextGrid word timings
- :mod:`~brainattr.data._common`       what the real loaders share: data root, subject ids, cutting to
  ``max_words``, release-trimmed TRs
- :mod:`~brainattr.data.annotate`      spaCy word annotations

Real data live under ``$BRAINATTR_DATA`` (default ``~/brainattr_data``), or ``data_home``; the
book chapter "Use the real data" gives the layout and sources.
"""
from __future__ import annotations

import functools
import inspect

from ..schema import DataError
from ._common import (DATA_ENV, MIN_RUN_TRS, check_trim, cut_stimulus, data_root, explainable_variance,
                      unmeasured_trs, word_runs_from_onsets)
from .annotate import CHARACTERS, annotate_words
from .atlas import CONTROL_REGIONS, LANGUAGE_ROIS, atlas_files, roi_voxel_counts, sample_atlas_voxels, voxel_table
from .builtin import BUILTIN_SOURCE, BUILTIN_TEXT, load_builtin_stimulus, load_text, rsvp_timing, split_runs
from .ground_truth import (Contributions, ParcelSimulatedSubject, as_simulated, has_ground_truth, true_contributions,
                           true_contributions_table, true_signal_correlation, true_word_importance)
from .harry_potter import load_hp
from .moth import load_moth
from .emma import EMMA_STORIES, load_emma, load_emma_stimulus, speech_durations, syllable_count
from .parcels import PARCEL_SEPARATOR, PARCELLATIONS, parcel_of_voxels, parcellate, split_parcels
from .simulate import (DRIVER_GROUPS, SimulatedSubject, hrf_sampling_matrix, noise_datasets, simulated_dataset,
                       simulated_datasets, stable_seed, word_drivers)
from .textgrid import read_textgrid, textgrid_words
from .text import load_text_stimulus, read_word_timing
from .bids import find_bold_runs, load_arrays, load_bids, repetition_time
from .narratives import load_narratives, read_gentle_alignment
from .lebel import load_lebel

__all__ = [
    "DATASETS", "load_dataset",
    # built-in stimulus and annotations
    "BUILTIN_SOURCE", "BUILTIN_TEXT", "CHARACTERS", "annotate_words", "load_builtin_stimulus", "load_text",
    "rsvp_timing", "split_runs",
    # atlas and simulated subjects
    "CONTROL_REGIONS", "LANGUAGE_ROIS", "atlas_files", "roi_voxel_counts", "sample_atlas_voxels", "voxel_table",
    "DRIVER_GROUPS", "SimulatedSubject", "hrf_sampling_matrix", "noise_datasets", "simulated_dataset", "simulated_datasets",
    "stable_seed", "word_drivers",
    # ground truth
    "Contributions", "ParcelSimulatedSubject", "as_simulated", "has_ground_truth", "true_contributions",
    "true_contributions_table", "true_signal_correlation", "true_word_importance",
    # real data
    "DATA_ENV", "MIN_RUN_TRS", "check_trim", "cut_stimulus", "data_root", "explainable_variance", "load_hp",
    "load_moth", "read_textgrid", "textgrid_words", "unmeasured_trs", "word_runs_from_onsets",
    # App. D's second built-in dataset; parcel-wise data
    "EMMA_STORIES", "load_emma", "load_emma_stimulus", "speech_durations", "syllable_count",
    "PARCEL_SEPARATOR", "PARCELLATIONS", "parcel_of_voxels", "parcellate", "split_parcels",
    # bring your own text and data
    "load_text_stimulus", "read_word_timing", "find_bold_runs", "load_arrays", "load_bids", "repetition_time",
    "load_narratives", "read_gentle_alignment", "load_lebel",
]

#: Dataset name -> loader. :func:`load_dataset` calls ``loader(subjects, **settings)`` with those of
#: its settings (``max_words``, ``data_home``, ``n_language_voxels``, ...) that the loader's
#: signature names, so built-in-only settings never reach a real-data loader. Each loader returns a
#: list of Dataset with NaN and zero-variance voxels excluded.
DATASETS = {
    "builtin": simulated_datasets,
    "hp": load_hp,
    "hp-mat": functools.partial(load_hp, layout="mat"),
    "hp-npy": functools.partial(load_hp, layout="npy"),
    "moth": load_moth,
    "emma": load_emma,
    "bids": load_bids,
    "arrays": load_arrays,
    "narratives": load_narratives,
    "lebel": load_lebel,
}


def load_dataset(name="builtin", subjects=("sub-01",), *, max_words=None, n_language_voxels=1000,
                 n_control_voxels=500, seed=0, noise=None, data_home=None, parcels=None, text=None, context=None,
                 options=None):
    """Load the subjects of a dataset, all in the one schema.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`. ``"builtin"``: simulated subjects reading the built-in stimulus
        (:func:`~brainattr.data.simulate.simulated_datasets`). ``"hp"`` (``"hp-mat"``,
        ``"hp-npy"``): Harry Potter (Wehbe et al. 2014, :func:`load_hp`); ``"moth"``: Moth Radio
        Hour, reading (Deniz et al. 2019, :func:`load_moth`).
    subjects : sequence of str, str or int
        Subject ids (``"sub-01"``) or a count (``3`` → the first three subjects).
    max_words : int or None
        Keep the first ``max_words`` words (tiny test profiles); real data keep about
        ``max_words`` words spread over all runs (:func:`cut_stimulus`).
    n_language_voxels, n_control_voxels : int
        Built-in only: voxels sampled inside and outside the language ROIs.
    seed : int
        Built-in only: global simulation seed.
    noise : float or None
        Built-in only: noise level (None: the simulation's calibrated default).
    data_home : str or Path or None
        Real data only: the folder holding ``hp/`` and ``moth/`` (default ``$BRAINATTR_DATA``,
        else ``~/brainattr_data``). The built-in-only arguments are ignored for real data.
    parcels : str or None
        A key of :data:`PARCELLATIONS` (``"harvard-oxford"``): average the voxels within each
        parcel (:func:`parcellate`). The name ``"<name>@harvard-oxford"`` asks for the same, so a
        chapter's ``dataset`` parameter can.
    text : str or Path or None
        Built-in only: a UTF-8 plain-text file or word-timing table the simulated subjects read
        instead of the built-in text (:func:`load_text_stimulus`).
    context : int or None
        Words of context the chapters attribute with: a ``text`` not longer is an error.
    options : dict or None
        More keyword arguments of the dataset's loader, e.g. ``{"bids_root": ..., "task":
        "pieman"}`` for ``"bids"`` (:func:`load_bids`), ``{"stories": 3}`` for ``"lebel"``.

    Returns
    -------
    list of Dataset
        NaN and zero-variance voxels already excluded (:func:`brainattr.schema.drop_bad_voxels`).
    """
    name, parcels = split_parcels(name, parcels)
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}.")
    loader = DATASETS[name]
    settings = dict(max_words=max_words, data_home=data_home, n_language_voxels=n_language_voxels,
                    n_control_voxels=n_control_voxels, seed=seed, noise=noise)
    accepted = inspect.signature(loader).parameters
    if text is not None and "text" not in accepted:
        raise DataError(f"dataset {name!r} does not read a text (text={str(text)!r}); only the simulated subjects "
                        "(dataset 'builtin') read any text.")
    settings.update({k: v for k, v in dict(text=text, context=context).items() if v is not None})
    unknown = sorted(set(options or {}) - set(accepted) - {"subjects"})
    if unknown:
        raise DataError(f"dataset {name!r}: unknown option(s) {unknown}; its loader takes "
                        f"{sorted(k for k in accepted if k != 'subjects')}.")
    settings.update(options or {})
    datasets = loader(subjects, **{k: v for k, v in settings.items() if k in accepted})
    return datasets if parcels is None else [parcellate(ds, parcels) for ds in datasets]

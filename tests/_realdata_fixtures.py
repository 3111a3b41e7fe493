"""Write tiny files in the exact on-disk formats of the real datasets (tests of brainattr.data's loaders).

- Harry Potter, CMU release (Wehbe et al. 2014): ``subject_N.mat`` (MATLAB v5: ``data``, ``time``,
  ``words`` struct with ``text``/``start``/``length``, ``meta`` struct with the release's 13 fields)
  and ``story_features.mat`` (struct array ``features`` with ``type``/``names``/``values``).
- Harry Potter, preprocessed release (Toneva & Wehbe 2019): ``fMRI/data_subject_<L>.npy`` (first 20
  and last 15 TRs of each run removed), ``time_fmri.npy``, ``runs_fmri.npy`` (1-based),
  ``time_words_fmri.npy``, ``words_fmri.npy``, and the pickled ``HP_subj_roi_inds.npy``.
- Moth Radio Hour reading (Deniz et al. 2019): ``responses/subjectXX_reading_fmri_data_{trn,val}.hdf``
  (one dataset per story; the validation story (n_repeats, n_trs, n_voxels)),
  ``mappers/subjectXX_mappers.hdf`` (``roi_mask_<ROI>``) and Praat TextGrids.

Sizes are tiny (3 runs of 60 TRs, 12 voxels) but timings follow the real designs: HP words every
0.5 s from 20 s into each run on one session clock; Moth words at TextGrid times, 10 s of
silence before each story.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

HP_RUN_TRS = 60          # TRs per run
HP_LEAD_TRS = 10         # rest TRs before the first word (20 s, as in the release)
HP_WORDS_PER_RUN = 176   # 88 s of words at 0.5 s
HP_N_RUNS = 3
HP_N_VOX = 12
#: SPM-style map from 1-based voxel indices to MNI mm (3 mm voxels).
HP_AFFINE = np.array([[-3.0, 0, 0, 81], [0, 3.0, 0, -117], [0, 0, 3.0, -75], [0, 0, 0, 1]])
#: AAL names (ROI number k is at position k, 1-based) and each voxel's ROI number (0: none).
HP_ROI_NAMES = ["Precentral_L", "Frontal_Inf_Tri_L", "Temporal_Sup_L", "Angular_L", "Occipital_Sup_R"]
HP_ROI_NUMS = np.array([1, 2, 2, 3, 3, 4, 5, 5, 0, 1, 3, 4])
_SENTENCE = ("Harry had never believed he would meet a boy he hated more than Dudley , but that was before "
             "he met Draco Malfoy . + Still , @first-year Gryffindors only had Potions with the Slytherins").split()


def hp_words():
    """Words, onsets (s) and run (0-based) of the fixture stimulus, arrays of shape (n_words,)."""
    words, onsets, runs = [], [], []
    for r in range(HP_N_RUNS):
        start = r * HP_RUN_TRS * 2.0 + HP_LEAD_TRS * 2.0
        for i in range(HP_WORDS_PER_RUN):
            words.append(_SENTENCE[(r * HP_WORDS_PER_RUN + i) % len(_SENTENCE)])
            onsets.append(start + 0.5 * i)
            runs.append(r)
    return np.array(words), np.array(onsets), np.array(runs)


def hp_trs():
    """TR start times (s) and 1-based runs of the fixture, arrays of shape (n_trs,)."""
    n = HP_RUN_TRS * HP_N_RUNS
    return 2.0 * np.arange(n), np.repeat(np.arange(1, HP_N_RUNS + 1), HP_RUN_TRS)


def hp_ijk():
    """1-based voxel indices, array of int of shape (n_voxels, 3)."""
    return np.array([[20 + v, 30 + (v % 3), 25 + (v % 4)] for v in range(HP_N_VOX)])


def hp_data(seed):
    """Smooth random responses, array of shape (n_trs, n_voxels)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((HP_RUN_TRS * HP_N_RUNS, HP_N_VOX)) + np.linspace(0, 5, HP_RUN_TRS * HP_N_RUNS)[:, None]


def write_hp_mat(folder, k, seed=0):
    """Write ``subject_<k>.mat`` like the CMU release; returns the data array written."""
    from scipy.io import savemat

    words, onsets, _ = hp_words()
    tr_times, tr_runs = hp_trs()
    data = hp_data(seed)
    ws = np.zeros((1, len(words)), dtype=[("text", object), ("start", object), ("length", object)])
    for i, (w, t) in enumerate(zip(words, onsets)):
        ws[0, i]["text"] = np.array([w], dtype=object)  # a 1x1 cell holding the string, as in the release
        ws[0, i]["start"] = float(t)
        ws[0, i]["length"] = 0.5
    fields = ["subject", "nTRs", "nvoxels", "dimx", "dimy", "dimz", "colToCoord", "coordToCol", "colToROInum",
              "coordToROInum", "ROInumToName", "voxel_size", "matrix"]
    meta = np.zeros((1, 1), dtype=[(f, object) for f in fields])
    ijk = hp_ijk()
    coord_to_col = np.zeros((40, 40, 40))
    coord_to_col[tuple((ijk - 1).T)] = np.arange(1, HP_N_VOX + 1)
    values = dict(subject=float(k), nTRs=float(len(tr_times)), nvoxels=float(HP_N_VOX), dimx=40.0, dimy=40.0,
                  dimz=40.0, colToCoord=ijk.astype(float), coordToCol=coord_to_col,
                  colToROInum=HP_ROI_NUMS.astype(float)[None, :], coordToROInum=np.zeros((40, 40, 40), dtype=np.uint8),
                  ROInumToName=np.array(HP_ROI_NAMES, dtype=object)[None, :], voxel_size=np.array([[3.0, 3.0, 3.0]]),
                  matrix=HP_AFFINE)
    for f in fields:
        meta[0, 0][f] = values[f]
    Path(folder).mkdir(parents=True, exist_ok=True)
    savemat(Path(folder) / f"subject_{k}.mat",
            {"data": data, "time": np.column_stack([tr_times, tr_runs]).astype(float), "words": ws, "meta": meta})
    return data


def hp_feature_values():
    """The fixture's story features: dict type -> (names, values of shape (n_words, n))."""
    words, _, _ = hp_words()
    n = len(words)
    idx = np.arange(n)
    nnse = np.zeros((n, 2))
    nnse[idx % 3 == 0, 0] = 0.7
    nnse[idx % 5 == 0, 1] = -0.2
    pos = np.zeros((n, 2))
    pos[idx % 2 == 0, 0] = 1
    chars = np.isin(words, ["Harry", "Draco", "Malfoy"]).astype(float)[:, None]
    speech = np.zeros((n, 2))
    speech[idx % 7 == 0, 0] = 1          # speak
    speech[:, 1] = 1                     # speak_sticky: on everywhere, must be skipped
    visual = (idx[:, None] % 4).astype(float)
    dep = (idx[:, None] % 11 == 1).astype(float)
    motion = np.c_[(idx % 13 == 2), (idx % 17 == 3)].astype(float)
    zeros = np.zeros((n, 1))
    word_num = (idx[:, None] % 9).astype(float)
    return {"NNSE": (["nnse_1", "nnse_2"], nnse), "Speech": (["speak", "speak_sticky"], speech),
            "Motion": (["fly_sticky", "fall"], motion), "Emotion": (["annoyed_sticky"], zeros),
            "Verbs": (["say"], zeros), "Characters": (["harry"], chars), "Visual": (["word_length"], visual),
            "Word_Num": (["sentence_length"], word_num), "Part_of_speech": (["NN", "VB"], pos),
            "Dependency_role": (["nsubj"], dep)}


def write_story_features(folder):
    """Write ``story_features.mat`` like the Wehbe release (with one empty entry, as the real file has)."""
    from scipy.io import savemat

    feats = hp_feature_values()
    arr = np.zeros((1, len(feats) + 1), dtype=[("type", object), ("names", object), ("values", object)])
    for j, (ftype, (names, values)) in enumerate(feats.items()):
        arr[0, j]["type"] = ftype
        arr[0, j]["names"] = names[0] if len(names) == 1 else np.array(names, dtype=object)[None, :]
        arr[0, j]["values"] = values
    arr[0, -1]["type"] = ""
    arr[0, -1]["names"] = np.zeros((0, 0))
    arr[0, -1]["values"] = np.zeros((0, 0))
    savemat(Path(folder) / "story_features.mat", {"features": arr})


HP_LETTERS = ("F", "H", "I", "J", "K", "L", "M", "N")


def write_hp_npy(folder, letters=("F",), rois=True):
    """Write the preprocessed NumPy release into ``folder/fMRI``; returns {letter: trimmed data}."""
    words, onsets, _ = hp_words()
    tr_times, tr_runs = hp_trs()
    fmri = Path(folder) / "fMRI"
    fmri.mkdir(parents=True, exist_ok=True)
    np.save(fmri / "time_fmri.npy", tr_times)
    np.save(fmri / "runs_fmri.npy", tr_runs)
    np.save(fmri / "time_words_fmri.npy", onsets)
    np.save(fmri / "words_fmri.npy", words)
    keep = np.concatenate([np.flatnonzero(tr_runs == r)[20:-15] for r in range(1, HP_N_RUNS + 1)])
    out = {}
    for i, letter in enumerate(letters):
        out[letter] = hp_data(10 + i)[keep].astype(np.float32)
        np.save(fmri / f"data_subject_{letter}.npy", out[letter])
    if rois:
        masks = {letter: {"all": np.r_[np.ones(5), np.zeros(HP_N_VOX - 5)].astype(int),
                          "IFG": np.r_[np.ones(2), np.zeros(HP_N_VOX - 2)].astype(int),
                          "PostTemp": np.r_[np.zeros(2), np.ones(3), np.zeros(HP_N_VOX - 5)].astype(int)}
                 for letter in letters}
        np.save(Path(folder) / "HP_subj_roi_inds.npy", masks, allow_pickle=True)
    return out


# --------------------------------------------------------------------------------------------
# Moth
# --------------------------------------------------------------------------------------------
MOTH_N_VOX = 8
MOTH_STORY_TRS = {"story_01": 50, "story_02": 44, "story_11": 48}
MOTH_WORDS = {"story_01": "i was born in a small town".split(),
              "story_02": "my father built the house himself".split(),
              "story_11": "where there's smoke there is fire they say".split()}


def moth_word_times(story):
    """Word onsets (s from audio start) of a fixture story, array of shape (n_words,)."""
    return 1.0 + 1.7 * np.arange(len(MOTH_WORDS[story]))


def textgrid_text(story, short=False):
    """A Praat TextGrid (long or short text format) with a phone tier and a word tier."""
    words, times = MOTH_WORDS[story], moth_word_times(story)
    intervals = [(0.0, times[0], "sp")]
    for w, t in zip(words, times):
        intervals.append((t, t + 1.2, w))
        intervals.append((t + 1.2, t + 1.7, "sp" if w != "smoke" else "{BR}"))
    xmax = intervals[-1][1]
    phones = [(0.0, xmax, 'a "quoted" phone')]
    if short:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", str(xmax), "<exists>", "2"]
        for name, rows in (("phone", phones), ("word", intervals)):
            lines += ['"IntervalTier"', f'"{name}"', "0", str(xmax), str(len(rows))]
            for a, b, text in rows:
                lines += [repr(float(a)), repr(float(b)), '"' + text.replace('"', '""') + '"']
        return "\n".join(lines) + "\n"
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {xmax} ",
             "tiers? <exists> ", "size = 2 ", "item []: "]
    for k, (name, rows) in enumerate((("phone", phones), ("word", intervals)), start=1):
        lines += [f"    item [{k}]:", '        class = "IntervalTier" ', f'        name = "{name}" ',
                  "        xmin = 0 ", f"        xmax = {xmax} ", f"        intervals: size = {len(rows)} "]
        for i, (a, b, text) in enumerate(rows, start=1):
            lines += [f"        intervals [{i}]:", f"            xmin = {a!r} ", f"            xmax = {b!r} ",
                      '            text = "' + text.replace('"', '""') + '" ']
    return "\n".join(lines) + "\n"


def moth_runs(seed):
    """Responses per story (validation story: 2 repeats; voxel 0 repeats exactly, voxel 1 is pure noise)."""
    rng = np.random.default_rng(seed)
    out = {}
    for story, n in MOTH_STORY_TRS.items():
        if story == "story_11":
            signal = rng.standard_normal((n, MOTH_N_VOX))
            reps = np.stack([signal + 0.5 * rng.standard_normal((n, MOTH_N_VOX)) for _ in range(2)])
            reps[:, :, 0] = signal[:, 0]
            reps[:, :, 1] = rng.standard_normal((2, n))
            out[story] = reps
        else:
            out[story] = rng.standard_normal((n, MOTH_N_VOX))
    return out


def write_moth(folder, subjects=("01",), textgrids=True, mappers=True):
    """Write the Moth reading release for ``subjects`` into ``folder``; returns {subject: runs dict}."""
    import h5py

    folder = Path(folder)
    (folder / "responses").mkdir(parents=True, exist_ok=True)
    out = {}
    for i, s in enumerate(subjects):
        runs = moth_runs(i)
        out[s] = runs
        with h5py.File(folder / "responses" / f"subject{s}_reading_fmri_data_trn.hdf", "w") as f:
            for story in ("story_01", "story_02"):
                f.create_dataset(story, data=runs[story].astype(np.float32))
        with h5py.File(folder / "responses" / f"subject{s}_reading_fmri_data_val.hdf", "w") as f:
            f.create_dataset("story_11", data=runs["story_11"].astype(np.float32))
        if mappers:
            (folder / "mappers").mkdir(exist_ok=True)
            with h5py.File(folder / "mappers" / f"subject{s}_mappers.hdf", "w") as f:
                f.create_dataset("roi_mask_Broca", data=np.r_[1, 1, 0, 0, 0, 0, 0, 0].astype(float))
                f.create_dataset("roi_mask_AC", data=np.r_[0, 0.3, 1, 1, 0, 0, 0, 0].astype(float))
                f.create_dataset("roi_mask_pSTS", data=np.r_[0, 0, 0, 0.5, 1, 0, 0, 0].astype(float))
                f.create_dataset("flatmap_mask", data=np.ones((4, 4)))
    if textgrids:
        grids = folder / "textgrids"
        grids.mkdir(exist_ok=True)
        (grids / "story_01.TextGrid").write_text(textgrid_text("story_01"))
        (grids / "avatar.TextGrid").write_text(textgrid_text("story_02", short=True))  # Moth name of story_02
        (grids / "story_11.TextGrid").write_bytes(textgrid_text("story_11").encode("utf-16"))
    return out

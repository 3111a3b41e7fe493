"""Bring-your-own fMRI: a generic BIDS loader, masked arrays, Narratives and LeBel et al. 2023 (brainattr.data).

Every fixture is written here, in the real formats: NIfTI (nibabel), sidecar JSON, events TSV,
Gentle's align.csv, HDF5 (h5py) and Praat TextGrids. Sizes are tiny (a 5 x 6 x 4 grid, 60
volumes per run).
"""
import json

import numpy as np
import pytest

from brainattr.data import load_dataset
from brainattr.data.bids import (find_bold_runs, load_arrays, load_bids, match_runs, repetition_time,
                                 split_pseudo_runs)
from brainattr.data.lebel import LEBEL_AUDIO_START, LEBEL_TR, LEBEL_TRIM, load_lebel
from brainattr.data.narratives import load_narratives, read_gentle_alignment
from brainattr.schema import DataError

nib = pytest.importorskip("nibabel")
h5py = pytest.importorskip("h5py")

GRID = (5, 6, 4)
#: 3 mm voxels over the left temporal lobe in MNI space (so some fall in Harvard-Oxford language ROIs)
AFFINE = np.array([[3.0, 0, 0, -66], [0, 3.0, 0, -30], [0, 0, 3.0, -6], [0, 0, 0, 1]])
N_VOLS = 60
WORDS = "once upon a time a fisher named Ada rowed out past the lighthouse and sang to the gulls".split()


def _nifti(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def _json(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def _tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(str(c) for c in r) + "\n" for r in rows))
    return path


def _bold(seed, n_vols=N_VOLS, grid=GRID):
    rng = np.random.default_rng(seed)
    return (100 + rng.standard_normal(grid + (n_vols,))).astype(np.float32)


def _word_rows(n_words=40, first=8.0, step=1.1):
    return [(f"{first + step * i:.2f}", "0.4", "word", WORDS[i % len(WORDS)]) for i in range(n_words)]


def make_bids(root, subjects=("01", "02"), runs=("1", "2"), session=None, spaces=("MNI152NLin2009cAsym",),
              n_vols=N_VOLS, rt=2.0, masks=True, events=True):
    """A BIDS dataset with fMRIPrep derivatives: raw sidecars and word events, preprocessed BOLD and masks."""
    deriv = root / "derivatives" / "fmriprep"
    _json(root / "dataset_description.json", {"Name": "toy", "BIDSVersion": "1.8.0"})
    if rt is not None:
        _json(root / "task-story_bold.json", {"RepetitionTime": rt, "TaskName": "story"})   # inherited by every run
    ses = f"_ses-{session}" if session else ""
    ses_dir = f"ses-{session}/" if session else ""
    for k, sub in enumerate(subjects):
        for run in runs:
            run_part = f"_run-{run}" if run else ""
            stem = f"sub-{sub}{ses}_task-story{run_part}"
            func = root / f"sub-{sub}" / ses_dir / "func"
            if events:
                _tsv(func / f"{stem}_events.tsv", ("onset", "duration", "trial_type", "word"),
                     [("0.0", "8.0", "silence", "n/a")] + _word_rows())
            for space in spaces:
                name = f"{stem}_space-{space}_desc-preproc_bold.nii.gz"
                _nifti(deriv / f"sub-{sub}" / ses_dir / "func" / name, _bold(100 * k + int(run or 0)))
                _json(deriv / f"sub-{sub}" / ses_dir / "func" / name.replace(".nii.gz", ".json"),
                      {"SkullStripped": False})          # an fMRIPrep sidecar without the TR: inherited
                if masks:
                    m = np.zeros(GRID, np.int8)
                    m[1:4, 1:5, 1:3] = 1
                    _nifti(deriv / f"sub-{sub}" / ses_dir / "func" / f"{stem}_space-{space}_desc-brain_mask.nii.gz", m)
    return root


@pytest.fixture
def bids(tmp_path):
    return make_bids(tmp_path / "ds")


# ---------------------------------------------------------------- the generic loader
def test_bids_subjects_runs_tr_and_words_in_one_schema(bids):
    data = load_bids(["sub-01", "02"], bids_root=bids, derivatives="derivatives/fmriprep", annotate=False,
                     language=None, detrend=False)
    assert [d.subject for d in data] == ["sub-01", "sub-02"] and data[0].stimulus is data[1].stimulus
    stim = data[0].stimulus
    assert stim.tr == 2.0 and stim.n_trs == 2 * N_VOLS and np.unique(stim.tr_runs).tolist() == [0, 1]
    assert stim.n_words == 80 and stim.words[6] == "named"
    # run 2's words are on the session clock: the run starts after run 1's 60 volumes
    np.testing.assert_allclose(stim.word_onsets[[0, 40]], [8.0, 2.0 * N_VOLS + 8.0])
    ds = data[0]
    assert ds.responses.shape == (2 * N_VOLS, 3 * 4 * 2)     # the fMRIPrep brain mask's 24 voxels
    # the mask's first voxel (1, 1, 1), read without detrending: the raw BOLD
    np.testing.assert_allclose(ds.responses[:N_VOLS, 0], _bold(1)[1, 1, 1], rtol=1e-5)
    np.testing.assert_allclose(ds.voxel_coords[0], AFFINE[:3, :3] @ [1, 1, 1] + AFFINE[:3, 3])
    assert ds.meta["tr"] == 2.0 and ds.meta["bold_files"][0].endswith("run-1_space-MNI152NLin2009cAsym_desc-"
                                                                       "preproc_bold.nii.gz")


def test_bids_with_sessions_two_spaces_and_a_timing_table_for_all_runs(tmp_path):
    root = make_bids(tmp_path / "ds", subjects=("01",), session="pre", spaces=("MNI152NLin2009cAsym", "T1w"),
                     events=False)
    with pytest.raises(DataError, match=r"2 BOLD files for run ses-pre_task-story_run-1 .* differ in \{'space'"):
        find_bold_runs(root / "derivatives" / "fmriprep", "sub-01")
    runs = find_bold_runs(root / "derivatives" / "fmriprep", "01", space="T1w")
    assert [r["key"] for r in runs] == ["ses-pre_task-story_run-1", "ses-pre_task-story_run-2"]
    table = _tsv(tmp_path / "words.tsv", ("word", "onset", "run"),
                 [(w, o, "ses-pre_task-story_run-1") for o, _, _, w in _word_rows(10)]
                 + [(w, o, "2") for o, _, _, w in _word_rows(12)])
    data = load_bids("sub-01", bids_root=root, derivatives="derivatives/fmriprep", space="T1w", words=table,
                     annotate=False, language=None)
    assert data[0].stimulus.n_words == 22 and np.isnan(data[0].voxel_coords).all()   # not MNI: no MNI coordinates


def test_raw_bids_without_derivatives_with_its_own_sidecars_and_a_mask_file(tmp_path):
    root = tmp_path / "raw"
    for run in ("1", "2"):
        func = root / "sub-A" / "ses-01" / "func"
        stem = f"sub-A_ses-01_task-listen_acq-mb_run-{run}"
        _nifti(func / f"{stem}_bold.nii", _bold(int(run), n_vols=50))
        _json(func / f"{stem}_bold.json", {"RepetitionTime": 1.0})
        _tsv(func / f"{stem}_events.tsv", ("onset", "duration", "word"), [(o, d, w) for o, d, _, w in _word_rows(30)])
    mask = np.zeros(GRID, np.int8)
    mask[2, 2, 2] = mask[3, 3, 3] = 1
    ds, = load_bids("sub-A", bids_root=root, mask=_nifti(tmp_path / "roi.nii.gz", mask), annotate=False,
                    language=None)
    assert ds.stimulus.tr == 1.0 and ds.stimulus.n_trs == 100 and ds.n_voxels == 2
    assert ds.stimulus.name == "bids_listen" and ds.meta["bold_files"][1].endswith("run-2_bold.nii")


def test_one_run_is_cut_into_pseudo_runs(tmp_path):
    root = make_bids(tmp_path / "ds", subjects=("01",), runs=(None,))
    with pytest.warns(UserWarning, match="one run: it is cut into 4 contiguous pseudo-runs"):
        ds, = load_bids("sub-01", bids_root=root, derivatives="derivatives/fmriprep", annotate=False, language=None)
    stim = ds.stimulus
    assert np.unique(stim.tr_runs).tolist() == [0, 1, 2, 3] and np.all(np.diff(stim.tr_runs) >= 0)
    np.testing.assert_array_equal(stim.word_runs, stim.tr_runs[stim.word_trs])
    assert split_pseudo_runs(stim, 1).tr_runs.max() == 3          # already cut: one block per run


def test_parcels_are_the_mean_signal_of_their_voxels(bids, tmp_path):
    atlas = np.zeros(GRID, np.int16)
    atlas[0:2, :, :] = 1
    atlas[2:5, 0:3, :] = 2
    atlas[2:5, 3:6, :] = 4
    _nifti(tmp_path / "atlas.nii.gz", atlas)
    labels = _tsv(tmp_path / "atlas.tsv", ("index", "name"), [(1, "front"), (2, "middle"), (4, "back")])
    ds, = load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", atlas=tmp_path / "atlas.nii.gz",
                    atlas_labels=labels, annotate=False, language=None, detrend=False)
    assert ds.voxel_labels.tolist() == ["front", "middle", "back"] and ds.responses.shape == (2 * N_VOLS, 3)
    np.testing.assert_allclose(ds.responses[:N_VOLS, 1], _bold(1)[2:5, 0:3, :].reshape(-1, N_VOLS).mean(0),
                               rtol=1e-5)


@pytest.mark.medium
def test_mni_voxels_get_harvard_oxford_language_labels(bids):
    ds, = load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", annotate=False)
    assert ds.voxel_is_language.any()
    assert set(ds.voxel_labels[ds.voxel_is_language]) <= {"IFGtri", "IFGoper", "TP", "aSTG", "pSTG", "aMTG", "pMTG",
                                                          "MTGto", "AG"}


def test_load_dataset_reaches_the_bids_loader_through_options(bids):
    data = load_dataset("bids", ["sub-02"], options=dict(bids_root=bids, derivatives="derivatives/fmriprep",
                                                         annotate=False, language=None), max_words=30)
    assert data[0].subject == "sub-02" and "cut to about 30 words" in data[0].stimulus.source


# ---------------------------------------------------------------- item 6: bad data, one test per case
def test_timing_file_whose_runs_do_not_match_the_bold_runs(bids, tmp_path):
    table = _tsv(tmp_path / "words.tsv", ("word", "onset", "run"),
                 [(w, o, "1") for o, _, _, w in _word_rows(10)] + [(w, o, "3") for o, _, _, w in _word_rows(10)])
    with pytest.raises(DataError, match=r"words.tsv: run\(s\) \['3'\] of the timing table match no BOLD run .* "
                                        r"\['task-story_run-1', 'task-story_run-2'\]"):
        load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", words=table, annotate=False)
    only_one = _tsv(tmp_path / "one.tsv", ("word", "onset", "run"), [(w, o, "1") for o, _, _, w in _word_rows(10)])
    with pytest.raises(DataError, match=r"one.tsv: the timing table has no words for BOLD run\(s\) \['task-story_run-2'\]"):
        load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", words=only_one, annotate=False)


def test_words_after_the_last_tr(bids):
    events = bids / "sub-01" / "func" / "sub-01_task-story_run-2_events.tsv"
    _tsv(events, ("onset", "duration", "word"), [(o, d, w) for o, d, _, w in _word_rows()] + [("121.5", "0.3", "late")])
    with pytest.raises(DataError, match=r"run-2_events.tsv line 42: word 'late' at 121.50 s is after the last volume "
                                        r"of its run \(60 volumes x 2.0 s = 120.00 s"):
        load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", annotate=False)


def test_nifti_whose_shape_disagrees_with_the_mask(bids, tmp_path):
    mask = _nifti(tmp_path / "mask.nii.gz", np.ones((5, 6, 5), np.int8))
    with pytest.raises(DataError, match=r"run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz has voxel grid "
                                        r"\(5, 6, 4\) but the mask .*mask.nii.gz has \(5, 6, 5\).*resample_to_img"):
        load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", mask=mask, annotate=False)
    shifted = _nifti(tmp_path / "shifted.nii.gz", np.ones(GRID, np.int8), affine=AFFINE + np.diag([0, 0, 0, 0]) +
                     np.pad(np.ones((3, 1)), ((0, 1), (3, 0))))
    with pytest.raises(DataError, match="with another affine"):
        load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", mask=shifted, annotate=False)
    ds, = load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", mask=shifted, resample_mask=True,
                    annotate=False, language=None)
    assert ds.n_voxels > 0


def test_sidecar_without_repetition_time(tmp_path):
    root = make_bids(tmp_path / "ds", subjects=("01",), rt=None)
    bold = next((root / "derivatives" / "fmriprep").rglob("*run-1*_bold.nii.gz"))
    with pytest.raises(DataError, match=r"desc-preproc_bold.nii.gz: its sidecar\(s\) .*desc-preproc_bold.json have no "
                                        r"\"RepetitionTime\". Add \"RepetitionTime\": <seconds"):
        load_bids("sub-01", bids_root=root, derivatives="derivatives/fmriprep", annotate=False)
    assert load_bids("sub-01", bids_root=root, derivatives="derivatives/fmriprep", tr=1.5, annotate=False,
                     language=None)[0].stimulus.tr == 1.5
    bold.with_name(bold.name.replace(".nii.gz", ".json")).unlink()
    with pytest.raises(DataError, match="no sidecar JSON was found for it"):
        repetition_time(bold, [root / "derivatives" / "fmriprep", root])


def test_parcellation_with_empty_parcels(bids, tmp_path):
    atlas = np.zeros(GRID, np.int16)
    atlas[1:3, 1:3, 1] = 1
    atlas[0, 0, 0] = 2                       # outside the brain mask: no voxel left
    _nifti(tmp_path / "atlas.nii.gz", atlas)
    labels = _tsv(tmp_path / "atlas.tsv", ("index", "name"), [(1, "kept"), (2, "corner"), (3, "absent")])
    with pytest.raises(DataError, match=r"atlas.nii.gz: 2 of 3 parcels have no voxel on the BOLD grid of .* inside "
                                        r"the mask: 2 \(corner\), 3 \(absent\)"):
        load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", atlas=tmp_path / "atlas.nii.gz",
                  atlas_labels=labels, mask=bids / "derivatives" / "fmriprep" / "sub-01" / "func" /
                  "sub-01_task-story_run-1_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz", annotate=False)


def test_missing_pieces_name_the_fix(bids, tmp_path):
    with pytest.raises(DataError, match=r"no folder .*sub-09 .* subjects under .*: sub-01, sub-02"):
        load_bids("sub-09", bids_root=bids, derivatives="derivatives/fmriprep")
    with pytest.raises(DataError, match=r"no BOLD file .* matches \{'task': 'rest'.* tasks \['story'\]"):
        load_bids("sub-01", bids_root=bids, derivatives="derivatives/fmriprep", task="rest")
    root = make_bids(tmp_path / "nomask", subjects=("01",), masks=False)
    with pytest.raises(DataError, match="no mask: .* Pass mask=<NIfTI mask"):
        load_bids("sub-01", bids_root=root, derivatives="derivatives/fmriprep", annotate=False)
    with pytest.raises(DataError, match="no events file with word timings found"):
        load_bids("sub-01", bids_root=make_bids(tmp_path / "noev", subjects=("01",), events=False),
                  derivatives="derivatives/fmriprep", annotate=False)


def test_match_runs_by_index_entities_or_task():
    runs = [dict(key=k, entities=dict(e)) for k, e in (("task-a_run-1", {"task": "a", "run": "1"}),
                                                        ("task-b_run-1", {"task": "b", "run": "1"}))]
    assert match_runs(["task-a_run-1", "b"], runs, "t.tsv") == {"task-a_run-1": 0, "b": 1}
    with pytest.raises(DataError, match=r"run\(s\) \['1'\] .* match no BOLD run \(or several\)"):
        match_runs(["1", "b"], runs, "t.tsv")
    same = [dict(key=f"task-a_run-{r}", entities={"task": "a", "run": r}) for r in ("1", "2")]
    assert match_runs(["01", "2"], same, "t.tsv") == {"01": 0, "2": 1}
    with pytest.raises(DataError, match=r"several run labels .* name BOLD run\(s\) \['task-a_run-1'\]"):
        match_runs(["1", "task-a_run-1", "2"], same, "t.tsv")


# ---------------------------------------------------------------- already-masked arrays
def test_arrays_npy_and_hdf5_per_run_with_sidecar_tr_and_voxel_table(tmp_path):
    folder = tmp_path / "arrays" / "sub-01"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(folder / "run-1.npy", rng.standard_normal((50, 7)).astype(np.float32))
    with h5py.File(folder / "run-2.h5", "w") as f:
        f["data"] = rng.standard_normal((45, 7)).astype(np.float32)
    for stem in ("run-1", "run-2"):
        _json(folder / f"{stem}.json", {"RepetitionTime": 1.5})
    _tsv(folder / "voxels.tsv", ("x", "y", "z", "label", "is_language"),
         [(-50, -20, 0, "pSTG", "true")] + [(10, 10, 10, "other", "false")] * 6)
    words = _tsv(tmp_path / "w.tsv", ("word", "onset", "run"),
                 [(w, o, "1") for o, _, _, w in _word_rows(20)] + [(w, o, "run-2") for o, _, _, w in _word_rows(20)])
    ds, = load_arrays("sub-01", root=tmp_path / "arrays", words=words, annotate=False)
    assert ds.stimulus.tr == 1.5 and ds.responses.shape == (95, 7) and ds.stimulus.n_words == 40
    assert ds.voxel_is_language.tolist() == [True] + [False] * 6
    bad = _tsv(tmp_path / "bad.tsv", ("word", "onset", "run"), [(w, o, "3") for o, _, _, w in _word_rows(5)])
    with pytest.raises(DataError, match=r"bad.tsv: the timing table's runs \['3'\] do not match the run files"):
        load_arrays("sub-01", root=tmp_path / "arrays", words=bad, annotate=False)
    np.save(folder / "run-3.npy", np.zeros((10, 7, 2)))
    with pytest.raises(DataError, match=r"run-3.npy holds an array of shape \(10, 7, 2\).*\(TRs, voxels\)"):
        load_arrays("sub-01", root=tmp_path / "arrays", words=words, annotate=False)


# ---------------------------------------------------------------- Narratives (OpenNeuro ds002345)
def make_narratives(root, task="pieman", subject="001", runs=(None,)):
    """ds002345's layout: raw sidecar and events, afni-nosmooth clean BOLD, the task's mask, Gentle's align.csv."""
    func = root / f"sub-{subject}" / "func"
    _json(func / f"sub-{subject}_task-{task}_bold.json", {"RepetitionTime": 1.5, "TaskName": task})
    _tsv(func / f"sub-{subject}_task-{task}_events.tsv", ("onset", "duration", "trial_type", "stim_file"),
         [("0.0", "13.0", "music", f"{task}_audio.wav"), ("15.0", "95.0", "story", f"{task}_audio.wav")])
    deriv = root / "derivatives" / "afni-nosmooth"
    space = "MNI152NLin2009cAsym"
    for run in runs:
        stem = f"sub-{subject}_task-{task}" + (f"_run-{run}" if run else "")
        _nifti(deriv / f"sub-{subject}" / "func" / f"{stem}_space-{space}_res-native_desc-clean_bold.nii.gz",
               _bold(7, n_vols=80))
    m = np.zeros(GRID, np.int8)
    m[2:4, 2:4, 1:3] = 1
    _nifti(deriv / f"tpl-{space}" / f"tpl-{space}_res-{task}_desc-brain_mask.nii.gz", m)
    gentle = root / "stimuli" / "gentle" / task
    gentle.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(60):            # Gentle times: from the start of the audio (the music), speech from 15.5 s
        start = 15.5 + 1.5 * i
        if i in (3, 4):            # not found in the audio: empty times
            rows.append(f"{WORDS[i % len(WORDS)]},{WORDS[i % len(WORDS)].lower()},,")
        else:
            rows.append(f"{WORDS[i % len(WORDS)]},{WORDS[i % len(WORDS)].lower()},{start:.2f},{start + 0.4:.2f}")
    (gentle / "align.csv").write_text("\n".join(rows) + "\n")
    return root


def test_narratives_words_from_gentle_placed_at_the_audio_onset(tmp_path):
    root = make_narratives(tmp_path / "ds002345")
    table = read_gentle_alignment(root / "stimuli" / "gentle" / "pieman" / "align.csv")
    assert table["aligned"].sum() == 58
    np.testing.assert_allclose(table["onset"][2:6], [18.5, 20.0, 21.5, 23.0])   # 3 and 4 interpolated
    with pytest.warns(UserWarning):
        ds, = load_narratives(["sub-01"], root=root, annotate=False, language=None, detrend=False)
    stim = ds.stimulus
    assert ds.subject == "sub-001" and ds.name == "narratives" and stim.tr == 1.5
    assert stim.n_trs == 80 and np.unique(stim.tr_runs).size == 4 and ds.n_voxels == 8
    np.testing.assert_allclose(stim.word_onsets[:2], [15.5, 17.0])            # audio from the scan's start (0.0 s)
    assert "align.csv" in ds.meta["word_files"][0]


#: The release's code/scan_exclude.json (snastase/narratives, code/exclude_scans.py writes it): task -> subject ->
#: BIDS name stems; a stem without run entity names every run of the subject's task. Entries as in the real file.
SCAN_EXCLUDE = {"lucy": {"sub-053": ["sub-053_task-lucy"]}, "milkyway": {},
                "pieman": {"sub-001": ["sub-001_task-pieman_run-1", "sub-001_task-pieman_run-2"],
                           "sub-013": ["sub-013_task-pieman_run-2"], "sub-021": ["sub-021_task-pieman"]},
                "piemanpni": {}}


def test_narratives_leaves_out_the_scans_the_release_excludes(tmp_path):
    from brainattr.data.narratives import listed_scan

    root = tmp_path / "ds002345"
    for subject, runs in (("001", ("1", "2")), ("002", ("1",)), ("013", ("1", "2"))):
        make_narratives(root, subject=subject, runs=runs)
    _json(root / "code" / "scan_exclude.json", SCAN_EXCLUDE)
    kw = dict(root=root, annotate=False, language=None, detrend=False)
    run2 = "sub-013_task-pieman_run-2_space-MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz"
    with pytest.warns(UserWarning, match=rf"sub-013: left out 1 BOLD run\(s\): {run2} \(listed as "
                                         r"'sub-013_task-pieman_run-2' in .*scan_exclude.json"):
        ds, = load_narratives(["sub-13"], **kw)
    assert [f.rsplit("/", 1)[-1] for f in ds.meta["bold_files"]] == [run2.replace("run-2", "run-1")]
    assert list(ds.meta["excluded_runs"]) == [run2] and ds.meta["scan_exclude"].endswith("code/scan_exclude.json")
    with pytest.raises(DataError, match=r"(?s)subject sub-001: every selected BOLD run is excluded \(sub-001_task-pieman"
                                        r"_run-1_.*scan_exclude.json.*exclude_scans=False"):
        load_narratives(["sub-001"], **kw)
    with pytest.warns(UserWarning):              # one run of 80 TRs: cut into pseudo-runs
        kept, = load_narratives(["sub-001"], exclude_scans=False, **kw)
    assert len(kept.meta["bold_files"]) == 2 and kept.meta["excluded_runs"] == {} and kept.meta["scan_exclude"] is None
    with pytest.warns(UserWarning, match=r"skipped subject\(s\) sub-001, whose scans the release excludes"):
        data = load_narratives(2, **kw)         # the first two subjects with a scan left
    assert [d.subject for d in data] == ["sub-002", "sub-013"]
    # entities, not substrings: pieman's stem does not list piemanpni, run-01 is run-1
    assert listed_scan({"sub": "021", "task": "piemanpni"}, ["sub-021_task-pieman"]) is None
    assert listed_scan({"sub": "013", "task": "pieman", "run": "02"}, ["sub-013_task-pieman_run-2"])


def test_narratives_scan_exclusions_missing_or_malformed(tmp_path):
    root = make_narratives(tmp_path / "ds002345", runs=("1",))
    kw = dict(root=root, annotate=False, language=None, detrend=False)
    with pytest.warns(UserWarning, match=r"scan_exclude.json not found: the scans the Narratives authors recommend "
                                         r"excluding are NOT left out.*datalad get code/scan_exclude.json"):
        load_narratives(["sub-001"], **kw)
    path = _json(root / "code" / "scan_exclude.json", {"pieman": {"sub-001": "sub-001_task-pieman"}})
    with pytest.raises(DataError, match=r"scan_exclude.json: task 'pieman' lists 'sub-001_task-pieman'; each subject "
                                        r"must map to a list.*exclude_scans=False"):
        load_narratives(["sub-001"], **kw)
    path.write_text('{"pieman": ')
    with pytest.raises(DataError, match=r"scan_exclude.json is not valid JSON.*datalad get code/scan_exclude.json"):
        load_narratives(["sub-001"], **kw)


def test_narratives_missing_release_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"(?s)Narratives not found.*datalad clone https://github.com/OpenNeuroDatasets/"
                                        r"ds002345.git"):
        load_narratives(["sub-001"], root=tmp_path / "nothing")


# ---------------------------------------------------------------- LeBel et al. 2023 (OpenNeuro ds003020)
def _textgrid(words, starts, path):
    """A long-format Praat TextGrid with a phone tier and a word tier."""
    xmax = float(starts[-1]) + 1.0
    intervals = [(0.0, float(starts[0]), "sp")] + [(float(t), float(t) + 0.5, w) for t, w in zip(starts, words)]
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {xmax} ",
             "tiers? <exists> ", "size = 2 ", "item []: "]
    for k, (name, rows) in enumerate((("phone", [(0.0, xmax, "")]), ("word", intervals)), start=1):
        lines += [f"    item [{k}]:", '        class = "IntervalTier" ', f'        name = "{name}" ', "        xmin = 0 ",
                  f"        xmax = {xmax} ", f"        intervals: size = {len(rows)} "]
        for i, (a, b, text) in enumerate(rows, start=1):
            lines += [f"        intervals [{i}]:", f"            xmin = {a} ", f"            xmax = {b} ",
                      f'            text = "{text}" ']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_lebel(root, subjects=("UTS01", "UTS02"), stories=(("alpha", 70), ("beta", 64)), repeats=None):
    """ds003020's derivative: a response file per subject and story, a TextGrid per story.

    ``repeats``: story -> number of repeats written, as the release's ``wheretheressmoke.hf5`` holds
    them (``individual_repeats``, (repeats, TRs, voxels), float64) beside their average ``data``;
    voxels 0-4 share a signal across the repeats, voxels 5-8 are noise only.
    """
    rng = np.random.default_rng(3)
    for story, n_rows in stories:
        starts = 1.0 + 0.9 * np.arange(int((n_rows + 4) * LEBEL_TR / 0.9) - 20)
        _textgrid([WORDS[i % len(WORDS)] for i in range(starts.size)], starts,
                  root / "derivative" / "TextGrids" / f"{story}.TextGrid")
        for s in subjects:
            path = root / "derivative" / "preprocessed_data" / s / f"{story}.hf5"
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                if repeats and story in repeats:
                    signal = np.zeros((n_rows, 9))
                    signal[:, :5] = 2.0 * rng.standard_normal((n_rows, 5))
                    each = signal + rng.standard_normal((repeats[story], n_rows, 9))
                    f["individual_repeats"] = each
                    f["data"] = each.mean(axis=0)
                else:
                    f["data"] = rng.standard_normal((n_rows, 9)).astype(np.float32)
    return root


def test_lebel_stories_are_runs_with_the_trimmed_trs_put_back(tmp_path):
    from brainattr.data import check_trim, unmeasured_trs

    root = make_lebel(tmp_path / "ds003020")
    with pytest.warns(UserWarning, match="marks no language voxels"):
        data = load_lebel(["sub-01", "UTS02"], root=root, annotate=False)
    ds = data[0]
    stim = ds.stimulus
    assert [d.subject for d in data] == ["sub-UTS01", "sub-UTS02"] and stim.tr == LEBEL_TR
    n0 = int(np.sum(stim.tr_runs == 0))
    assert n0 == sum(LEBEL_TRIM) + 70
    with h5py.File(root / "derivative" / "preprocessed_data" / "UTS01" / "alpha.hf5", "r") as f:
        rows = f["data"][()]
    np.testing.assert_allclose(ds.responses[LEBEL_TRIM[0]:LEBEL_TRIM[0] + 70], rows)     # row i is TR i + 10
    unmeasured = unmeasured_trs(ds)
    assert unmeasured[:LEBEL_TRIM[0]].all() and not unmeasured[LEBEL_TRIM[0]:LEBEL_TRIM[0] + 70].any()
    np.testing.assert_allclose(stim.word_onsets[0], 1.0 + LEBEL_AUDIO_START)            # TextGrid time + 10 s
    check_trim(ds, (20, 15))
    with pytest.raises(DataError, match="keeps"):
        check_trim(ds, (5, 5))


def test_lebel_missing_files_and_a_single_story(tmp_path):
    root = make_lebel(tmp_path / "ds003020")
    with pytest.raises(DataError, match=r"missing 2 file\(s\):\n  .*UTS01/gamma.hf5\n  .*gamma.TextGrid"):
        load_lebel(["UTS01"], root=root, stories=["alpha", "gamma"], annotate=False)
    with pytest.raises(DataError, match="choose at least 2 stories"):
        load_lebel(["UTS01"], root=root, stories=1, annotate=False)
    with pytest.raises(DataError, match="UTS01 ... UTS08"):
        load_lebel(["someone"], root=root)


def test_lebel_noise_ceiling_from_the_repeats_of_the_test_story(tmp_path):
    from brainattr.data import explainable_variance
    from brainattr.data.lebel import LEBEL_REPEATED_STORY, repeats_ceiling
    from brainattr.metrics import noise_ceiling

    story = LEBEL_REPEATED_STORY
    root = make_lebel(tmp_path / "ds003020", subjects=("UTS01",), stories=(("alpha", 70), (story, 66)),
                      repeats={story: 3})
    with pytest.warns(UserWarning, match="marks no language voxels"):
        ds, = load_lebel(["UTS01"], root=root, annotate=False)
    path = root / "derivative" / "preprocessed_data" / "UTS01" / f"{story}.hf5"
    with h5py.File(path, "r") as f:
        each, mean = f["individual_repeats"][()], f["data"][()]
    # the run holds the average; the ceiling is that of the repeats over the TRs the pipeline keeps:
    # grid TRs 20 .. n - 15 (trim (20, 15)) are rows 10 .. 66 - 10 of the file (row i is TR i + 10)
    run = ds.stimulus.tr_runs == 1
    np.testing.assert_allclose(ds.responses[run][LEBEL_TRIM[0]:LEBEL_TRIM[0] + 66], mean, rtol=1e-6)
    ev = explainable_variance(ds)
    np.testing.assert_allclose(ev, noise_ceiling(each[:, 10:56]), rtol=1e-10)
    assert ev[:5].min() > 0.6 and ev[5:].max() < 0.3
    assert ds.meta["repeated_story"] == story and ds.meta["n_repeats"] == 3
    # read a few voxels at a time, the same numbers
    np.testing.assert_allclose(repeats_ceiling(path, 66, 9, slice(10, 56), chunk=4)[0], ev, rtol=1e-12)
    with pytest.warns(UserWarning, match="marks no language voxels"):
        bare, = load_lebel(["UTS01"], root=root, annotate=False, noise_ceiling=False)
    assert explainable_variance(bare) is None


def test_lebel_repeats_without_a_ceiling_or_of_the_wrong_shape(tmp_path):
    from brainattr.data import explainable_variance
    from brainattr.data.lebel import LEBEL_REPEATED_STORY

    story = LEBEL_REPEATED_STORY
    root = make_lebel(tmp_path / "ds003020", subjects=("UTS01",), stories=(("alpha", 70), (story, 66)))
    with pytest.warns(UserWarning, match=rf"{story}.hf5 holds no separate repeat\(s\).*only their average: no noise "
                                         "ceiling"):
        ds, = load_lebel(["UTS01"], root=root, annotate=False)
    assert explainable_variance(ds) is None
    path = root / "derivative" / "preprocessed_data" / "UTS01" / f"{story}.hf5"
    with h5py.File(path, "a") as f:
        f["individual_repeats"] = np.zeros((3, 60, 9))
    with pytest.raises(DataError, match=rf"{story}.hf5: 'individual_repeats' has shape \(3, 60, 9\), but its 'data' "
                                        r"is \(66, 9\).*git-annex"):
        load_lebel(["UTS01"], root=root, annotate=False)

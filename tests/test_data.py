"""The data room's one way in: the load_dataset registry, and what brainattr.data may import."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import _realdata_fixtures as F
import brainattr.data as D
from brainattr.schema import DataError


@pytest.fixture(scope="module")
def hp_mat(tmp_path_factory):
    root = tmp_path_factory.mktemp("hp_mat")
    for k in (1, 2):
        F.write_hp_mat(root / "hp", k, seed=k)
    F.write_story_features(root / "hp")
    return root, None


def test_load_dataset_ignores_builtin_arguments_and_reads_brainattr_data(hp_mat, monkeypatch):
    root, _ = hp_mat
    monkeypatch.setenv(D.DATA_ENV, str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the built-in-only arguments
        ds = D.load_dataset("hp", ["sub-02"], max_words=None, n_language_voxels=3, n_control_voxels=2, seed=7)
    assert ds[0].name == "hp" and ds[0].meta["layout"] == "mat" and ds[0].subject == "sub-02"
    ann = ds[0].stimulus.annotations  # spaCy columns, as the built-in stimulus has
    assert {"pos", "is_content", "is_character", "is_semantic", "is_syntactic", "is_discourse"} <= set(ann.columns)
    assert ann.loc[ann.word == "Harry", "is_character"].all()
    assert len(D.load_dataset("hp-mat", 2, data_home=root)) == 2


def test_builtin_subjects_by_id_or_count_with_the_simulation_settings():
    ds = D.load_dataset("builtin", "sub-02", max_words=600, n_language_voxels=12, n_control_voxels=6, noise=2.0,
                        data_home="/nonexistent")  # data_home is for real data only
    assert [d.subject for d in ds] == ["sub-02"] and ds[0].name == "builtin"
    assert ds[0].n_voxels == 18 and ds[0].voxel_is_language.sum() == 12 and ds[0].stimulus.n_words == 600
    assert ds[0].meta["simulation"]["noise"] == 2.0 and ds[0].meta["simulation"]["subject"] == "sub-02"
    assert [d.subject for d in D.load_dataset("builtin", 2, max_words=600, n_language_voxels=4, n_control_voxels=2)] \
        == ["sub-01", "sub-02"]


def test_unknown_dataset_names_the_registry():
    with pytest.raises(DataError, match="unknown dataset 'nope'; available: builtin, hp, hp-mat, hp-npy, moth"):
        D.load_dataset("nope")


def test_a_new_loader_plugs_in_and_gets_only_the_settings_it_names(monkeypatch):
    calls = []

    def load_toy(subjects, *, max_words=None, data_home=None):
        calls.append((subjects, max_words, data_home))
        return ["toy"]

    monkeypatch.setitem(D.DATASETS, "toy", load_toy)
    assert D.load_dataset("toy", ["a"], max_words=5, n_language_voxels=3, seed=1) == ["toy"]
    assert calls == [(["a"], 5, None)]


def test_the_data_room_imports_no_torch_and_no_room_above_it():
    code = ("import sys, brainattr.schema; assert 'brainattr.data' not in sys.modules, 'schema imports data'; "
            "import brainattr.data, brainattr.data.download, brainattr.data.ground_truth; "
            "above = ('lm', 'features', 'models', 'encoding', 'attribution', 'analysis', 'masking', 'plots', "
            "'pipeline', 'book'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'spacy', 'nibabel', 'nilearn', "
            "'h5py', 'pooch') or m.split('.')[:2] in [['brainattr', a] for a in above]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_noise_subjects_need_no_annotation_and_have_the_asked_size():
    from brainattr.data import load_builtin_stimulus, noise_datasets

    stimulus = load_builtin_stimulus(max_words=300, annotate=False)       # no spaCy
    data = noise_datasets(stimulus, 2, n_language_voxels=5, n_control_voxels=3, seed=1)
    assert [d.subject for d in data] == ["sub-01", "sub-02"]
    assert data[0].responses.shape == (stimulus.n_trs, 8) and data[0].responses.dtype == np.float32
    assert data[0].voxel_is_language.tolist() == [True] * 5 + [False] * 3
    assert set(data[0].voxel_labels) == {"language", "control"}
    assert not np.array_equal(data[0].responses, data[1].responses)      # independent subjects
    np.testing.assert_array_equal(noise_datasets(stimulus, 1, 5, 3, seed=1)[0].responses, data[0].responses)

"""The oracle language model and the ground-truth checks of chapter 3 (WordNet drivers, sparse plant, units)."""
import numpy as np
import pandas as pd
import pytest

from brainattr import oracle as O
from brainattr import recovery as R
from brainattr.attribution import evenly_spaced
from brainattr.data import load_builtin_stimulus, true_contributions_table
from brainattr.data import wordnet as W
from brainattr.data.simulate import _label_vector, simulate, word_drivers
from brainattr.schema import DataError, drop_bad_voxels

pytestmark = pytest.mark.medium


@pytest.fixture(scope="module")
def stim():
    return load_builtin_stimulus(max_words=1200)


@pytest.fixture(scope="module")
def ds(stim):
    return drop_bad_voxels(simulate(stim, "sub-01", n_language=120, n_control=20, plant_share=0.1).dataset)


def _rows(truth):
    return truth[["tr", "word_index", "position", "word"]].copy()


def test_wordnet_neighbours_are_closer_than_strangers():
    def vec(words):  # wide random vectors per label: cosines close to the labels' shared weight
        return W.wordnet_vectors([w for w, _ in words], [p for _, p in words], 0, 512, _label_vector)

    v = vec([("dog", "NOUN"), ("cat", "NOUN"), ("letter", "NOUN"), ("walk", "VERB"), ("Darcy", "PROPN")])
    assert np.allclose(np.linalg.norm(v[:4], axis=1), 1.0) and not v[4].any()   # names have no WordNet vector
    assert v[0] @ v[1] > v[0] @ v[2] + 0.15                                      # dog~cat, not dog~letter
    labels = W.wordnet_categories("dog", "NOUN")
    assert labels["dog.n.01"] == 1.0 and "canine.n.02" in labels and "lex:noun.animal" in labels
    assert labels["canine.n.02"] == pytest.approx(W.HYPERNYM_DECAY)


def test_missing_wordnet_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv(W.WORDNET_ENV, str(tmp_path))
    with pytest.raises(DataError, match="wordnet-base"):
        W.wordnet_reader()


def test_semantic_drivers_are_smooth_only_with_wordnet(stim):
    ann = stim.annotations
    nouns = np.flatnonzero((ann["pos"] == "NOUN").to_numpy())
    for semantics, mean_cos in (("wordnet", (0.04, 1.0)), ("random", (-0.03, 0.03))):
        sem = word_drivers(stim, semantics=semantics)["semantic"].to_numpy()[nouns]
        lemmas = ann["lemma"].str.lower().to_numpy()[nouns]
        first = {lem: i for i, lem in enumerate(lemmas)}
        u = sem[list(first.values())]
        u = u[np.linalg.norm(u, axis=1) > 0]   # nouns WordNet does not know have no vector
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        cos = (u @ u.T)[np.triu_indices(len(u), 1)]
        # WordNet: nouns share ancestors (entity, physical_entity, ...), so their vectors lean together
        assert mean_cos[0] < cos.mean() < mean_cos[1], (semantics, cos.mean())
    with pytest.raises(ValueError, match="semantics"):
        word_drivers(stim, semantics="glove")


def test_sparse_plant_is_driven_by_character_mentions_only(ds):
    plant = np.flatnonzero(ds.meta["voxel_plant"])
    assert plant.size >= 5
    truth = true_contributions_table(ds, trs=np.arange(40, 200), voxels=plant)
    driving = truth[truth["contribution"] > 0]
    assert len(driving) and ds.stimulus.annotations["is_character"].to_numpy()[driving["word_index"]].all()


def test_the_oracle_finds_the_sparse_plant_it_can_see(ds):
    """precision@k's positive control: the plant lies in the encoder's model class, so the oracle finds its words."""
    plant = np.flatnonzero(ds.meta["voxel_plant"])
    fit = O.fit_oracle(ds, plant, "measured", inner_folds=3)
    trs = evenly_spaced(np.concatenate([np.asarray(t) for t in fit.test_trs]), 40)
    truth = true_contributions_table(ds, trs=trs, voxels=plant, units="response_sd")
    # every driving word is a character shown in one of the four delay TRs
    driving = truth[truth["contribution"] > 0]
    lag = np.asarray([t - ds.stimulus.word_trs[j] for t, j in zip(driving["tr"], driving["word_index"])])
    assert len(driving) and set(lag) <= {1, 2, 3, 4}
    table = O.oracle_tables(ds, fit, plant, _rows(truth), ["prediction"])["prediction"]
    scores = R.recovery_scores({"s": table}, {"s": truth}, {"s": table}, {"s": truth}, n_boot=100)
    assert scores.loc["precision_at_k", "n_trs"] >= 10
    assert scores.loc["precision_at_k", "estimate"] >= 0.95 > scores.loc["precision_at_k_prior", "estimate"]


def test_truth_in_response_units(ds):
    lang = np.flatnonzero(ds.voxel_is_language)
    trs = np.arange(60, 64)
    raw = true_contributions_table(ds, trs=trs, voxels=lang[:1], how="sum")
    scaled = true_contributions_table(ds, trs=trs, voxels=lang[:1], how="sum", units="response_sd")
    np.testing.assert_allclose(scaled["contribution"], raw["contribution"] / ds.responses[:, lang[0]].std(), rtol=1e-5)
    with pytest.raises(ValueError, match="units"):
        true_contributions_table(ds, trs=trs, units="percent")


def test_oracle_positive_control_and_its_losses(ds):
    lang = np.flatnonzero(ds.voxel_is_language)
    clean_fit = O.fit_oracle(ds, lang, "clean", inner_folds=3)
    trs = evenly_spaced(np.concatenate([np.asarray(t) for t in clean_fit.test_trs]), 24)
    truth = true_contributions_table(ds, trs=trs, voxels=lang, units="response_sd")
    rows = _rows(truth)
    control = O.oracle_tables(ds, clean_fit, lang, rows, ["prediction"])["prediction"]
    good = R.recovery_scores({"s": control}, {"s": truth}, n_boot=100).loc["word_identity"]
    assert good["estimate"] > 0.85 and good["ci_low"] > good["null_high"]
    # words outside the four delay TRs score exactly 0: the head never reads them
    read = {int(t): np.isin(ds.stimulus.word_trs, [s for s in clean_fit.source_trs(t) if s >= 0]) for t in trs}
    outside = ~np.array([read[int(t)][j] for t, j in zip(control["tr"], control["word_index"])])
    assert (control.loc[outside, "attribution"] == 0).all() and (control.loc[~outside, "attribution"] > 0).all()
    # the squared error against the measured response mixes every word with the TR's residuals
    measured_fit = O.fit_oracle(ds, lang, "measured", inner_folds=3)
    mse = O.oracle_tables(ds, measured_fit, lang, rows, ["mse_measured"])["mse_measured"]
    worse = R.recovery_scores({"s": mse}, {"s": truth}, n_boot=100).loc["word_identity"]
    assert worse["estimate"] < good["estimate"] - 0.2
    with pytest.raises(ValueError, match="fit_on"):
        O.fit_oracle(ds, lang, "truth")


def test_in_model_positive_control_passes_and_a_wrong_head_fails_it(ds):
    """The generating head recovers the in-model subject's truth (computed apart, by perturbation)
    exactly; a head that reads its delays one TR off, or a refit, does not."""
    from dataclasses import replace

    lang = np.flatnonzero(ds.voxel_is_language)
    clean_fit = O.fit_oracle(ds, lang, "clean", inner_folds=3)
    trs = evenly_spaced(np.concatenate([np.asarray(t) for t in clean_fit.test_trs]), 24)
    rows = _rows(true_contributions_table(ds, trs=trs, voxels=lang, units="response_sd"))
    subject, generator = O.in_model_subject(ds, clean_fit, lang)
    assert np.array_equal(subject.responses[:, ~ds.voxel_is_language], ds.responses[:, ~ds.voxel_is_language])
    truth = O.in_model_truth(subject, generator, lang, rows)

    def word_identity(encoding):
        table = O.oracle_tables(subject, encoding, lang, rows, ["prediction"])["prediction"]
        return R.recovery_scores({"s": table}, {"s": truth}, n_boot=50).loc["word_identity", "estimate"]
    assert word_identity(generator) > 0.999
    # the same weights one delay off (delay 1 read as delay 2, ...): the control catches it
    n_drivers = generator.weights.shape[1] // len(generator.delays)
    shifted = replace(generator, weights=np.roll(generator.weights, n_drivers, axis=1))
    assert word_identity(shifted) < 0.95                                # below the control's bar
    assert word_identity(O.fit_oracle(subject, lang, "measured", inner_folds=3)) < 0.999


def test_oracle_mse_gradient_matches_finite_differences(ds):
    """The closed-form GxI of the squared error equals x . dF/dx by central differences."""
    lang = np.flatnonzero(ds.voxel_is_language)
    enc = O.fit_oracle(ds, lang, "measured", inner_folds=3)
    tr = int(np.asarray(enc.test_trs[1])[5])
    truth = true_contributions_table(ds, trs=[tr], voxels=lang)
    table = O.oracle_tables(ds, enc, lang, _rows(truth), ["mse_measured"])["mse_measured"]
    sim_drivers = O.as_simulated(ds).drivers.copy()
    head = enc.head(tr)
    y = enc.measured_tr(tr, ds.responses.astype(float)[:, lang])
    stim = ds.stimulus

    def loss(X):
        yhat = np.asarray(head["intercept"], float).copy()
        for d, src in enumerate(head["source_trs"]):
            words = np.flatnonzero(stim.word_trs == src)
            if src >= 0 and words.size:
                yhat += ((X[words].mean(0) - head["mean"]) / head["std"]) @ np.asarray(head["weights"][d], float)
        return float(((yhat - y) ** 2).mean())

    j = int(table.loc[table["attribution"].abs().idxmax(), "word_index"])
    eps = 1e-4
    gxi = 0.0
    for f in range(sim_drivers.shape[1]):
        up, down = sim_drivers.copy(), sim_drivers.copy()
        up[j, f] += eps
        down[j, f] -= eps
        gxi += sim_drivers[j, f] * (loss(up) - loss(down)) / (2 * eps)
    assert table.loc[table["word_index"] == j, "attribution"].item() == pytest.approx(gxi, rel=1e-4)


def test_with_noise_rescales_the_same_draw(ds):
    sim_clean = O.as_simulated(ds).clean
    louder = O.with_noise(ds, 10.0)
    np.testing.assert_allclose(louder.responses - sim_clean, 2 * (ds.responses - sim_clean), rtol=1e-4, atol=1e-4)
    assert O.with_noise(ds, 5.0) is ds
    pd.testing.assert_index_equal(pd.Index(louder.voxel_labels), pd.Index(ds.voxel_labels))


def test_wordnet_labels_are_stored_once_and_read_back_bit_for_bit(monkeypatch, tmp_path):
    """A second simulation of the same words opens no WordNet, and its vectors equal the first's exactly."""
    monkeypatch.setenv("BRAINATTR_CACHE", str(tmp_path / "cache"))
    lemmas, upos = ["dog", "cat", "run", "quickly", "the", "dog"], ["NOUN", "NOUN", "VERB", "ADV", "DET", "NOUN"]
    vec = lambda label, seed, dim: np.random.default_rng(abs(hash((label, seed))) % 2**32).normal(size=dim)  # noqa: E731
    first = W.wordnet_vectors(lemmas, upos, 0, 8, vec)
    assert len(list((tmp_path / "cache" / "wordnet").glob("*.json"))) == 1
    monkeypatch.setattr(W, "wordnet_categories", lambda *a: pytest.fail("WordNet opened again"))
    np.testing.assert_array_equal(W.wordnet_vectors(lemmas, upos, 0, 8, vec), first)
    with pytest.raises(pytest.fail.Exception, match="opened again"):   # other words are another entry
        W.wordnet_vectors(lemmas + ["house"], upos + ["NOUN"], 0, 8, vec)


def test_wordnet_labels_follow_the_wordnet_folder(monkeypatch, tmp_path):
    """The labels are remembered per folder: pointing $BRAINATTR_WORDNET elsewhere is not answered from memory."""
    assert W.wordnet_categories("dog", "NOUN")
    monkeypatch.setenv(W.WORDNET_ENV, str(tmp_path))
    with pytest.raises(DataError, match="wordnet-base"):
        W.wordnet_categories("dog", "NOUN")


def test_the_ladder_puts_each_plant_table_on_its_rung(ds):
    """The pipeline's and Gradient x Activation's plant tables are scored on their own rungs, not swapped."""
    from brainattr.attribution import AttributionSettings
    from brainattr.pipeline import LADDER, oracle_ladder, truth_tables

    lang = np.flatnonzero(ds.voxel_is_language)
    fit = O.fit_oracle(ds, lang, "measured", inner_folds=3)
    trs = evenly_spaced(np.concatenate([np.asarray(t) for t in fit.test_trs]), 24)
    settings = AttributionSettings()
    truth = truth_tables([ds], trs, settings)[ds.subject]
    lm = _rows(truth).assign(attribution=truth["contribution"], abs_attribution=truth["contribution"])
    plant_truth = truth_tables([ds.select_voxels(ds.meta["voxel_plant"])], trs, settings)[ds.subject]
    knows = lm.drop(columns=["attribution", "abs_attribution"]).merge(
        plant_truth[["tr", "word_index", "contribution"]], on=["tr", "word_index"], how="left").fillna(0.0)
    knows = knows.assign(attribution=knows.pop("contribution"), abs_attribution=lambda d: d["attribution"])
    blind = knows.assign(attribution=0.0, abs_attribution=0.0)
    ladder, _ = oracle_ladder(ds, lm, lm, trs, settings, inner_folds=3, lm_plant_table=knows, gxa_table=lm,
                              gxa_plant_table=blind, n_boot=20)
    precision = ladder.xs("precision_at_k", level="score")["estimate"]
    assert precision[LADDER[6][0]] == 1.0                       # the pipeline's table knows the plant
    assert precision[LADDER[4][0]] < 0.5                        # Gradient x Activation's is blind

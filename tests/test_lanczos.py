"""Lanczos resampling of word features to TRs, beside the paper's per-TR averaging (brainattr.trs).

The encoding features and the attribution head's pooling share one word-to-TR weight matrix, so
the head still reproduces the encoding model's prediction with either method.
"""
import numpy as np
import pytest

from brainattr import trs as T
from brainattr.schema import Stimulus


def _stimulus(onsets, runs, tr_times, tr_runs, tr=2.0):
    onsets = np.asarray(onsets, dtype=float)
    return Stimulus(name="toy", words=[f"w{i}" for i in range(onsets.size)], word_onsets=onsets, word_runs=runs,
                    tr_times=tr_times, tr_runs=tr_runs, tr=tr)


def _rsvp(n_words_per_run=(40, 40), rate=0.5, tr=2.0, lead=6.0):
    """Words every ``rate`` s from ``lead`` s into each run, TRs of ``tr`` s, runs end to end."""
    onsets, runs, tr_times, tr_runs, start = [], [], [], [], 0.0
    for r, n in enumerate(n_words_per_run):
        n_trs = int(np.ceil((2 * lead + rate * n) / tr))
        onsets += list(start + lead + rate * np.arange(n))
        runs += [r] * n
        tr_times += list(start + tr * np.arange(n_trs))
        tr_runs += [r] * n_trs
        start += tr * n_trs
    return _stimulus(onsets, runs, tr_times, tr_runs, tr)


def test_lanczos_kernel_is_one_at_zero_zero_at_multiples_of_the_tr_and_outside_the_window():
    tr = 2.0
    np.testing.assert_allclose(T.lanczos_kernel([0.0], tr), [1.0])
    np.testing.assert_allclose(T.lanczos_kernel(tr * np.array([-2, -1, 1, 2]), tr), 0.0, atol=1e-12)
    assert np.all(T.lanczos_kernel(tr * np.array([3.0, 3.5, -4.0, 10.0]), tr) == 0)
    t = np.linspace(-7, 7, 57)
    np.testing.assert_allclose(T.lanczos_kernel(t, tr), T.lanczos_kernel(-t, tr))   # symmetric
    # the Huth-lab form: window * sin(pi x) sin(pi x / window) / (pi x)^2, x = t * cutoff, cutoff = 1 / TR
    x = np.array([0.3, 1.7, -2.2]) / tr
    huth = 3 * np.sin(np.pi * x) * np.sin(np.pi * x / 3) / (np.pi ** 2 * x ** 2)
    np.testing.assert_allclose(T.lanczos_kernel(x * tr, tr), huth, rtol=1e-12)


def test_average_weights_reproduce_tr_average():
    stim = _rsvp((30, 21), rate=0.7)
    emb = np.random.default_rng(0).standard_normal((stim.n_words, 5)).astype(np.float32)
    W = T.word_tr_weights(stim, "average")
    assert W.shape == (stim.n_trs, stim.n_words) and W.dtype == np.float32
    np.testing.assert_array_equal(W @ emb, T.tr_average(emb, stim.word_trs, stim.n_trs))
    sums = W.sum(axis=1)
    has_words = np.bincount(stim.word_trs, minlength=stim.n_trs) > 0
    np.testing.assert_allclose(sums[has_words], 1.0, rtol=1e-6)
    assert np.all(sums[~has_words] == 0)


def test_lanczos_weights_stay_within_runs_and_resample_a_steady_word_rate():
    stim = _rsvp((80, 80), rate=0.5, lead=10.0)
    W = T.word_tr_weights(stim, "lanczos")
    cross = stim.tr_runs[:, None] != stim.word_runs[None, :]
    assert np.all(W[cross] == 0) and np.any(W[~cross] != 0)
    # one TR's weight on one word is the kernel at (TR centre - onset)
    t, w = 8, 11
    dt = stim.tr_times[t] + stim.tr / 2 - stim.word_onsets[w]
    assert W[t, w] == pytest.approx(T.lanczos_kernel(dt, stim.tr), rel=1e-6)
    # 4 words per TR, far from the run's edges: the low-pass of a constant rate is that rate
    words0 = stim.word_onsets[stim.word_runs == 0]
    centres = stim.tr_times + stim.tr / 2
    inner = (stim.tr_runs == 0) & (centres > words0[0] + 8) & (centres < words0[-1] - 8)
    assert inner.sum() >= 5
    np.testing.assert_allclose(W[inner].sum(axis=1), 4.0, rtol=0.03)
    # a TR far from every word gets nothing
    far = np.abs(centres[:, None] - stim.word_onsets[None, :]).min(axis=1) > 3 * stim.tr
    assert far.any() and np.all(W[far] == 0)


def test_unknown_tr_features_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown method 'sinc'.*'average', 'lanczos'"):
        T.word_tr_weights(_rsvp(), "sinc")


# ---------------------------------------------------------------- features and the attribution head
LAYER = 2


@pytest.fixture(scope="module")
def plain_stimulus():
    from brainattr.data import load_builtin_stimulus

    return load_builtin_stimulus(max_words=600, annotate=False)   # no spaCy needed


@pytest.mark.medium
def test_lanczos_features_are_the_weights_times_the_word_embeddings_and_cached_apart(tiny_lm, plain_stimulus):
    from brainattr.features import extract_word_embeddings, stimulus_tr_features

    stim = plain_stimulus
    lz = stimulus_tr_features(tiny_lm, stim, [LAYER], context=20, cache=True, progress=False,
                              tr_features="lanczos")[LAYER]
    av = stimulus_tr_features(tiny_lm, stim, [LAYER], context=20, cache=True, progress=False)[LAYER]
    emb = extract_word_embeddings(tiny_lm, stim.words, [LAYER], context=20, progress=False)[0]
    np.testing.assert_allclose(lz, T.word_tr_weights(stim, "lanczos") @ emb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(av, T.tr_average(emb, stim.word_trs, stim.n_trs), rtol=1e-5, atol=1e-6)
    assert not np.allclose(lz, av)          # two cache entries, not one read back twice
    again = stimulus_tr_features(tiny_lm, stim, [LAYER], context=20, progress=False, tr_features="lanczos")[LAYER]
    np.testing.assert_array_equal(again, lz)
    with pytest.raises(ValueError, match="unknown method"):
        stimulus_tr_features(tiny_lm, stim, [LAYER], context=20, progress=False, tr_features="box")


@pytest.mark.medium
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_head_end_to_end_equals_encoding_prediction_with_lanczos(tiny_lm, plain_stimulus, pooling):
    """The Lanczos twin of tests/test_attribution.py's head == encoding check (through the LM)."""
    import torch

    from brainattr import attribution as A
    from brainattr.attribution.batch import TokenizedText, collate, make_instance
    from brainattr.attribution.head import head_for, tr_features_from_states
    from brainattr.encoding import fit_encoding
    from brainattr.features import stimulus_tr_features
    from brainattr.lm import layer_states

    lm, stim = tiny_lm, plain_stimulus
    # every word read from word 0, exactly as in an attribution window starting at 0
    feats = stimulus_tr_features(lm, stim, [LAYER], context=stim.n_words, pooling=pooling, cache=False,
                                 progress=False, tr_features="lanczos")[LAYER]
    rng = np.random.default_rng(1)
    Y = feats @ rng.standard_normal((feats.shape[1], 6)) + 0.5 * rng.standard_normal((stim.n_trs, 6))
    enc = fit_encoding(feats, Y, stim.tr_runs, inner_folds=3, progress=False)
    trs = A.held_out_trs(enc, fold=None, n=5)
    text = TokenizedText(lm, stim, tr_features="lanczos")
    windows = [A.tr_window(stim, enc, int(t), stim.n_words) for t in trs]
    insts = [make_instance(text, w, pooling, with_next=False) for w in windows]
    # the Lanczos rows weigh words after the delay TRs: the windows grow to cover them
    assert any(i.window.end > w.end for i, w in zip(insts, windows))
    batch = collate(insts, lm.tokenizer.pad_token_id, "cpu")
    heads, pred = {}, []
    with torch.no_grad():
        states = layer_states(lm.model, [LAYER], input_ids=batch["ids"], attention_mask=batch["mask"])[LAYER]
        x = tr_features_from_states(states, batch["pool"])
        for j, t in enumerate(trs):
            head = head_for(enc, int(t), None, heads, "cpu")
            pred.append(head(x[j:j + 1], batch["present"][j:j + 1])[0].double().numpy())
    ref = np.stack([enc.predict_tr(int(t), feats) for t in trs])
    np.testing.assert_allclose(np.stack(pred), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.medium
def test_averaging_keeps_the_windows_and_pooling_of_before(tiny_lm, plain_stimulus):
    from brainattr.attribution.batch import TokenizedText, covering_window, make_instance
    from brainattr.attribution.windows import Window

    stim = plain_stimulus
    text = TokenizedText(tiny_lm, stim)
    src = (22, 21, 20, 19)
    words = np.flatnonzero(np.isin(stim.word_trs, src))
    w = Window(tr=23, fold=0, start=int(words[0]) - 5, end=int(words[-1]) + 1, next_word=int(words[-1]) + 1,
               source_trs=src)
    assert covering_window(text, w) is w
    inst = make_instance(text, w, "last", with_next=True)
    for d, s in enumerate(src):      # 1 / n on the last token of each of the TR's n words
        mine = np.flatnonzero(stim.word_trs == s)
        last = text.spans[mine, 1] - 1 - text.spans[w.start, 0] + len(text.prefix)
        np.testing.assert_allclose(inst.pool[d, last], 1.0 / mine.size)
        assert inst.pool[d].sum() == pytest.approx(1.0)
    # Lanczos weighs words up to 3 TRs (12 words) either side: past 5 words of context, and ahead
    lz = covering_window(TokenizedText(tiny_lm, stim, "lanczos"), w)
    assert lz.start == w.start - 4 and lz.end > w.end and lz.next_word == lz.end
    wide = Window(tr=23, fold=0, start=w.start - 20, end=w.end, next_word=w.end, source_trs=src)
    assert covering_window(TokenizedText(tiny_lm, stim, "lanczos"), wide).start == wide.start


# ---------------------------------------------------------------- threaded through: settings, keys, fits
def _recording(monkeypatch, module):
    """Wrap ``module.cache_key`` to record the fields of every key it builds; return the list."""
    calls, real = [], module.cache_key

    def cache_key(**fields):
        calls.append(fields)
        return real(**fields)

    monkeypatch.setattr(module, "cache_key", cache_key)
    return calls


def _subject(stimulus, n_voxels=6, seed=0):
    from brainattr.schema import Dataset

    rng = np.random.default_rng(seed)
    return Dataset(stimulus=stimulus, subject="sub-01", responses=rng.standard_normal((stimulus.n_trs, n_voxels)),
                   voxel_coords=np.zeros((n_voxels, 3)), voxel_labels=np.array(["lang"] * n_voxels),
                   voxel_is_language=np.ones(n_voxels, bool), name="toy")


@pytest.mark.medium
def test_stored_tables_of_averaging_keep_their_keys_and_lanczos_gets_its_own(tiny_lm, plain_stimulus, monkeypatch):
    from brainattr.attribution import AttributionSettings, store
    from brainattr.encoding import fit_encoding

    ds = _subject(plain_stimulus)
    feats = np.random.default_rng(1).standard_normal((plain_stimulus.n_trs, 4)).astype(np.float32)
    enc = fit_encoding(feats, ds.responses, plain_stimulus.tr_runs, inner_folds=2, progress=False)
    vox = np.ones(ds.n_voxels, bool)
    calls = _recording(monkeypatch, store)
    average = store._table_folders(tiny_lm, [ds], [enc], [vox], LAYER, AttributionSettings())
    assert len(calls) == 2 and all("tr_features" not in c for c in calls)   # the keys of before the option
    del calls[:]
    lanczos = store._table_folders(tiny_lm, [ds], [enc], [vox], LAYER, AttributionSettings(tr_features="lanczos"))
    assert len(calls) == 2 and all(c["tr_features"] == "lanczos" for c in calls)
    # both tasks: Lanczos changes BA's pooling and the windows, hence NWP's next word too
    assert set(average) == set(lanczos) == {(0, "ba", "gxi"), (0, "nwp", "gxi")}
    assert all(average[k] != lanczos[k] for k in average)


@pytest.mark.medium
def test_encode_subjects_fits_lanczos_features_under_their_own_key(tiny_lm, plain_stimulus, monkeypatch):
    from brainattr import encoding
    from brainattr.features import stimulus_tr_features

    ds, kw = _subject(plain_stimulus), dict(context=20, inner_folds=2, progress=False)
    calls = _recording(monkeypatch, encoding)
    average, = encoding.encode_subjects(tiny_lm, [ds], LAYER, **kw)
    assert "tr_features" not in calls[-1]                    # fits cached before the option stay valid
    lanczos, = encoding.encode_subjects(tiny_lm, [ds], LAYER, tr_features="lanczos", **kw)
    assert calls[-1]["tr_features"] == "lanczos"
    # fitted on the Lanczos features: the encoder predicts from them (the weights differ from averaging's)
    feats = stimulus_tr_features(tiny_lm, plain_stimulus, [LAYER], context=20, progress=False,
                                 tr_features="lanczos")[LAYER]
    refit = encoding.fit_encoding(feats, ds.responses, plain_stimulus.tr_runs, inner_folds=2, progress=False)
    np.testing.assert_allclose(lanczos.weights, refit.weights, rtol=1e-5, atol=1e-6)
    assert not np.allclose(lanczos.weights, average.weights)
    again, = encoding.encode_subjects(tiny_lm, [ds], LAYER, tr_features="lanczos", **kw)   # read from the cache
    np.testing.assert_array_equal(again.weights, lanczos.weights)
    with pytest.raises(ValueError, match="unknown method 'box'"):
        encoding.encode_subjects(tiny_lm, [ds], LAYER, tr_features="box", **kw)


@pytest.mark.medium
def test_attributions_with_lanczos_settings_cover_every_weighed_word(tiny_lm, plain_stimulus):
    from brainattr import attribution as A
    from brainattr.encoding import encode_subjects

    ds = _subject(plain_stimulus)
    enc, = encode_subjects(tiny_lm, [ds], LAYER, context=20, inner_folds=2, progress=False, tr_features="lanczos")
    trs = A.held_out_trs(enc, fold=None, n=2)
    settings = A.AttributionSettings(context=5, tr_features="lanczos")
    lz, = A.compute_attributions(tiny_lm, [ds], [enc], LAYER, trs, settings, progress=False)
    av, = A.compute_attributions(tiny_lm, [ds], [enc], LAYER, trs, settings.replace(tr_features="average"),
                                 progress=False)
    text = A.batch.TokenizedText(tiny_lm, plain_stimulus, "lanczos")
    for tr in trs:
        src = [int(tr) - d for d in enc.delays]
        weighed = np.flatnonzero(np.any(text.tr_weights[src] != 0, axis=0))
        for task in ("ba", "nwp"):
            words_lz = lz[(task, "gxi")].query("tr == @tr")["word_index"].to_numpy()
            words_av = av[(task, "gxi")].query("tr == @tr")["word_index"].to_numpy()
            assert np.isin(weighed, words_lz).all() and not np.isin(weighed, words_av).all()
    # the BA target is the head's MSE on the Lanczos-pooled states: not the averaged one
    assert not np.allclose(lz[("ba", "gxi")].groupby("tr")["target"].first(),
                           av[("ba", "gxi")].groupby("tr")["target"].first())


@pytest.mark.medium
def test_masking_pools_the_windows_as_the_encoding_features(tiny_lm, plain_stimulus):
    """Chapter 7's maskings score each window with the encoding model's pooling: Lanczos, not averaging."""
    from brainattr import attribution as A
    from brainattr import masking as M
    from brainattr.encoding import encode_subjects

    ds = _subject(plain_stimulus)
    enc, = encode_subjects(tiny_lm, [ds], LAYER, context=20, inner_folds=2, progress=False, tr_features="lanczos")
    trs = A.held_out_trs(enc, fold=None, n=3)
    pred, _ = M.evaluate_windows(tiny_lm, ds, enc, LAYER, trs, context=5, tr_features="lanczos")
    ref = A.predict_trs(tiny_lm, plain_stimulus, enc, LAYER, trs, context=5, tr_features="lanczos")
    np.testing.assert_allclose(pred, ref, rtol=1e-4, atol=1e-5)
    averaged, _ = M.evaluate_windows(tiny_lm, ds, enc, LAYER, trs, context=5)
    assert not np.allclose(averaged, ref)


@pytest.mark.medium
def test_chapters_7_and_8_pass_tr_features_and_fold_on(tiny_lm, plain_stimulus, monkeypatch):
    """condition_tables (chapter 8), masking_at_context and ChapterTables.encodings (chapter 7): Lanczos fits,
    tables and maskings, on the held-out TRs of the fold asked for."""
    import pandas as pd

    from brainattr import attribution as A
    from brainattr import masking as M
    from brainattr import pipeline
    from brainattr.encoding import encode_subjects

    ds, kw = _subject(plain_stimulus), {"inner_folds": 2, "progress": False}
    settings = A.AttributionSettings(tr_features="lanczos")
    tables, cost = pipeline.condition_tables(tiny_lm, [ds], 12, settings=settings, n_trs=2, inner_folds=2)
    layer = cost["layer"]
    lz, = encode_subjects(tiny_lm, [ds], layer, context=12, tr_features="lanczos", **kw)
    av, = encode_subjects(tiny_lm, [ds], layer, context=12, **kw)
    assert cost["language_r"] == pytest.approx(lz.scores.mean())
    assert cost["language_r"] != pytest.approx(av.scores.mean())
    direct = pipeline.attribute_layers(tiny_lm, [ds], [layer], settings.replace(context=12), n_trs=2, fold=None,
                                       inner_folds=2, progress=False)
    pd.testing.assert_frame_equal(tables.drop(columns="condition"), direct)
    np.testing.assert_array_equal(np.unique(tables.tr), A.held_out_trs(lz, None, 2))     # default: every fold's
    fold0, _ = pipeline.condition_tables(tiny_lm, [ds], 12, settings=settings, n_trs=2, inner_folds=2, fold=0)
    np.testing.assert_array_equal(np.unique(fold0.tr), A.held_out_trs(lz, 0, 2))

    seen, real = [], M.evaluate_variants

    def evaluate_variants(*args, **kwargs):
        seen.append(kwargs.get("tr_features"))
        return real(*args, **kwargs)

    monkeypatch.setattr(M, "evaluate_variants", evaluate_variants)
    summary, again, _ = pipeline.masking_at_context(tiny_lm, ds, context=12, stride=16, n_trs=2, signed=False,
                                                    inner_folds=2, n_boot=10, tr_features="lanczos")
    pd.testing.assert_frame_equal(again, tables)
    assert seen == ["lanczos"] and set(summary.share) == {0.01}

    ch = pipeline.ChapterTables(data=[ds], lm=tiny_lm, groups={"middle": layer}, tables=tables, inner_folds=2,
                                settings=A.AttributionSettings(context=12, tr_features="lanczos"), n_trs=2)
    np.testing.assert_array_equal(ch.encodings(layer)[0].weights, lz.weights)

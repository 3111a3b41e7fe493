"""Tests for brainattr.encoding on tiny synthetic arrays."""
import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.linear_model import Ridge

from brainattr.schema import DataError
from brainattr.encoding import EncodingResult, fit_encoding
from brainattr.metrics import pearson_r
from brainattr.trs import make_delayed, run_splits, trim_mask, zscore_runs


def planted(n_runs=4, run_len=90, H=8, n_signal=6, n_noise=6, delays=(1, 2, 3, 4), noise=0.5, seed=0):
    """Features, responses and runs with a linear map from delayed z-scored features to signal voxels."""
    rng = np.random.default_rng(seed)
    runs = np.repeat(np.arange(n_runs), run_len)
    X = (3.0 + 2.0 * rng.standard_normal((runs.size, H))).astype(np.float32)
    Xd = make_delayed(zscore_runs(X, runs)[0], runs, delays)
    W = rng.standard_normal((Xd.shape[1], n_signal)) / np.sqrt(Xd.shape[1])
    signal = Xd @ W
    signal /= signal.std(axis=0)
    Y = np.concatenate([signal + noise * rng.standard_normal(signal.shape),
                        rng.standard_normal((runs.size, n_noise))], axis=1)
    return X, (10.0 + 2.0 * Y).astype(np.float32), runs


@pytest.fixture(scope="module")
def fitted():
    X, Y, runs = planted()
    res = fit_encoding(X, Y, runs, trim=(2, 3), gap=3, alphas=np.logspace(-3, 6, 10), inner_folds=5,
                       progress=False)
    return X, Y, runs, res


# ---------------------------------------------------------------- himalaya agrees with sklearn
def test_himalaya_kernel_ridge_matches_sklearn():
    from himalaya.kernel_ridge import KernelRidge

    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((30, 50)), rng.standard_normal((30, 4)) + 3.0
    X_test = rng.standard_normal((7, 50))
    alpha = 3.0
    ref = Ridge(alpha=alpha, fit_intercept=True).fit(X, Y)
    kr = KernelRidge(alpha=alpha, kernel="linear", fit_intercept=True).fit(X, Y)
    np.testing.assert_allclose(kr.get_primal_coef(), ref.coef_.T, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(kr.intercept_, ref.intercept_, rtol=1e-4)
    np.testing.assert_allclose(kr.predict(X_test), ref.predict(X_test), rtol=1e-4, atol=1e-8)


def test_kernel_ridge_cv_single_alpha_primal_matches_sklearn():
    from himalaya.kernel_ridge import KernelRidgeCV
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((40, 60)), rng.standard_normal((40, 5)) - 1.0
    alpha = 10.0
    ref = Ridge(alpha=alpha, fit_intercept=True).fit(X, Y)
    cv = KernelRidgeCV(alphas=[alpha], kernel="linear", fit_intercept=True, cv=KFold(4, shuffle=False),
                       warn=False).fit(X, Y)
    np.testing.assert_allclose(cv.best_alphas_, alpha)
    np.testing.assert_allclose(cv.get_primal_coef(), ref.coef_.T, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(cv.intercept_, ref.intercept_, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(X @ cv.get_primal_coef() + cv.intercept_, ref.predict(X), rtol=1e-4, atol=1e-8)


def test_pipeline_weights_match_sklearn_on_one_fold():
    """With a one-alpha grid, each fold's weights are sklearn Ridge on that fold's training rows."""
    X, Y, runs = planted(n_runs=3, run_len=40, H=5, seed=3)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    res = fit_encoding(X, Y, runs, trim=(4, 2), gap=2, alphas=[5.0], inner_folds=3, progress=False)
    keep = trim_mask(runs, (4, 2))
    Xk = make_delayed(zscore_runs(X, runs)[0], runs, (1, 2, 3, 4))[keep]
    Yk = zscore_runs(Y[keep], runs[keep])[0]
    for k, (train, _) in enumerate(run_splits(runs, keep, gap=2)):
        ref = Ridge(alpha=5.0).fit(Xk[train], Yk[train])
        np.testing.assert_allclose(res.weights[k], ref.coef_.T, rtol=2e-3, atol=1e-5)
        np.testing.assert_allclose(res.intercepts[k], ref.intercept_, rtol=2e-3, atol=1e-5)


# ---------------------------------------------------------------- pearson_r
def test_pearson_r_matches_scipy_and_handles_constant():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    b[:, 1] += 2 * a[:, 1]
    r = pearson_r(a, b)
    np.testing.assert_allclose(r, [pearsonr(a[:, j], b[:, j])[0] for j in range(3)], rtol=1e-10)
    b[:, 2] = 7.0
    assert pearson_r(a, b)[2] == 0.0
    assert np.isclose(pearson_r(a[:, 0], b[:, 0]), r[0])
    with pytest.raises(ValueError, match="shape"):
        pearson_r(a, b[:10])


# ---------------------------------------------------------------- run_splits
def test_run_splits_leave_one_run_out_with_gap():
    runs = np.repeat([0, 1, 2, 3], [30, 25, 40, 35])
    keep = trim_mask(runs, (3, 2))
    kept_runs = runs[keep]
    splits = run_splits(runs, keep, gap=5)
    assert len(splits) == 4
    tested = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(tested), np.arange(keep.sum()))  # every kept row tested once
    for k, (train, test) in enumerate(splits):
        assert set(kept_runs[test]) == {k}
        assert np.intersect1d(train, test).size == 0
        # no training row within 5 rows of the test block, and everything else trains
        dist = np.minimum(np.abs(train - test[0]), np.abs(train - test[-1]))
        assert dist.min() > 5
        expected = np.setdiff1d(np.arange(keep.sum()), np.arange(test[0] - 5, test[-1] + 6))
        np.testing.assert_array_equal(train, expected)
    # gap=0: train is the complement of test
    for train, test in run_splits(runs, keep, gap=0):
        assert train.size + test.size == keep.sum()


def test_run_splits_errors():
    with pytest.raises(DataError, match="at least 2 runs"):
        run_splits(np.zeros(20, int))
    with pytest.raises(DataError, match="contiguous"):
        run_splits(np.array([0, 0, 1, 1, 0, 0]))


# ---------------------------------------------------------------- the fitted pipeline
def test_planted_signal_recovered(fitted):
    _, _, _, res = fitted
    assert res.scores.shape == (12,)
    assert res.scores[:6].min() > 0.6, res.scores
    assert np.abs(res.scores[6:]).max() < 0.2, res.scores
    assert abs(res.scores[6:].mean()) < 0.1
    assert res.fold_scores.shape == (4, 12)
    assert (res.fold_scores[:, :6] > 0.5).all()
    # noise voxels prefer heavy shrinkage, signal voxels lighter
    assert np.median(res.alphas[:, 6:]) > np.median(res.alphas[:, :6])


def test_result_shapes_and_bookkeeping(fitted):
    X, Y, runs, res = fitted
    n_kept = int(trim_mask(runs, (2, 3)).sum())
    assert res.weights.shape == (4, 4 * 8, 12) and res.weights.dtype == np.float32
    assert res.intercepts.shape == res.alphas.shape == (4, 12)
    assert res.predictions.shape == (n_kept, 12)
    assert res.feature_means.shape == res.feature_stds.shape == (4, 8)
    assert res.response_means.shape == (4, 12)
    assert res.delay_weights(1).shape == (4, 8, 12)
    np.testing.assert_array_equal(np.concatenate(res.test_trs), res.tr_index)
    for k, trs in enumerate(res.test_trs):
        assert all(res.fold_of(t) == k for t in trs)
        assert set(runs[trs]) == {res.runs[k]}
    with pytest.raises(ValueError, match="trimmed"):
        res.fold_of(0)


def test_predict_tr_equals_heldout_predictions(fitted):
    """The attribution head's computation reproduces the pipeline's held-out predictions."""
    X, Y, runs, res = fitted
    for row, tr in enumerate(res.tr_index):
        np.testing.assert_allclose(res.predict_tr(tr, X), res.predictions[row], rtol=1e-4, atol=1e-5)
    # trim=(2, 3) < max delay: the first kept TR of a run reads only 2 TRs of its own run
    first = res.tr_index[np.searchsorted(runs[res.tr_index], 1)]
    assert list(res.source_trs(first)) == [first - 1, first - 2, -1, -1]
    # measured_tr is the z-scored response of the kept TRs
    Yz = zscore_runs(Y[res.keep], runs[res.keep])[0]
    for row in (0, 50, len(res.tr_index) - 1):
        np.testing.assert_allclose(res.measured_tr(res.tr_index[row], Y), Yz[row], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pearson_r(Yz, res.predictions), res.scores, atol=1e-6)


def test_save_load_roundtrip(fitted, tmp_path):
    X, _, _, res = fitted
    path = tmp_path / "enc.npz"
    res.save(path)
    back = EncodingResult.load(path)
    assert back.delays == res.delays and back.trim == res.trim and back.gap == res.gap
    assert back.score == res.score
    for name in ("weights", "intercepts", "alphas", "predictions", "scores", "keep", "tr_index", "runs",
                 "feature_means", "response_stds", "alpha_grid"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert len(back.test_trs) == len(res.test_trs)
    for a, b in zip(back.test_trs, res.test_trs):
        np.testing.assert_array_equal(a, b)
    tr = res.tr_index[10]
    np.testing.assert_array_equal(back.predict_tr(tr, X), res.predict_tr(tr, X))


def test_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINATTR_CACHE", str(tmp_path))
    X, Y, runs = planted(n_runs=2, run_len=40, H=4, n_signal=2, n_noise=1)
    kw = dict(trim=(2, 2), gap=2, alphas=[1.0, 100.0], inner_folds=3, progress=False)
    first = fit_encoding(X, Y, runs, cache={"model": "toy", "layer": 1}, **kw)
    files = list((tmp_path / "encoding").glob("*.npz"))
    assert len(files) == 1
    again = fit_encoding(X, Y, runs, cache={"model": "toy", "layer": 1}, **kw)
    np.testing.assert_array_equal(again.weights, first.weights)
    fit_encoding(X, Y + 1.0, runs, cache={"model": "toy", "layer": 1}, **kw)  # other data: other key
    assert len(list((tmp_path / "encoding").glob("*.npz"))) == 2


def test_backend_restored():
    from himalaya.backend import get_backend, set_backend

    set_backend("numpy")
    X, Y, runs = planted(n_runs=2, run_len=30, H=3, n_signal=1, n_noise=1)
    fit_encoding(X, Y, runs, trim=(1, 1), gap=1, alphas=[1.0], inner_folds=2, backend="auto", progress=False)
    assert get_backend().name == "numpy"


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("case, match", [
    ("length", "length mismatch"),
    ("nan_features", "NaN"),
    ("nan_responses", "drop_bad_voxels"),
    ("one_run", "at least 2 runs"),
    ("features_3d", "one layer"),
    ("short_runs", "too few to trim"),
])
def test_bad_input_messages(case, match):
    X, Y, runs = planted(n_runs=2, run_len=40, H=3, n_signal=1, n_noise=1)
    if case == "length":
        Y = Y[:-1]
    elif case == "nan_features":
        X = X.copy()
        X[5, 1] = np.nan
    elif case == "nan_responses":
        Y = Y.copy()
        Y[3, 0] = np.nan
    elif case == "one_run":
        runs = np.zeros_like(runs)
    elif case == "features_3d":
        X = np.stack([X, X])
    elif case == "short_runs":
        pass
    trim = (30, 15) if case == "short_runs" else (2, 2)
    with pytest.raises(DataError, match=match):
        fit_encoding(X, Y, runs, trim=trim, alphas=[1.0], inner_folds=2, progress=False)


def test_kernel_and_primal_solvers_agree_when_more_trs_than_features():
    """n_train > n_features: both solvers give the same model (float32 kernel would not: tiny alphas
    amplify round-off in the kernel's null space, hence float64 on CPU and the primal solver by default)."""
    X, Y, runs = planted(n_runs=3, run_len=60, H=6, n_signal=3, n_noise=2, seed=5)
    kw = dict(trim=(3, 3), gap=2, alphas=np.logspace(-3, 5, 9), inner_folds=4, progress=False, dtype="float64")
    kern = fit_encoding(X, Y, runs, solver="kernel", **kw)
    prim = fit_encoding(X, Y, runs, solver="primal", **kw)
    np.testing.assert_array_equal(kern.alphas, prim.alphas)
    np.testing.assert_allclose(kern.weights, prim.weights, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(kern.scores, prim.scores, atol=1e-5)


# ---------------------------------------------------------------- backends
@pytest.mark.parametrize("solver, H", [("primal", 8), ("kernel", 100)])
def test_torch_backend_matches_numpy(solver, H):
    """himalaya's torch backend (float32; on CPU here, torch_cuda on a GPU) gives numpy's (float64) fit."""
    pytest.importorskip("torch")
    X, Y, runs = planted(H=H, seed=1)
    kw = dict(trim=(2, 3), gap=3, alphas=np.logspace(-1, 5, 7), inner_folds=5, progress=False, solver=solver)
    ref = fit_encoding(X, Y, runs, backend="numpy", **kw)
    got = fit_encoding(X, Y, runs, backend="torch", **kw)
    assert got.weights.dtype == np.float32
    np.testing.assert_allclose(got.alphas, ref.alphas, rtol=1e-5)             # same penalty for every voxel
    np.testing.assert_allclose(got.weights, ref.weights, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got.predictions, ref.predictions, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)


def test_auto_backend_is_numpy_on_cpu_with_unchanged_cache_keys(tmp_path, monkeypatch):
    from brainattr.encoding import resolve_backend

    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend() == "numpy" and resolve_backend("torch") == "torch"
    monkeypatch.setenv("BRAINATTR_CACHE", str(tmp_path))
    X, Y, runs = planted(n_runs=2, run_len=40, H=4, n_signal=2, n_noise=1)
    kw = dict(trim=(2, 2), gap=2, alphas=[1.0, 100.0], inner_folds=3, progress=False, cache={"model": "toy"})
    default = fit_encoding(X, Y, runs, **kw)                                # "auto" = numpy on CPU
    assert len(list((tmp_path / "encoding").glob("*.npz"))) == 1
    numpy = fit_encoding(X, Y, runs, backend="numpy", **kw)                 # same key: a cache hit
    np.testing.assert_array_equal(numpy.weights, default.weights)
    assert len(list((tmp_path / "encoding").glob("*.npz"))) == 1
    fit_encoding(X, Y, runs, backend="torch", **kw)                          # float32 fits are cached apart
    assert len(list((tmp_path / "encoding").glob("*.npz"))) == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend("auto") == "torch_cuda"

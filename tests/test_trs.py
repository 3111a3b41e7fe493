"""brainattr.trs: TR averaging, z-scoring, delays, trimming on tiny arrays."""
import numpy as np
import pytest

from brainattr import trs as T


def test_tr_average_zscore_delay_trim_on_tiny_arrays():
    emb = np.arange(12, dtype=float).reshape(6, 2)
    per_tr = T.tr_average(emb, np.array([0, 0, 1, -1, 3, 3]), 4)
    np.testing.assert_allclose(per_tr, [[1, 2], [4, 5], [0, 0], [9, 10]])

    runs = np.array([0, 0, 0, 1, 1, 1])
    X = np.array([[1.0], [2.0], [3.0], [10.0], [10.0], [13.0]])
    Xz, means, stds = T.zscore_runs(X, runs)
    np.testing.assert_allclose(Xz[:3, 0], [-1.2247449, 0, 1.2247449], rtol=1e-6)
    np.testing.assert_allclose(means[:, 0], [2.0, 11.0])

    D = T.make_delayed(X, runs, delays=(1, 2))
    np.testing.assert_array_equal(D[:, 0], [0, 1, 2, 0, 10, 10])  # delay 1, never crossing runs
    np.testing.assert_array_equal(D[:, 1], [0, 0, 1, 0, 0, 10])
    W = np.arange(8).reshape(4, 2)
    np.testing.assert_array_equal(T.split_by_delay(W, 2)[1], W[2:])

    keep = T.trim_mask(np.repeat([0, 1], 10), trim=(2, 3))
    np.testing.assert_array_equal(np.flatnonzero(keep), [2, 3, 4, 5, 6, 12, 13, 14, 15, 16])
    with pytest.raises(ValueError, match="lower `trim`"):
        T.trim_mask(np.zeros(5, int), trim=(3, 3))

"""Scores on responses (brainattr.metrics): the noise ceiling from repeats."""
import numpy as np
import pytest

from brainattr.metrics import noise_ceiling
from brainattr.schema import DataError


def test_noise_ceiling_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    reps = rng.standard_normal((3, 6, 2))
    z = (reps - reps.mean(1, keepdims=True)) / reps.std(1, keepdims=True)
    for v in range(2):
        mean_var = np.mean([np.var(z[r, :, v], ddof=1) for r in range(3)])
        var_mean = np.var(z[:, :, v].mean(0), ddof=1)
        ev = var_mean / mean_var
        assert noise_ceiling(reps)[v] == pytest.approx(ev - (1 - ev) / 2)
        assert noise_ceiling(reps, bias_correction=False)[v] == pytest.approx(ev)


def test_noise_ceiling_is_one_for_identical_repeats_and_near_zero_for_noise():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((1, 3000, 4))
    np.testing.assert_allclose(noise_ceiling(np.repeat(signal, 2, axis=0)), 1.0)
    np.testing.assert_allclose(noise_ceiling(np.repeat(signal, 2, axis=0) * [[[1]], [[3]]]), 1.0)
    assert np.abs(noise_ceiling(rng.standard_normal((2, 3000, 4)))).max() < 0.1
    half = signal + rng.standard_normal((2, 3000, 4))  # signal variance = noise variance: explainable 0.5
    np.testing.assert_allclose(noise_ceiling(half), 0.5, atol=0.06)
    with pytest.raises(DataError, match="n_repeats >= 2"):
        noise_ceiling(signal)

import numpy as np
import pytest
import torch

from brainattr import features as F
from brainattr.lm import make_tiny_model, special_prefix, word_token_spans

pytestmark = pytest.mark.medium  # tiny language models (see conftest.py)


def test_fast_and_exact_modes_agree_where_windows_coincide(tiny_lm, small_stimulus):
    words = small_stimulus.words[:200]
    for pooling in ("last", "mean"):
        fast = F.extract_word_embeddings(tiny_lm, words, [0, 2, 4], context=40, pooling=pooling, mode="fast",
                                         stride=16, progress=False)
        exact = F.extract_word_embeddings(tiny_lm, words, [0, 2, 4], context=40, pooling=pooling, mode="exact",
                                          progress=False)
        # words 0..40 are read from the start of the text in both modes
        np.testing.assert_allclose(fast[:, :41], exact[:, :41], atol=1e-5)
        # layer 0 has no context at all
        np.testing.assert_allclose(fast[0], exact[0], atol=1e-6)
        # deeper layers differ later on: fast mode reads up to 15 more words of context
        assert np.abs(fast[2, 100:] - exact[2, 100:]).max() > 1e-4


def test_exact_mode_matches_a_direct_forward_over_each_window(tiny_lm, small_stimulus):
    words = small_stimulus.words[:60]
    ids, spans = word_token_spans(words, tiny_lm.tokenizer)
    out = F.extract_word_embeddings(tiny_lm, words, [3], context=10, pooling="mean", mode="exact", progress=False)
    i = 45
    # the window starts with the model's start token (this tokenizer adds no BOS), as every window does
    window = torch.as_tensor(np.concatenate([special_prefix(tiny_lm.tokenizer), ids[spans[i - 10, 0]:spans[i, 1]]]))[None]
    hs = tiny_lm.model(window, output_hidden_states=True).hidden_states[3][0]
    n = spans[i, 1] - spans[i, 0]
    np.testing.assert_allclose(out[0, i], hs[-n:].mean(0).detach().numpy(), atol=1e-5)


def test_bad_layer_pooling_and_context_are_clear_errors(tiny_lm):
    words = ["a", "b", "c"]
    with pytest.raises(ValueError, match="valid layers are 0 .* to 4"):
        F.extract_word_embeddings(tiny_lm, words, [5], progress=False)
    with pytest.raises(ValueError, match="unknown pooling"):
        F.extract_word_embeddings(tiny_lm, words, [1], pooling="max", progress=False)
    small = make_tiny_model()
    small.max_positions = 4
    with pytest.raises(ValueError, match="accepts at most 4 positions; lower `context`"):
        F.extract_word_embeddings(small, ["word"] * 30, [1], context=20, progress=False)


def test_tr_features_are_cached_per_layer(tiny_lm, small_stimulus):
    first = F.stimulus_tr_features(tiny_lm, small_stimulus, [1, 2], context=20, progress=False)
    assert first[1].shape == (small_stimulus.n_trs, tiny_lm.hidden_size)
    # a second call with one more layer computes only the missing one and returns identical arrays
    again = F.stimulus_tr_features(tiny_lm, small_stimulus, [2, 3], context=20, progress=False)
    np.testing.assert_array_equal(again[2], first[2])
    assert again[3].shape == first[2].shape

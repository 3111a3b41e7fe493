import numpy as np
import pytest
import torch

from brainattr import features as F
from brainattr.models import make_tiny_model


@pytest.mark.parametrize("kind, marker", [("bytelevel", "Ġ"), ("metaspace", "▁")])
def test_word_token_spans_follow_offsets_for_both_tokenizer_families(kind, marker):
    tok = make_tiny_model(tokenizer=kind).tokenizer
    words = ["It", "is", "a", "truth", "universally", "acknowledged,", "that", "Mr.", "Bennet"]
    ids, spans = F.word_token_spans(words, tok)
    pieces = tok.convert_ids_to_tokens(ids.tolist())
    assert any(p.startswith(marker) for p in pieces)
    assert spans[0, 0] == 0 and spans[-1, 1] == len(ids)
    np.testing.assert_array_equal(spans[1:, 0], spans[:-1, 1])  # contiguous, every token owned once
    for w, (a, b) in zip(words, spans):
        text = tok.convert_tokens_to_string(pieces[a:b]).strip()
        assert text == w
        # only the first token of a word may carry the word-start marker
        assert not any(p.startswith(marker) for p in pieces[a + 1:b])


def test_empty_word_is_an_error(tiny_lm):
    with pytest.raises(ValueError, match="got no token"):
        F.word_token_spans(["a", "", "b"], tiny_lm.tokenizer)


def test_layer_states_match_hf_hidden_states_and_skip_deeper_blocks(tiny_lm):
    ids = torch.arange(5, 40)[None]
    ref = tiny_lm.model(ids, output_hidden_states=True).hidden_states
    calls = []
    last = tiny_lm.model.model.layers[-1].register_forward_hook(lambda *a: calls.append(1))
    try:
        got = F.layer_states(tiny_lm.model, [0, 1, 2], input_ids=ids)
    finally:
        last.remove()
    for layer in (0, 1, 2):
        torch.testing.assert_close(got[layer], ref[layer])
    assert not calls  # block 4 never ran


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
    ids, spans = F.word_token_spans(words, tiny_lm.tokenizer)
    out = F.extract_word_embeddings(tiny_lm, words, [3], context=10, pooling="mean", mode="exact", progress=False)
    i = 45
    window = torch.as_tensor(ids[spans[i - 10, 0]:spans[i, 1]])[None]
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


def test_tr_average_zscore_delay_trim_on_tiny_arrays():
    emb = np.arange(12, dtype=float).reshape(6, 2)
    per_tr = F.tr_average(emb, np.array([0, 0, 1, -1, 3, 3]), 4)
    np.testing.assert_allclose(per_tr, [[1, 2], [4, 5], [0, 0], [9, 10]])

    runs = np.array([0, 0, 0, 1, 1, 1])
    X = np.array([[1.0], [2.0], [3.0], [10.0], [10.0], [13.0]])
    Xz, means, stds = F.zscore_runs(X, runs)
    np.testing.assert_allclose(Xz[:3, 0], [-1.2247449, 0, 1.2247449], rtol=1e-6)
    np.testing.assert_allclose(means[:, 0], [2.0, 11.0])

    D = F.make_delayed(X, runs, delays=(1, 2))
    np.testing.assert_array_equal(D[:, 0], [0, 1, 2, 0, 10, 10])  # delay 1, never crossing runs
    np.testing.assert_array_equal(D[:, 1], [0, 0, 1, 0, 0, 10])
    W = np.arange(8).reshape(4, 2)
    np.testing.assert_array_equal(F.split_by_delay(W, 2)[1], W[2:])

    keep = F.trim_mask(np.repeat([0, 1], 10), trim=(2, 3))
    np.testing.assert_array_equal(np.flatnonzero(keep), [2, 3, 4, 5, 6, 12, 13, 14, 15, 16])
    with pytest.raises(ValueError, match="lower `trim`"):
        F.trim_mask(np.zeros(5, int), trim=(3, 3))


def test_tr_features_are_cached_per_layer(tiny_lm, small_stimulus):
    first = F.stimulus_tr_features(tiny_lm, small_stimulus, [1, 2], context=20, progress=False)
    assert first[1].shape == (small_stimulus.n_trs, tiny_lm.hidden_size)
    # a second call with one more layer computes only the missing one and returns identical arrays
    again = F.stimulus_tr_features(tiny_lm, small_stimulus, [2, 3], context=20, progress=False)
    np.testing.assert_array_equal(again[2], first[2])
    assert again[3].shape == first[2].shape

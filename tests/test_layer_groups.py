"""encoding.best_layers_by_group: thirds of the transformer blocks 1..n_layers, never the embedding layer."""
import numpy as np

from brainattr.encoding import best_layers_by_group, layer_grid


def test_groups_are_thirds_of_the_blocks_not_the_embeddings():
    n = 30
    rising = {layer: float(layer) for layer in range(n + 1)}
    falling = {layer: -float(layer) for layer in range(n + 1)}
    # blocks 1..30 in thirds: 1-10, 11-20, 21-30
    assert best_layers_by_group(rising, n) == {"early": 10, "middle": 20, "late": 30}
    assert best_layers_by_group(falling, n) == {"early": 1, "middle": 11, "late": 21}
    # the paper's models: every block is in exactly one group, layer 0 in none
    for n in (16, 18, 28, 38, 48):
        edges = np.linspace(1, n + 1, 4)
        for layer in range(1, n + 1):
            only = {layer: 1.0}
            got = best_layers_by_group(only, n)
            assert list(got.values()) == [layer]
            assert list(got) == [("early", "middle", "late")[int(np.searchsorted(edges, layer, side="right")) - 1]]
        assert best_layers_by_group({0: 1.0}, n) == {}


def test_the_embedding_layer_is_never_early_even_when_it_scores_best():
    """The check can fail: the old rule (thirds of 0..n) picked layer 0 here."""
    scores = {0: 0.9, 5: 0.1, 10: 0.2, 15: 0.3, 20: 0.1, 25: 0.2, 30: 0.0}
    best = best_layers_by_group(scores, 30)
    assert best == {"early": 10, "middle": 15, "late": 25}
    assert 0 not in best.values()
    # asked for by name it comes first, as its own group; the others do not move
    named = best_layers_by_group(scores, 30, embedding_layer=True)
    assert named == {"embeddings": 0, "early": 10, "middle": 15, "late": 25}
    assert list(named) == ["embeddings", "early", "middle", "late"]
    # not scored: not added
    assert "embeddings" not in best_layers_by_group({5: 1.0}, 30, embedding_layer=True)


def test_builtin_run_choice_is_unchanged():
    """Chapter 2's built-in run (SmolLM2-135M, 30 blocks, every 5th layer; the book's language-ROI means):
    the early layer stays 5, middle 20 and late 25, as with the old rule."""
    lang = {0: 0.0537, 5: 0.0757, 10: 0.0704, 15: 0.0716, 20: 0.0768, 25: 0.0728, 30: 0.0685}
    assert sorted(lang) == layer_grid(30, 5)
    assert best_layers_by_group(lang, 30) == {"early": 5, "middle": 20, "late": 25}


def test_keys_become_ints_and_empty_groups_are_left_out():
    scores = {np.int64(2): 0.1, np.int64(4): 0.2, np.int64(0): 0.5}
    best = best_layers_by_group(scores, 4)  # blocks 1-2, 3, 4: the middle third was not scored
    assert best == {"early": 2, "late": 4}
    assert all(type(v) is int for v in best.values())
    assert best_layers_by_group({1: 0.1, 3: 0.2}, 4, groups=("first", "second")) == {"first": 1, "second": 3}

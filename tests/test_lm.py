"""brainattr.lm: loading by name, tiny and shape-true models, precision, layer states and word/token spans."""
import os

import numpy as np
import pytest
import torch

from brainattr import lm as L
from brainattr.lm import ModelNotAvailableError, load_model, make_tiny_model

pytestmark = pytest.mark.medium  # tiny language models (see conftest.py)


def test_tiny_model_is_frozen_and_describes_itself(tiny_lm):
    assert tiny_lm.n_layers == 4 and tiny_lm.hidden_size == 32
    assert not any(p.requires_grad for p in tiny_lm.model.parameters())
    assert tiny_lm.check_layer(4) == 4
    with pytest.raises(ValueError, match="valid layers are 0 \\(embeddings\\) to 4"):
        tiny_lm.check_layer(7)


def test_tiny_model_is_deterministic():
    a, b = make_tiny_model(seed=3), make_tiny_model(seed=3)
    ids = torch.arange(3, 20)[None]
    torch.testing.assert_close(a.model(ids).logits, b.model(ids).logits)


def test_unknown_model_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="huggingface-cli download meta-llama/Llama-3.2-1B"):
        load_model("meta-llama/Llama-3.2-1B")
    with pytest.raises(ModelNotAvailableError, match="the folder has no loadable model"):
        load_model(str(tmp_path))


@pytest.mark.slow
def test_builtin_smollm2_loads_from_the_wheel_and_is_pretrained():
    """The real default model: de-quantized once (~25 s), then cached as safetensors."""
    lm = load_model("smollm2-135m")
    assert (lm.n_layers, lm.hidden_size) == (30, 576)
    tok = lm.tokenizer
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        nxt = lm.model(ids).logits[0, -1].argmax()
    assert tok.decode(nxt).strip() == "Paris"
    assert os.path.exists(os.path.join(os.environ["BRAINATTR_CACHE"], "models", "smollm2-135m", "config.json"))


def test_a_builtin_conversion_parses_its_gguf_file_once():
    """transformers opens the GGUF three times (config, tokenizer, weights); inside the conversion all three
    get one reader (Gemma-3's 262k-token vocabulary took ~15 s per parse), and the class is restored after."""
    import gguf
    from brainattr.lm.builtin import _gguf_location, _one_gguf_reader

    folder, name = _gguf_location("smollm2-135m")
    real = gguf.GGUFReader
    with _one_gguf_reader():
        first, again = gguf.GGUFReader(folder / name), gguf.GGUFReader(str(folder / name))
        assert first is again and isinstance(first, real)
    assert gguf.GGUFReader is real and real(folder / name) is not first


# ---------------------------------------------------------------- tiny families, the paper's models, slow kernels
def test_tiny_models_of_every_family_load_by_name():
    from brainattr.lm import TINY_ARCHS

    lm = load_model("tiny-random-qwen2")
    assert lm.name == "tiny-random-qwen2" and type(lm.model).__name__ == "Qwen2ForCausalLM"
    assert "gemma3" in TINY_ARCHS and "mamba" in TINY_ARCHS
    with pytest.raises(ValueError, match="unknown tiny architecture 'gpt5'; available: llama, falcon"):
        make_tiny_model("gpt5")
    # non-default settings show in the name, which keys the feature caches
    assert make_tiny_model("mamba", n_layers=2, seed=1).name == "tiny-random-mamba-L2-seed1"


def test_tiny_tokenizers_are_fresh_objects_with_the_familys_bos():
    from brainattr.lm import train_tiny_tokenizer

    a, b = train_tiny_tokenizer("metaspace", add_bos=True), train_tiny_tokenizer("metaspace")
    assert a("word")["input_ids"][0] == a.bos_token_id and b("word")["input_ids"][0] != b.bos_token_id
    a.pad_token = "<unk>"
    assert b.pad_token == "</s>"                                   # the cache hands out copies
    assert a.get_vocab() == b.get_vocab()


def test_state_space_models_warn_about_their_slow_path(monkeypatch):
    import warnings

    from brainattr.lm import load as load_module

    with pytest.warns(L.SlowKernelWarning, match=r"loop over tokens.*CUDA only.*27x to 147x"):
        L.load_model("tiny-random-mamba")
    with pytest.warns(L.SlowKernelWarning, match=r"\(zamba2\).*chunked.*about 2x"):
        L.load_model("tiny-random-zamba2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", L.SlowKernelWarning)
        L.load_model("tiny-random-gemma")                           # transformers: no warning
    assert L.missing_kernels("llama", "cuda") is None
    monkeypatch.setattr(load_module.importlib.util, "find_spec", lambda name: None)
    assert L.missing_kernels("mamba", "cuda") == "mamba_ssm and causal_conv1d are not installed"
    monkeypatch.setattr(load_module.importlib.util, "find_spec", lambda name: object())
    assert L.missing_kernels("mamba", "cuda") is None               # kernels present on a GPU: full speed
    assert "CUDA only" in L.missing_kernels("mamba", "cpu")


def test_paper_models_table():
    import yaml

    from brainattr.encoding import best_layers_by_group
    from brainattr.lm import PAPER_MODELS, TINY_ARCHS

    # the paper's Table 1 (all 2048 wide) and the Qwen2-1.5B control
    assert {k: (v["n_layers"], v["hidden_size"]) for k, v in PAPER_MODELS.items()} == {
        "tiiuae/Falcon3-1B-Base": (18, 2048), "google/gemma-2b": (18, 2048), "meta-llama/Llama-3.2-1B": (16, 2048),
        "state-spaces/mamba-1.4b-hf": (48, 2048), "Zyphra/Zamba2-1.2B": (38, 2048), "Qwen/Qwen2-1.5B": (28, 1536)}
    for name, facts in PAPER_MODELS.items():
        n = facts["n_layers"]
        groups = facts["layer_groups"]
        # the groups are the thirds best_layers_by_group picks from: best = last, then first, of each group
        rising = {layer: layer for layer in range(n + 1)}
        assert best_layers_by_group(rising, n) == {g: hi for g, (lo, hi) in groups.items()}
        falling = {layer: -layer for layer in range(n + 1)}
        assert best_layers_by_group(falling, n) == {g: lo for g, (lo, hi) in groups.items()}
        assert groups["early"][0] == 1 and groups["late"][1] == n  # blocks only: never the embeddings
        # each family has a tiny stand-in of the same architecture
        assert type(make_tiny_model(facts["tiny_arch"]).model).__name__ == facts["architecture"], name
        assert bool(facts["kernels"]) == (facts["family"] in ("mamba", "zamba2"))
        assert facts["tiny_arch"] in TINY_ARCHS
    # the paper profile of params.yml runs exactly these models
    with open(os.path.join(os.path.dirname(__file__), os.pardir, "params.yml")) as fh:
        params = yaml.safe_load(fh)
    # (a global `models`: chapter 2's sweep and chapters 4-6's panels, in one command)
    assert set(params["profiles"]["paper"]["global"]["models"]) == set(PAPER_MODELS)


# ---------------------------------------------------------------- shape-true random models (benchmarks)
def _block_params(cfg):
    """Parameters of one decoder block, by hand from a SHAPE_CONFIGS entry."""
    H = cfg["hidden_size"]
    if cfg["config_class"] == "MambaConfig":
        inner, rank, state, k = cfg["expand"] * H, cfg["time_step_rank"], cfg["state_size"], cfg["conv_kernel"]
        return (H * 2 * inner + inner * k + inner + inner * (rank + 2 * state) + rank * inner + inner
                + inner * state + inner + inner * H + H)    # in, conv (+bias), x, dt (+bias), A_log, D, out, norm
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", H // heads)
    attention = 2 * H * heads * hd + 2 * H * kv * hd + (heads * hd + 2 * kv * hd if cfg["config_class"] == "Qwen2Config"
                                                       else 0)
    return attention + 3 * H * cfg["intermediate_size"] + 2 * H   # q, o, k, v (+ Qwen2's biases), gated MLP, 2 norms


def test_shape_configs_agree_with_the_paper_models_and_their_sizes():
    from brainattr.lm import PAPER_MODELS, SHAPE_CONFIGS, decoder_layers, shape_true_model

    # parameter counts of the real checkpoints, in billions as their model cards / hub pages round them
    published = {"meta-llama/Llama-3.2-1B": 1.24, "google/gemma-2b": 2.51, "Qwen/Qwen2-1.5B": 1.54,
                 "tiiuae/Falcon3-1B-Base": 1.67, "state-spaces/mamba-1.4b-hf": 1.37, "HuggingFaceTB/SmolLM2-135M": 0.13}
    assert set(SHAPE_CONFIGS) == (set(PAPER_MODELS) - {"Zyphra/Zamba2-1.2B"}) | {"HuggingFaceTB/SmolLM2-135M"}
    for hf_id, cfg in SHAPE_CONFIGS.items():
        lm = shape_true_model(hf_id, tokenizer_from="tiny-random", device="meta")   # shapes only: no memory
        facts = PAPER_MODELS.get(hf_id, dict(n_layers=30, hidden_size=576, max_positions=8192,
                                             architecture="LlamaForCausalLM"))
        assert (lm.n_layers, lm.hidden_size, lm.max_positions) == (
            facts["n_layers"], facts["hidden_size"], facts["max_positions"]), hf_id
        assert type(lm.model).__name__ == facts["architecture"], hf_id
        assert lm.name == "shape-" + hf_id.split("/")[1].lower() + "-tok-tiny-random"
        block = sum(p.numel() for p in decoder_layers(lm.model)[0].parameters())
        assert block == _block_params(cfg), hf_id
        embeddings = cfg["vocab_size"] * cfg["hidden_size"] * (1 if cfg["tie_word_embeddings"] else 2)
        total = sum(p.numel() for p in lm.model.parameters())
        assert total == embeddings + cfg["num_hidden_layers"] * block + cfg["hidden_size"], hf_id   # + final norm
        assert round(total / 1e9, 2) == published[hf_id], hf_id


def test_shape_true_model_builds_truncated_runs_and_loads_by_name():
    from brainattr.lm import SlowKernelWarning, shape_true_model

    lm = shape_true_model("smollm2-135m", tokenizer_from="tiny-random", n_layers=1)
    assert (lm.name, lm.n_layers, lm.hidden_size) == ("shape-smollm2-135m-L1-tok-tiny-random", 1, 576)
    assert lm.model.lm_head.weight is lm.model.model.embed_tokens.weight          # tied, as the checkpoint
    assert not any(p.requires_grad for p in lm.model.parameters())
    ids = torch.arange(3, 11)[None]                                                   # 8 tokens
    with torch.no_grad():
        logits = lm.model(ids).logits
    assert logits.shape == (1, 8, 49152) and torch.isfinite(logits).all() and logits.std() > 0
    again = load_model("shape-smollm2-135m-L1-tok-tiny-random")                     # the name loads it back
    torch.testing.assert_close(again.model.lm_head.weight, lm.model.lm_head.weight)  # seed 0 both times
    with pytest.warns(SlowKernelWarning):
        mamba = load_model("shape-mamba-1.4b-hf-L1-seed1-tok-tiny-random")
    with torch.no_grad():
        assert torch.isfinite(mamba.model(ids).logits).all()
    with pytest.raises(ValueError, match="n_layers must be an int from 1 to 16"):
        shape_true_model("meta-llama/Llama-3.2-1B", n_layers=17, device="meta")
    with pytest.raises(ValueError, match="no shape config for 'gpt5'; available: meta-llama/Llama-3.2-1B"):
        shape_true_model("gpt5")


def test_precision_names_dtypes_and_keeps_caches_apart():
    from brainattr.lm import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype(torch.float16) == torch.float16
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_dtype("half")
    lm = load_model("tiny-random", precision="bf16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert lm.name == "tiny-random-bf16"                      # its features and tables are cached apart
    assert load_model("tiny-random", precision="auto", device="cpu").name == "tiny-random"


# ---------------------------------------------------------------- word/token spans, layer states
@pytest.mark.parametrize("kind, marker", [("bytelevel", "Ġ"), ("metaspace", "▁")])
def test_word_token_spans_follow_offsets_for_both_tokenizer_families(kind, marker):
    tok = make_tiny_model(tokenizer=kind).tokenizer
    words = ["It", "is", "a", "truth", "universally", "acknowledged,", "that", "Mr.", "Bennet"]
    ids, spans = L.word_token_spans(words, tok)
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
        L.word_token_spans(["a", "", "b"], tiny_lm.tokenizer)


def test_layer_states_match_hf_hidden_states_and_skip_deeper_blocks(tiny_lm):
    ids = torch.arange(5, 40)[None]
    ref = tiny_lm.model(ids, output_hidden_states=True).hidden_states
    calls = []
    last = tiny_lm.model.model.layers[-1].register_forward_hook(lambda *a: calls.append(1))
    try:
        got = L.layer_states(tiny_lm.model, [0, 1, 2], input_ids=ids)
    finally:
        last.remove()
    for layer in (0, 1, 2):
        torch.testing.assert_close(got[layer], ref[layer])
    assert not calls  # block 4 never ran

import os

import pytest
import torch

from brainattr.models import ModelNotAvailableError, load_model, make_tiny_model


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


# ---------------------------------------------------------------- tiny families, the paper's models, slow kernels
def test_tiny_models_of_every_family_load_by_name():
    from brainattr.models import TINY_ARCHS

    lm = load_model("tiny-random-qwen2")
    assert lm.name == "tiny-random-qwen2" and type(lm.model).__name__ == "Qwen2ForCausalLM"
    assert "gemma3" in TINY_ARCHS and "mamba" in TINY_ARCHS
    with pytest.raises(ValueError, match="unknown tiny architecture 'gpt5'; available: llama, falcon"):
        make_tiny_model("gpt5")
    # non-default settings show in the name, which keys the feature caches
    assert make_tiny_model("mamba", n_layers=2, seed=1).name == "tiny-random-mamba-L2-seed1"


def test_tiny_tokenizers_are_fresh_objects_with_the_familys_bos():
    from brainattr.models import train_tiny_tokenizer

    a, b = train_tiny_tokenizer("metaspace", add_bos=True), train_tiny_tokenizer("metaspace")
    assert a("word")["input_ids"][0] == a.bos_token_id and b("word")["input_ids"][0] != b.bos_token_id
    a.pad_token = "<unk>"
    assert b.pad_token == "</s>"                                   # the cache hands out copies
    assert a.get_vocab() == b.get_vocab()


def test_state_space_models_warn_about_their_slow_path(monkeypatch):
    import warnings

    import brainattr.models as M

    with pytest.warns(M.SlowKernelWarning, match=r"loop over tokens.*CUDA only.*27x to 147x"):
        M.load_model("tiny-random-mamba")
    with pytest.warns(M.SlowKernelWarning, match=r"\(zamba2\).*chunked.*about 2x"):
        M.load_model("tiny-random-zamba2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", M.SlowKernelWarning)
        M.load_model("tiny-random-gemma")                           # transformers: no warning
    assert M.missing_kernels("llama", "cuda") is None
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name: None)
    assert M.missing_kernels("mamba", "cuda") == "mamba_ssm and causal_conv1d are not installed"
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name: object())
    assert M.missing_kernels("mamba", "cuda") is None               # kernels present on a GPU: full speed
    assert "CUDA only" in M.missing_kernels("mamba", "cpu")


def test_paper_models_table():
    import yaml

    from brainattr.encoding import best_layers_by_group
    from brainattr.models import PAPER_MODELS, TINY_ARCHS

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
        assert groups["early"][0] == 0 and groups["late"][1] == n
        # each family has a tiny stand-in of the same architecture
        assert type(make_tiny_model(facts["tiny_arch"]).model).__name__ == facts["architecture"], name
        assert bool(facts["kernels"]) == (facts["family"] in ("mamba", "zamba2"))
        assert facts["tiny_arch"] in TINY_ARCHS
    # the paper profile of params.yml runs exactly these models
    with open(os.path.join(os.path.dirname(__file__), os.pardir, "params.yml")) as fh:
        params = yaml.safe_load(fh)
    assert set(params["profiles"]["paper"]["notebooks"]["02_brain_alignment"]["models"]) == set(PAPER_MODELS)

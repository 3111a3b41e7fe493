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

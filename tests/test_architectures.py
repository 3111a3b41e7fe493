"""Every architecture family of the paper, as a tiny random-init model, through the whole pipeline.

The paper's models are Falcon3 (a Llama architecture), Gemma, Llama, Mamba and Zamba2, with Qwen2 as
a control; Gemma 2/3 (sliding windows, soft-capping) and the classic Falcon layout are covered too.
Each family is checked for: its layout (``decoder_layers``), hidden states that equal a full run and
never run deeper blocks, right padding that leaves real tokens untouched, word alignment and the BOS
prefix, feature extraction (fast vs exact), and the attribution targets and gradients (GxI equal to
captum's InputXGradient on a padded batch, the NWP loss equal to the model's own, finite differences).
"""
import copy
import dataclasses

import numpy as np
import pytest
import torch

from _gradcheck import assert_gradients_match_finite_differences
from brainattr import attribution as A
from brainattr import features as F
from brainattr.attribution.batch import TokenizedText, collate, make_instance
from brainattr.attribution.methods import gradient_x_input, ig_baseline_embeddings
from brainattr.attribution.targets import compute_targets, full_forward
from brainattr.encoding import fit_encoding
from brainattr.lm import TINY_ARCHS, decoder_layers, layer_states, make_tiny_model, special_prefix, tokenizer_prefix, word_token_spans
from brainattr.schema import Dataset

pytestmark = pytest.mark.medium  # tiny language models (see conftest.py)

ARCHS = list(TINY_ARCHS)
#: Class of each tiny model: the real checkpoints' architectures (PAPER_MODELS) among them.
CLASSES = {"llama": "LlamaForCausalLM", "falcon": "LlamaForCausalLM", "gemma": "GemmaForCausalLM",
           "gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM", "qwen2": "Qwen2ForCausalLM",
           "falcon-classic": "FalconForCausalLM", "mamba": "MambaForCausalLM", "zamba2": "Zamba2ForCausalLM"}
WITH_BOS = {"gemma", "gemma2", "gemma3", "zamba2"}
LAYER = 2

_MODELS = {}


def tiny(arch):
    """One tiny model per family for the whole module (built in well under a second each)."""
    if arch not in _MODELS:
        _MODELS[arch] = make_tiny_model(arch)
    return _MODELS[arch]


def _reference_states(model, ids):
    """Every layer from one full forward pass (no early exit): input of block 1, output of each block."""
    blocks = decoder_layers(model)
    ref = {}

    def pre(module, args, kwargs):
        ref[0] = args[0] if args else kwargs["hidden_states"]

    def post(index):
        def hook(module, args, output):  # transformer blocks return tuples, Mamba / Zamba2 blocks a tensor
            ref[index] = output if torch.is_tensor(output) else output[0]
        return hook

    handles = [blocks[0].register_forward_pre_hook(pre, with_kwargs=True)]
    handles += [b.register_forward_hook(post(i + 1)) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return ref, out


@pytest.mark.parametrize("arch", ARCHS)
def test_family_layout(arch):
    lm = tiny(arch)
    assert type(lm.model).__name__ == CLASSES[arch]
    assert lm.n_layers == len(decoder_layers(lm.model)) == 4 and lm.hidden_size == 32
    assert lm.name == ("tiny-random" if arch == "llama" else f"tiny-random-{arch}")
    assert (lm.max_positions is None) == (arch == "mamba")          # state-space models have no position limit
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert not lm.model.training


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_states_equal_a_full_run_and_skip_deeper_blocks(arch):
    lm = tiny(arch)
    ids = torch.arange(5, 45)[None]
    ref, out = _reference_states(lm.model, ids)
    hs = out.hidden_states
    # Hugging Face's hidden_states agree with our layer convention, except that Mamba's tuple starts
    # at the output of block 1 (no embeddings), so Mamba's index is shifted by one
    shift = 1 if arch == "mamba" else 0
    for layer in range(1 if shift else 0, lm.n_layers):
        torch.testing.assert_close(ref[layer], hs[layer - shift], rtol=0, atol=0)
    if arch.startswith("gemma"):  # layer 0 is the scaled embedding (sqrt(hidden) x the table row)
        emb = lm.model.get_input_embeddings().weight[ids]
        torch.testing.assert_close(ref[0], emb * lm.hidden_size ** 0.5)

    blocks = decoder_layers(lm.model)
    calls = [0] * lm.n_layers
    counters = [b.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
                for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            got = layer_states(lm.model, [0, 1, 2], input_ids=ids)
            assert calls == [1, 1, 0, 0]                               # blocks 3 and 4 never ran
            only0 = layer_states(lm.model, [0], input_ids=ids)
            assert calls == [1, 1, 0, 0]                               # layer 0 alone runs no block
            last = layer_states(lm.model, [lm.n_layers], input_ids=ids)
            assert calls == [2, 2, 1, 1]                               # ... and the counter does count
    finally:
        for h in counters:
            h.remove()
    for layer in (0, 1, 2):
        torch.testing.assert_close(got[layer], ref[layer], rtol=0, atol=0)
    torch.testing.assert_close(only0[0], ref[0], rtol=0, atol=0)
    torch.testing.assert_close(last[lm.n_layers], ref[lm.n_layers], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_right_padding_leaves_real_tokens_unchanged(arch):
    """A right-padded batch with its attention mask equals unpadded single runs (Mamba included)."""
    lm = tiny(arch)
    seqs = [torch.arange(5, 5 + n) for n in (23, 9, 16)]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), lm.tokenizer.pad_token_id)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :len(s)], mask[b, :len(s)] = s, 1
    layers = [0, LAYER, lm.n_layers]
    with torch.no_grad():
        batch = layer_states(lm.model, layers, input_ids=ids, attention_mask=mask)
        emb = lm.model.get_input_embeddings()(ids)
        x, final = full_forward(lm.model, LAYER, emb, mask)
        for b, s in enumerate(seqs):
            single = layer_states(lm.model, layers, input_ids=s[None])
            for layer in layers:
                torch.testing.assert_close(batch[layer][b, :len(s)], single[layer][0], rtol=1e-5, atol=1e-5)
            x1, final1 = full_forward(lm.model, LAYER, lm.model.get_input_embeddings()(s[None]), None)
            torch.testing.assert_close(x[b, :len(s)], x1[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(final[b, :len(s)], final1[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(x1, single[LAYER], rtol=1e-6, atol=1e-6)   # one layer convention


@pytest.mark.parametrize("arch", ARCHS)
def test_word_alignment_and_special_prefix(arch):
    lm = tiny(arch)
    tok = lm.tokenizer
    words = ["It", "is", "a", "truth", "universally", "acknowledged,", "that", "Mr.", "Bennet"]
    ids, spans = word_token_spans(words, tok)
    assert spans[0, 0] == 0 and spans[-1, 1] == len(ids)
    np.testing.assert_array_equal(spans[1:, 0], spans[:-1, 1])
    pieces = tok.convert_ids_to_tokens(ids.tolist())
    for w, (a, b) in zip(words, spans):
        assert tok.convert_tokens_to_string(pieces[a:b]).strip() == w
    own = tokenizer_prefix(tok)
    assert own == ([tok.bos_token_id] if arch in WITH_BOS else [])
    assert tok(" ".join(words))["input_ids"] == own + ids.tolist()
    # a model without a BOS reads every window after a fixed start token, never after nothing
    expected_start = tok.get_vocab().get("<|endoftext|>", tok.bos_token_id if tok.bos_token_id is not None
                                         else tok.eos_token_id)
    assert special_prefix(tok) == (own if arch in WITH_BOS else [expected_start])


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_and_exact_features(arch, small_stimulus):
    lm = tiny(arch)
    words = small_stimulus.words[:72]
    layers = [0, LAYER, lm.n_layers]
    C = 16
    fast = F.extract_word_embeddings(lm, words, layers, context=C, pooling="mean", mode="fast", stride=8,
                                     batch_size=3, progress=False)
    exact = F.extract_word_embeddings(lm, words, layers, context=C, pooling="mean", mode="exact", batch_size=12,
                                      progress=False)
    np.testing.assert_allclose(fast[:, :C + 1], exact[:, :C + 1], rtol=1e-4, atol=1e-5)   # same windows from word 0
    np.testing.assert_allclose(fast[0], exact[0], rtol=1e-5, atol=1e-6)                   # layer 0 has no context
    # deeper layers differ later on: fast mode reads up to 7 more words (well above rounding, ~1e-8;
    # the random Mamba2 blocks of Zamba2 forget within a few tokens, so look after its attention block)
    assert np.abs(fast[2, 2 * C:] - exact[2, 2 * C:]).max() > 1e-6
    # exact mode = one direct forward pass over each word's window (with the BOS prefix, if any)
    ids, spans = word_token_spans(words, lm.tokenizer)
    i = 60
    window = torch.as_tensor(special_prefix(lm.tokenizer) + ids[spans[i - C, 0]:spans[i, 1]].tolist())[None]
    ref, _ = _reference_states(lm.model, window)
    k = spans[i, 1] - spans[i, 0]
    np.testing.assert_allclose(exact[1, i], ref[LAYER][0, -k:].mean(0).numpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- attribution
@pytest.fixture(scope="module")
def encoded(small_stimulus):
    """An encoding model on random 32-wide features: the checks below take its folds, delays and intercepts."""
    stim = small_stimulus
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((stim.n_trs, 32)).astype(np.float32)
    V = 8
    Y = feats @ rng.standard_normal((32, V)) + rng.standard_normal((stim.n_trs, V))
    ds = Dataset(stimulus=stim, subject="sub-01", responses=Y, voxel_coords=np.zeros((V, 3)),
                 voxel_labels=np.array(["lang"] * 5 + ["control"] * 3), voxel_is_language=np.arange(V) < 5,
                 name="test")
    return ds, fit_encoding(feats, Y, stim.tr_runs, inner_folds=3, progress=False)


def _batch(lm, ds, enc, trs, context=12):
    """Instances of ``trs`` and a BA head whose feature z-scoring fits this model's layer-L states."""
    text = TokenizedText(lm, ds.stimulus)
    insts = [make_instance(text, A.tr_window(ds.stimulus, enc, t, context), "last", with_next=True) for t in trs]
    vox = A.voxel_mask("language", ds)
    h = enc.head(int(trs[0]))
    with torch.no_grad():
        states = layer_states(lm.model, [LAYER], input_ids=torch.as_tensor(text.token_ids[:150])[None])[LAYER][0]
    # random weights: the fit on random features is near zero for some folds (large ridge penalties)
    weights = np.random.default_rng(1).standard_normal(h["weights"][:, :, vox].shape) / 8
    head = A.BAHead(weights, h["intercept"][vox], states.mean(0).numpy(), states.std(0).numpy())
    measured = torch.as_tensor(np.stack([enc.measured_tr(t, ds.responses)[vox] for t in trs]), dtype=torch.float32)
    return insts, head, measured


@pytest.mark.parametrize("arch", ARCHS)
def test_nwp_target_is_the_models_own_cross_entropy(arch, encoded):
    """Checks the LM head as nwp_loss applies it (tied or not, Gemma 2/3's final soft-capping)."""
    lm = tiny(arch)
    ds, enc = encoded
    insts, _, _ = _batch(lm, ds, enc, enc.test_trs[0][[2, 7]])
    batch = collate(insts, lm.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        emb = lm.model.get_input_embeddings()(batch["ids"])
        got = compute_targets(lm, LAYER, None, emb, batch, None, ("nwp",))["nwp"]
        for b, inst in enumerate(insts):
            logits = lm.model(input_ids=torch.as_tensor(inst.ids)[None]).logits[0]
            q0, q1 = inst.nwp_range
            assert q1 > q0
            ref = torch.nn.functional.cross_entropy(logits[q0 - 1:q1 - 1], torch.as_tensor(inst.ids[q0:q1]))
            assert abs(float(got[b]) - float(ref)) < 1e-5, (float(got[b]), float(ref))


@pytest.mark.parametrize("arch", ARCHS)
def test_gxi_on_a_padded_batch_equals_captum_on_single_instances(arch, encoded):
    from captum.attr import InputXGradient

    lm = tiny(arch)
    ds, enc = encoded
    trs = enc.test_trs[1][[0, 4, 9]]
    tasks = ("ba", "nwp")
    insts, head, measured = _batch(lm, ds, enc, trs)
    assert len({len(i.ids) for i in insts}) > 1                      # the batch is padded
    batch = collate(insts, lm.tokenizer.pad_token_id, "cpu")
    ours, targets = gradient_x_input(lm, LAYER, head, batch, measured, tasks)
    for b, inst in enumerate(insts):
        single = collate([inst], lm.tokenizer.pad_token_id, "cpu")
        emb = lm.model.get_input_embeddings()(single["ids"]).detach()
        m = single["attr"][..., None].float()
        for task in tasks:
            def forward(e, task=task):
                return compute_targets(lm, LAYER, head, e, single, measured[b:b + 1], (task,))[task]
            with torch.no_grad():
                assert abs(float(forward(emb)) - float(targets[task][b])) <= 1e-5 * max(1.0, abs(float(forward(emb))))
            ref = (InputXGradient(forward).attribute(emb.clone().requires_grad_()) * m).sum(-1)[0].detach()
            got = ours[task][b, :len(inst.ids)].detach()
            assert float(ref.abs().max()) > 0
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
            assert not got[~single["attr"][0]].any()                    # BOS and next-word tokens: not attributed


@pytest.mark.parametrize("arch", ["mamba", "gemma2", "falcon-classic"])
def test_gradients_match_finite_differences(arch, encoded):
    ds, enc = encoded
    base = tiny(arch)
    lm = dataclasses.replace(base, model=copy.deepcopy(base.model).double())
    trs = enc.test_trs[3][:2]
    insts, head, measured = _batch(lm, ds, enc, trs, context=6)
    batch = collate(insts, lm.tokenizer.pad_token_id, "cpu")
    head, measured = head.double(), measured.double()
    assert_gradients_match_finite_differences(lm, LAYER, head, batch, measured, rtol=2e-3, atol=1e-9, nonzero=True)


@pytest.mark.parametrize("arch", ["llama", "mamba", "gemma", "gemma3"])  # Gemma scales embedding rows
def test_token_ig_baseline_is_the_embedding_the_model_sees(arch):
    base = tiny(arch)
    model = copy.deepcopy(base.model)
    eos = base.tokenizer.eos_token_id
    with torch.no_grad():  # the tiny models' end-of-text row is their all-zero padding row: give it a value
        row = torch.randn(base.hidden_size, generator=torch.Generator().manual_seed(1))
        model.get_input_embeddings().weight[eos] = row
    lm = dataclasses.replace(base, model=model)
    emb = model.get_input_embeddings()(torch.tensor([[5, 6, eos]]))
    attr = torch.ones(emb.shape[:2], dtype=torch.bool)
    torch.testing.assert_close(ig_baseline_embeddings(lm, emb, attr, "eos"), emb[:, 2:].expand_as(emb))


#: Families whose BA target is smooth along IG's straight path from the all-zero baseline, with every
#: window after its start token (held at its real embedding): 100 steps close the completeness gap.
#: Gemma 2 and 3 (tiny, random weights) do not converge: their gap grows from 20 to 100 steps.
IG_CONVERGES = {"llama", "falcon", "gemma", "qwen2", "falcon-classic", "mamba", "zamba2"}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_ig_completeness_per_family(arch, encoded, record_property):
    """IG's completeness gap (sum of attributions vs F(x) - F(0)) per model family, zero baseline, reported."""
    from brainattr.attribution.methods import integrated_gradients

    lm = tiny(arch)
    ds, enc = encoded
    insts, head, measured = _batch(lm, ds, enc, enc.test_trs[1][[0, 4]])
    batch = collate(insts, lm.tokenizer.pad_token_id, "cpu")
    gaps = {}
    for steps in (20, 100):
        attrs, at_input, at_baseline = integrated_gradients(lm, LAYER, head, batch, measured, ("ba",), steps, 64,
                                                            baseline="zero")
        delta = at_input["ba"] - at_baseline["ba"]
        gaps[steps] = float(((attrs["ba"].sum(-1) - delta).abs() / delta.abs()).max())
    record_property("ig_relative_gap_zero_baseline", gaps)
    print(f"{arch}: IG completeness gap, zero baseline: {gaps[20]:.3g} at 20 steps, {gaps[100]:.3g} at 100")
    assert all(np.isfinite(v) for v in gaps.values())
    if arch in IG_CONVERGES:
        assert gaps[100] < 1e-2, gaps

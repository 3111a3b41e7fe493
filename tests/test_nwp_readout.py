"""NWP per layer: the logit-lens readout (``AttributionSettings.nwp_readout="logit_lens"``)."""
import numpy as np
import pytest
import torch

from brainattr import attribution as A
from brainattr.attribution import store
from brainattr.attribution.batch import TokenizedText, collate, make_instance
from brainattr.attribution.targets import compute_targets, final_norm, target_name
from brainattr.lm import TINY_ARCHS, decoder_layers, make_tiny_model
from test_attribution import LAYER, setup  # noqa: F401  (the tiny-model fixture)

pytestmark = pytest.mark.medium  # tiny language models (see conftest.py)

S = A.AttributionSettings
LENS = "logit_lens"


def _batch(lm, ds, enc, trs, context=12):
    text = TokenizedText(lm, ds.stimulus)
    insts = [make_instance(text, A.tr_window(ds.stimulus, enc, int(t), context), "last", with_next=True)
             for t in trs]
    return insts, collate(insts, lm.tokenizer.pad_token_id, "cpu")


def _nwp(lm, layer, batch, readout):
    with torch.no_grad():
        emb = lm.model.get_input_embeddings()(batch["ids"])
        return compute_targets(lm, layer, None, emb, batch, None, ("nwp",), nwp_readout=readout)["nwp"]


def _lens_by_hand(lm, layer, e, inst):
    """Hand-written logit lens of a Llama (one unpadded instance): HF's hidden state of ``layer``,
    ``model.model.norm``, ``lm_head``, cross-entropy of the next word's tokens (teacher forced)."""
    out = lm.model(inputs_embeds=e, output_hidden_states=True)
    h = out.hidden_states[layer]                      # Llama: block ``layer``'s output, before the final norm
    logits = lm.model.lm_head(lm.model.model.norm(h))
    q0, q1 = inst.nwp_range
    labels = torch.as_tensor(inst.ids[q0:q1])
    return torch.stack([torch.nn.functional.cross_entropy(logits[b, q0 - 1:q1 - 1], labels)
                        for b in range(e.shape[0])])


# ---------------------------------------------------------------- settings and names
def test_readout_setting_and_target_names():
    assert S().nwp_readout == "final" and S(nwp_readout=LENS).nwp_readout == LENS
    with pytest.raises(ValueError, match="nwp_readout: unknown NWP readout 'lens'"):
        S(nwp_readout="lens")
    assert target_name("nwp") == "nwp" and target_name("ba", LENS) == "ba"
    assert target_name("nwp", LENS) == "nwp@logit_lens"
    with pytest.raises(ValueError, match="unknown NWP readout"):
        target_name("nwp", "tuned_lens")


# ---------------------------------------------------------------- the readout itself
@pytest.mark.parametrize("arch", list(TINY_ARCHS))
def test_logit_lens_at_the_last_layer_is_the_final_readout(arch, setup):
    """Finds each family's final norm (model.norm, backbone.norm_f, transformer.ln_f, final_layernorm);
    Gemma 2/3's logit soft-capping applies to both readouts."""
    _, ds, enc, _ = setup
    lm = make_tiny_model(arch)
    _, batch = _batch(lm, ds, enc, enc.test_trs[0][[1, 5, 9]])
    last = len(decoder_layers(lm.model))
    final, lens = _nwp(lm, last, batch, "final"), _nwp(lm, last, batch, LENS)
    torch.testing.assert_close(lens, final, rtol=1e-5, atol=1e-5)
    middle = _nwp(lm, last // 2, batch, LENS)
    assert float((middle - final).abs().max()) > 1e-3                  # a middle layer reads something else
    assert isinstance(final_norm(lm.model), torch.nn.Module)


def test_logit_lens_equals_a_hand_written_readout_at_layers_0_and_2(setup):
    lm, ds, enc, _ = setup
    insts, batch = _batch(lm, ds, enc, enc.test_trs[1][[0, 4]])
    assert final_norm(lm.model) is lm.model.model.norm
    with torch.no_grad():
        emb = lm.model.get_input_embeddings()(batch["ids"])
        for layer in (0, LAYER):
            got = _nwp(lm, layer, batch, LENS)
            for b, inst in enumerate(insts):
                single = emb[b:b + 1, :len(inst.ids)]
                ref = _lens_by_hand(lm, layer, single, inst)[0]
                assert abs(float(got[b]) - float(ref)) < 1e-5, (layer, float(got[b]), float(ref))
        # layer 0: the embeddings through the final norm and the head
        inst = insts[0]
        q0, q1 = inst.nwp_range
        logits = lm.model.lm_head(lm.model.model.norm(emb[0, q0 - 1:q1 - 1]))
        ref0 = torch.nn.functional.cross_entropy(logits, torch.as_tensor(inst.ids[q0:q1]))
        assert abs(float(_nwp(lm, 0, batch, LENS)[0]) - float(ref0)) < 1e-5


def test_logit_lens_runs_only_blocks_up_to_the_layer(setup):
    lm, ds, enc, _ = setup
    _, batch = _batch(lm, ds, enc, enc.test_trs[1][[0]])
    ran = []
    hooks = [blk.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, blk in
             enumerate(decoder_layers(lm.model))]
    try:
        _nwp(lm, LAYER, batch, LENS)
        assert ran == list(range(LAYER))
        ran.clear()
        _nwp(lm, LAYER, batch, "final")
        assert ran == list(range(len(decoder_layers(lm.model))))
    finally:
        for h in hooks:
            h.remove()


# ---------------------------------------------------------------- attribution against captum
def test_logit_lens_gxi_matches_captum_on_a_hand_written_forward(setup):
    from captum.attr import InputXGradient

    lm, ds, enc, _ = setup
    trs = enc.test_trs[1][[0, 4, 9]]
    tables, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, S(context=12, nwp_readout=LENS), progress=False)
    table = tables[("nwp", "gxi")]
    insts, _ = _batch(lm, ds, enc, trs)
    for inst in insts:
        single = collate([inst], lm.tokenizer.pad_token_id, "cpu")
        emb = lm.model.get_input_embeddings()(single["ids"]).detach().requires_grad_()
        tokens = (InputXGradient(lambda e, inst=inst: _lens_by_hand(lm, LAYER, e, inst)).attribute(emb)
                  * single["attr"][..., None]).sum(-1)[0].detach().numpy()
        p0, p1 = inst.attr_range
        ref = np.zeros(inst.window.end - inst.window.start)
        np.add.at(ref, inst.token_word - inst.window.start, tokens[p0:p1])
        got = table[table.tr == inst.window.tr]
        np.testing.assert_allclose(got["attribution"], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
        with torch.no_grad():
            assert got["target"].iloc[0] == pytest.approx(float(_lens_by_hand(lm, LAYER, emb, inst)[0]), rel=1e-5)


def test_both_tasks_share_one_pass_and_ba_is_unchanged(setup):
    lm, ds, enc, _ = setup
    trs = enc.test_trs[2][[1, 6]]
    run = lambda **kw: A.compute_attributions(lm, [ds], [enc], LAYER, trs, S(context=10, **kw),  # noqa: E731
                                              progress=False)[0]
    both_lens, both_final = run(nwp_readout=LENS), run()
    nwp_alone = run(nwp_readout=LENS, tasks=("nwp",))
    for col in ("attribution", "target"):
        np.testing.assert_allclose(both_lens[("ba", "gxi")][col], both_final[("ba", "gxi")][col], rtol=1e-6)
        np.testing.assert_allclose(both_lens[("nwp", "gxi")][col], nwp_alone[("nwp", "gxi")][col], rtol=1e-6)
    assert not np.allclose(both_lens[("nwp", "gxi")]["target"], both_final[("nwp", "gxi")]["target"])


# ---------------------------------------------------------------- storage
def test_store_keeps_one_table_per_readout(setup):
    lm, ds, enc, _ = setup
    vox = [A.voxel_mask("language", ds, enc)]
    folders = {r: store._table_folders(lm, [ds], [enc], vox, LAYER, S(context=10, nwp_readout=r))
               for r in ("final", LENS)}
    assert folders["final"] == store._table_folders(lm, [ds], [enc], vox, LAYER, S(context=10))
    assert folders["final"][(0, "ba", "gxi")] == folders[LENS][(0, "ba", "gxi")]
    assert folders["final"][(0, "nwp", "gxi")] != folders[LENS][(0, "nwp", "gxi")]
    trs = enc.test_trs[1][[2, 5]]
    stored = {r: A.attribute(lm, [ds], [enc], LAYER, S(context=10, tasks=("nwp",), nwp_readout=r), trs=trs,
                             progress=False)[0][("nwp", "gxi")].to_pandas() for r in ("final", LENS)}
    assert not np.allclose(stored["final"]["target"], stored[LENS]["target"])
    again = A.attribute(lm, [ds], [enc], LAYER, S(context=10, tasks=("nwp",), nwp_readout=LENS), trs=trs,
                        progress=False)[0][("nwp", "gxi")].to_pandas()
    np.testing.assert_array_equal(again["attribution"], stored[LENS]["attribution"])
    assert (folders[LENS][(0, "nwp", "gxi")] / "table").exists()

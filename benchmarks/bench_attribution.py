"""Attribution and encoding throughput against the hardware's ceiling, measured in one run.

Not a test: run it, read the ratios, keep the JSON. On the built-in model and simulated subject::

    python benchmarks/bench_attribution.py --trs 16 --out build/bench.json

It measures, on the same windows (held-out TRs of fold 0, ``--context`` words each):

1. the ceiling: a bare forward + backward of the whole model to its input embeddings, in
   tokens per second (batched like ours, no hooks, no head);
2. our BA GxI (model truncated after ``--layer``), and BA + NWP sharing one forward;
3. our IG (``--ig-steps`` steps, BA + NWP);
4. the naive baseline: one TR at a time, captum ``InputXGradient`` in fp32, on our truncated target
   and on the whole model with ``output_hidden_states`` (what a first implementation does);
5. one encoding fit (leave-one-run-out ridge with inner CV) for the subject's voxels;

and prints tokens/s and the ratios (ours / ceiling, ours / naive). Timings do not depend on the
weights' values; on a GPU the same script runs the model there (``--device cuda``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch


def _timed(fn, repeats):
    """Best wall time of ``repeats`` calls (after one warm-up), and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None):
    from brainattr import attribution as A
    from brainattr.dataset import load_dataset
    from brainattr.encoding import encode_subjects, fit_encoding
    from brainattr.features import stimulus_tr_features
    from brainattr.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=None, help="BA layer (default: the middle one)")
    ap.add_argument("--context", type=int, default=80)
    ap.add_argument("--trs", type=int, default=16, help="held-out TRs timed")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--ig-steps", type=int, default=20)
    ap.add_argument("--naive-trs", type=int, default=4, help="TRs of the (slow) naive captum loop")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="build/bench_attribution.json")
    args = ap.parse_args(argv)

    lm = load_model(args.model, device=args.device)
    device = next(lm.model.parameters()).device
    layer = lm.n_layers // 2 if args.layer is None else args.layer
    ds = load_dataset("builtin", ["sub-01"], n_language_voxels=500, n_control_voxels=200)[0]
    enc = encode_subjects(lm, [ds], layer, context=args.context, inner_folds=5, progress=False)[0]
    trs = A.held_out_trs(enc, fold=0, n=args.trs)
    text = A._Text(lm, ds.stimulus)
    insts = [A._instance(text, A.tr_window(ds.stimulus, enc, int(t), args.context), "last", with_next=True)
             for t in trs]
    n_tokens = int(sum(len(i.ids) for i in insts))
    results = {}

    # 1. the ceiling: forward + backward of the whole model, batched as ours, nothing else
    def bare():
        for k in range(0, len(insts), args.batch_size):
            batch = A._collate(insts[k:k + args.batch_size], lm.tokenizer.pad_token_id, device)
            emb = lm.model.get_input_embeddings()(batch["ids"]).detach().requires_grad_(True)
            out = lm.model(inputs_embeds=emb, attention_mask=batch["mask"], use_cache=False)
            torch.autograd.grad(out.logits[..., 0].sum(), emb)
    results["ceiling_fwd_bwd"] = _timed(bare, args.repeats)[0]

    # 2-3. ours
    def ours(tasks, methods):
        return lambda: A.compute_attributions(lm, ds, enc, layer, trs, context=args.context, tasks=tasks,
                                              methods=methods, batch_size=args.batch_size, ig_steps=args.ig_steps,
                                              progress=False)
    results["ours_ba_gxi"] = _timed(ours(("ba",), ("gxi",)), args.repeats)[0]
    results["ours_ba_nwp_gxi"] = _timed(ours(("ba", "nwp"), ("gxi",)), args.repeats)[0]
    ig_trs = trs[: max(1, len(trs) // 4)]
    t_ig = _timed(lambda: A.compute_attributions(lm, ds, enc, layer, ig_trs, context=args.context,
                                                 methods=("ig",), ig_steps=args.ig_steps, batch_size=1,
                                                 progress=False), 1)[0]
    results["ours_ig_per_tr"] = t_ig / len(ig_trs)

    # 4. naive: one TR at a time, captum InputXGradient, fp32
    from captum.attr import InputXGradient

    vox = A.voxel_mask("language", ds)
    naive_insts = insts[: args.naive_trs]

    def naive_loop(target_of):
        """One TR at a time: ``target_of(head, single, measured)`` is the function captum attributes."""
        for inst in naive_insts:
            head = A.BAHead.from_encoding(enc, inst.window.tr, vox).to(device)
            measured = torch.as_tensor(enc.measured_tr(inst.window.tr, ds.responses)[vox][None],
                                       dtype=torch.float32, device=device)
            single = A._collate([inst], lm.tokenizer.pad_token_id, device)
            emb = lm.model.get_input_embeddings()(single["ids"]).detach().requires_grad_(True)
            InputXGradient(target_of(head, single, measured)).attribute(emb)

    def truncated(head, single, measured):
        return lambda e: A._targets(lm, layer, head, e, single, measured, ("ba",))["ba"]

    # 4b. naive and unaware: the whole model with output_hidden_states (deeper blocks and LM head run too)
    def whole_model(head, single, measured):
        def target(e):
            states = lm.model(inputs_embeds=e, attention_mask=single["mask"].expand(e.shape[0], -1),
                              output_hidden_states=True, use_cache=False).hidden_states[layer]
            pred = head(A.tr_features_from_states(states, single["pool"].expand(e.shape[0], -1, -1)),
                        single["present"].expand(e.shape[0], -1))
            return ((pred - measured) ** 2).mean(1)
        return target

    results["naive_ba_gxi_per_tr"] = _timed(lambda: naive_loop(truncated), 1)[0] / len(naive_insts)
    results["naive_full_ba_gxi_per_tr"] = _timed(lambda: naive_loop(whole_model), 1)[0] / len(naive_insts)

    # 5. one encoding fit of this layer (features cached above)
    feats = stimulus_tr_features(lm, ds.stimulus, [layer], context=args.context, progress=False)[layer]
    results["encoding_fit"] = _timed(lambda: fit_encoding(feats, ds.responses, ds.stimulus.tr_runs, inner_folds=5,
                                                          progress=False), 1)[0]

    per_tr = {k: results[k] / len(trs) for k in ("ceiling_fwd_bwd", "ours_ba_gxi", "ours_ba_nwp_gxi")}
    report = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "device": str(device), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "setup": {"model": lm.name, "layer": layer, "context": args.context, "trs": len(trs), "tokens": n_tokens,
                  "batch_size": args.batch_size, "ig_steps": args.ig_steps, "voxels_fitted": int(ds.n_voxels)},
        "seconds": results,
        "tokens_per_second": {"ceiling_fwd_bwd": n_tokens / results["ceiling_fwd_bwd"],
                              "ours_ba_gxi": n_tokens / results["ours_ba_gxi"],
                              "ours_ba_nwp_gxi": n_tokens / results["ours_ba_nwp_gxi"]},
        "seconds_per_tr": {**per_tr, "ours_ig": results["ours_ig_per_tr"], "naive_ba_gxi": results["naive_ba_gxi_per_tr"],
                           "naive_full_model_ba_gxi": results["naive_full_ba_gxi_per_tr"]},
        "ratios": {"ours_ba_gxi / ceiling (throughput)": results["ceiling_fwd_bwd"] / results["ours_ba_gxi"],
                   "ours_ba_nwp_gxi / ceiling (throughput)": results["ceiling_fwd_bwd"] / results["ours_ba_nwp_gxi"],
                   "ours_ba_gxi vs naive captum loop, same truncated target (speed-up)":
                       results["naive_ba_gxi_per_tr"] / per_tr["ours_ba_gxi"],
                   "ours_ba_gxi vs naive captum loop, whole model (speed-up)":
                       results["naive_full_ba_gxi_per_tr"] / per_tr["ours_ba_gxi"]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(json.dumps({k: report[k] for k in ("setup", "seconds_per_tr", "tokens_per_second", "ratios")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

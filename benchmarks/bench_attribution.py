"""Attribution throughput against the hardware's ceiling and a naive loop, measured in one run.

Not a test: run it, read the ratios, keep the JSON. On the built-in model and simulated subjects::

    python benchmarks/bench_attribution.py --trs 16 --subjects 3 --out build/bench_attribution.json

and at the paper's scale on a GPU, with a shape-true random-weight stand-in of a paper model::

    python benchmarks/bench_attribution.py --model shape-llama-3.2-1b --context 640 --subjects 8 \\
        --precision bf16 --batch-size auto --device cuda

It measures, on the same windows (held-out TRs of fold 0, ``--context`` words each, the model in
``--precision``):

1. the ceilings, in tokens per second, batched like ours (same windows, same batch size, longest
   first), no head: a bare forward + backward to the input embeddings of the model's first L blocks
   (``layer_states`` stops there, as BA does: the floor of BA GxI) and of the whole model (the floor
   of NWP);
2. our BA GxI for one subject (model truncated after ``--layer``), NWP GxI, BA + NWP sharing one forward,
   and BA + NWP for ``--subjects`` subjects sharing the LM's forward and a batched backward,
   against the same subjects attributed one call at a time;
3. our IG (``--ig-steps`` steps, BA + NWP, one subject);
4. the naive baseline: one TR at a time, captum ``InputXGradient`` on the whole model in fp32 with
   ``output_hidden_states`` (what a first implementation does), one subject;
5. for the built-in model, one encoding fit of the subjects' voxels (``bench_ridge.py`` times
   ridge at the paper's size);

then prints tokens/s, the ratios, and the extrapolated cost of the paper's GxI for this model (3
layers x 8 subjects x the Harry Potter held-out TRs at this context). Shape-true models
(``shape-<name>``, :func:`brainattr.lm.shape_true_model`) have random weights and a random
encoding head of the right width, and their subjects are Gaussian noise
(:func:`brainattr.data.noise_datasets`: no spaCy or WordNet needed): run time does not depend on the
values. ``--naive-trs 0`` and ``--ig-trs 0`` skip the naive loop and IG (their numbers are then
None). ``benchmarks/gpu_check.py`` runs this script at the GPU targets' sizes.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

#: Held-out TRs of the Harry Potter data: every kept TR is held out once across the 4 folds. About
#: 1,351 TRs in 4 runs (unverified, see the paper notes) minus 20 + 15 trimmed per run.
HP_HELD_OUT_TRS = 1351 - 4 * (20 + 15)
#: The paper's GxI configuration per model: 3 layers (early, middle, late) x 8 subjects.
PAPER_LAYERS, PAPER_SUBJECTS = 3, 8
#: What each reported ratio compares (all measured in the same run, on the same windows).
RATIOS = {
    "ba_gxi_over_first_L_ceiling": "our BA GxI throughput (tokens/s, one subject) / the bare forward+backward "
                                   "through the first L blocks' (BA's floor), same batch",
    "ba_gxi_over_ceiling": "our BA GxI throughput (tokens/s, one subject) / the bare forward+backward of the whole "
                           "model's",
    "nwp_gxi_over_ceiling": "our NWP GxI throughput (LM head at the next word's tokens only) / the bare "
                            "forward+backward's",
    "ba_nwp_gxi_over_ceiling": "our BA+NWP GxI throughput (one forward for both) / the bare forward+backward's",
    "subjects_shared_speedup": "all subjects in one pass vs one call per subject (time of the latter / the former)",
    "shared_vs_naive_speedup": "naive captum loop (fp32, one TR at a time, whole model) / ours, per subject-TR "
                               "(all subjects in one pass)",
    "ba_gxi_vs_naive_speedup": "naive captum loop / ours, per TR, one subject",
    "ba_subjects_shared_over_ceiling": "our BA GxI of all subjects in one pass / one forward through the first L blocks "
                                       "and the subjects' batched backward with no head (its floor), same batch",
    "naive_speedup_bound": "naive captum loop / that floor, per subject-TR: the most any GxI that shares the "
                           "forward pass between subjects (but not their backward passes) can gain on the naive loop",
}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, repeats):
    """Best wall time of ``repeats`` calls (after one warm-up), and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - start)
    return best, out


def _profile(path, *calls):
    """torch.profiler tables (by self device time, then by self CPU time) of one run of each call."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    sections = []
    for call in calls:
        with profile(activities=activities) as prof:
            call()
            _sync()
        averages = prof.key_averages()
        by = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        # and where the Python time goes (tokenizing, tables, waiting for the device)
        python = cProfile.Profile()
        python.enable()
        call()
        _sync()
        python.disable()
        stream = io.StringIO()
        pstats.Stats(python, stream=stream).sort_stats("cumulative").print_stats(25)
        sections.append(f"== {getattr(call, '__qualname__', call)}\n"
                        + averages.table(sort_by=by, row_limit=18)
                        + averages.table(sort_by="self_cpu_time_total", row_limit=12) + stream.getvalue())
    Path(path).write_text("\n\n".join(sections))


def _datasets(kind, n_subjects):
    """The benchmark's subjects: ``"simulated"`` (the built-in simulation) or ``"noise"``."""
    from brainattr.data import load_builtin_stimulus, load_dataset, noise_datasets

    if kind == "noise":
        return noise_datasets(load_builtin_stimulus(annotate=False), n_subjects)
    return load_dataset("builtin", n_subjects, n_language_voxels=500, n_control_voxels=200)


def _encodings(lm, data, layer, context, random_head, seed=0):
    """The subjects' encoding models: fitted on the LM's features, or on random features of its width."""
    from brainattr.encoding import encode_subjects, fit_encoding

    if not random_head:
        return encode_subjects(lm, data, layer, context=context, inner_folds=5, progress=False)
    rng = np.random.default_rng(seed)
    stim = data[0].stimulus
    feats = rng.standard_normal((stim.n_trs, lm.hidden_size)).astype(np.float32)
    Y = np.concatenate([ds.responses for ds in data], axis=1)
    fit = fit_encoding(feats, Y, stim.tr_runs, inner_folds=2, alphas=np.logspace(0, 4, 3), progress=False)
    bounds = np.cumsum([0] + [ds.n_voxels for ds in data])
    return [fit.select_voxels(np.arange(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def main(argv=None):
    from brainattr import attribution as A
    from brainattr.attribution.batch import TokenizedText, collate, make_instance
    from brainattr.lm import layer_states, load_model, with_precision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="a built-in, a shape-<name> stand-in or a local model")
    ap.add_argument("--layer", type=int, default=None, help="BA layer (default: the middle one)")
    ap.add_argument("--context", type=int, default=80)
    ap.add_argument("--trs", type=int, default=16, help="held-out TRs timed")
    ap.add_argument("--subjects", type=int, default=3, help="subjects sharing one pass")
    ap.add_argument("--data", default="auto", choices=("auto", "simulated", "noise"),
                    help="subjects: the built-in simulation, or Gaussian noise (auto: noise for shape-* models)")
    ap.add_argument("--batch-size", default="4", help="TRs per pass, or 'auto'")
    ap.add_argument("--ig-steps", type=int, default=20)
    ap.add_argument("--ig-trs", type=int, default=4)
    ap.add_argument("--naive-trs", type=int, default=4, help="TRs of the (slow) naive captum loop")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="auto (bf16 on a GPU, fp32 on CPU), fp32 or bf16")
    ap.add_argument("--profile", default=None, help="write a torch.profiler table of one BA GxI call and of its "
                                                     "ceiling to this text file")
    ap.add_argument("--out", default="build/bench_attribution.json")
    args = ap.parse_args(argv)
    batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)

    lm = load_model(args.model, device=args.device, precision=args.precision)
    param = next(lm.model.parameters())
    device = param.device
    layer = lm.n_layers // 2 if args.layer is None else args.layer
    random_head = args.model.startswith("shape-")
    data_kind = args.data if args.data != "auto" else ("noise" if random_head else "simulated")
    data = _datasets(data_kind, args.subjects)
    encs = _encodings(lm, data, layer, args.context, random_head)
    ds, enc = data[0], encs[0]
    trs = A.held_out_trs(enc, fold=0, n=args.trs)
    text = TokenizedText(lm, ds.stimulus)
    insts = [make_instance(text, A.tr_window(ds.stimulus, enc, int(t), args.context), "last", with_next=True)
             for t in trs]
    n_tokens = int(sum(len(i.ids) for i in insts))
    settings = A.AttributionSettings(context=args.context, batch_size=batch_size, ig_steps=args.ig_steps)
    # the batch sizes ours runs at: BA alone stops at layer L (more TRs fit), NWP runs the whole model
    step_ba = A.resolve_batch_size(lm, layer, insts, 1, settings.replace(tasks=("ba",)))
    step_full = A.resolve_batch_size(lm, layer, insts, 1, settings.replace(tasks=("ba", "nwp")))
    longest_first = sorted(insts, key=lambda i: -len(i.ids))
    results = {}

    # 1. the ceilings: forward + backward, batched as ours, nothing else
    def bare(step, first_blocks):
        def run():
            for k in range(0, len(longest_first), step):
                batch = collate(longest_first[k:k + step], lm.tokenizer.pad_token_id, device)
                emb = lm.model.get_input_embeddings()(batch["ids"]).detach().requires_grad_(True)
                if first_blocks:
                    out = layer_states(lm.model, [layer], inputs_embeds=emb, attention_mask=batch["mask"])[layer]
                else:
                    out = lm.model(inputs_embeds=emb, attention_mask=batch["mask"], use_cache=False).logits[..., 0]
                torch.autograd.grad(out.float().sum(), emb)
        return run
    results["ceiling_first_L_fwd_bwd"] = _timed(bare(step_ba, True), args.repeats)[0]
    results["ceiling_fwd_bwd"] = _timed(bare(step_full, False), args.repeats)[0]
    S = len(data)
    step_shared = A.resolve_batch_size(lm, layer, insts, S, settings.replace(tasks=("ba",)))

    def bare_subjects():
        """One forward through the first L blocks, then S backward passes batched (as ours), no head."""
        for k in range(0, len(longest_first), step_shared):
            batch = collate(longest_first[k:k + step_shared], lm.tokenizer.pad_token_id, device)
            emb = lm.model.get_input_embeddings()(batch["ids"]).detach().requires_grad_(True)
            out = layer_states(lm.model, [layer], inputs_embeds=emb, attention_mask=batch["mask"])[layer]
            cotangents = torch.randn((S, *out.shape), dtype=out.dtype, device=device)
            torch.autograd.grad(out, emb, grad_outputs=cotangents, is_grads_batched=True)
    results["ceiling_first_L_subjects"] = _timed(bare_subjects, args.repeats)[0]

    # 2. ours: one subject, then all subjects in one pass, then one call per subject

    def ours(tasks, subjects=1):
        return lambda: A.compute_attributions(lm, data[:subjects], encs[:subjects], layer, trs,
                                              settings.replace(tasks=tasks), progress=False)
    results["ours_ba_gxi"] = _timed(ours(("ba",)), args.repeats)[0]
    results["ours_nwp_gxi"] = _timed(ours(("nwp",)), args.repeats)[0]
    results["ours_ba_nwp_gxi"] = _timed(ours(("ba", "nwp")), args.repeats)[0]
    results["ours_ba_subjects_shared"] = _timed(ours(("ba",), S), args.repeats)[0]
    results["ours_subjects_shared"] = _timed(ours(("ba", "nwp"), S), args.repeats)[0]
    results["ours_subjects_one_by_one"] = _timed(
        lambda: [A.compute_attributions(lm, [d], [e], layer, trs,
                                        settings.replace(tasks=("ba", "nwp") if k == 0 else ("ba",)), progress=False)
                 for k, (d, e) in enumerate(zip(data, encs))], args.repeats)[0]

    # 3. IG, one subject
    ig_trs = trs[:args.ig_trs]
    results["ours_ig_per_tr"] = None
    if len(ig_trs):
        t_ig = _timed(lambda: A.compute_attributions(lm, [ds], [enc], layer, ig_trs,
                                                     settings.replace(methods=("ig",), batch_size=1),
                                                     progress=False), 1)[0]
        results["ours_ig_per_tr"] = t_ig / len(ig_trs)

    # 4. naive: one TR at a time, captum InputXGradient, fp32, the whole model with output_hidden_states
    from captum.attr import InputXGradient

    naive_lm = lm if param.dtype == torch.float32 else with_precision(lm, torch.float32)
    vox = A.voxel_mask("language", ds)
    naive_insts = insts[:args.naive_trs]

    def naive_loop():
        for inst in naive_insts:
            head = A.BAHead.from_encoding(enc, inst.window.tr, vox).to(device)
            measured = torch.as_tensor(enc.measured_tr(inst.window.tr, ds.responses)[vox][None],
                                       dtype=torch.float32, device=device)
            single = collate([inst], naive_lm.tokenizer.pad_token_id, device)
            emb = naive_lm.model.get_input_embeddings()(single["ids"]).detach().requires_grad_(True)

            def target(e):
                states = naive_lm.model(inputs_embeds=e, attention_mask=single["mask"], output_hidden_states=True,
                                        use_cache=False).hidden_states[layer]
                pred = head(A.tr_features_from_states(states, single["pool"]), single["present"])
                return ((pred - measured) ** 2).mean(1)
            InputXGradient(target).attribute(emb)
    results["naive_ba_gxi_per_tr"] = _timed(naive_loop, 1)[0] / len(naive_insts) if naive_insts else None
    naive_lm = None  # frees the float32 copy (the loop above is done with it)

    # 5. one encoding fit of the subjects' voxels (built-in model: its features are cached above)
    if not random_head:
        from brainattr.encoding import fit_encoding
        from brainattr.features import stimulus_tr_features

        feats = stimulus_tr_features(lm, ds.stimulus, [layer], context=args.context, progress=False)[layer]
        Y = np.concatenate([d.responses for d in data], axis=1)
        results["encoding_fit"] = _timed(lambda: fit_encoding(feats, Y, ds.stimulus.tr_runs, inner_folds=5,
                                                              progress=False), 1)[0]

    if args.profile:
        _profile(args.profile, bare(step_ba, True), ours(("ba",)))

    n = len(trs)
    per_subject_tr = {"ceiling_first_L_subjects": results["ceiling_first_L_subjects"] / (n * S),
                      "ours_ba_subjects_shared": results["ours_ba_subjects_shared"] / (n * S),
                      "ours_ba_gxi": results["ours_ba_gxi"] / n, "ours_nwp_gxi": results["ours_nwp_gxi"] / n,
                      "ours_ba_nwp_gxi": results["ours_ba_nwp_gxi"] / n,
                      "ours_subjects_shared": results["ours_subjects_shared"] / (n * S),
                      "ours_subjects_one_by_one": results["ours_subjects_one_by_one"] / (n * S),
                      "ours_ig": results["ours_ig_per_tr"], "naive_ba_gxi": results["naive_ba_gxi_per_tr"]}
    best, naive = per_subject_tr["ours_subjects_shared"], per_subject_tr["naive_ba_gxi"]
    paper_hours = PAPER_LAYERS * PAPER_SUBJECTS * HP_HELD_OUT_TRS * best / 3600
    report = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                    "device": str(device), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "date": time.strftime("%Y-%m-%d %H:%M")},
        "setup": {"model": lm.name, "n_layers": lm.n_layers, "hidden": lm.hidden_size, "layer": layer,
                  "precision": str(param.dtype).replace("torch.", ""), "context": args.context, "trs": n,
                  "tokens": n_tokens, "subjects": S, "batch_size": args.batch_size, "batch_size_ba": step_ba,
                  "batch_size_whole_model": step_full, "batch_size_subjects": step_shared, "ig_steps": args.ig_steps, "data": data_kind,
                  "random_head": random_head, "voxels_per_subject": int(ds.n_voxels)},
        "seconds": results,
        "seconds_per_subject_tr": per_subject_tr,
        "tokens_per_second": {"ceiling_first_L_fwd_bwd": n_tokens / results["ceiling_first_L_fwd_bwd"],
                              "ceiling_fwd_bwd": n_tokens / results["ceiling_fwd_bwd"],
                              "ours_ba_gxi": n_tokens / results["ours_ba_gxi"],
                              "ours_nwp_gxi": n_tokens / results["ours_nwp_gxi"],
                              "ours_ba_nwp_gxi": n_tokens / results["ours_ba_nwp_gxi"]},
        # throughput ratios (ours / ceiling) and speed-ups (slower / faster); what each compares: RATIOS
        "ratios": {
            "ba_gxi_over_first_L_ceiling": results["ceiling_first_L_fwd_bwd"] / results["ours_ba_gxi"],
            "ba_gxi_over_ceiling": results["ceiling_fwd_bwd"] / results["ours_ba_gxi"],
            "nwp_gxi_over_ceiling": results["ceiling_fwd_bwd"] / results["ours_nwp_gxi"],
            "ba_nwp_gxi_over_ceiling": results["ceiling_fwd_bwd"] / results["ours_ba_nwp_gxi"],
            "ba_subjects_shared_over_ceiling": results["ceiling_first_L_subjects"] / results["ours_ba_subjects_shared"],
            "subjects_shared_speedup": results["ours_subjects_one_by_one"] / results["ours_subjects_shared"],
            "shared_vs_naive_speedup": naive / best if naive else None,
            "ba_gxi_vs_naive_speedup": naive / per_subject_tr["ours_ba_gxi"] if naive else None,
            "naive_speedup_bound": naive / per_subject_tr["ceiling_first_L_subjects"] if naive else None},
        "ratio_notes": RATIOS,
        "extrapolation": {
            "paper_gxi_hours_for_this_model": paper_hours,
            "how": f"{PAPER_LAYERS} layers x {PAPER_SUBJECTS} subjects x {HP_HELD_OUT_TRS} held-out TRs x "
                   f"{best:.4g} s per subject-TR (BA+NWP, {S} subjects per pass, layer {layer} of {lm.n_layers} "
                   f"standing for the three), at {args.context}-word context on this device"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(json.dumps({k: report[k] for k in ("setup", "seconds_per_subject_tr", "tokens_per_second", "ratios",
                                             "extrapolation")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""What only a CUDA GPU can check: ``pytest -m gpu`` (skipped without one; ``make gpu-check`` runs them).

The CPU tests reach the same code with the GPU mocked (out-of-memory raised by hand, ``torch`` for
``torch_cuda``); these run it for real: bf16 against fp32, himalaya's ``torch_cuda`` backend against
numpy, ``batch_size="auto"`` read from the GPU's free memory, batches split under a real memory cap,
and the subjects' batched backward pass. They need neither spaCy nor WordNet (the stimulus is not
annotated, the subjects are planted linear responses or noise), so a bare GPU machine with the
carried wheels runs them.
"""
import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from brainattr import attribution as A
from brainattr.attribution.batch import TokenizedText, make_instance
from brainattr.data import load_builtin_stimulus, noise_datasets
from brainattr.encoding import fit_encoding
from brainattr.features import stimulus_tr_features
from brainattr.lm import load_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

LAYER = 2
#: A paper model's real width and vocabulary, two blocks deep (a window's activations are then
#: hundreds of MB: enough for a memory cap to bite), with the tiny tokenizer (no carried files).
WIDE_MODEL = "shape-llama-3.2-1b-L2-tok-tiny-random"


def planted_subjects(features, stimulus, n_subjects=3, n_voxels=12, seed=0):
    """Subjects whose responses are a random linear map of ``features`` plus noise."""
    rng = np.random.default_rng(seed)
    data = []
    for k in range(n_subjects):
        Y = features @ rng.standard_normal((features.shape[1], n_voxels)) + rng.standard_normal((len(features), n_voxels))
        data.append(noise_datasets(stimulus, 1, n_voxels - 4, 4, seed=k)[0])
        data[-1] = dataclasses.replace(data[-1], subject=f"sub-{k + 1:02d}", responses=Y)
    return data


@pytest.fixture(scope="module")
def tiny_cuda():
    """The tiny model on the GPU in float32, a 600-word stimulus, 3 planted subjects and their fits."""
    lm = load_model("tiny-random", device="cuda", precision="fp32", progress=False)
    stimulus = load_builtin_stimulus(max_words=600, annotate=False)
    features = stimulus_tr_features(lm, stimulus, [LAYER], context=16, cache=False, progress=False)[LAYER]
    data = planted_subjects(features, stimulus)
    encodings = [fit_encoding(features, ds.responses, stimulus.tr_runs, inner_folds=5, backend="numpy",
                              progress=False) for ds in data]
    trs = encodings[0].test_trs[1][:6]
    return lm, data, encodings, features, trs


def _frame(tables, key=("ba", "gxi")):
    return tables[key].sort_values(["tr", "word_index"]).reset_index(drop=True)


def test_bf16_attributions_agree_with_fp32_on_cuda(tiny_cuda):
    lm, data, encodings, _, trs = tiny_cuda
    check = A.compare_precision(lm, data[0], encodings[0], LAYER, trs[:3], settings=A.AttributionSettings(context=16))
    assert (check["precision"] == "bfloat16").all() and (check["reference"] == "float32").all()
    assert (check["spearman"] > 0.95).all(), check
    assert (check["target_difference"] < 0.05).all(), check
    assert (check["max_difference"] > 0).all()            # the copy really ran in bfloat16


@pytest.mark.parametrize("solver", ["primal", "kernel"])
def test_himalaya_torch_cuda_fit_matches_numpy(tiny_cuda, solver):
    _, data, _, features, _ = tiny_cuda
    ds = data[0]
    kw = dict(alphas=np.logspace(-1, 5, 7), inner_folds=5, progress=False, solver=solver)
    ref = fit_encoding(features, ds.responses, ds.stimulus.tr_runs, backend="numpy", **kw)
    got = fit_encoding(features, ds.responses, ds.stimulus.tr_runs, backend="torch_cuda", **kw)
    assert got.weights.dtype == np.float32
    np.testing.assert_allclose(got.alphas, ref.alphas, rtol=1e-5)
    np.testing.assert_allclose(got.weights, ref.weights, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4)


def test_auto_batch_size_reads_the_gpu_and_gives_the_same_attributions(tiny_cuda):
    lm, data, encodings, _, trs = tiny_cuda
    settings = A.AttributionSettings(context=16, tasks=("ba", "nwp"), batch_size="auto")
    one, = A.compute_attributions(lm, data[:1], encodings[:1], LAYER, trs, settings.replace(batch_size=1),
                                  progress=False)
    auto, = A.compute_attributions(lm, data[:1], encodings[:1], LAYER, trs, settings, progress=False)
    text = TokenizedText(lm, data[0].stimulus)
    instances = [make_instance(text, A.tr_window(data[0].stimulus, encodings[0], int(t), 16), "last", True)
                 for t in trs]
    size = A.resolve_batch_size(lm, LAYER, instances, 1, settings)
    assert size > A.CPU_BATCH_SIZE          # a GPU's free memory holds more than the CPU default of tiny windows
    for key in one:
        pd.testing.assert_frame_equal(_frame(auto, key), _frame(one, key), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_subjects_share_one_batched_backward_on_cuda(tiny_cuda, precision):
    lm, data, encodings, _, trs = tiny_cuda
    settings = A.AttributionSettings(context=16, tasks=("ba",), batch_size=3, precision=precision)
    shared = A.compute_attributions(lm, data, encodings, LAYER, trs, settings, progress=False)
    for ds, enc, got in zip(data, encodings, shared):
        alone, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, settings, progress=False)
        tol = dict(rtol=1e-4, atol=1e-6) if precision == "fp32" else dict(rtol=2e-2, atol=1e-3)
        pd.testing.assert_frame_equal(_frame(got), _frame(alone), **tol)


def test_batches_split_under_a_real_memory_cap():
    lm = load_model(WIDE_MODEL, device="cuda", precision="fp32", progress=False)
    stimulus = load_builtin_stimulus(max_words=1500, annotate=False)
    ds, = noise_datasets(stimulus, 1, 40, 10)
    rng = np.random.default_rng(0)
    features = rng.standard_normal((stimulus.n_trs, lm.hidden_size)).astype(np.float32)
    enc = fit_encoding(features, ds.responses, stimulus.tr_runs, inner_folds=2, alphas=np.logspace(0, 4, 3),
                       backend="numpy", progress=False)
    trs = enc.test_trs[1][:8]
    settings = A.AttributionSettings(context=400, tasks=("ba",), batch_size=1)
    reference, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, settings, progress=False)

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    A.compute_attributions(lm, [ds], [enc], LAYER, trs[:1], settings, progress=False)
    one_window = torch.cuda.max_memory_allocated() - base
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # room for about 2.5 windows above what is held now: a batch of 8 cannot fit, a batch of 2 can
    torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_reserved() + 2.5 * one_window) / total))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            split, = A.compute_attributions(lm, [ds], [enc], LAYER, trs, settings.replace(batch_size=8),
                                            progress=False)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    messages = [str(w.message) for w in caught]
    assert any("out of memory with a batch of 8 TRs" in m for m in messages), (one_window, messages)
    pd.testing.assert_frame_equal(_frame(split), _frame(reference), rtol=1e-4, atol=1e-6)

"""brainattr: which words drive brain alignment and which drive next-word prediction.

A reproduction of Proietti, Capobianco & Toneva (2025), arXiv 2510.12355, as a book of
papermill-parameterized notebooks. One pipeline stage, one room; dependencies point down the list:

- :mod:`brainattr.book`         the book's tooling: parameters, running notebooks, the HTML, the CLI
- :mod:`brainattr.sweep`        the whole grid as submitit jobs (``brainattr sweep``), on SLURM or this machine
- :mod:`brainattr.pipeline`     chapter-level calls that chain the stages below
- :mod:`brainattr.plots`        the book's figures
- :mod:`brainattr.masking`      the masking check (the paper's App. C)
- :mod:`brainattr.stats`        inference at independent units (blocks of TRs, subjects), position-keeping nulls, the verdict rule
- :mod:`brainattr.voxel_maps`   per-region attribution measures, for brain maps
- :mod:`brainattr.recovery`     attribution vs the simulated subjects' planted truth: scores position alone cannot pass
- :mod:`brainattr.oracle`       the oracle language model (the simulation's drivers as features): the positive control
- :mod:`brainattr.analysis`     the figures' metrics: important words, overlap, spread, categories, positions
- :mod:`brainattr.claims`       the paper's numbers, one cited table (`paper_claims.csv`)
- :mod:`brainattr.attribution`  BA and NWP input attribution (GxI, IG): windows, head, engine, store
- :mod:`brainattr.encoding`     voxelwise ridge and brain alignment
- :mod:`brainattr.features`     the LM's word embeddings per layer, averaged per TR
- :mod:`brainattr.lm`           language models: loading, precision, layers, word/token spans, test models
- :mod:`brainattr.data`         datasets: the ``load_dataset`` registry, the built-in text, simulated
  subjects with planted ground truth, real fMRI loaders
- :mod:`brainattr.trs`, :mod:`brainattr.metrics`  numpy only: TR arithmetic; Pearson r, noise ceiling
- :mod:`brainattr.schema`       the data schema (Stimulus, Dataset, DataError) and its checks
- :mod:`brainattr.cache`        where results are cached, atomic writes, the stage log

Subpackages are imported on first use (``brainattr.attribution`` is available after
``import brainattr``), so the command line starts without loading torch.
"""
import importlib as _importlib

_SUBMODULES = ("analysis", "attribution", "book", "cache", "data", "encoding", "features", "lm", "masking",
               "claims", "metrics", "oracle", "pipeline", "plots", "recovery", "schema", "stats", "sweep", "trs", "voxel_maps")


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

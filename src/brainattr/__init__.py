"""brainattr: which words drive brain alignment and which drive next-word prediction.

A reproduction of Proietti, Capobianco & Toneva (2025), arXiv 2510.12355, as a book of
papermill-parameterized notebooks. One pipeline stage, one module:

- :mod:`brainattr.dataset`    the data schema (Stimulus, Dataset) and input checks
- :mod:`brainattr.stimulus`   the built-in public-domain stimulus and its timing
- :mod:`brainattr.simulate`   simulated subjects with planted ground truth
- :mod:`brainattr.models`     loading built-in and Hugging Face language models
- :mod:`brainattr.features`   word embeddings, per-TR averaging, delays
- :mod:`brainattr.encoding`   voxelwise ridge and brain alignment
- :mod:`brainattr.attribution` BA and NWP input attribution
"""
__version__ = "0.1.0"

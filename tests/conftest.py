"""Shared fixtures: every test run uses a private cache folder, never the user's."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    # Tests must not read or write ~/.cache/brainattr; the real built-in model is large, so a
    # session may point BRAINATTR_TEST_MODEL_CACHE at an existing cache to reuse it.
    os.environ["BRAINATTR_CACHE"] = str(tmp_path_factory.mktemp("brainattr-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def tiny_lm():
    from brainattr.lm import load_model

    return load_model("tiny-random")


@pytest.fixture(scope="session")
def small_stimulus():
    from brainattr.data import load_builtin_stimulus

    return load_builtin_stimulus(max_words=600)

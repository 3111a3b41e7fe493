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


#: Fixtures that load a tiny language model or run spaCy: a test using one is in the `medium` tier
#: (`make test-fast` skips it; test files that are all about language models mark themselves).
MEDIUM_FIXTURES = {"tiny_lm", "small_stimulus"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MEDIUM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.medium)

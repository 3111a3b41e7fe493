"""brainattr.cache: where the cache lives, and the stage log behind the compute appendix."""
import json
import sys

import pytest

from brainattr import cache as io


def test_stage_log_appends_records_and_skips_broken_lines(tmp_path, monkeypatch):
    log = tmp_path / "stages.jsonl"
    monkeypatch.setenv(io.STAGE_LOG_ENV, str(log))
    monkeypatch.setenv("BRAINATTR_NOTEBOOK", "04_important_words")
    io.log_stage("attribution", 1.23456, method="gxi", trs=48)
    with io.stage_timer("encoding", voxels=10):
        pass
    with pytest.raises(RuntimeError):
        with io.stage_timer("feature extraction"):
            raise RuntimeError("failed work is not logged")
    with open(log, "a") as fh:
        fh.write('{"stage": "cut sho')          # a line a killed process never finished
    records = io.read_stage_log(log)
    assert [r["stage"] for r in records] == ["attribution", "encoding"]
    assert records[0] == dict(stage="attribution", seconds=1.235, notebook="04_important_words", method="gxi", trs=48)
    assert records[1]["voxels"] == 10 and records[1]["seconds"] >= 0
    assert json.loads(log.read_text().splitlines()[0])["trs"] == 48


def test_stage_log_is_off_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(io.STAGE_LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    io.log_stage("attribution", 1.0)
    with io.stage_timer("encoding"):
        pass
    assert list(tmp_path.iterdir()) == []
    assert io.read_stage_log(tmp_path / "missing.jsonl") == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME is the Linux convention")
def test_default_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv(io.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert io.cache_root() == tmp_path / "xdg" / "brainattr"
    assert io.cache_dir("features") == tmp_path / "xdg" / "brainattr" / "features"
    assert (tmp_path / "xdg" / "brainattr" / "features").is_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert io.cache_root() == tmp_path / "home" / ".cache" / "brainattr"


def test_default_cache_is_the_platform_user_cache_folder(monkeypatch):
    platformdirs = pytest.importorskip("platformdirs")
    monkeypatch.delenv(io.CACHE_ENV, raising=False)
    assert io.cache_root() == io.default_cache_root()
    assert str(io.cache_root()) == platformdirs.user_cache_dir("brainattr", appauthor=False)


def test_brainattr_cache_overrides_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(io.CACHE_ENV, str(tmp_path / "mine"))
    assert io.cache_dir("models", "m") == tmp_path / "mine" / "models" / "m"
    assert not (tmp_path / "xdg").exists()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(io.CACHE_ENV, "~/elsewhere")
    assert io.cache_root() == tmp_path / "elsewhere"

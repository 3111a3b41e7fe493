"""A cache many writers share: concurrent parts and merges, locked read-modify-writes, leftovers of dead writers.

Each test that races real processes would lose data with the unlocked code it replaces (a merge
that deletes parts another merge has not read, a timings file rewritten from a stale copy).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from brainattr.cache import atomic_dir, file_lock, remove_dead_temporaries, restore_dir, writer_tag

_SPAWN = multiprocessing.get_context("spawn")


# ---------------------------------------------------------------- table parts and merges
def _writer(folder, worker, n_parts):
    """Write ``n_parts`` parts of one table, merging after each, as a sweep's jobs do."""
    import pandas as pd
    from brainattr.attribution import store

    for k in range(n_parts):
        tr = 100 * worker + k
        df = pd.DataFrame({"tr": [tr, tr], "word_index": [0, 1], "attribution": [float(tr), -1.0]})
        with atomic_dir(Path(folder) / "parts" / f"part-{tr:06d}-{tr:06d}", replace=False) as tmp:
            import datasets

            datasets.Dataset.from_pandas(df, preserve_index=False).save_to_disk(str(tmp))
        store.consolidate_table(folder)


@pytest.mark.medium
def test_concurrent_writers_and_merges_of_one_table_lose_no_row(tmp_path):
    from brainattr.attribution import store

    folder = tmp_path / "ba_gxi-abc"
    procs = [_SPAWN.Process(target=_writer, args=(folder, w, 6)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store.consolidate_table(folder)
    table = store.read_table(folder).to_pandas()
    expected = sorted(100 * w + k for w in range(4) for k in range(6))
    assert sorted(table["tr"].unique()) == expected
    assert len(table) == 2 * len(expected)                        # every row once
    assert list(table["tr"]) == sorted(table["tr"])               # merged in TR order
    assert not list((folder / "parts").iterdir())


def test_a_part_another_writer_finished_first_is_kept(tmp_path):
    target = tmp_path / "parts" / "part-000001-000002"
    with atomic_dir(target, replace=False) as tmp:
        (tmp / "rows").write_text("first")
    with atomic_dir(target, replace=False) as tmp:
        (tmp / "rows").write_text("second")
    assert (target / "rows").read_text() == "first"
    with atomic_dir(target) as tmp:                                # replace=True: a merged table is replaced
        (tmp / "rows").write_text("merged")
    assert (target / "rows").read_text() == "merged"
    assert [p.name for p in target.parent.iterdir()] == [target.name]   # no temporary or backup left


def test_a_swap_cut_between_its_two_renames_is_undone(tmp_path):
    from brainattr.attribution import store

    folder = tmp_path / "nwp_gxi-abc"
    backup = folder / f".table.{writer_tag()}.x1y2z3.old"        # what a kill between the renames leaves
    backup.mkdir(parents=True)
    import datasets
    import pandas as pd

    datasets.Dataset.from_pandas(pd.DataFrame({"tr": [7], "word_index": [0]}),
                                 preserve_index=False).save_to_disk(str(backup))
    assert store.read_table(folder).to_pandas()["tr"].tolist() == [7]   # restored before reading
    assert (folder / "table").is_dir() and not backup.exists()
    assert not restore_dir(folder / "table")                       # nothing to restore any more


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    host = writer_tag().rsplit("-", 1)[0]
    names = {"live": f".part-1.{writer_tag()}.aaaa.tmp", "dead": f".part-2.{host}-{_dead_pid()}.bbbb.tmp",
             "untagged": ".part-3.cccc.tmp", "other host, recent": ".part-4.othernode-12.dddd.tmp",
             "other host, stale": ".part-5.othernode-13.eeee.tmp", "a part": "part-000006-000006"}
    for name in names.values():
        (tmp_path / name).mkdir()
    stale = time.time() - 7 * 3600
    os.utime(tmp_path / names["other host, stale"], (stale, stale))
    removed = {p.name for p in remove_dead_temporaries(tmp_path)}
    assert removed == {names["dead"], names["untagged"], names["other host, stale"]}
    assert {p.name for p in tmp_path.iterdir()} == {names["live"], names["other host, recent"], names["a part"]}


# ---------------------------------------------------------------- timings.json and the build folder
def _timings_writer(build, worker, n):
    from brainattr.book.runner import update_timings

    for k in range(n):
        update_timings(Path(build), {f"nb{worker}-{k}": {"status": "ok", "seconds": k}}, "tiny")


def test_timings_json_keeps_every_writers_entries(tmp_path):
    procs = [_SPAWN.Process(target=_timings_writer, args=(tmp_path, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entries = json.loads((tmp_path / "timings.json").read_text())["notebooks"]
    assert set(entries) == {f"nb{w}-{k}" for w in range(4) for k in range(15)}


def test_a_second_run_into_a_busy_build_folder_is_refused(tmp_path):
    from _project_factory import make_project
    from brainattr.book.params import load_config
    from brainattr.book.runner import RUN_LOCK, BuildFolderBusy, run_notebooks

    config = load_config(make_project(tmp_path))
    build = tmp_path / "build"
    build.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom brainattr.cache import file_lock\n"
                               f"lock = file_lock({str(build / RUN_LOCK)!r})\nlock.acquire()\n"
                               "print('held', flush=True)\ntime.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BuildFolderBusy, match="--build-dir"):
            run_notebooks(config, "tiny", echo=lambda m: None)
        assert not (build / "notebooks").exists()                 # nothing was executed
    finally:
        holder.kill()
        holder.wait()
    with file_lock(build / RUN_LOCK, timeout=5):                    # released with its holder
        pass


def test_a_build_folder_per_model(tmp_path):
    from brainattr.book.runner import expand_build_dir

    path = expand_build_dir(tmp_path / "build" / "{profile}-{model}", "paper", {"model": "Qwen/Qwen2-1.5B"})
    assert path == tmp_path / "build" / "paper-Qwen--Qwen2-1.5B"


def test_a_sweeps_stage_records_replace_the_previous_sweeps(tmp_path):
    from brainattr.book.runner import record_sweep_stages
    from brainattr.cache import read_stage_log

    log = tmp_path / "stages.jsonl"
    log.write_text(json.dumps({"stage": "encoding", "seconds": 1.0, "notebook": "02_brain_alignment"}) + "\n")
    record_sweep_stages(tmp_path, [{"stage": "encoding", "seconds": 5.0, "job": "A-m-layer000"}])
    record_sweep_stages(tmp_path, [{"stage": "attribution", "seconds": 9.0, "job": "B-m-late-trs00000-00003"}])
    records = read_stage_log(log)
    assert [(r["notebook"], r["seconds"]) for r in records] == [("02_brain_alignment", 1.0), ("sweep", 9.0)]


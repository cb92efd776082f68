"""Pruning of the kernel cache: unused entries go, a size limit holds, busy entries stay."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from snn_cpp import build
from snn_cpp.cache_pruning import MAX_AGE_DAYS, prune_cache

NOW = 2_000_000_000.0
DAY = 86400.0


def _entry(cache: Path, index: int, age_days: float, library_bytes: int = 1000, library: bool = True) -> list[Path]:
    """Fake the files of one cache entry whose library was last used ``age_days`` ago."""
    name = f"{index:032x}-{'ab' * 8}"
    files = [cache / f"{name}.c", cache / f"{name}.lock"]
    if library:
        files += [cache / f"{name}.so", cache / f"{name}.so.sha256"]
    else:
        files.append(cache / f"{name}.so.x1y2.tmp.so")  # an interrupted build
    for path in files:
        path.write_bytes(b"\0" * (library_bytes if path.suffix == ".so" else 10))
        stamp = NOW - age_days * DAY
        os.utime(path, (stamp, stamp))
    return files


def test_entries_unused_for_the_age_limit_go_whole(tmp_path):
    old = _entry(tmp_path, 1, MAX_AGE_DAYS + 1)
    recent = _entry(tmp_path, 2, MAX_AGE_DAYS - 1)
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a cache entry")
    report = prune_cache(tmp_path, now=NOW)
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in recent) and foreign.exists()
    assert (report.removed, report.kept, report.busy) == (1, 1, 0)
    assert report.freed_bytes == 1000 + 3 * 10
    assert report.kept_bytes == 1000 + 3 * 10


def test_the_size_limit_removes_the_least_recently_used_first(tmp_path):
    entries = [_entry(tmp_path, i, age_days=float(i)) for i in range(5)]  # entry 0 used last
    size = 1000 + 3 * 10
    report = prune_cache(tmp_path, max_bytes=3 * size, now=NOW)
    assert [all(p.exists() for p in files) for files in entries] == [True, True, True, False, False]
    assert (report.removed, report.kept, report.kept_bytes) == (2, 3, 3 * size)
    assert prune_cache(tmp_path, max_bytes=0, now=NOW).kept == 0
    assert not list(tmp_path.iterdir())


def test_leftovers_of_an_interrupted_build_go_after_a_day(tmp_path):
    fresh = _entry(tmp_path, 1, age_days=0.5, library=False)
    stale = _entry(tmp_path, 2, age_days=2.0, library=False)
    prune_cache(tmp_path, now=NOW)
    assert all(p.exists() for p in fresh) and not any(p.exists() for p in stale)


def test_an_entry_another_process_is_building_stays(tmp_path):
    files = _entry(tmp_path, 1, MAX_AGE_DAYS + 10)
    lock = next(p for p in files if p.suffix == ".lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            handle = open({str(lock)!r}, "a+b")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            print("locked", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        report = prune_cache(tmp_path, max_bytes=0, now=NOW)
        assert (report.removed, report.busy, report.kept) == (0, 1, 1)
        assert all(p.exists() for p in files)
    finally:
        holder.communicate("done\n", timeout=30)
    assert prune_cache(tmp_path, now=NOW).removed == 1


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"max_age_days": -1.0}, ValueError, "max_age_days must be >= 0"),
        ({"max_age_days": float("nan")}, ValueError, "max_age_days"),
        ({"max_age_days": "30"}, TypeError, "got str"),
        ({"max_bytes": -1}, ValueError, "max_bytes must be >= 0"),
        ({"max_bytes": 1.5}, TypeError, "max_bytes must be an int, got float"),
        ({"max_bytes": True}, TypeError, "got bool"),
    ],
)
def test_bad_limits_are_named(tmp_path, arguments, error, words):
    with pytest.raises(error, match=words):
        prune_cache(tmp_path, **arguments)


def test_a_missing_directory_prunes_nothing(tmp_path):
    report = prune_cache(tmp_path / "absent")
    assert (report.removed, report.kept) == (0, 0)


@pytest.mark.skipif(build.probe() is not None, reason=f"cpp backend unavailable: {build.probe()}")
def test_loading_marks_a_library_used_and_compiling_prunes(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(build.CACHE_ENV, str(cache))
    build.reset()
    try:
        exported = '__attribute__((visibility("default"))) '
        source = exported + "int snn_answer(void) { return 42; }\n"
        build.load_library(source, None)
        (library,) = [p for p in cache.glob("*.so") if "snn_answer" in p.with_suffix(".c").read_text()]
        os.utime(library, (time.time() - 400 * DAY,) * 2)
        old = _entry(cache, 7, age_days=(NOW - time.time()) / DAY + MAX_AGE_DAYS + 1)
        build.reset()
        assert build.load_library(source, None).snn_answer() == 42  # from the cache: marked used
        assert time.time() - library.stat().st_mtime < DAY
        assert all(p.exists() for p in old)  # loading alone does not prune
        build.load_library(exported + "int snn_other(void) { return 7; }\n", None)  # a compilation prunes
        assert not any(p.exists() for p in old) and library.exists()
    finally:
        build.reset()

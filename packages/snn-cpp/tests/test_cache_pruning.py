"""Pruning of the kernel cache: unused entries go, a size limit holds, busy entries stay."""

from __future__ import annotations

import hashlib
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


def test_entries_holding_a_directory_or_a_link_are_left_alone(tmp_path):
    odd = tmp_path / f"{7:032x}-{'ab' * 8}.so"
    odd.mkdir()
    target = tmp_path / "elsewhere.so"
    target.write_bytes(b"\0" * 100)
    link = tmp_path / f"{8:032x}-{'ab' * 8}.so"
    link.symlink_to(target)
    os.utime(link, (NOW - 400 * DAY,) * 2, follow_symlinks=False)
    stale = [_entry(tmp_path, i, MAX_AGE_DAYS + 1) for i in range(3)]
    report = prune_cache(tmp_path, now=NOW)
    assert report.removed == 3 and not any(p.exists() for files in stale for p in files)
    assert odd.is_dir() and link.is_symlink() and target.exists()


def test_an_entry_used_after_the_scan_stays(tmp_path, monkeypatch):
    """The decision is checked again under the entry's lock: a library loaded (and so marked
    used) between the scan and the removal stays."""
    from snn_cpp import cache_pruning

    files = _entry(tmp_path, 1, MAX_AGE_DAYS + 1)
    library = next(p for p in files if p.suffix == ".so")
    scan = cache_pruning._entries

    def scan_then_use(directory):
        found = scan(directory)
        os.utime(library, (NOW,) * 2)  # another process loads it now
        return found

    monkeypatch.setattr(cache_pruning, "_entries", scan_then_use)
    report = prune_cache(tmp_path, now=NOW)
    assert report.removed == 0 and all(p.exists() for p in files)


def test_a_missing_directory_prunes_nothing(tmp_path):
    report = prune_cache(tmp_path / "absent")
    assert (report.removed, report.kept) == (0, 0)


@pytest.mark.skipif(build.probe() is not None, reason=f"cpp backend unavailable: {build.probe()}")
def test_a_builder_that_waited_on_a_removed_lock_file_still_excludes_pruning(tmp_path):
    """Pruning removes an entry's lock file while it holds it. A builder waiting on that file
    must not then compile under a lock that no one else can see: a second prune would delete
    its source midway (the build failed with "No such file")."""
    from snn_cpp.file_locks import exclusive_lock

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    slow = tmp_path / "slowcc"
    slow.write_text(f'#!/bin/sh\nsleep 1\nexec "{build.compiler_command()[0]}" "$@"\n')
    slow.chmod(0o755)
    chain = f"snn_cpp.build.Toolchain(({str(slow)!r},), 'slow', ('-shared', '-fPIC', '-O0'), (), False, False, '{'0' * 16}')"
    source = '__attribute__((visibility("default"))) int snn_seven(void) { return 7; }\n'
    name = f"{hashlib.sha256(source.encode()).hexdigest()[:32]}-{'0' * 16}"
    builder = textwrap.dedent(f"""
        import snn_cpp.build
        print("start", flush=True)
        print(snn_cpp.build.load_library({source!r}, None, {chain}).snn_seven(), flush=True)
    """)
    env = {**os.environ, build.CACHE_ENV: str(cache)}
    lock = cache / f"{name}.lock"
    with exclusive_lock(lock) as held:  # a pruner inside its removal
        assert held
        process = subprocess.Popen([sys.executable, "-c", builder], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "start"
        time.sleep(0.5)  # the builder found no library and waits on the lock file
        lock.unlink()
    deadline = time.time() + 60
    while not (cache / f"{name}.c").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    prune_cache(cache, max_bytes=0)  # while the builder compiles (1 s)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and out.strip() == "7", err


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

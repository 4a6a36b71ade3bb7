"""Faults (issue #17 item 3): kill -9 while writing, a failing writer, two runs on one folder.

What must hold after each fault: the previous output is intact (or the new one is
complete), nothing half-written is ever read as valid, and the next write of the same
target cleans up and succeeds. ``kill -9`` tests run a real subprocess; the ones that
kill at chosen points inside the writer make the timing exact, the ``slow`` one kills
a real ``multibone stack --run`` at several moments.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multibone._atomic import LOCK_NAME, atomic_path, folder_lock
from multibone.bundle import load_bundle, save_bundle, verify_bundle
from multibone.cli import main
from multibone.errors import BundleError

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    return env


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if not p.name.startswith(LOCK_NAME)
    }


def _bundle_inputs(bundle: Path) -> tuple[dict, dict]:
    """(meta, files) that save_bundle needs to write ``bundle`` again."""
    meta = json.loads((bundle / "bundle.json").read_text())
    files = {rel: bundle / rel for rel in meta.pop("files")}
    meta.pop("format_version")
    meta.pop("multibone_version")
    return meta, files


# ----------------------------------------------------------------------------- kill -9 in the writer

#: kills the writing process (SIGKILL, no cleanup) at the n-th call of a function inside
#: save_bundle: while copying files, while hashing them, and between the two renames that
#: replace an existing bundle (old folder moved aside, new one not yet moved in).
_KILLER = r"""
import json, os, shutil, signal, sys
from pathlib import Path
import multibone._atomic as atomic
import multibone.bundle.store as store

where, n, target, src = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
meta = json.loads((src / "bundle.json").read_text())
files = {rel: src / rel for rel in meta.pop("files")}
meta.pop("format_version"); meta.pop("multibone_version")
calls = {"n": 0}

def killing(fn):
    def wrapped(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*a, **k)
    return wrapped

if where == "copy":
    store.shutil.copy2 = killing(shutil.copy2)
elif where == "hash":
    store.sha256_file = killing(store.sha256_file)
elif where == "replace":
    atomic.os.replace = killing(os.replace)
store.save_bundle(target, meta, files=files, force=True)
print("finished")
"""


@pytest.mark.parametrize("where, n", [("copy", 2), ("hash", 3), ("replace", 2)])
def test_kill_9_during_bundle_write(mini_bundle, tmp_path, where, n):
    target = tmp_path / "bundle"
    shutil.copytree(mini_bundle, target)
    before = verify_bundle(target)["files"]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, where, str(n), str(target), str(mini_bundle)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if where == "replace":
        # killed with the old bundle moved aside: readers are told where it is, never
        # handed a partial bundle
        with pytest.raises(BundleError, match=r"\.bundle\.old beside it holds the previous bundle"):
            load_bundle(target)
    else:
        assert verify_bundle(target)["files"] == before  # the old bundle, intact
        assert list(tmp_path.glob(".bundle.tmp-*"))  # the dead writer's temporary
    # the next write cleans up (dead writer's temporary, stranded .old) and succeeds
    meta, files = _bundle_inputs(mini_bundle)
    save_bundle(target, meta, files=files, force=True)
    assert verify_bundle(target)["files"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


# ----------------------------------------------------------------------------- failing writers


def test_failing_bundle_writer_leaves_the_old_bundle_intact(mini_bundle, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(mini_bundle, target)
    before = _snapshot(target)
    meta, files = _bundle_inputs(mini_bundle)
    files["zz_missing.csv"] = tmp_path / "nowhere.csv"  # fails after the other files are copied
    with pytest.raises(BundleError, match="no such file"):
        save_bundle(target, meta, files=files, force=True)
    assert _snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    load_bundle(target)


def test_failing_file_writer_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "predictions.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


# ----------------------------------------------------------------------------- the run lock

_HOLDER = r"""
import sys, time
from multibone._atomic import folder_lock
with folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_run_on_a_locked_folder_is_refused(mini_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(mini_run, run, ignore=shutil.ignore_patterns("cohort"))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _snapshot(run)
        manifest = mini_run / "cohort" / "manifest.csv"
        rc = main(["stack", "--run", str(run), "--manifest", str(manifest), "--force"])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        assert f"{run} is in use by another multibone process (pid {holder.pid}" in err
        assert _snapshot(run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the lock died with its process: no stale lock to remove by hand
    with folder_lock(run):
        pass


def test_lock_is_reentrant_in_one_process_and_refuses_another(tmp_path):
    with folder_lock(tmp_path), folder_lock(tmp_path):
        proc = subprocess.run(
            [sys.executable, "-c", _HOLDER, str(tmp_path)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0 and "is in use by another multibone process" in proc.stderr
    assert not (tmp_path / f"{LOCK_NAME}.json").exists()


# ----------------------------------------------------------------------------- kill -9 during `stack`


@pytest.mark.slow
def test_kill_9_during_stack_at_several_moments(mini_run, tmp_path):
    """``multibone stack --run`` killed at 15 %, 35 %, 55 %, 75 % and 95 % of its usual
    time: after each kill the run's bundle loads (old or new, never partial) and
    stacking/ holds a loadable stacker; a final run then completes."""
    from multibone.io.modelfile import load_model

    run = tmp_path / "run"
    shutil.copytree(mini_run, run)
    argv = [
        sys.executable,
        "-m",
        "multibone",
        "stack",
        "--run",
        str(run),
        "--manifest",
        str(run / "cohort" / "manifest.csv"),
        "--config",
        str(run / "config.yaml"),
        "--force",
        "--bootstrap",
        "20",
    ]
    t0 = time.perf_counter()
    subprocess.run(argv, env=_env(), check=True, capture_output=True, timeout=600)
    full = time.perf_counter() - t0
    survived = []
    for fraction in (0.15, 0.35, 0.55, 0.75, 0.95):
        proc = subprocess.Popen(
            argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            load_bundle(run / "bundle")
        except BundleError as exc:  # only the stranded-.old window is acceptable
            assert ".bundle.old beside it" in str(exc)
        load_model(run / "stacking" / "stacker.skops")
        survived.append(fraction)
    subprocess.run(argv, env=_env(), check=True, capture_output=True, timeout=600)
    load_bundle(run / "bundle")
    assert not list(run.glob(".*.tmp-*")) and not list(run.glob(".*.old"))
    assert len(survived) == 5


def test_sweep_removes_only_temporaries_of_dead_writers(tmp_path):
    """A concurrent live writer's temporary is left alone; a dead one's is removed."""
    from multibone._atomic import atomic_dir

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (tmp_path / f".out.tmp-{live.pid}-abc").mkdir()
        (tmp_path / f".out.tmp-{dead.pid}-abc").mkdir()
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "x.txt").write_text("new")
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == [f".out.tmp-{live.pid}-abc", "out"]
    finally:
        live.kill()
        live.wait()

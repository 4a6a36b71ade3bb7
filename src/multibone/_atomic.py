"""Atomic file and folder writes: nothing half-written is ever left behind.

Writes go to a temporary sibling (``.<name>.tmp-<pid>-*``) renamed into place, so a
reader sees the old file/folder or the new one, never a mix. A process killed
outright (``kill -9``, power loss) cannot clean up after itself: the next write of
the same target removes temporaries whose process is gone, and restores a folder
left as ``.<name>.old`` by a kill between the two renames of a replacement.

:func:`folder_lock` keeps two processes from writing one run folder at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Name of the lock file inside a locked folder (and of its ``.json`` description).
LOCK_NAME = ".multibone.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-{os.getpid()}-"


def _sweep(target: Path) -> None:
    """Remove temporaries of ``target`` left by dead processes; restore a stranded ``.old``."""
    parent = target.parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{target.name}.tmp-*-*"):
        try:
            pid = int(p.name[len(f".{target.name}.tmp-") :].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            log.info("removing %s, left by process %d that no longer runs", p, pid)
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    old = target.with_name(f".{target.name}.old")
    if old.exists() and not target.exists():
        # killed between moving the old folder aside and moving the new one in
        log.warning("restoring %s from %s (a previous write was interrupted)", target, old)
        os.replace(old, target)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep(target)
    fd, tmp = tempfile.mkstemp(
        prefix=_tmp_prefix(target), suffix=suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o644)  # mkstemp makes it private; the result is an ordinary file
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; move it into place on success.

    An existing ``target`` is replaced only when ``force`` is true (checked
    before any work, so a refusal writes nothing).
    """
    target = Path(target)
    _sweep(target)
    if target.exists() and not force:
        from multibone.errors import InputError

        raise InputError(f"{target} already exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_HELD: dict[str, int] = {}


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block; refuse at once if another process holds it.

    The folder is created if needed; the lock file (and the folder, if it was made here
    and is still empty) are removed afterwards. The lock is the operating system's (``filelock``: ``flock`` on POSIX), so it
    ends with its process however that ends (even ``kill -9``): a lock is never
    stale. The same process may take it again inside the block. Raises
    :class:`~multibone.errors.InputError` naming the folder and the holder's pid.
    """
    from filelock import FileLock, Timeout

    from multibone.errors import InputError

    folder = Path(folder)
    created_dir = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    lock_path = folder / LOCK_NAME
    created_lock = not lock_path.exists()
    lock = FileLock(str(lock_path))
    info = folder / f"{LOCK_NAME}.json"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = json.loads(info.read_text(encoding="utf-8"))
            who = f"pid {holder['pid']}, since {holder['started']}"
        except (OSError, ValueError, KeyError):
            who = "pid unknown"
        raise InputError(
            f"{folder} is in use by another multibone process ({who}); wait for it to finish, "
            "or write to another folder. Two runs writing one folder would mix their outputs"
        ) from None
    _HELD[key] = 1
    try:
        info.write_text(
            json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}),
            encoding="utf-8",
        )
        yield folder
    finally:
        _HELD.pop(key, None)
        info.unlink(missing_ok=True)
        lock.release()
        # leave the folder as found: a refused command writes nothing. (A process that
        # opened the lock file in the instant between release and unlink could lock the
        # unlinked file; two runs starting within microseconds of each other are not guarded.)
        if created_lock:
            lock_path.unlink(missing_ok=True)
        if created_dir:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def locks_folder(arg: str):
    """Decorator: hold :func:`folder_lock` on the folder passed as argument ``arg``."""
    import functools
    import inspect

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            with folder_lock(Path(bound.arguments[arg])):
                return fn(*args, **kwargs)

        return locked

    return wrap

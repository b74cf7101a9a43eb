"""One process per run folder: a lock held for the life of the run, and clean-up of what dead runs left.

The lock is ``fcntl.flock`` on ``RUN/.lock``. The kernel drops it when the holder ends in any way
(exit, exception, Ctrl-C, SIGKILL, a lost node's process), so a lock of a dead process never
blocks a new run: it is taken over (and said so). The file's content (pid, host, start time,
command) only tells a second process who holds the folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from mdlm_dna.utils.errors import RunDirError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_TMP = re.compile(r"^\..+\.tmp\d+$")  # AtomicCheckpointIO's temporary files: .NAME.tmpPID


def launcher_rank_zero() -> bool:
    """Whether this process is global rank 0 (or the only one), from the launchers' environment variables.

    Known before any Trainer exists: torchrun sets RANK / GROUP_RANK, SLURM sets SLURM_PROCID, and
    Lightning's own launcher gives the processes it starts LOCAL_RANK and (other nodes) NODE_RANK.
    """
    names = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
    return all(int(os.environ.get(v) or 0) == 0 for v in names)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """Exclusive use of ``run_dir`` for as long as the ``with`` block (or the process) lasts."""

    def __init__(self, run_dir: str | os.PathLike, kind: str = "pretrain"):
        self.run_dir, self.kind = Path(run_dir), kind  # kind: what holds it, for the messages of others
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"{self.run_dir}: cannot create the run folder's lock file ({e.strerror})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
            raise RunDirError(
                f"{self.run_dir} is in use by another run ({who}); wait for it to finish or stop it, "
                "or choose another hydra.run.dir"
            ) from None
        except OSError as e:  # a file system without flock (some network mounts): run unguarded, but say so
            log.warning("%s: cannot lock the run folder (%s); make sure no other run uses it", self.run_dir, e)
        previous = self.holder()
        if previous.get("pid") and not previous.get("released"):
            alive = previous.get("host") == socket.gethostname() and _pid_alive(int(previous["pid"]))
            log.warning(
                "%s: taking over the lock of pid %s on %s%s (it ended without releasing it)",
                self.run_dir, previous["pid"], previous.get("host", "?"), "" if alive else ", no longer running",
            )  # fmt: skip
        record = {
            "kind": self.kind,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            record = {**self.holder(), "released": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(record).encode(), 0)
        except OSError:  # a full disk must not hide the run's own error
            pass
        finally:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary checkpoint files (``.NAME.tmpPID``) a killed run left in ``folder``.

    Called while holding the run folder's lock: no other process writes there, so every such file
    is a leftover (up to a whole checkpoint's size each).
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if _TMP.match(p.name) and p.is_file():
                size = p.stat().st_size
                p.unlink(missing_ok=True)
                removed.append(p)
                log.warning("removed %s (%.1f MB), left by a run killed while writing a checkpoint", p, size / 1e6)
    return removed


def check_free_space(folder: str | os.PathLike, needed: int, what: str, hint: str = "") -> None:
    """Raise a :class:`RunDirError` before a write of about ``needed`` bytes that the disk cannot hold."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise RunDirError(
            f"not enough space for {what} in {folder}: needs about {needed / 1e6:,.1f} MB, "
            f"{free / 1e6:,.1f} MB free; free some space{hint or ' or write to another folder'}"
        )


def running_pretrain(path: str | os.PathLike) -> Path | None:
    """The run folder holding ``path`` (the folder itself or one above it) whose lock a live process holds, if any.

    A shared, non-blocking ``flock`` probe: it fails only while a holder (a ``pretrain``) is alive; the
    probe is released at once, so a run starting next is not disturbed."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        lock = folder / LOCK_NAME
        if not lock.is_file():
            continue
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return folder
        except OSError:  # no flock on this file system: cannot tell
            continue
        finally:
            os.close(fd)  # also drops the probe's shared lock
    return None


def check_not_in_use(path: str | os.PathLike, what: str = "write") -> None:
    """Refuse to write into (or under) a run folder while a ``pretrain`` holds its lock: its files are changing.

    >>> check_not_in_use("runs/a/samples.fa")   # raises RunDirError while `pretrain hydra.run.dir=runs/a` runs
    """
    folder = running_pretrain(path)
    if folder is not None:
        h = RunLock(folder).holder()
        who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
        raise RunDirError(f"{path}: cannot {what} there: {folder} is in use by a running {h.get('kind', 'pretrain')} "
                          f"({who}); wait for it to finish, or write somewhere else")

"""One writer per run directory: the lock file ``RUN/.lock``.

The runner holds the lock for the whole run (under ``torchrun``, rank 0 holds it for the job; the other
ranks only write their own rank files inside it). The file names its owner (pid, host, config hash, start
time) and is held with ``flock``, which the kernel releases when the owner dies. A second writer:

- with **another config** stops at once with a one-line :class:`~gligen_eval.errors.RunLockedError`
  (exit 2) naming the directory and the owner;
- with the **same config** waits for the owner to finish (at most ``GLIGEN_EVAL_LOCK_WAIT`` seconds,
  default 600, with one message), then goes on as a rerun of the run the owner wrote: nothing is
  generated again and the metrics are recomputed from the cached records;
- finds a **stale lock** (same host, owner process gone) and takes it over with a warning.

A lock written on another host whose owner holds no ``flock`` cannot be judged from here: it counts as
held, and the error says which file to delete if that process is gone.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gligen_eval.errors import ConfigError, RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: only the owner's pid and host decide
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("gligen_eval")

LOCK_NAME = ".lock"
WAIT_ENV = "GLIGEN_EVAL_LOCK_WAIT"
DEFAULT_WAIT_S = 600.0


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OSError:
        return False
    now = _process_start(pid)
    return not (start and now and now != start)


@dataclass(frozen=True)
class Owner:
    """Who holds a run directory's lock, as its lock file says."""

    pid: int
    host: str
    config_hash: str | None
    started: str = "?"
    pid_start: str | None = None

    @classmethod
    def me(cls, config_hash: str) -> "Owner":
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), config_hash, now, _process_start(os.getpid()))

    @classmethod
    def parse(cls, text: str) -> "Owner | None":
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), str(d["host"]), d.get("config_hash"), str(d.get("started", "?")),
                       d.get("pid_start"))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "config_hash": self.config_hash,
                           "started": self.started, "pid_start": self.pid_start,
                           "argv": " ".join(sys.argv)[:500]}) + "\n"  # fmt: skip

    def __str__(self) -> str:
        cfg = (self.config_hash or "?")[:12]
        return f"pid {self.pid} on {self.host} (config {cfg}, since {self.started})"


def _flock(fd: int) -> bool | None:
    """Take ``fd``'s exclusive flock without waiting: True taken, False held by another, None unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None  # a file system without flock: only pid and host decide


def lock_wait_s() -> float:
    """How long a writer with the same config waits for the owner (``GLIGEN_EVAL_LOCK_WAIT`` seconds)."""
    raw = os.environ.get(WAIT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{WAIT_ENV}={raw!r}: expected a number of seconds") from None
    if not value >= 0:
        raise ConfigError(f"{WAIT_ENV}={raw!r}: expected a number of seconds >= 0")
    return value


class RunLock:
    """The writer lock of one run directory; ``with RunLock(root, config_hash):`` holds it."""

    def __init__(self, root: str | os.PathLike[str], config_hash: str, *, wait: float | None = None,
                 poll: float = 0.25):  # fmt: skip
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.config_hash = config_hash
        self.wait = wait
        self.poll = poll
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> "RunLock":
        """Take the lock (see the module docstring for what happens when someone else holds it)."""
        from gligen_eval.store import ensure_dir

        if self.held:
            return self
        ensure_dir(self.root)
        wait = lock_wait_s() if self.wait is None else self.wait
        deadline: float | None = None
        while True:
            owner = self._try_take()
            if owner is None:
                return self
            elsewhere = "" if owner.host == socket.gethostname() else (
                f" (if that process is no longer running, delete {self.path})")  # fmt: skip
            if owner.config_hash != self.config_hash:
                raise RunLockedError(f"{self.root} is being written by {owner} with another config; wait for it "
                                     f"to finish or choose another --out{elsewhere}", path=str(self.root))  # fmt: skip
            if deadline is None:
                deadline = time.monotonic() + wait
                if wait > 0:
                    log.warning("%s: being written by %s with the same config; waiting for it to finish (up to "
                                "%g s), then continuing from what it wrote", self.root, owner, wait)  # fmt: skip
            if time.monotonic() >= deadline:
                raise RunLockedError(f"{self.root} is still being written by {owner} with the same config after "
                                     f"waiting {wait:g} s; run again once it has finished (or set {WAIT_ENV} to "
                                     f"wait longer){elsewhere}", path=str(self.root))  # fmt: skip
            time.sleep(self.poll)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._same_file(fd):
                os.unlink(self.path)  # while still holding the flock: a waiter then sees a new file
        except OSError:
            pass
        os.close(fd)

    # ------------------------------------------------------------------------------------------

    def _same_file(self, fd: int) -> bool:
        try:
            a, b = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def _read_owner(self, fd: int, *, settle: float = 0.0) -> Owner | None:
        """The owner the file names; ``settle``: how long to wait for a just-created file's content."""
        end = time.monotonic() + settle
        while True:
            text = os.pread(fd, 65536, 0).decode("utf-8", "replace")
            owner = Owner.parse(text) if text.strip() else None
            if owner is not None or time.monotonic() >= end:
                return owner
            time.sleep(0.05)

    def _try_take(self) -> Owner | None:
        """``None`` when this process now holds the lock, else the owner who holds it."""
        from gligen_eval.store import writing

        with writing(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            got = _flock(fd)
            if got is False:  # a live owner holds it
                owner = self._read_owner(fd, settle=2.0)
                os.close(fd)
                return owner or Owner(-1, "?", None)
            if got and not self._same_file(fd):  # released (and removed) while we opened it: try again
                os.close(fd)
                return self._try_take()
            owner = self._read_owner(fd)
            me = Owner.me(self.config_hash)
            if owner is not None and (owner.pid, owner.host) != (me.pid, me.host):
                if owner.host != me.host or _alive(owner.pid, owner.pid_start):
                    os.close(fd)  # cannot tell it is gone (another host), or it runs without holding the flock
                    return owner
                log.warning("%s: taking over the lock of %s, which is no longer running", self.root, owner)
            with writing(self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, me.to_json().encode("utf-8"), 0)
                os.fsync(fd)
        except BaseException:
            if self._fd != fd:
                os.close(fd)
            raise
        self._fd = fd
        return None

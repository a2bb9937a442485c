"""One process per run folder: an advisory lock that a second compress on the same folder cannot take.

The lock is ``fcntl.flock`` on ``OUT.partial/.lock``; the kernel drops it when the owner exits in
any way (Ctrl-C, crash, kill -9), so a dead run never blocks its own ``--resume``. The owner's pid
is written into the file only so the refusal can name it.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import SensiEdgeError

LOCK_NAME = ".lock"


class RunLock:
    """Held for a run's whole life, through the rename of the folder to its final name."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SensiEdgeError(f"another sensi-edge run (pid {owner}) is working in {self.path.parent}; wait for it "
                                 "to finish or stop it, then rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the flock. The file stays: deleting it while another process holds it open would let that
        process lock a nameless inode while a third locks a new file of the same name. compress removes
        it only from the published folder, once no run can open it by the old path any more."""
        if self._fd is None:
            return
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def owner_of(folder: Path) -> str | None:
    """The pid holding ``folder``'s lock, or None when no live process holds it."""
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)
    return None

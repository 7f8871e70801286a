"""The data dir's exclusive lock: ``fcntl.flock`` on a ``LOCK`` file.

The kernel releases a flock when its open file description is closed, so the
lock goes away with the process that holds it, SIGKILL included. Locks are
per open file description: a second store opened on the same dir in the same
process is refused too. The file stays in place (deleting it would race with
a process about to lock it); it holds the holder's pid for error messages.
Local filesystems only: flock over NFS may not exclude.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from statesync.errors import DataDirInUse, StorageError

LOCK_NAME = "LOCK"
_PID_BYTES_MAX = 32


class DirLock:
    """An acquired lock; ``release`` (idempotent) gives it up."""

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StorageError(
                f"cannot open the lock file {path}: {e.strerror}; check the data dir's permissions"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if holder == os.getpid():
                who = "another store open in this process"
            else:
                who = f"process {holder}" if holder else "another process"
            raise DataDirInUse(
                f"data dir {data_dir} is in use by {who}; stop it (or close that store) "
                "or choose another data_dir"
            ) from exc
        except OSError as e:
            os.close(fd)
            raise StorageError(
                f"cannot lock {path}: {e.strerror}; put the data dir on a local filesystem"
            ) from e
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for messages
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the description releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, _PID_BYTES_MAX, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None

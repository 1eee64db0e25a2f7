"""Writing report files safely: atomic replace, and a writability check before a scan."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from leakaudit.errors import InputError


def check_writable(path: str | Path) -> None:
    """Raise :class:`InputError` unless ``path`` can be created or replaced.

    Checked before a scan or a validation starts, so a long run never ends in an
    unwritable path. A file is really created (and removed) beside ``path``: root passes
    ``os.access`` everywhere, even in ``/proc`` and ``/sys``, where no file can be made.
    An existing file that is not a regular file (``/dev/null``, a pipe) is written in place.
    """
    path = Path(path)
    parent = path.parent
    try:
        if path.is_dir():
            raise InputError(f"cannot write {path}: it is a directory")
        if not parent.is_dir():
            raise InputError(f"cannot write {path}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"cannot write {path}: directory {parent} is not writable")
        if path.exists() and not os.access(path, os.W_OK):
            raise InputError(f"cannot write {path}: file is not writable")
        if path.exists() and not path.is_file():
            return
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(
            f"cannot write {path}: cannot create files in {parent} ({reason})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _new_file_mode(path: Path) -> int:
    """The mode ``path`` keeps when replaced, or that a new file gets under the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then ``os.replace`` it: readers
    see the old file or the whole new one, never half of it.

    A new file gets the mode the umask allows (as ``open`` would), a replaced file keeps
    its mode; an existing non-regular file (``/dev/null``, a pipe) is written in place,
    never replaced.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if path.exists() and not path.is_file():
        with open(path, "wb") as fh:
            fh.write(payload)
        return
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Writing files safely: a complete new file or none (write beside, then rename)."""

from __future__ import annotations

import contextlib
import os
import uuid


def atomic_write(path, write):
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable taking a binary file handle

    Notes
    -----
    The temporary file (``.NAME.<random>.tmp``, hidden) is created in the same folder, so that
    :func:`os.replace` is an atomic rename, with the permissions a new file would get. It is
    removed if anything fails or the process is interrupted (``KeyboardInterrupt``), and
    ``path`` is then left untouched: a reader never sees a half-written file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path must be a file name, got the folder {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise

"""Files and folders: written so that a crash leaves either the old data or the new, never half, and
read only when they are regular files (a FIFO would block the reader, a device would never end)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

RENAME_EXCHANGE = 2  # renameat2's flag: swap two paths in one step
_AT_FDCWD = -100  # renameat2's "relative to the working directory"
_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a sibling temporary file, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _regular(fd: int) -> BinaryIO:
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fdopen(fd, "rb")
    os.close(fd)
    raise OSError(f"{_KINDS.get(stat.S_IFMT(mode), 'something')}, not a regular file")


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading, refused with OSError unless it is a regular file.

    It is opened without blocking, so that a FIFO is refused at once instead of waiting for a writer,
    and checked on the open file itself, so that it cannot be swapped between the check and the read.
    """
    return _regular(os.open(path, os.O_RDONLY | os.O_NONBLOCK))


def open_inside(folder: Path, relative: str) -> BinaryIO:
    """The regular file at the '/'-separated `relative` path in `folder`, opened for reading without
    following a symbolic link at any step, so that it cannot lead out of `folder`; else OSError."""
    parts = relative.split("/")
    if relative.startswith("/") or ".." in parts:
        raise OSError(f"{relative} leads out of {folder}")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        return _regular(os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=fd))
    finally:
        os.close(fd)


def read_bounded(file: BinaryIO, limit: int) -> bytes:
    """The bytes of an open file, which it closes; OSError, once `limit` bytes and one more are read,
    when it holds more than `limit`."""
    with file as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"it is larger than {limit:,} bytes, the most read from such a file")
    return data


def staged(target: Path) -> Path:
    """Where the folder that is to replace `target` is built."""
    return target.with_name(f".{target.name}.new")


def aside(target: Path) -> Path:
    """Where `target` is moved while it is replaced, until it is deleted."""
    return target.with_name(f".{target.name}.old")


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # a C library older than glibc 2.28
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def exchange(a: Path, b: Path) -> bool:
    """Swap the two existing paths `a` and `b` in one step; False where the system or the file system
    cannot (renameat2's RENAME_EXCHANGE needs Linux 3.15 and a file system that has it)."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(a), None, str(b))


def replace_folder(new: Path, target: Path) -> None:
    """Put the complete folder `new` in the place of `target`, which may exist.

    Where the system can, the two are exchanged in one step; the old folder, now at `new`, is moved
    aside and deleted. Elsewhere the old folder is moved aside first and `new` moved in after it: a
    crash between the two leaves no folder at `target` but both beside it, whole, and
    `recover_folder` puts the new one in place. Either way a crash never leaves a mix.
    """
    old = aside(target)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists() and exchange(new, target):
        os.replace(new, old)
    else:
        if target.exists():
            os.replace(target, old)
        os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(target: Path, complete: Callable[[Path], bool]) -> bool:
    """Finish a replace_folder of `target` that a crash stopped between its two renames: when there
    is no `target` and both its staged and its aside folders are `complete`, move the staged one in
    and delete the other. Whether it did."""
    new, old = staged(target), aside(target)
    if target.exists() or not (complete(new) and complete(old)):
        return False
    try:
        os.rename(new, target)
    except OSError:
        if not target.exists():
            raise
        return False  # another process recovered it first
    shutil.rmtree(old, ignore_errors=True)
    return True


def recover_folders(root: Path, complete: Callable[[Path], bool]) -> None:
    """recover_folder for every folder in `root` whose replacement a crash stopped half way."""
    for new in root.glob(".*.new"):
        recover_folder(root / new.name[1 : -len(".new")], complete)

"""File-system steps of saving and loading: regular files only, exact sizes, synced writes."""

import errno
import hashlib
import mmap
import os
import stat

from ..errors import CacheFileNotFoundError, CacheIOError, CorruptFileError, TruncatedFileError

# O_NONBLOCK: opening a FIFO would otherwise wait for a writer before fstat
# could tell it is not a file. O_NOFOLLOW: a symlink fails to open at all.
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_BINARY", 0))
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def open_regular(path):
    """``(fd, size)`` of the regular file ``path``, opened read-only.

    Symlinks, directories, devices, FIFOs and sockets are refused with a
    :class:`CorruptFileError`: a saved cache holds regular files only, and
    reading ``/dev/zero`` or a FIFO would never end.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise CacheFileNotFoundError(f"{path}: missing; the save is incomplete or was moved") \
            from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptFileError(f"{path}: a symbolic link; a saved cache holds regular "
                                   "files only") from None
        raise CacheIOError(exc.errno, f"{path}: cannot open ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        raise CorruptFileError(f"{path}: {kind}, expected a regular file; a saved cache holds "
                               "regular files only")
    return fd, info.st_size


def check_directory(path):
    """Refuse a data directory that is a symlink or not a directory at all."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise CacheFileNotFoundError(f"{path}: missing; the save is incomplete or was moved") \
            from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise CorruptFileError(f"{path}: expected the save's data directory, found "
                               f"{'a symbolic link' if stat.S_ISLNK(info.st_mode) else 'a file'}")


def read_exactly(fd, size, where):
    """The first ``size`` bytes of ``fd`` as a writable ``bytearray``; never reads more."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
        f.seek(0)
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                raise TruncatedFileError(f"{where}: truncated while reading: expected "
                                         f"{size:,} bytes, got {got:,}")
            got += n
    return buffer


def map_private(fd, size):
    """A copy-on-write mapping of the first ``size`` bytes: writes never reach the file."""
    if size == 0:
        return bytearray()
    return mmap.mmap(fd, size, access=mmap.ACCESS_COPY)


def sha256(buffer):
    return hashlib.sha256(memoryview(buffer)).hexdigest()


def write_synced(file, parts):
    """Write ``parts`` to a new file and flush it to disk; returns its size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    with open(file, "xb") as f:
        for part in parts:
            f.write(part)
            digest.update(part)
            size += len(part)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": size, "sha256": digest.hexdigest()}


def fsync_dir(path):
    """Make renames and creations inside ``path`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its renames are durable there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

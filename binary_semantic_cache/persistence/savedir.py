"""One save at a time into a directory, and only into a directory that is ours.

Besides ``manifest.json`` and the data directory it names, a save directory
holds two files of ours::

    .bsc-lock       locked for the length of a save, across processes (flock)
    .bsc-journal    names our saves created there and have not removed yet

A save writes the names it is about to create into the journal before it
creates them, so a save killed half way leaves nothing a later save does not
know to remove. Nothing else is ever deleted: not a file of the user's, and
never the data directory the current manifest names.
"""

import json
import os
import re
import shutil
import stat
import threading
from pathlib import Path

from ..errors import CorruptFileError, ForeignDirectoryError
from . import files as fs

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

MANIFEST = "manifest.json"
FORMAT = "binary_semantic_cache"
LOCK = ".bsc-lock"
JOURNAL = ".bsc-journal"
_FIXED = {LOCK, JOURNAL, JOURNAL + ".tmp"}
_JOURNAL_HEAD = "binary_semantic_cache journal 1"
_LOCK_TEXT = b"binary_semantic_cache: locked while a save is written\n"
MANIFEST_LIMIT = 1 << 20  # bytes; ours are well under 1 KB
# What our saves name their data directories; and those, their staging directories and
# temporary manifests.
DATA_NAME = re.compile(r"data-[0-9a-f]{1,32}-[0-9a-f]{1,32}\Z")
_OURS = re.compile(r"(data-|\.data-|\.manifest\.json\.)[0-9a-f]{1,32}-[0-9a-f]{1,32}(\.tmp)?\Z")

_thread_locks = {}
_thread_locks_guard = threading.Lock()


def read_manifest_bytes(path):
    """The raw ``manifest.json`` of ``path``: a regular file of at most ``MANIFEST_LIMIT``."""
    file = Path(path) / MANIFEST
    fd, size = fs.open_regular(file)
    try:
        if size > MANIFEST_LIMIT:
            raise CorruptFileError(f"{file}: {size:,} bytes, more than any manifest "
                                   f"({MANIFEST_LIMIT:,}); not a saved cache's manifest")
        return bytes(fs.read_exactly(fd, size, file))
    finally:
        os.close(fd)


def manifest_owner(raw):
    """``(ours, data)``: whether a manifest is one of ours, and the data directory it names."""
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return False, None
    data = manifest.get("data")
    return True, data if isinstance(data, str) and DATA_NAME.match(data) else None


class SaveDirectory:
    """``with SaveDirectory(path) as d:`` creates ``path`` if needed, proves it ours, locks it.

    The lock is held against other threads of this process and other
    processes. Inside, ``d.previous`` is the data directory the manifest names
    (None before the first save). ``record`` and ``tidy`` keep the journal.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.previous = None
        self.journal = set()
        self._fd = None

    def __enter__(self):
        path = self.path
        if path.exists() and not path.is_dir():
            raise ForeignDirectoryError(f"cannot save into {path}: it is a file; pass a "
                                        "directory path")
        path.mkdir(parents=True, exist_ok=True)
        if not (path / LOCK).exists():
            self._refuse_foreign(allow_journaled=False)
        key = os.path.realpath(path)
        with _thread_locks_guard:
            self._thread_lock = _thread_locks.setdefault(key, threading.Lock())
        self._thread_lock.acquire()
        try:
            self._fd = _lock(path / LOCK)
            self.journal = self._read_journal()
            self._refuse_foreign(allow_journaled=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the file lock
            self._fd = None
        self._thread_lock.release()

    def _refuse_foreign(self, *, allow_journaled):
        """Set ``previous``, or raise if the directory holds anything we did not write.

        A directory with our manifest is ours, whatever else the user keeps
        there; without one, every name in it must be ours.
        """
        names = set(os.listdir(self.path))
        if MANIFEST in names:
            try:
                raw = read_manifest_bytes(self.path)
            except CorruptFileError as exc:
                raise ForeignDirectoryError(
                    f"cannot save into {self.path}: its {MANIFEST} is not a file this library "
                    f"wrote ({exc}); save elsewhere, or move that file away") from None
            ours, self.previous = manifest_owner(raw)
            if not ours:
                raise ForeignDirectoryError(
                    f"cannot save into {self.path}: its {MANIFEST} is not a "
                    f"binary_semantic_cache manifest (no \"format\": \"{FORMAT}\"), and saving "
                    "would replace it; save into an empty or new directory")
            return
        foreign = sorted(names - _FIXED - (self.journal if allow_journaled else set()))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                              if len(foreign) > 5 else "")
            raise ForeignDirectoryError(
                f"cannot save into {self.path}: it holds other files ({shown}) and no saved "
                "cache; pass an empty or new directory")

    def _read_journal(self):
        try:
            lines = (self.path / JOURNAL).read_text("utf-8").splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            return set()
        if not lines or lines[0] != _JOURNAL_HEAD:
            return set()  # not a journal we wrote: trust none of its names
        return {name for name in lines[1:] if _OURS.match(name)}

    def record(self, names):
        """Note ``names`` as ours before creating them."""
        self.journal |= set(names)
        self._write_journal()

    def _write_journal(self):
        tmp = self.path / (JOURNAL + ".tmp")
        tmp.unlink(missing_ok=True)
        fs.write_synced(tmp, ["\n".join([_JOURNAL_HEAD, *sorted(self.journal)]).encode()])
        os.replace(tmp, self.path / JOURNAL)
        fs.fsync_dir(self.path)

    def tidy(self, keep):
        """Remove what our saves left behind, but the names in ``keep``.

        What cannot be removed now stays in the journal for the next save.
        """
        doomed = (self.journal | {self.previous}) - set(keep) - {None}
        left = {name for name in doomed if not _remove(self.path / name)}
        if left != self.journal:
            self.journal = left
            self._write_journal()


def _lock(file):
    fd = os.open(file, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # gives up after 10 s: go again
                    break
                except OSError:
                    continue
        if os.fstat(fd).st_size == 0:
            os.write(fd, _LOCK_TEXT)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove(path):
    """Remove a file or directory tree without following symlinks; False if it stays."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    try:
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:
        return not os.path.lexists(path)
    return True

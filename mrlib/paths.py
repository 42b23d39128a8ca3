"""Where the suite keeps its files: the data root and the runs folder.

Nothing is hard-coded: ``MRLIB_DATA`` and ``MRLIB_RUNS`` override the defaults, which are
``data/`` and ``runs/`` next to the ``mrlib`` package (the repository root).

Folders that a process writes (a run folder, a catalog folder, a suite's output) are guarded by
:class:`FolderLock`, and small index files are replaced atomically (:func:`write_json_atomic`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from filelock import FileLock, Timeout

__all__ = ["repo_root", "data_dir", "runs_dir", "path_argument", "make_folder", "FolderLock",
           "LockedError", "describe_holder", "atomic_path", "write_json_atomic", "read_json_or_empty",
           "move_aside", "remove_dead_temporaries", "package_versions"]


def repo_root() -> Path:
    """The repository root: the folder that holds ``mrlib/``.

    Notebook: 00_overview.ipynb
    """
    return Path(__file__).resolve().parent.parent


def path_argument(text: str) -> str:
    """The ``type`` of a command line's path option: the text, or a usage error when it is empty.

    An empty path (often an unset shell variable, ``--root "$DIR"``) would be the current
    folder, so a build, run or suite would write there instead of being refused.

    Notebook: 00_overview.ipynb
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return text


def make_folder(path: str | os.PathLike, what: str = "folder") -> Path:
    """Create the folder ``path`` (and its parents) if missing.

    Raises
    ------
    ValueError
        When ``path``, or a folder above it, is a file: it names that file, instead of the
        ``FileExistsError`` or ``NotADirectoryError`` that ``mkdir`` would raise.

    Notebook: 00_overview.ipynb
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise ValueError(f"cannot use {path} as the {what}: {blocker} is a file, not a folder; "
                         "choose another path") from None
    return path


def data_dir() -> Path:
    """The data root (``$MRLIB_DATA`` or ``<repo>/data``), created if missing.

    Notebook: 00_overview.ipynb
    """
    return make_folder(os.environ.get("MRLIB_DATA", repo_root() / "data"),
                       "data root (MRLIB_DATA)")


def runs_dir() -> Path:
    """The folder for suite runs and training outputs (``$MRLIB_RUNS`` or ``<repo>/runs``).

    Notebook: 00_overview.ipynb
    """
    return make_folder(os.environ.get("MRLIB_RUNS", repo_root() / "runs"),
                       "runs folder (MRLIB_RUNS)")


# --------------------------------------------------------------------------------------------
# One writer per folder: an OS lock, dropped by the kernel when its holder dies, and a note
# naming the holder
# --------------------------------------------------------------------------------------------
class LockedError(RuntimeError):
    """Another process holds the lock of a folder (a run folder, a catalog folder).

    Notebook: 06_training.ipynb
    """


def describe_holder(holder: dict) -> str:
    """One line naming a lock's holder: pid, host, since when, and its command.

    Notebook: 06_training.ipynb
    """
    cmd = holder.get("command") or "?"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} "
            f"({cmd[:160]})")


class FolderLock:
    """An exclusive lock on a folder, with a note of who holds it.

    The lock is ``filelock``'s OS lock (``flock`` on POSIX) on ``<folder>/.mrlib.lock.os``. The
    kernel drops it when its holder exits, however it exits (``kill -9`` included), so a dead
    writer never blocks the next one and no pid has to be checked. That file stays after
    release, as ``filelock`` intends: contenders must share one inode. Once the lock is taken,
    ``<folder>/.mrlib.lock`` records the holder's pid, host, start time and command, and goes
    on release; a second writer gets :class:`LockedError` naming that holder. A note found
    when the lock is free was left by a writer that died: it is replaced, and ``log`` says
    so. A note from another host is not replaced: a network file system may not share OS
    locks between hosts, so that writer may still be running.

    Parameters
    ----------
    folder : path
        The folder to lock (created if missing).
    what : str
        What the folder is, for messages (``"training run"``, ``"catalog"``).
    log : callable, optional
        Receives one line when the note of a dead holder is replaced (default: print to stderr).
    file : str, optional
        Lock only this file of the folder, for a folder others share (one results file of
        ``data/results/``): the note is ``.<file>.lock`` and the OS lock ``.<file>.lock.os``.

    Examples
    --------
    >>> with FolderLock(some_folder, "catalog"):          # doctest: +SKIP
    ...     write_the_catalog(some_folder)

    Notebook: 06_training.ipynb
    """

    NAME = ".mrlib.lock"

    def __init__(self, folder: str | os.PathLike, what: str = "folder", log=None, *,
                 file: str | None = None) -> None:
        self.folder = Path(folder)
        self.what = what
        name = self.NAME if file is None else f".{file}.lock"
        self.path = self.folder / name
        self.where = f"{what} folder {self.folder}" if file is None else f"{what} {self.folder / file}"
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.held = False
        # timeout=0: a second writer is refused at once; thread_local=False: any thread of the
        # holder may release it, as with the object itself
        self._os_lock = FileLock(self.folder / f"{name}.os", timeout=0, thread_local=False)

    def acquire(self) -> "FolderLock":
        """Take the lock or raise :class:`LockedError` naming the holder (``ValueError`` when
        the folder's path is a file).

        Notebook: 06_training.ipynb
        """
        if self.held:
            return self
        make_folder(self.folder, f"{self.what} folder")
        try:
            self._os_lock.acquire()
        except Timeout:
            holder = read_json_or_empty(self.path)
            who = describe_holder(holder) if holder else "a process that is just starting"
            raise LockedError(f"the {self.where} is in use by {who}; wait "
                              f"for it to finish, or write elsewhere") from None
        try:
            left = read_json_or_empty(self.path)
            if left.get("host", socket.gethostname()) != socket.gethostname():
                raise LockedError(
                    f"the {self.where} is locked by {describe_holder(left)}, "
                    f"a process on another host that cannot be checked from here; if it is gone, "
                    f"delete {self.path} and try again")
            # the note: who holds the lock, for the message of a writer it refuses
            command = " ".join([os.path.basename(sys.executable), *sys.argv])[:400]
            write_json_atomic({"pid": os.getpid(), "host": socket.gethostname(),
                               "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "what": self.what,
                               "command": command}, self.path)
        except BaseException:
            self._os_lock.release()
            raise
        if left:
            self.log(f"[mrlib] recovered a stale lock on the {self.where}: its holder "
                     f"({describe_holder(left)}) is no longer running")
        self.held = True
        return self

    def release(self) -> None:
        """Give the lock back (only if this object holds it).

        Notebook: 06_training.ipynb
        """
        if not self.held:
            return
        # the note goes first: a note found under a free lock always means its writer died
        self.path.unlink(missing_ok=True)
        self._os_lock.release()
        self.held = False

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_json_or_empty(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``; ``{}`` when it is missing, unreadable or not an object.

    Notebook: 00_overview.ipynb
    """
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def move_aside(folder: str | os.PathLike, names, what: str = "folder") -> None:
    """Move ``names`` (files or folders of ``folder``; a trailing ``/`` is allowed) into a new
    ``folder/replaced-<time>/`` and say so on stderr: nothing a user made is deleted.

    Notebook: 00_overview.ipynb
    """
    folder = Path(folder)
    keep = folder / time.strftime("replaced-%Y%m%dT%H%M%S")
    keep.mkdir()
    names = [str(n).rstrip("/") for n in names]
    for name in names:
        os.replace(folder / name, keep / name)
    print(f"[{what}] moved the previous files of {folder} ({', '.join(names)}) into {keep}",
          file=sys.stderr, flush=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to, renamed to ``path`` (``os.replace``) when
    the block ends and removed if it raises: a reader (or a crash) sees the old file or the new
    one, never half of one. The name, ``<name>.<pid>.part``, is unique per process, so two
    processes writing one file at once never rename each other's half-written file.

    Examples
    --------
    >>> with atomic_path(folder / "tracks.csv") as tmp:          # doctest: +SKIP
    ...     tracks.to_csv(tmp, index=False)

    Notebook: 00_overview.ipynb
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: The name :func:`atomic_path` gives a temporary: ``<name>.<pid>.part``.
_TEMPORARY = re.compile(r"(.+)\.(\d+)\.part")
#: Whether a pid can be probed without harm (on Windows ``os.kill(pid, 0)`` terminates it).
_CAN_PROBE = os.name != "nt"


def remove_dead_temporaries(folder: str | os.PathLike, stale_after_s: float = 600.0,
                            names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporaries of :func:`atomic_path` in ``folder`` whose writer has died.

    A worker killed while it writes (``kill -9``, or a pool torn down by Ctrl-C) leaves its
    ``<name>.<pid>.part``; no later run renames it, so it would stay in the folder for good.
    One whose pid is still a process here is kept: an orphaned worker may be finishing it. On
    Windows, where no process can be probed safely (``os.kill(pid, 0)`` would terminate it), a
    temporary is deleted only once it is ``stale_after_s`` old. Files of any other name are
    left alone; with ``names``, so are the temporaries of files not named there (a folder that
    also holds a user's own files). Call it only while holding the folder's
    :class:`FolderLock`, which admits no writer from another host (whose pid means nothing
    here).

    Returns
    -------
    list of pathlib.Path
        The files deleted.

    Notebook: 00_overview.ipynb
    """
    if names is not None:   # a set of whole names: a string would match its substrings
        names = frozenset([names] if isinstance(names, str) else names)
    gone = []
    for tmp in Path(folder).glob("*.part"):
        match = _TEMPORARY.fullmatch(tmp.name)
        if match is None or not tmp.is_file() or (names is not None and match.group(1) not in names):
            continue
        # kept while its writer may still be running
        if (_running(int(match.group(2))) if _CAN_PROBE
                else time.time() - tmp.stat().st_mtime < stale_after_s):
            continue
        tmp.unlink(missing_ok=True)
        gone.append(tmp)
    return gone


def _running(pid: int) -> bool:
    """Is ``pid`` a live process on this (POSIX) host? Signal 0 checks without sending anything."""
    if pid <= 0:                               # 0 and -1 would name process groups
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:                    # another user's process
        return True
    try:   # a killed worker stays a zombie until reaped, for good under some container inits
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):              # no /proc (macOS): signal 0 found it
        return True


def write_json_atomic(obj, path: str | os.PathLike, **dumps_kwargs) -> None:
    """Write JSON to ``path`` through a temporary file (:func:`atomic_path`), flushed to the
    disk before the rename.

    Notebook: 00_overview.ipynb
    """
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(json.dumps(obj, **{"indent": 1, **dumps_kwargs}))
        fh.flush()
        os.fsync(fh.fileno())


def package_versions(names, missing: str | None = None) -> dict[str, str]:
    """Installed versions of ``names`` (a package not installed: ``missing``, or left out).

    Notebook: 00_overview.ipynb
    """
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if missing is not None:
                out[name] = missing
    return out

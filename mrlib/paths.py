"""Where the suite keeps its files: the data root and the runs folder.

Nothing is hard-coded: ``MRLIB_DATA`` and ``MRLIB_RUNS`` override the defaults, which are
``data/`` and ``runs/`` next to the ``mrlib`` package (the repository root).

Folders that a process writes (a run folder, a catalog folder, a suite's output) are guarded by
:class:`FolderLock`, and small index files are replaced atomically (:func:`write_json_atomic`).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["repo_root", "data_dir", "runs_dir", "FolderLock", "LockedError", "describe_holder",
           "write_json_atomic", "read_json_or_empty", "move_aside", "package_versions"]


def repo_root() -> Path:
    """The repository root: the folder that holds ``mrlib/``.

    Notebook: 00_overview.ipynb
    """
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data root (``$MRLIB_DATA`` or ``<repo>/data``), created if missing.

    Notebook: 00_overview.ipynb
    """
    path = Path(os.environ.get("MRLIB_DATA", repo_root() / "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """The folder for suite runs and training outputs (``$MRLIB_RUNS`` or ``<repo>/runs``).

    Notebook: 00_overview.ipynb
    """
    path = Path(os.environ.get("MRLIB_RUNS", repo_root() / "runs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# One writer per folder: a lock file that names its holder and recovers from dead holders
# --------------------------------------------------------------------------------------------
class LockedError(RuntimeError):
    """Another live process holds the lock of a folder (a run folder, a catalog folder)."""


def _process_start(pid: int) -> float | None:
    """Start time of a process (seconds since the epoch), or None when unknown.

    Compared with the start time a lock recorded, it tells a live holder from an unrelated
    process that got the same pid after the holder died.
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the environment
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - no such process, or no access
        return None


def _alive(holder: dict) -> bool | None:
    """True/False when the holder's process is known to be alive/dead; None when it cannot
    be checked (another host)."""
    import socket

    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    except OSError:  # pragma: no cover - e.g. Windows without the process
        return False
    started = holder.get("process_start")
    now = _process_start(pid)
    if isinstance(started, (int, float)) and now is not None and abs(now - started) > 2.0:
        return False  # the pid was reused by a process that started later
    return True


def describe_holder(holder: dict) -> str:
    """One line naming a lock's holder: pid, host, since when, and its command.

    Notebook: 06_training.ipynb
    """
    cmd = holder.get("command") or "?"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} "
            f"({cmd[:160]})")


class FolderLock:
    """An exclusive lock on a folder: the file ``<folder>/.mrlib.lock`` holding who writes.

    The file is created atomically (written under a private name, then hard-linked into
    place, which fails when it exists), so a second writer never sees a half-written lock.
    It records the holder's pid, host, start time and command line. A lock whose process is
    gone (same host, pid no longer running or reused by a younger process) is stale: it is
    broken and the break is reported through ``log``. A lock held by a live process, or by a
    process on another host (which cannot be checked from here), raises :class:`LockedError`
    naming the holder.

    Parameters
    ----------
    folder : path
        The folder to lock (created if missing).
    what : str
        What the folder is, for messages (``"training run"``, ``"catalog"``).
    log : callable, optional
        Receives one line when a stale lock is recovered (default: print to stderr).

    Examples
    --------
    >>> with FolderLock(some_folder, "catalog"):          # doctest: +SKIP
    ...     write_the_catalog(some_folder)

    Notebook: 06_training.ipynb
    """

    NAME = ".mrlib.lock"

    def __init__(self, folder: str | os.PathLike, what: str = "folder", log=None) -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / self.NAME
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.held = False
        self.recovered: dict | None = None

    def read_holder(self) -> dict | None:
        """The holder recorded in the lock file; ``{}`` when it is unreadable, None when absent."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            holder = json.loads(text)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _info(self) -> dict:
        import socket
        import time

        return {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "what": self.what,
                "process_start": _process_start(os.getpid()),
                "command": " ".join([os.path.basename(sys.executable), *sys.argv])[:400]}

    def _try_create(self) -> bool:
        tmp = self.folder / f"{self.NAME}.{os.getpid()}.{id(self)}.tmp"
        tmp.write_text(json.dumps(self._info()))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create instead
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(tmp.read_text())
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _break_stale(self, holder: dict) -> bool:
        """Remove a stale lock file if it still holds ``holder`` (not a newer lock)."""
        grab = self.folder / f"{self.NAME}.{os.getpid()}.{id(self)}.stale"
        try:
            os.rename(self.path, grab)
        except FileNotFoundError:
            return True
        try:
            text = grab.read_text()
            same = (json.loads(text) if text.strip() else {}) == holder
        except (OSError, ValueError):
            same = holder == {}
        if not same:  # another process took the lock meanwhile: put its file back
            with contextlib.suppress(OSError):
                os.link(grab, self.path)
        grab.unlink(missing_ok=True)
        return same

    def acquire(self) -> "FolderLock":
        """Take the lock or raise :class:`LockedError` naming the live holder.

        Notebook: 06_training.ipynb
        """
        import time

        if self.held:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            if self._try_create():
                self.held = True
                return self
            holder = self.read_holder()
            if holder is None:
                continue  # released between our two looks
            if holder == {}:
                # written by a process that died while creating it, or being written right
                # now by a process without hard links: wait a little before calling it stale
                try:
                    age = time.time() - self.path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age < 5.0:
                    time.sleep(0.2)
                    continue
            alive = _alive(holder) if holder else False
            if alive is None:
                raise LockedError(
                    f"the {self.what} folder {self.folder} is locked by {describe_holder(holder)}, "
                    f"a process on another host that cannot be checked from here; if it is gone, "
                    f"delete {self.path} and try again")
            if alive:
                raise LockedError(
                    f"the {self.what} folder {self.folder} is in use by {describe_holder(holder)}; "
                    f"wait for it to finish, or write to another folder")
            if self._break_stale(holder):
                self.recovered = holder
                self.log(f"[mrlib] recovered a stale lock on {self.folder}: its holder "
                         f"({describe_holder(holder) if holder else 'unreadable lock file'}) "
                         f"is no longer running")
        raise LockedError(f"could not lock the {self.what} folder {self.folder}: the lock file "
                          f"{self.path} keeps changing hands")

    def release(self) -> None:
        """Give the lock back (only if this object holds it).

        Notebook: 06_training.ipynb
        """
        if not self.held:
            return
        holder = self.read_holder()
        if holder and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
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


def move_aside(folder: str | os.PathLike, names, what: str = "folder") -> Path:
    """Move ``names`` (files or folders of ``folder``; a trailing ``/`` is allowed) into a new
    ``folder/replaced-<time>/`` and say so on stderr: nothing a user made is deleted.

    Returns
    -------
    pathlib.Path
        The ``replaced-<time>`` folder.

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
    return keep


def write_json_atomic(obj, path: str | os.PathLike, **dumps_kwargs) -> Path:
    """Write JSON to ``path`` through a temporary file and ``os.replace``: a reader (or a
    crash) sees the old file or the new one, never half of one.

    Notebook: 00_overview.ipynb
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(obj, **{"indent": 1, **dumps_kwargs}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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

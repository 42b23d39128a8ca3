"""A training run's folder: checkpoints, the finished run's files, and who may write there.

Run folder (``out_dir``, default ``runs/train/<folder>``: the run name, or
``<system>_<mining>_s<seed>-<hash of every field that shapes the result>``)::

    .mrlib.lock        while a run writes here: its pid, host and command (one writer at a time)
    .previous-run/     a replaced run's files, until the new run's first checkpoint
    config.json        the TrainConfig
    metrics.jsonl      one JSON row per epoch (epoch 0 = the untrained network)
    checkpoint.pt      latest checkpoint (SHA-256 checked); checkpoint.prev.pt the one before
    model.pt           best weights + model config (for mrlib.models.build_model)
    embeddings.npy     float32 (N, d): embeddings, or tag probabilities for AT
    patch_embeddings.npy   MatchNet only: float32 (N, 8, e) patch embeddings
    tracks.csv         catalog_index, track_id, split of each row of embeddings.npy
    summary.json       throughput, data-wait share, peak memory, best epoch, final metrics,
                       CPU kernels

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mrlib.models import build_model
from mrlib.paths import FolderLock, atomic_path, remove_dead_temporaries
from mrlib.train_config import _PLACE_AND_SPEED, _RESUMABLE_CHANGES, TrainConfig

__all__ = ["CheckpointError", "RunExistsError", "RunResult", "RunFolder", "save_checkpoint",
           "load_checkpoint", "load_run", "check_resumable"]

# Files of a run folder that train() owns (a fresh run removes the previous run's copies).
_RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt",
              "checkpoint.corrupt.pt", "model.pt", "embeddings.npy", "patch_embeddings.npy",
              "tracks.csv", "summary.json", "ddp_verify.json")
_CKPT = "checkpoint.pt"
_CKPT_PREV = "checkpoint.prev.pt"
_MAGIC = b"MRLIB-CKPT-1\n"
_CKPT_FORMAT = 1
# Where a replaced run's files wait until the new run has written its first checkpoint.
_ASIDE = ".previous-run"



class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not an mrlib checkpoint.

    Notebook: 06_training.ipynb
    """


class RunExistsError(FileExistsError):
    """The run folder holds another run that only ``replace=True`` (``--replace``) may replace.

    Notebook: 06_training.ipynb
    """


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint atomically, with a SHA-256 of its payload, keeping the previous one.

    The payload (``torch.save`` of ``state``) is written to a temporary of
    :func:`mrlib.paths.atomic_path` with a header (magic line + SHA-256), flushed and fsync'ed;
    then the current file becomes ``checkpoint.prev.pt`` and the new one takes its place with
    ``os.replace`` (atomic on POSIX and Windows). A crash at any point leaves a complete
    checkpoint: the new one, or the previous one.

    Parameters
    ----------
    state : dict
        Tensors, state dicts and plain Python values (loadable with ``weights_only=True``).
    path : path
        Target file (``.../checkpoint.pt``); the current one becomes ``<stem>.prev.pt``.

    Notebook: 06_training.ipynb
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + digest + b" " + str(len(payload)).encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():   # the new file is complete: now the current one may become the previous
            os.replace(path, path.with_name(path.stem + ".prev" + path.suffix))
    with contextlib.suppress(OSError):  # make the renames durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and verify one checkpoint file written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path
        A checkpoint file.

    Returns
    -------
    dict
        The saved state, its tensors on the CPU.

    Raises
    ------
    CheckpointError
        Missing file, wrong magic (not an mrlib checkpoint), truncated payload, SHA-256
        mismatch (corrupt bytes), or a payload torch cannot read — with the reason.

    Notebook: 06_training.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise CheckpointError(f"{path} is not an mrlib checkpoint (bad header; "
                              f"{len(data)} bytes) — truncated or overwritten")
    header_end = data.find(b"\n", len(_MAGIC))
    try:
        digest, length = data[len(_MAGIC):header_end].split(b" ")
        length = int(length)
    except ValueError:
        raise CheckpointError(f"{path}: unreadable checkpoint header (truncated?)") from None
    payload = data[header_end + 1:]
    if len(payload) != length:
        raise CheckpointError(f"{path} is truncated: payload has {len(payload)} of {length} bytes")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"{path} is corrupt: SHA-256 of its payload does not match the header")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: torch cannot read the payload ({first})") from None
    if not isinstance(state, dict) or state.get("format") != _CKPT_FORMAT:
        raise CheckpointError(f"{path}: unexpected checkpoint content (format "
                              f"{state.get('format') if isinstance(state, dict) else type(state).__name__})")
    return state


def _load_latest_checkpoint(run_dir: Path, log) -> dict:
    """The newest good checkpoint of a run folder (which holds one), falling back to the
    previous one.

    A bad latest file is renamed ``checkpoint.corrupt.pt`` so that the next rotation can never
    promote it over the good previous one. Raises CheckpointError when every candidate is bad.
    """
    latest, prev = run_dir / _CKPT, run_dir / _CKPT_PREV
    problems = []
    for candidate in (latest, prev):
        if not candidate.exists():
            problems.append(f"{candidate.name}: missing")
            continue
        try:
            state = load_checkpoint(candidate)
        except CheckpointError as err:
            problems.append(str(err))
            log(f"[train] WARNING: {err}")
            continue
        if candidate is prev:
            log(f"[train] resuming from the previous good checkpoint {prev.name} "
                f"(epoch {state['epoch']}); the bad one is kept as checkpoint.corrupt.pt")
            if latest.exists():
                os.replace(latest, run_dir / "checkpoint.corrupt.pt")
            os.replace(prev, latest)
        return state
    raise CheckpointError(f"no usable checkpoint in {run_dir}:\n  " + "\n  ".join(problems) + "\n  "
                          "train it again without resume (the old files wait in .previous-run/ "
                          "until the new run's first checkpoint)")


# =============================================================================================
# RNG states in a checkpoint (JSON strings + tensors, so checkpoints load with weights_only=True)
# =============================================================================================
def capture_rng(patch_rng: np.random.Generator, device: torch.device) -> dict:
    """Every RNG state a run draws from (python, numpy, the patch stream, torch, CUDA), storable.

    Notebook: 06_training.ipynb
    """
    py = random.getstate()
    npst = np.random.get_state()
    return {
        "python": json.dumps([py[0], list(py[1]), py[2]]),
        "numpy": json.dumps([npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]),
        "patches": json.dumps(patch_rng.bit_generator.state),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_rng(state: dict, patch_rng: np.random.Generator, device: torch.device) -> None:
    """Put back the RNG states that :func:`capture_rng` stored.

    Notebook: 06_training.ipynb
    """
    v, internal, gauss = json.loads(state["python"])
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    patch_rng.bit_generator.state = json.loads(state["patches"])
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)




@dataclass
class RunResult:
    """A finished (or loaded) training run.

    Attributes
    ----------
    path : pathlib.Path
        The run folder.
    config : TrainConfig
    metrics : pandas.DataFrame
        One row per epoch (epoch 0 = untrained): ``loss`` (the optimised objective), ``loss_all``
        and ``active_fraction`` (over every valid triplet of the batch: differs from ``loss``
        for online mining), ``triplets_per_batch``, ``val_map``
        (+ ``val_map_low``/``val_map_high``, 95 % CI), ``val_recall``, ``val_rr``, ``val_ndcg``,
        ``val_auc`` (AT), ``lr``, ``train_s``, ``patches_per_s``, ``data_wait_share``,
        ``peak_memory_mb``, ``elapsed_s``, ``is_best``.
    summary : dict
        ``summary.json``.

    Notebook: 06_training.ipynb
    """

    path: Path
    config: TrainConfig
    metrics: pd.DataFrame
    summary: dict

    def _load(self, name: str, when: str) -> np.ndarray:
        """The array ``name`` of the run folder; ``when`` says in the error which runs have it."""
        f = self.path / name
        if not f.exists():
            raise FileNotFoundError(f"{f} {when}")
        return np.load(f)

    @property
    def embeddings(self) -> np.ndarray:
        """float32 (N', d): one row per track of :attr:`tracks` (tag probabilities for AT)."""
        return self._load("embeddings.npy", "was not written (the run had embed_all=False)")

    @property
    def patch_embeddings(self) -> np.ndarray:
        """MatchNet: float32 (N', 8, e) patch embeddings."""
        return self._load("patch_embeddings.npy", "exists for MatchNet runs only")

    @property
    def tracks(self) -> pd.DataFrame:
        """``catalog_index, track_id, split`` of each embedding row."""
        return pd.read_csv(self.path / "tracks.csv", dtype={"track_id": str})

    @property
    def catalog_index(self) -> np.ndarray:
        """Catalog indices (int64) of the embedding rows."""
        return self.tracks["catalog_index"].to_numpy().astype(np.int64)

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The best weights as a model of :mod:`mrlib.models` (eval mode)."""
        saved = torch.load(self.path / "model.pt", map_location=device, weights_only=True)
        m = build_model(**saved["model_config"]).to(device)
        m.load_state_dict(saved["state_dict"])
        return m.eval()

    def __repr__(self) -> str:
        best = self.summary.get("best", {})
        return (f"RunResult({self.config.name!r}, epochs={self.summary.get('epochs_run')}, "
                f"best val MAP@20={best.get('val_map', float('nan')):.4f}, path={str(self.path)!r})")


def load_run(path: str | os.PathLike) -> RunResult:
    """Load a run folder written by :func:`train`.

    Parameters
    ----------
    path : path
        The run folder (``RunResult.path``).

    Returns
    -------
    RunResult

    Raises
    ------
    FileNotFoundError
        When the folder lacks ``config.json`` or ``summary.json`` (the run did not finish).
    ValueError
        When one of them, or ``metrics.jsonl``, cannot be read (named, with the reason).

    Notebook: 06_training.ipynb
    """
    path = Path(path)
    for name in ("config.json", "summary.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found: not a finished training run "
                                    "(train(config, resume=True) finishes an interrupted one)")

    def read(name: str, reader):
        try:
            return reader(path / name)
        except (ValueError, TypeError) as err:   # JSON errors are ValueErrors
            raise ValueError(f"{path / name} cannot be read ({err}): the run folder is "
                             "damaged") from None

    return RunResult(path=path, config=read("config.json", TrainConfig.from_json),
                     metrics=read("metrics.jsonl", _read_metrics),
                     summary=read("summary.json", lambda f: json.loads(f.read_text())))


def _read_metrics(path: Path) -> pd.DataFrame:
    """metrics.jsonl as a DataFrame; missing values (JSON null) become NaN."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []
    df = pd.DataFrame(rows)
    types = {"epoch": np.int64, "step": np.int64, "is_best": bool}   # every other column: float
    return df.astype({col: types.get(col, np.float64) for col in df.columns})


def _config_diff(saved: dict, config: TrainConfig, ignore: set) -> dict:
    """Field -> (saved, now) of the fields outside ``ignore`` that differ."""
    return {k: (saved.get(k), v) for k, v in config.to_dict().items()
            if k not in ignore and saved.get(k) != v}


def check_resumable(config: TrainConfig, ckpt: dict, world_size: int) -> None:
    """Refuse to resume a checkpoint of another configuration or another number of ranks.

    Notebook: 06_training.ipynb
    """
    diff = _config_diff(json.loads(ckpt["config"]), config, _RESUMABLE_CHANGES)
    if diff:
        raise ValueError("resume=True with a different configuration than the checkpoint's "
                         f"(saved, now): {diff}; only {sorted(_RESUMABLE_CHANGES)} may change")
    if int(ckpt["world_size"]) != world_size:
        raise ValueError(f"the checkpoint was written by {ckpt['world_size']} rank(s); resuming "
                         f"with {world_size} would not continue the same run")


class RunFolder:
    """One run's folder, as the process that writes it sees it: locked, recovered, decided.

    :meth:`open` locks the folder, finishes what a killed predecessor left, and decides what
    this call does with what the folder holds; a fresh run moves the previous run's files
    aside (:meth:`move_aside`) until its first checkpoint (:meth:`save_checkpoint`), and puts
    them back when it stops before (:meth:`restore_aside`).

    Notebook: 06_training.ipynb
    """

    def __init__(self, config: TrainConfig, world_size: int, log) -> None:
        self.config = config
        self.run_dir = config.run_dir()
        self.world_size = world_size
        self.log = log
        self.lock = FolderLock(self.run_dir, "training run", log=log)   # taken by open()
        self.aside: Path | None = None      # the replaced run's files, until the first checkpoint
        self.ckpt: dict | None = None       # the checkpoint to resume from

    def open(self, resume: bool, replace: bool) -> RunResult | None:
        """Lock the folder and decide; returns the finished run that ``resume`` meets, else None.

        Raises before touching anything when the folder holds another run and ``replace`` is
        False; sets :attr:`ckpt` when a run is resumed.
        """
        self.lock.acquire()
        self._recover_aside()
        decided = self._decide(resume, replace)
        # what a killed run was writing (checkpoint, json); a folder's other files are the user's
        remove_dead_temporaries(self.run_dir, names=_RUN_FILES)
        return decided

    def save_checkpoint(self, state: dict) -> None:
        """Write the run's checkpoint (atomic, the previous one kept); a replaced run's files go."""
        save_checkpoint({"format": _CKPT_FORMAT, **state}, self.run_dir / _CKPT)
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def latest_checkpoint(self) -> dict | None:
        """The checkpoint file as rank 0 left it (verified, perhaps rotated), or None."""
        path = self.run_dir / _CKPT
        return load_checkpoint(path) if path.exists() else None

    def _recover_aside(self) -> None:
        """Finish what a replacing run (killed, or failed) left: once it has a checkpoint the
        moved-aside run goes, before it the moved-aside run comes back."""
        aside = self.run_dir / _ASIDE
        if not aside.is_dir():
            return
        if (self.run_dir / _CKPT).exists() or (self.run_dir / _CKPT_PREV).exists():
            shutil.rmtree(aside, ignore_errors=True)
            self.log(f"[train] {self.run_dir}: the run that replaced the one in {_ASIDE}/ had "
                     f"written its first checkpoint; the replaced run is now deleted")
            return
        for n in _RUN_FILES:
            (self.run_dir / n).unlink(missing_ok=True)
        for f in aside.iterdir():
            os.replace(f, self.run_dir / f.name)
        aside.rmdir()
        self.log(f"[train] {self.run_dir}: a run that was replacing this folder's run stopped "
                 "before its first checkpoint; the previous run is restored from "
                 f"{_ASIDE}/")

    def _saved_run(self) -> tuple[TrainConfig | None, dict]:
        """The folder's config (None: missing or unreadable) and how this run's differs from it."""
        try:
            saved = TrainConfig.from_json(self.run_dir / "config.json")
        except Exception:  # noqa: BLE001 - missing, unreadable or from another version
            return None, {"config.json": ("unreadable or missing", "")}
        return saved, _config_diff(saved.to_dict(), self.config, _PLACE_AND_SPEED)

    def _decide(self, resume: bool, replace: bool) -> RunResult | None:
        d = self.run_dir
        has_ckpt = (d / _CKPT).exists() or (d / _CKPT_PREV).exists()
        finished = (d / "summary.json").is_file()
        if not any((d / n).exists() for n in _RUN_FILES):
            if resume:
                self.log(f"[train] resume=True but {d} holds no run: starting from scratch")
            return None
        saved, diff = self._saved_run()
        same = saved is not None and not diff
        if resume and finished and same:
            if has_ckpt:  # a damaged folder is reported, not passed off as a finished run
                _load_latest_checkpoint(d, self.log)
            self.log(f"[train] {d} holds a finished run of this configuration: returning it "
                     "(nothing retrained)")
            return load_run(d)
        if resume and has_ckpt:
            self.ckpt = _load_latest_checkpoint(d, self.log)
            check_resumable(self.config, self.ckpt, self.world_size)
            return None
        if not finished and not has_ckpt and saved is not None:
            return None  # a run that stopped before its first checkpoint: nothing to keep
        kind = "finished" if finished else ("interrupted" if has_ckpt else "unrecognised")
        article = "an" if kind[0] in "iu" else "a"
        if same:
            self.log(f"[train] {d} holds {article} {kind} run of the same configuration: training it "
                     f"again from scratch (the old files wait in {_ASIDE}/ until the first "
                     "checkpoint)")
            return None
        if not replace:
            shown = dict(list(diff.items())[:8])
            raise RunExistsError(
                f"{d} holds {article} {kind} training run of another configuration (saved, given: "
                f"{shown}); nothing was changed. Pass replace=True (--replace) to replace it "
                f"(kept in {_ASIDE}/ until the new run's first checkpoint), resume=True "
                "(--resume) to continue a run of the same configuration, or another out_dir")
        self.log(f"[train] replacing the {kind} run in {d} (replace=True); its files wait in "
                 f"{_ASIDE}/ until the new run's first checkpoint")
        return None

    def move_aside(self) -> None:
        """Move the previous run's files into ``.previous-run/`` (a fresh run starts)."""
        present = [n for n in _RUN_FILES if (self.run_dir / n).exists()]
        if not present:
            return
        aside = self.run_dir / _ASIDE
        if aside.exists():
            shutil.rmtree(aside)
        aside.mkdir()
        for n in present:
            os.replace(self.run_dir / n, aside / n)
        self.aside = aside

    def restore_aside(self) -> None:
        """The new run failed: put back the run it moved aside (unless it had a checkpoint)."""
        if self.aside is not None:
            self._recover_aside()
            self.aside = None

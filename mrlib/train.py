"""One trainer for the four systems, on any device, resumable, and distributed with torchrun.

:func:`train` takes a :class:`TrainConfig` and trains one of the systems of
:data:`mrlib.systems.SYSTEMS` (AT, TL, TL Autopool, Triplet MatchNet; their batches and losses
are described there). The pieces: :mod:`mrlib.train_config` (the config and its checks),
:mod:`mrlib.systems` (what differs per system), :mod:`mrlib.training_data` (data and batches),
:mod:`mrlib.runfolder` (checkpoints and the run folder), :mod:`mrlib.distributed`,
:mod:`mrlib.devices` and :mod:`mrlib.train_args` (the command line); this module runs them.

**What is logged.** ``loss`` is the optimised objective; ``loss_all`` and ``active_fraction``
(the share of triplets with a non-zero loss: near 1 with a loss near the margin is collapse,
near 0 nothing is left to learn) are over every valid triplet of the batch — for online mining
that is more than the selected ones, which all cost something by construction.

**An epoch** is ``steps_per_epoch`` batches: at paper scale the 32.1 M triplets mined on the
training split make 0.76 M batches of 42, which no one waits for. After each epoch: the
validation metric (MAP@20 on the validation split, the oracle restricted to it; ROC AUC for AT
too), early stopping on it
(the best weights are kept), an atomic checkpoint (model, optimiser, AMP scaler, sampler, every
RNG state of every rank, the early-stopping state and the metrics so far) and one row of
``metrics.jsonl``. ``resume=True`` continues the same run: the weights and metrics at every
later epoch equal those of an uninterrupted run (CPU, same seed).

**At the end** the best weights embed every track of the catalog with its 8 seeded test
patches (:func:`mrlib.features.test_patches` with ``seed = catalog index``, so every system sees
the same patches), averaged — L2-normalised for TL — or tag probabilities for AT, written to
``embeddings.npy`` with ``tracks.csv`` (catalog index, track id, split); ``summary.json`` holds
throughput (patches/s), the share of step time spent waiting for data, the peak memory and
the CPU kernels the run used (:func:`mrlib.devices.cpu_kernels`).
``epochs=0`` writes the untrained network's embeddings: the reference row of Table 2.

**Devices.** :func:`pick_device` takes CUDA, then Apple MPS, then the CPU. On CUDA, mixed
precision (``amp=True``) uses bfloat16 where the GPU supports it, else float16 with a
``GradScaler``. On the CPU the run is deterministic (``torch.use_deterministic_algorithms``).

**Distributed.** Launched as ``torchrun --nproc_per_node=K -m mrlib.train ...`` the same code
runs PyTorch DDP (NCCL on CUDA, gloo on CPU): each rank draws its own share of the batches
(the samplers take ``rank``/``world_size``), gradients are averaged, rank 0 alone validates,
logs and writes files. Without torchrun nothing changes.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import sys
import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mrlib import evaluate
from mrlib.checks import check_int
from mrlib.devices import (amp_dtype, cpu_kernels, memory_available, mps_available, peak_memory,
                           pick_device, sum_dtype, synchronize)
from mrlib.distributed import RankZeroFailed, WriteAudit, init_distributed, param_checksum
from mrlib.mining import mine
from mrlib.layers import scale_channels
from mrlib.paths import LockedError, write_json_atomic
from mrlib.runfolder import (CheckpointError, RunExistsError, RunFolder, RunResult, capture_rng,
                             check_resumable, load_checkpoint, load_run, restore_rng,
                             save_checkpoint)
from mrlib.similarity import oracle
from mrlib.systems import SYSTEMS, BatchMaker, embed_tracks, song_dissimilarities
from mrlib.train_args import config_from_args
from mrlib.train_config import DEFAULT_LR, PAPER_LR, TrainConfig, paper_config
from mrlib.training_data import (Prefetcher, TrainData, batch_stream, check_catalog_name, prepare_data,
                                 tensor_batch)

__all__ = ["SYSTEMS", "DEFAULT_LR", "PAPER_LR", "TrainConfig", "TrainData", "RunResult",
           "CheckpointError", "RunExistsError", "pick_device", "mps_available", "amp_dtype",
           "prepare_data", "paper_config", "train", "load_run", "load_checkpoint", "save_checkpoint",
           "embed_tracks", "song_dissimilarities", "measure_throughput", "config_from_args", "main"]


def _validate(model: nn.Module, data: TrainData, val_idx: np.ndarray, S_val: np.ndarray,
              config: TrainConfig, device: torch.device) -> dict:
    """Validation metrics of the current weights (MAP@20 with its 95 % CI; AUC for tags)."""
    system = SYSTEMS[config.system]
    E = embed_tracks(model, data, val_idx, config.patch_len, config.val_patches,
                     config.eval_batch, device, config.amp, per_patch=system.per_patch)
    similarity = system.similarity(model, E, data.categories, device)
    res = evaluate.evaluate_embeddings(E, S_val) if similarity is None else \
        evaluate.evaluate_similarity(similarity, S_val)
    ci = evaluate.mean_ci(res.per_query["map"])
    # MAP lies in [0, 1]: a normal-approximation interval that crosses a bound is cut there
    return {"val_map": ci.mean, "val_map_low": float(np.clip(ci.low, 0.0, 1.0)),
            "val_map_high": float(np.clip(ci.high, 0.0, 1.0)),
            **{f"val_{m}": float(res.per_query[m].mean()) for m in ("recall", "rr", "ndcg")},
            "val_auc": evaluate.tag_auc(data.tags[val_idx] >= 0.5, E).mean if system.tags else None}


def _jsonable(v):
    v = v.item() if isinstance(v, (np.floating, np.integer)) else v
    return None if isinstance(v, float) and not math.isfinite(v) else v   # JSON has no NaN


class _TrainingRun:
    """The state of one training run; :func:`train` drives it."""

    _det_before: tuple | None = None   # set by _start(); close() restores it

    def __init__(self, config: TrainConfig, data: TrainData | None, progress: bool) -> None:
        self.config = config
        self.progress = progress
        self.system = SYSTEMS[config.system]
        self.dist = init_distributed(config.device)
        self.device = pick_device(config.device)
        if self.device.type == "cuda" and self.dist.active:
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.log = (lambda msg: print(msg, flush=True)) if self.dist.is_main else (lambda msg: None)
        self.folder = RunFolder(config, self.dist.world_size, self.log)
        self.run_dir = self.folder.run_dir
        self.data = data

    # -- set-up -------------------------------------------------------------------------------
    def _start(self) -> None:
        """Determinism (restored by :meth:`close`), the data (prepared unless given) and the
        training tracks: what a training step needs before the model is built."""
        cfg = self.config
        self.deterministic = cfg.deterministic if cfg.deterministic is not None else self.device.type == "cpu"
        self._det_before = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not self.deterministic
        if self.data is None:
            self.data = self._prepare_data()
        self.train_idx = self.data.indices("train")

    def _build_run_state(self) -> None:
        """Model, objective (DDP-wrapped on several processes), optimiser and AMP scaler; then
        the seeds (python/numpy/torch globals, the patch stream, per rank), the sampler, the
        batch maker and one endless stream of batches for the whole run (the sampler's state
        says where it is), at epoch 0."""
        cfg = self.config
        self.model = self.system.build(cfg, self.data).to(self.device)
        self.objective = self.system.objective(self.model, cfg).to(self.device)
        self.step_module = self.objective
        if self.dist.active:
            self.step_module = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        self.optimizer = self.system.optimizer(self.model, cfg)
        self.amp_dtype = amp_dtype(self.device, cfg.amp)
        # loss scaling for fp16 only; a disabled GradScaler passes loss and step straight through
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        rank_seed = cfg.seed * 1000 + self.dist.rank
        random.seed(rank_seed)
        np.random.seed(rank_seed % 2**32)
        torch.manual_seed(rank_seed)
        self.patch_rng = np.random.default_rng([cfg.seed, self.dist.rank, 0x5EED])
        self.sampler = self._sampler()
        self.maker = BatchMaker(self.data, cfg, self.patch_rng)
        # a generator: it reads the sampler at its first next(), after a resume restored its state
        self._stream = batch_stream(self.sampler)
        self.epoch = 0
        self.global_step = 0

    def step(self, batch: dict) -> tuple:
        """One optimiser step on a batch already on the device, through the objective (wrapped in
        DDP on several processes, so gradients are averaged over ranks): the forward under
        autocast, backward and one Adam step (through the GradScaler under fp16 AMP). Returns
        ``(loss, active, n_triplets, loss_all)``."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = self.step_module(batch["x"], batch.get("y"), batch.get("S"), batch.get("idx"),
                                   batch["n_triplets"], batch["shared"])
        loss = out[0]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return out

    def setup(self, resume: bool) -> None:
        cfg = self.config
        # ---- data (every input checked before the run folder is touched) ----
        self._start()
        self._check_bounds()
        self.val_idx = self.data.indices("val")
        if len(self.train_idx) < 3:
            raise ValueError(f"only {len(self.train_idx)} training tracks with features: need >= 3")
        if len(self.val_idx) < 6:
            raise ValueError(f"only {len(self.val_idx)} validation tracks with features: need >= 6 "
                             "for MAP@20 against the top 5 (use a larger catalog)")

        # ---- the run folder: resume, or start fresh (the old run moved aside) ----
        folder = self.folder
        if self.dist.is_main:
            if folder.ckpt is None:
                folder.move_aside()
            cfg.to_json(self.run_dir / "config.json")
        self.dist.barrier()
        if self.dist.active and not self.dist.is_main:
            # every rank reads the same (already verified and possibly rotated) file
            folder.ckpt = folder.latest_checkpoint() if resume else None
            if folder.ckpt is not None:
                check_resumable(cfg, folder.ckpt, self.dist.world_size)
        if cfg.verify_ddp:
            WriteAudit.start(self.run_dir)

        self.S_val = oracle(self.data.tags[self.val_idx], None, self.data.categories)

        # ---- model, objective, optimiser; then seeds, sampler and batches ----
        self._build_run_state()

        # ---- where the run stands: at its start, or where its checkpoint left it ----
        ckpt = folder.ckpt or {}   # {}: a fresh run
        folder.ckpt = None  # free the memory
        self.rows = json.loads(ckpt.get("metrics", "[]"))
        self.best = ckpt.get("early_stopping", {"value": -math.inf, "epoch": -1, "bad_epochs": 0,
                                                "state": None})
        self.stopped_early = bool(ckpt.get("stopped_early", False))
        self.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        self.ddp_check = (json.loads(ckpt["ddp_check"]) if "ddp_check" in ckpt
                          else {"steps": 0, "max_abs_diff": 0.0, "mismatch_steps": 0})
        if ckpt:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):   # empty when it was saved disabled (no fp16 on that device)
                self.scaler.load_state_dict(ckpt["scaler"])
            self.sampler.load_state_dict(json.loads(ckpt["sampler"]))
            restore_rng(ckpt["rng"][self.dist.rank], self.patch_rng, self.device)
            self.epoch = int(ckpt["epoch"])
            self.global_step = int(ckpt["global_step"])
            self.log(f"[train] resumed {self.run_dir.name} at epoch {self.epoch} "
                     f"(step {self.global_step})")

    def _prepare_data(self) -> TrainData:
        """The run's data; under torchrun rank 0 builds what is missing (catalog, feature cache)
        before the other ranks read it, since ranks building one folder at once meet its lock."""
        data = failure = None
        if self.dist.is_main:
            try:
                data = prepare_data(self.config, progress=self.progress)
            except Exception as err:
                failure = err
        message = self.dist.broadcast(
            None if failure is None else f"{type(failure).__name__}: {failure}")
        if failure is not None:
            raise failure
        if message is not None:
            raise RankZeroFailed(f"rank 0 could not prepare the data ({message})")
        return data if data is not None else prepare_data(self.config, progress=False)

    # -- bounds: a run that cannot fit stops before it allocates --------------------------
    def _check_bounds(self) -> None:
        """Refuse a patch longer than every track, and a step that needs more memory than is
        free. The bytes of one step: the batches in flight and the first block's activations
        (full resolution: conv, BatchNorm and ReLU outputs kept for backward, then about half
        as much again for the pooled blocks). A rough upper bound, not a measurement."""
        cfg, data = self.config, self.data
        data.check_patch_len(cfg.patch_len, cfg.catalog)
        elem = 2 if amp_dtype(self.device, cfg.amp) is not None else 4
        patches = self.system.patches_per_batch(cfg)
        batch = patches * data.n_bins * cfg.patch_len
        need = batch * 4 * (cfg.prefetch + 2) + batch * elem * scale_channels(128, cfg.width) * 4.5
        what = memory_available(self.device)
        if what is not None and need > what:
            raise MemoryError(
                f"this run needs roughly {need / 2**30:.1f} GiB ({patches} patches of "
                f"{data.n_bins} x {cfg.patch_len} per batch, width {cfg.width}) but "
                f"{what / 2**30:.1f} GiB are free on {self.device}; lower patch_len, width, "
                "batch_tracks or negatives_per_batch")

    def _sampler(self):
        """The system's batch sampler over this rank's share (tracks, or mined triplets)."""
        cfg, data = self.config, self.data
        ws, rk = self.dist.world_size, self.dist.rank
        bt, triplets = cfg.batch_tracks, None
        if self.system.track_batches(cfg):
            per_rank = len(self.train_idx) // ws
            bt = min(cfg.batch_tracks, per_rank)
            if bt < cfg.batch_tracks:
                self.log(f"[train] batch_tracks={cfg.batch_tracks} > {per_rank} training tracks per "
                         f"rank: using batches of {bt}")
            if bt < 2:
                raise ValueError(f"{len(self.train_idx)} training tracks cannot make batches for "
                                 f"{ws} ranks")
        else:
            # rows of S on demand: the N x N matrix is never held
            triplets = mine(None, self.train_idx, cfg.mining, n_pos=cfg.n_pos, n_neg=cfg.n_neg,
                            S=lambda rows: oracle(data.tags[rows], data.tags, data.categories),
                            seed=cfg.seed, progress=self.progress and self.dist.is_main)
            self.n_mined = int(triplets.shape[0])
        self.patches_per_batch = self.system.patches_per_batch(cfg, bt)
        return self.system.sampler(cfg, self.train_idx, triplets, bt, rk, ws)

    # -- one epoch ---------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        dev, nb = self.device, self.device.type == "cuda"
        return {"x": batch["x"].to(dev, non_blocking=nb),
                **{k: torch.from_numpy(batch[k]).to(dev, non_blocking=nb)
                   for k in ("y", "S", "idx") if k in batch},   # tags (AT); S, idx (online)
                "n_triplets": int(batch.get("n_triplets", 0)),
                "shared": bool(batch.get("shared", True))}

    def _verify_ranks(self) -> None:
        everyone = self.dist.gather(param_checksum(self.model))
        diff = max(float((t - everyone[0]).abs().max()) for t in everyone)
        self.ddp_check["steps"] += 1
        self.ddp_check["max_abs_diff"] = max(self.ddp_check["max_abs_diff"], diff)
        if diff != 0.0:
            self.ddp_check["mismatch_steps"] += 1
            raise RuntimeError(f"verify_ddp: parameters differ across ranks after step "
                               f"{self.global_step} (max |checksum difference| = {diff:.3e})")

    def train_epoch(self, steps: int | None = None) -> dict:
        cfg = self.config
        steps = cfg.steps_per_epoch if steps is None else steps
        self.objective.train()
        pre = Prefetcher(self._stream, self.maker, steps, cfg.prefetch,
                          pin=self.device.type == "cuda")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        acc = sum_dtype(self.device)
        sums = torch.zeros(3, device=self.device, dtype=acc)    # loss, loss_all, active
        n_trip = n_patches = 0
        bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}", unit="step", leave=False,
                   disable=not (self.progress and self.dist.is_main))
        t0 = time.perf_counter()
        for i, batch in enumerate(pre):
            loss, active, k, loss_all = self.step(self._to_device(batch))
            self.global_step += 1
            # the mean loss, the loss over all triplets and the active share, summed in acc
            terms = [torch.nan_to_num(v.detach().to(acc)) for v in (loss_all, active)]
            sums += torch.stack([loss.detach().to(acc), *terms])
            n_trip += int(k)
            n_patches += int(batch["n_patches"])
            if cfg.verify_ddp and self.dist.active:
                self._verify_ranks()
            if bar.disable is False and (i % 10 == 0 or i == steps - 1):
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            bar.update(1)
        bar.close()
        # tolist() waits for the GPU: the timing is complete
        loss_mean, loss_all_mean, active_mean = (v / steps for v in sums.tolist())
        train_s = time.perf_counter() - t0
        # the ranks' mean losses and times and their summed counts, for the log (one rank: its own)
        every = np.array(self.dist.gather([loss_mean, loss_all_mean, active_mean, pre.wait_s,
                                           train_s, n_trip, n_patches]))
        loss_mean, loss_all_mean, active_mean, wait, train_s = map(float, every[:, :5].mean(axis=0))
        n_trip, n_patches = map(int, every[:, 5:].sum(axis=0))
        if not self.system.triplet_stats:
            loss_all_mean = active_mean = None
        return {"loss": loss_mean, "loss_all": loss_all_mean, "active_fraction": active_mean,
                "triplets_per_batch": n_trip / (steps * self.dist.world_size),
                "train_s": train_s, "patches_per_s": n_patches / train_s if train_s > 0 else None,
                "data_wait_share": wait / train_s if train_s > 0 else None,
                "peak_memory_mb": peak_memory(self.device)[0] / 2**20}

    # -- validation, early stopping, checkpoint ---------------------------------------------
    def record_epoch(self, train_stats: dict | None, t_epoch: float) -> bool:
        """Validate (rank 0), update early stopping, log, checkpoint. Returns 'stop now'."""
        cfg = self.config
        stop = False
        row = None
        if self.dist.is_main:
            val = _validate(self.model, self.data, self.val_idx, self.S_val, cfg, self.device)
            monitored = val.get(cfg.monitor)
            value = -math.inf if monitored is None else float(monitored)
            improved = value > self.best["value"]
            if improved:
                self.best.update(value=value, epoch=self.epoch, bad_epochs=0,
                                 state={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})
            else:
                self.best["bad_epochs"] += 1
            # patience running out at the last planned epoch ends nothing early
            stop = (cfg.patience > 0 and self.best["bad_epochs"] >= cfg.patience
                    and self.epoch < cfg.epochs)
            row = {"epoch": self.epoch, "step": self.global_step,
                   **dict.fromkeys(("loss", "loss_all", "active_fraction", "triplets_per_batch",
                                    "train_s", "patches_per_s", "data_wait_share",
                                    "peak_memory_mb")),
                   **(train_stats or {}), **val, "lr": self.optimizer.param_groups[0]["lr"],
                   "epoch_s": time.perf_counter() - t_epoch,
                   "elapsed_s": self.elapsed_before + (time.perf_counter() - self._t_start),
                   "is_best": bool(improved)}
            row = {k: _jsonable(v) for k, v in row.items()}
            self.rows.append(row)
        stop, self.best["epoch"] = self.dist.broadcast((stop, self.best["epoch"]))
        self.stopped_early = bool(stop)
        self._checkpoint()
        if self.dist.is_main:
            lines = [json.dumps(r) + "\n" for r in self.rows]   # rewritten whole: stays in
            (self.run_dir / "metrics.jsonl").write_text("".join(lines))  # step with the checkpoint
            msg = (f"[train] epoch {self.epoch:3d}  val MAP@20 {row['val_map']:.4f} "
                   f"[{row['val_map_low']:.4f}, {row['val_map_high']:.4f}]")
            for key, label, fmt in (("loss", "loss", ".4f"), ("active_fraction", "active", ".3f"),
                                    ("val_auc", "AUC", ".4f")):
                if row[key] is not None:
                    msg += f"  {label} {row[key]:{fmt}}"
            if self.progress:
                tqdm.write(msg)
        self.dist.barrier()
        return bool(stop)

    def _checkpoint(self) -> None:
        rng = self.dist.gather(capture_rng(self.patch_rng, self.device))
        if not self.dist.is_main:
            return
        self.folder.save_checkpoint({
            "epoch": self.epoch,
            "global_step": self.global_step,
            "world_size": self.dist.world_size,
            "config": json.dumps(self.config.to_dict()),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": json.dumps(self.sampler.state_dict()),
            "rng": rng,
            "early_stopping": dict(self.best),
            "metrics": json.dumps(self.rows),
            "stopped_early": self.stopped_early,
            "elapsed_s": self.elapsed_before + (time.perf_counter() - self._t_start),
            "ddp_check": json.dumps(self.ddp_check),
            "torch_version": str(torch.__version__),
        })

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, stop_after_epoch: int | None = None) -> None:
        cfg = self.config
        self._t_start = time.perf_counter()
        if not self.rows:  # epoch 0: the untrained network, the reference row
            self.record_epoch(None, time.perf_counter())
        bar = tqdm(total=cfg.epochs, initial=min(self.epoch, cfg.epochs), desc=f"train {cfg.name}",
                   unit="epoch", disable=not (self.progress and self.dist.is_main))
        while self.epoch < cfg.epochs and not self.stopped_early:
            t_epoch = time.perf_counter()
            stats = self.train_epoch()
            self.epoch += 1
            stop = self.record_epoch(stats, t_epoch)
            bar.update(1)
            if stop:
                self.log(f"[train] early stop after epoch {self.epoch}: no better {cfg.monitor} for "
                         f"{cfg.patience} epochs (best: epoch {self.best['epoch']})")
            if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                bar.close()
                self.log(f"[train] simulated interruption after epoch {self.epoch}")
                sys.stdout.flush()
                os._exit(3)  # like a kill: no clean-up, no final files
        bar.close()

    def finalize(self) -> RunResult | None:
        cfg = self.config
        if self.dist.is_main:
            if self.best["state"] is not None:
                self.model.load_state_dict(self.best["state"])
            idx = self.data.indices()
            E = None
            if cfg.embed_all:
                E = embed_tracks(self.model, self.data, idx, cfg.patch_len, cfg.val_patches,
                                 cfg.eval_batch, self.device, cfg.amp,
                                 per_patch=self.system.per_patch, progress=self.progress)
                if self.system.per_patch:
                    np.save(self.run_dir / "patch_embeddings.npy", E)
                    E = E.mean(axis=1)
                np.save(self.run_dir / "embeddings.npy", E.astype(np.float32))
                pd.DataFrame({"catalog_index": idx, "track_id": self.data.track_ids[idx],
                              "split": self.data.split[idx]}).to_csv(self.run_dir / "tracks.csv",
                                                                     index=False)
            buf = io.BytesIO()  # through Python's open(), so verify_ddp's write audit sees it
            torch.save({"model_config": dict(self.model.config),
                        "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()}}, buf)
            (self.run_dir / "model.pt").write_bytes(buf.getvalue())
            # written last and atomically: its presence marks a finished run, so a kill in
            # this write must leave no half file (resume then finishes from the checkpoint)
            write_json_atomic(self._summary(E), self.run_dir / "summary.json")
        if cfg.verify_ddp:
            writes = self.dist.gather(WriteAudit.stop())
            if self.dist.is_main:
                report = {"world_size": self.dist.world_size, **self.ddp_check,
                          "identical": self.ddp_check["mismatch_steps"] == 0,
                          "writes_by_rank": {str(r): w for r, w in enumerate(writes)}}
                (self.run_dir / "ddp_verify.json").write_text(json.dumps(report, indent=1))
        self.dist.barrier()
        return load_run(self.run_dir) if self.dist.is_main else None

    def _summary(self, E: np.ndarray | None) -> dict:
        cfg = self.config
        trained = [r for r in self.rows if r["epoch"] > 0]
        train_s = sum(r["train_s"] for r in trained)
        patches = sum(r["patches_per_s"] * r["train_s"] for r in trained)
        waits = sum(r["data_wait_share"] * r["train_s"] for r in trained)
        peak, what = peak_memory(self.device)
        best_row = next((r for r in self.rows if r["epoch"] == self.best["epoch"]), self.rows[-1])
        return {
            "name": cfg.name,
            "system": cfg.system,
            "mining": None if self.system.mining == "none" else cfg.mining,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else
            self.device.type,
            "cpu_kernels": cpu_kernels(),       # a CPU run repeats bit for bit under the same kernels
            "world_size": self.dist.world_size,
            "amp_dtype": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "deterministic": self.deterministic,
            "lr": cfg.learning_rate,
            "epochs_run": self.epoch,
            "global_steps": self.global_step,
            "stopped_early": self.stopped_early,
            "best_epoch": self.best["epoch"],
            "best": {k: v for k, v in best_row.items() if k.startswith("val_")},  # all val metrics
            "untrained": {k: self.rows[0].get(k) for k in ("val_map", "val_map_low", "val_map_high",
                                                           "val_auc")},
            **{f"final_{k}": trained[-1][k] if trained else None
               for k in ("loss", "loss_all", "active_fraction")},
            "patches_per_batch": self.patches_per_batch,
            "n_mined_triplets": getattr(self, "n_mined", None),
            "throughput_patches_per_s": patches / train_s if train_s > 0 else None,
            "data_wait_share": waits / train_s if train_s > 0 else None,
            "train_s": train_s,
            "peak_memory_bytes": peak,
            "peak_memory_kind": what,
            "n_params": int(sum(p.numel() for p in self.model.parameters())),
            "n_tracks_embedded": 0 if E is None else int(E.shape[0]),
            "embedding_dim": None if E is None else int(E.shape[1]),
            "representation": self.system.representation,
            "n_skipped_tracks": int((~self.data.available).sum()),
            "torch": str(torch.__version__),
        }

    def close(self) -> None:
        if self._det_before is not None:
            torch.use_deterministic_algorithms(self._det_before[0], warn_only=self._det_before[1])
        self.folder.lock.release()    # a no-op where this process holds no lock (ranks > 0)
        self.dist.close()



def train(config: TrainConfig, resume: bool = False, progress: bool = True, *,
          data: TrainData | None = None, stop_after_epoch: int | None = None,
          replace: bool = False) -> RunResult | None:
    """Train one system; write checkpoints, metrics, embeddings and a summary to the run folder.

    Every input (config fields, features, catalog, device, patch length against the tracks and
    the free memory) is checked before anything is written into the run folder (before, it is
    only locked, a run a killed replacement moved aside is put back, and, once the folder's run
    is decided, the dead temporaries of its files are deleted), and the folder is locked
    while the run lives (a second writer gets :class:`mrlib.paths.LockedError` naming the
    holder; the lock of a dead process is recovered, with a message).

    Parameters
    ----------
    config : TrainConfig
    resume : bool, default False
        Continue the run in ``config.run_dir()`` from its latest good checkpoint (falling back
        to the previous one when the latest is truncated or corrupt). Only ``epochs``,
        ``device`` and the I/O fields may differ from the checkpoint's config. A finished run
        of the same config is returned as it is (nothing retrained); an empty folder starts
        from scratch.
    replace : bool, default False
        Allow a fresh run (``resume=False``) to replace a run of *another* configuration (or
        an unrecognised one) in the folder. Without it that is a :class:`RunExistsError` and
        nothing is touched. A run of the same configuration is trained again without it.
        Either way the old files wait in ``.previous-run/`` until the new run has written its
        first checkpoint, and come back if it stops before.
    progress : bool, default True
        Progress bars and a line per epoch (rank 0).
    data : TrainData, optional
        Pre-loaded data (default: :func:`prepare_data` from the config).
    stop_after_epoch : int, optional
        Simulate a crash: end the process (``os._exit(3)``) right after this epoch's
        checkpoint — to demonstrate and test ``resume``.

    Returns
    -------
    RunResult
        The run folder, the metrics DataFrame and ``summary.json`` (None on DDP ranks > 0).

    Examples
    --------
    >>> cfg = TrainConfig(system="tl", mining="distance", n_tracks=200, epochs=3)  # doctest: +SKIP
    >>> run = train(cfg)                                                           # doctest: +SKIP
    >>> run.metrics[["epoch", "loss", "val_map"]]                                  # doctest: +SKIP

    Notebook: 06_training.ipynb
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    if data is not None and not isinstance(data, TrainData):
        raise TypeError(f"data must be a TrainData (or None), got {type(data).__name__}")
    if stop_after_epoch is not None:
        check_int("stop_after_epoch", stop_after_epoch, 1)
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be a bool, got {replace!r}")
    if data is None:
        check_catalog_name(config.catalog)
    run = _TrainingRun(config, data, progress)
    try:
        # rank 0 locks the folder and decides; on a finished run every rank returns (None on
        # the others), so no rank trains while rank 0 closes the process group
        finished = run.folder.open(resume, replace) if run.dist.is_main else None
        if run.dist.broadcast(finished is not None):
            return finished
        run.setup(resume)
        run.fit(stop_after_epoch)
        return run.finalize()
    except BaseException:
        if run.dist.is_main:
            run.folder.restore_aside()
        raise
    finally:
        run.close()


# =============================================================================================
# Throughput (for the benchmark and the notebook)
# =============================================================================================
def measure_throughput(config: TrainConfig, steps: int = 20, warmup: int = 3, *,
                       data: TrainData | None = None, reference: bool = True) -> dict:
    """Training throughput of a configuration, and the model-only ceiling for comparison.

    Runs ``warmup`` then ``steps`` training steps through the trainer's own data pipeline
    (sampler, patches, prefetch thread) — no validation, nothing written — and, with
    ``reference=True``, the same number of steps of the objective alone on one pre-made batch
    already on the device (the ceiling with no data wait).

    Parameters
    ----------
    config : TrainConfig
    steps, warmup : int
    data : TrainData, optional
    reference : bool

    Returns
    -------
    dict
        ``patches_per_s``, ``data_wait_share``, ``step_ms``, ``patches_per_batch``, and with the
        reference ``ceiling_patches_per_s`` and ``ratio`` (pipeline / ceiling); ``device``.

    Notebook: 06_training.ipynb
    """
    check_int("steps", steps, 1)
    check_int("warmup", warmup, 0)
    run = _TrainingRun(config.replace(verify_ddp=False), data, progress=False)
    if run.dist.active:
        run.close()
        raise RuntimeError("measure_throughput runs on one process; launch it without torchrun")
    try:
        run._start()    # no run folder, validation or resume: what a step needs
        run._build_run_state()
        if warmup:
            run.train_epoch(warmup)
        stats = run.train_epoch(steps)
        out = {"device": str(run.device), "patches_per_batch": run.patches_per_batch,
               "patches_per_s": stats["patches_per_s"], "data_wait_share": stats["data_wait_share"],
               "step_ms": 1000 * stats["train_s"] / steps}
        if reference:
            batch = run._to_device(tensor_batch(run.maker, next(run._stream), pin=False))
            for _ in range(warmup):
                run.step(batch)
            synchronize(run.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                run.step(batch)
            synchronize(run.device)
            out["ceiling_patches_per_s"] = steps * batch["x"].shape[0] / (time.perf_counter() - t0)
            out["ratio"] = out["patches_per_s"] / out["ceiling_patches_per_s"]
        return out
    finally:
        run.close()



def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m mrlib.train --system tl --mining distance --epochs 5 [--resume]``.

    Every :class:`TrainConfig` field is a flag (``--steps-per-epoch``, ``--patch-len``,
    ``--no-amp`` …; ``--out`` sets ``out_dir``); ``--config run/config.json`` starts from a
    saved config and ``--paper`` from :func:`paper_config`. Under
    ``torchrun --nproc_per_node=K -m mrlib.train ...`` the same command trains with DDP.

    Returns
    -------
    int
        Exit status: 0, or 2 when the run could not start or was refused (a locked or
        occupied run folder, a missing catalog, an invalid value, not enough memory), with the
        reason on stderr; 130 after Ctrl-C (``--resume`` continues).

    Notebook: 06_training.ipynb
    """
    config, args = config_from_args(argv)
    try:
        run = train(config, resume=args.resume, progress=args.progress,
                    stop_after_epoch=args.stop_after_epoch, replace=args.replace)
    except (LockedError, RunExistsError, CheckpointError, FileNotFoundError, MemoryError, ValueError,
            RankZeroFailed) as err:
        print(f"[train] error: {err}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\n[train] interrupted: the same command with --resume continues from the last "
              "checkpoint (one per finished epoch)", file=sys.stderr, flush=True)
        return 130
    if run is not None:
        s = run.summary
        wait = s["data_wait_share"]
        # epoch 0 is the network before any step: say so, as training then bought nothing
        untrained = " (the untrained network)" if s["best_epoch"] == 0 and s["epochs_run"] else ""
        print(f"[train] done: {run.path}  best epoch {s['best_epoch']}{untrained}  val MAP@20 "
              f"{s['best']['val_map']:.4f}  throughput {s['throughput_patches_per_s'] or 0:.0f} "
              f"patches/s  data wait {'n/a' if wait is None else f'{100 * wait:.1f} %'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

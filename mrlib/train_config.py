"""What defines a training run: :class:`TrainConfig`, its checks, and the papers' scale.

Every field is checked by one entry of a table (field -> check) and the rules between fields
are the systems' (:mod:`mrlib.systems`): a config that passes trains, one that does not names
its bad field before anything is read or written.

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mrlib.checks import (FINITE, check_choice, check_values, int_at_least, is_int, is_real, rule,
                          validate_fields)
from mrlib.features import FeatureConfig
from mrlib.mining import STRATEGIES, canonical_strategy, is_online
from mrlib.models import POOLINGS
from mrlib.paper_scale import PAPER_SCALE
from mrlib.paths import atomic_path, runs_dir
from mrlib.systems import SYSTEMS

__all__ = ["DEFAULT_LR", "PAPER_LR", "PAPER_SCALE", "TrainConfig", "paper_config"]

#: The papers' learning rates by system (:attr:`mrlib.systems.System.paper_lr`).
PAPER_LR: dict[str, float] = {k: s.paper_lr for k, s in SYSTEMS.items()}

#: Rates that work at the notebook's defaults (:attr:`mrlib.systems.System.default_lr`).
DEFAULT_LR: dict[str, float] = {k: s.default_lr for k, s in SYSTEMS.items()}

# Options whose None means "the model's (or optimiser's) own choice" and that enter the folder
# hash only when set, so that runs which do not use them keep their folders.
_HASHED_WHEN_SET = {"pooling", "alpha_lr"}
# Config fields that say only where and how fast a run runs: two configs that differ in these
# alone describe the same run.
_PLACE_AND_SPEED = {"device", "n_jobs", "prefetch", "out_dir", "run_name", "verify_ddp", "eval_batch"}
# Config fields that may change when a run is resumed: where and how fast it runs, how long it
# lasts, and whether it embeds every track at the end. Everything else shapes the trajectory
# and must match the checkpoint.
_RESUMABLE_CHANGES = _PLACE_AND_SPEED | {"epochs", "embed_all"}


@dataclass
class TrainConfig:
    """Everything that defines a training run; JSON-serialisable (:meth:`to_json`).

    Parameters
    ----------
    system : {"at", "tl", "tl_autopool", "matchnet"}, default "tl"
        The system to train (a key of :data:`mrlib.systems.SYSTEMS`).
    mining : str, default "distance"
        Offline ``"neighbors"``, ``"uniform"``, ``"distance"`` or online ``"online-semihard"``,
        ``"online-hard"`` (TL and TL Autopool). Ignored by AT; MatchNet takes offline ones.
    catalog : str, default "synthetic"
        Name or folder for :func:`mrlib.catalog.load`.
    n_tracks : int, default 200
        Catalog size (generated catalogs; 200 is the default catalog of ``make catalog``).
    catalog_seed : int, default 0
        Seed of the generated catalog (kept apart from ``seed`` so that changing the training
        seed does not change the data).
    catalog_kwargs : dict
        Further keyword arguments for :func:`mrlib.catalog.load` (e.g. ``duration_s``).
    features : dict
        Keyword arguments of :class:`mrlib.features.FeatureConfig` (``{}``: its defaults).
    patch_len : int, default 128
        Patch length in CQT frames (paper: 512 = 11.9 s).
    width : float, default 0.125
        Channel multiplier (1.0 = the paper's Table 1).
    embedding_dim : int, default 128
        ``d`` (TL, TL Autopool) or the tower embedding (MatchNet).
    dropout : float in [0, 1) or None, default None
        Dropout after each convolution block of AT, TL and TL Autopool; ``None`` keeps the
        model's own (AT 0.5, as FCN; TL and TL Autopool 0). MatchNet has none.
    pooling : {"autopool", "mean", "max"} or None, default None
        TL Autopool's pooling over time (``mrlib.models.POOLINGS``); ``None`` keeps the learned
        AutoPool. Other systems refuse it.
    alpha_lr : float in (0, 1) or None, default None
        Adam's learning rate of the learned AutoPool's α (``None``: ``lr``, as every weight).
    n_pos, n_neg : int, default 15, 250
        ``Np`` positives per anchor and ``Nn`` negatives per pair for offline mining.
    negatives_per_batch : int, default 42
        Triplets per batch of offline mining: with ``sampler="paper"`` the negative tracks that
        share one anchor and one positive track (§3.4).
    sampler : {"paper", "shuffled"}, default "paper"
        Offline batches: the paper's (one anchor track, one positive track, 42 negative
        tracks; :class:`mrlib.mining.PaperBatchSampler`) or 42 triplets drawn at random from
        all mined ones (:class:`mrlib.mining.ShuffledTripletSampler`), which averages the
        gradient over many anchors.
    batch_tracks : int, default 64
        Tracks per batch for AT and online mining (clipped to the training tracks per rank).
    matchnet_patches : int, default 2
        Patches per song in a MatchNet song triplet.
    margin : float, default 0.5
        Triplet-loss margin δ.
    lr : float or None
        Adam's learning rate; ``None`` = :data:`DEFAULT_LR` of the system
        (:data:`PAPER_LR` holds the papers').
    epochs : int, default 10
        Epochs to train (0: only embed with the untrained network).
    steps_per_epoch : int, default 50
        Batches per epoch (per rank).
    patience : int, default 5
        Stop after this many epochs without a better validation metric (0: never stop early).
    monitor : {"val_map", "val_auc"}, default "val_map"
        The early-stopping metric (``"val_auc"`` for AT only).
    val_patches : int, default 8
        Test patches per track for validation and the final embeddings.
    eval_batch : int, default 256
        Patches per forward pass when embedding.
    device : str, default "auto"
        ``"auto"`` (:func:`pick_device`), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    amp : bool, default True
        Mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler); no effect
        elsewhere.
    deterministic : bool or None, default None
        ``torch.use_deterministic_algorithms``; ``None`` = on for CPU, off on GPUs (speed).
    seed : int, default 0
        Seeds weights, mining, samplers, patches and dropout.
    out_dir : str or None
        Run folder; default ``runs_dir() / "train" / <folder>``: ``run_name`` when given,
        else ``"<system>_<mining>_s<seed>-<hash>"`` where the hash covers every field that
        shapes the result (:attr:`fingerprint`), so runs with another lr, width, catalog ...
        never share a default folder.
    run_name : str or None
        Label of the run, a plain folder name (``out_dir`` takes a path); default
        ``"<system>_<mining>_s<seed>"`` (``"at_s<seed>"`` for AT).
    n_jobs : int, default 2
        Processes for feature extraction.
    prefetch : int, default 2
        Batches prepared ahead by a background thread (0: in the training loop).
    embed_all : bool, default True
        At the end, embed every track of the catalog (``embeddings.npy``); False skips it
        (quick experiments that only need the metrics).
    verify_ddp : bool, default False
        Under DDP, compare parameter checksums across ranks after every step (all_gather) and
        record which files each rank wrote; the report goes to ``ddp_verify.json``.

    Notebook: 06_training.ipynb
    """

    system: str = "tl"
    mining: str = "distance"
    catalog: str = "synthetic"
    n_tracks: int = 200
    catalog_seed: int = 0
    catalog_kwargs: dict = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    patch_len: int = 128
    width: float = 0.125
    embedding_dim: int = 128
    dropout: float | None = None
    pooling: str | None = None
    alpha_lr: float | None = None
    n_pos: int = 15
    n_neg: int = 250
    negatives_per_batch: int = 42
    sampler: str = "paper"
    batch_tracks: int = 64
    matchnet_patches: int = 2
    margin: float = 0.5
    lr: float | None = None
    epochs: int = 10
    steps_per_epoch: int = 50
    patience: int = 5
    monitor: str = "val_map"
    val_patches: int = 8
    eval_batch: int = 256
    device: str = "auto"
    amp: bool = True
    deterministic: bool | None = None
    seed: int = 0
    out_dir: str | None = None
    run_name: str | None = None
    n_jobs: int = 2
    prefetch: int = 2
    embed_all: bool = True
    verify_ddp: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Check every field; raise ``ValueError``/``TypeError`` naming the bad one.

        Each field passes its checks in :data:`_FIELD_CHECKS` (which also canonicalise it:
        ``mining`` aliases such as ``"random"`` → ``"uniform"``, ints, floats, paths; run by
        :func:`mrlib.checks.validate_fields`), then the config passes the rules between fields,
        :data:`_SYSTEM_RULES`.

        Notebook: 06_training.ipynb
        """
        validate_fields(self, _FIELD_CHECKS)
        system = SYSTEMS[self.system]
        for broken, message in _SYSTEM_RULES:
            if broken(self, system):
                offline = ", ".join(repr(k) for k, st in STRATEGIES.items() if not st.online)
                raise ValueError(message.format(c=self, s=system, offline=offline))
        try:
            json.dumps(self.to_dict())
        except TypeError as err:
            raise TypeError(f"TrainConfig must be JSON-serialisable: {err}") from None
        return self

    @staticmethod
    def check_fields(values: dict) -> None:
        """Pass each of ``values`` (field name -> value) through that field's own checks alone,
        so a bad value shared by several configs is reported once, before any config is built;
        an unknown field name is a ``TypeError``.

        Notebook: 07_evaluation.ipynb
        """
        typos = sorted(set(values) - set(_FIELD_CHECKS))
        if typos:
            raise TypeError(f"unknown TrainConfig field(s) {typos}; known: {sorted(_FIELD_CHECKS)}")
        check_values("TrainConfig", values, _FIELD_CHECKS)

    # -- derived ----------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """``lr``, or the system's default rate (:data:`DEFAULT_LR`) when ``lr`` is None."""
        return float(self.lr) if self.lr is not None else SYSTEMS[self.system].default_lr

    @property
    def online(self) -> bool:
        """Whether the system mines its triplets inside each batch (TL, online mining)."""
        return SYSTEMS[self.system].online(self)

    @property
    def name(self) -> str:
        """``run_name`` or a label built from system, mining (when it mines) and seed."""
        return self.run_name or SYSTEMS[self.system].run_name(self)

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of every field that shapes the run's trajectory.

        Leaves out the fields a resumed run may change (:data:`_RESUMABLE_CHANGES`: epochs,
        device, I/O), so that the folder of a default-named run is the same when it is
        resumed with more epochs.
        """
        fields = {k: v for k, v in self.to_dict().items()
                  if k not in _RESUMABLE_CHANGES and not (k in _HASHED_WHEN_SET and v is None)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def run_dir(self) -> Path:
        """The run folder, not created here: ``out_dir``, else ``runs_dir()/train/`` and
        ``run_name`` or ``<name>-<first 8 hex digits of the fingerprint>``, so that two runs that
        differ in any field that changes the result (lr, width, n_tracks, catalog, features ...)
        get different default folders."""
        if self.out_dir:
            return Path(self.out_dir)
        return runs_dir() / "train" / (self.run_name or f"{self.name}-{self.fingerprint[:8]}")

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the config as JSON to ``path``."""
        with atomic_path(path) as tmp:   # atomically: a half config.json makes a run unrecognisable
            tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict; unknown keys are a ``TypeError`` naming them and the known ones (a
        typo should not pass silently)."""
        if not isinstance(d, dict):
            raise TypeError(f"expected a dict of TrainConfig fields, got {type(d).__name__}")
        cls.check_fields(d)
        return cls(**d)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TrainConfig":
        """Inverse of :meth:`to_json`: the config in the JSON file ``path``."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def paper_config(system: str = "tl", mining: str = "distance", **overrides) -> TrainConfig:
    """The papers' scale, for a GPU: width 1.0, 96 × 512 patches, AMP, the papers' rates.

    The fields of :data:`PAPER_SCALE` (14,246 tracks, Np = 15, Nn = 250, 100 epochs of 2000
    batches ...), ``lr = PAPER_LR[system]``, features at 44.1 kHz / hop 1024, and batches of
    128 tracks prepared 4 ahead. Any field can be overridden.

    Returns
    -------
    TrainConfig

    Notebook: 06_training.ipynb
    """
    check_choice("TrainConfig.system", system, SYSTEMS)
    base = dict(system=system, mining=mining, **PAPER_SCALE, lr=SYSTEMS[system].paper_lr,
                amp=True, device="auto", features={"sr": 44100, "hop_length": 1024},
                batch_tracks=128, prefetch=4)
    return TrainConfig(**{**base, **overrides})



# =============================================================================================
# The checks: one row per field, then the rules between fields
# =============================================================================================
def _mining(name: str, value):
    try:
        return canonical_strategy(value)
    except ValueError:
        # the registry as it is now: a strategy registered after import is accepted, so named
        raise ValueError(f"{name} must be one of {tuple(STRATEGIES)}, got {value!r}") from None


def _features(name: str, value: dict) -> dict:
    """Keyword arguments that :class:`FeatureConfig` accepts (an unknown key is its TypeError)."""
    try:
        FeatureConfig(**value)
    except (TypeError, ValueError) as err:
        known = [f.name for f in dataclasses.fields(FeatureConfig)]
        raise ValueError(f"{name} must be keyword arguments of FeatureConfig {known}; got "
                         f"{value!r}: {err}") from None
    return value


_RATE = rule(lambda v: is_real(v) and 0 < v < 1, "None or in (0, 1)", convert=float, optional=True)
_BOOL = rule(lambda v: isinstance(v, bool), "a bool", TypeError)
_DICT = rule(lambda v: isinstance(v, dict), "a dict", TypeError)
_PATH = rule(lambda v: isinstance(v, (str, os.PathLike)), "None or a path string", TypeError,
             os.fspath, optional=True)

#: Field -> its checks, in order; each returns the (canonical) value or raises.
_FIELD_CHECKS: dict[str, tuple] = {
    "system": (lambda name, value: check_choice(name, value, SYSTEMS),),
    "mining": (rule(lambda v: isinstance(v, str), "a str", TypeError), _mining),
    "catalog": (rule(lambda v: isinstance(v, str) and bool(v), "a non-empty str", TypeError),),
    "n_tracks": int_at_least(2),
    "catalog_seed": int_at_least(0),
    "catalog_kwargs": (_DICT,),
    "features": (_DICT, _features),
    "patch_len": int_at_least(1),
    "width": (FINITE, rule(lambda v: v > 0, "> 0 (1.0 = the paper)")),
    "embedding_dim": int_at_least(1),
    "dropout": (rule(lambda v: is_real(v) and 0 <= v < 1, "None or a float in [0, 1)", convert=float,
                     optional=True),),
    "pooling": (rule(lambda v: v in POOLINGS, f"None or one of {POOLINGS}", optional=True),),
    "alpha_lr": (_RATE,),
    "n_pos": int_at_least(1),
    "n_neg": int_at_least(1),
    "negatives_per_batch": int_at_least(1),
    "sampler": (rule(lambda v: v in ("paper", "shuffled"), "'paper' or 'shuffled'"),),
    "batch_tracks": int_at_least(2),
    "matchnet_patches": int_at_least(1),
    "margin": (FINITE, rule(lambda v: v >= 0, ">= 0")),
    "lr": (_RATE,),
    "epochs": int_at_least(0),
    "steps_per_epoch": int_at_least(1),
    "patience": int_at_least(0),
    "monitor": (rule(lambda v: v in ("val_map", "val_auc"), "'val_map' or 'val_auc'"),),
    "val_patches": int_at_least(1),
    "eval_batch": int_at_least(1),
    "device": (rule(lambda v: isinstance(v, str), "a str such as 'auto' or 'cuda:0'", TypeError),),
    "amp": (_BOOL,),
    "deterministic": (rule(lambda v: isinstance(v, bool), "None or a bool", TypeError, optional=True),),
    "seed": int_at_least(0),
    "out_dir": (_PATH,),
    "run_name": (rule(lambda v: isinstance(v, str), "None or a str", TypeError, optional=True),
                 rule(lambda v: v not in ("", ".", "..") and not any(c in v for c in "/\\"),
                      "None or a plain folder name (out_dir takes a path)", optional=True)),
    "n_jobs": (rule(lambda v: is_int(v) and (v > 0 or v == -1), "a positive int or -1"),),
    "prefetch": int_at_least(0),
    "embed_all": (_BOOL,),
    "verify_ddp": (_BOOL,),
}

#: Rules between fields, from the system's abilities: (broken(config, system), message).
_SYSTEM_RULES: tuple = (
    (lambda c, s: c.dropout is not None and not s.has_dropout,
     "TrainConfig.dropout: the {c.system!r} system has no dropout; leave it None"),
    (lambda c, s: c.pooling is not None and not s.takes_pooling,
     "TrainConfig.pooling is TL Autopool's; system {c.system!r} pools its own way: leave it None"),
    (lambda c, s: c.alpha_lr is not None and not (s.takes_pooling and c.pooling in (None, "autopool")),
     "TrainConfig.alpha_lr is the learned AutoPool's; leave it None for system {c.system!r} with "
     "pooling {c.pooling!r}"),
    (lambda c, s: s.mining == "offline" and is_online(c.mining),
     "{c.system} trains on offline-mined triplets; choose mining from {offline}"),
    (lambda c, s: c.monitor not in s.monitors,
     "monitor={c.monitor!r} is not a metric of system {c.system!r}: choose one of {s.monitors}"),
)

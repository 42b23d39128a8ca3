"""The trainer's command line as a :class:`TrainConfig`: every field a flag.

``python -m mrlib.train`` and ``torchrun -m mrlib.train`` parse their arguments here
(:func:`mrlib.train.main` runs them).

Notebook: 06_training.ipynb
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
from typing import Sequence

from mrlib.models import POOLINGS
from mrlib.paths import path_argument
from mrlib.train_config import TrainConfig, paper_config

__all__ = ["config_from_args"]


def _field_help() -> dict:
    """Each field's description in TrainConfig's numpydoc (one line, without reST markup), so
    that the flags say what the documentation says; none under ``python -OO``."""
    found = re.findall(r"^(\w+(?:, \w+)*) : (.*)\n((?:    .*\n)*)",
                       inspect.cleandoc(TrainConfig.__doc__ or ""), re.M)
    return {name: re.sub(r":\w+:`~?([^`]*)`|``([^`]*)``", lambda m: m[1] or m[2],
                         " ".join(text.split())).replace("%", "%%")
            for names, _, text in found for name in names.split(", ")}


def _json_object(text: str) -> dict:
    """A flag's JSON object; anything else is a usage error that says what is expected."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg}): {text!r}; write an object such "
                                         "as '{\"name\": 12}', quoted for the shell") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


_BOOL_FLAG = {"action": argparse.BooleanOptionalAction}    # --amp / --no-amp
#: A flag's options by its field's annotation (a str field takes the text as it is), then by name.
_FLAG_OPTIONS = {"bool": _BOOL_FLAG, "bool | None": _BOOL_FLAG, "int": {"type": int},
                 "float": {"type": float}, "float | None": {"type": float},
                 "dict": {"type": _json_object, "metavar": "JSON"},
                 "pooling": {"choices": POOLINGS}, "out_dir": {"type": path_argument}}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrlib.train",
        description="Train AT, TL (any mining), TL Autopool or Triplet MatchNet. The same command "
                    "runs DDP under torchrun: torchrun --nproc_per_node=K -m mrlib.train ...",
        epilog="Config flags left out keep the value of --config or of --paper (one of the two), "
               "else TrainConfig's default.")
    defaults, helps = TrainConfig(), _field_help()
    # SUPPRESS: only the flags actually given reach the namespace, so they override a saved
    # config (--config) or the paper profile (--paper) without clobbering the rest.
    for f in dataclasses.fields(TrainConfig):
        kw = {"dest": f.name, "default": argparse.SUPPRESS,
              "help": f"{helps.get(f.name, '')} (default: {getattr(defaults, f.name)!r})".lstrip()}
        kw.update(_FLAG_OPTIONS.get(f.type, {}), **_FLAG_OPTIONS.get(f.name, {}))
        flags = ("--out", "--out-dir") if f.name == "out_dir" else ("--" + f.name.replace("_", "-"),)
        p.add_argument(*flags, **kw)
    p.add_argument("--config", dest="config_file", default=None, type=path_argument,
                   help="start from a saved config.json; the run goes to a new folder (named "
                        "from its fields) unless --out is given or --resume continues that run")
    p.add_argument("--paper", action="store_true",
                   help="start from paper_config(system, mining): width 1, 96 x 512, AMP")
    p.add_argument("--resume", action="store_true", help="continue the run from its checkpoint")
    p.add_argument("--replace", action="store_true",
                   help="allow replacing a run of another configuration in the run folder (kept "
                        "in .previous-run/ until the new run's first checkpoint)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars and no line per epoch (the run folder's metrics.jsonl "
                        "holds them)")
    p.add_argument("--stop-after-epoch", type=int, default=None,
                   help="simulate a crash right after this epoch's checkpoint (exit status 3)")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse the command line into a :class:`TrainConfig` (and the other options).

    Notebook: 06_training.ipynb
    """
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    if args.config_file and args.paper:      # each is a whole starting config: one would be dropped
        parser.error("--config and --paper each give the config to start from; choose one")
    try:
        if args.config_file:
            try:
                base = TrainConfig.from_json(args.config_file).to_dict()
            except (TypeError, ValueError, OSError) as err:   # OSError: a folder, a missing file
                parser.error(f"--config {args.config_file}: " + (
                    f"not a saved config.json (not JSON: {err})"
                    if isinstance(err, json.JSONDecodeError) else str(err)))
            if not args.resume:
                # a replay (often with a changed field) is a new run: it must not land in,
                # and replace, the saved run's folder unless --out says so
                base.update(out_dir=None, run_name=None)
        elif args.paper:
            base = paper_config(given.get("system", "tl"), given.get("mining", "distance")).to_dict()
        else:
            base = TrainConfig().to_dict()
        base.update(given)
        config = TrainConfig.from_dict(base)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    return config, args

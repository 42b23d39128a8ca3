"""The music21 corpus as catalog material: strata (collections), the inventory of works with
their metadata, the artist of each work, and the seeded stratified draw.

Notebook: 00_overview.ipynb
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import re
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from mrlib.checks import check_int


@dataclasses.dataclass(frozen=True)
class Stratum:
    """What a collection contributes to the tags and to the default rendering.

    Attributes
    ----------
    style, collection : str
        Genre tags every work of the stratum carries.
    region : str or None
        Default ``region_*`` tag (Essen works use their own ``O:`` locale instead).
    qpm : float
        Default tempo in quarter notes per minute when the score has no metronome mark and the
        work has no dance type.
    vocal : float
        Likelihood that the work was sung (``lyrics_vocal``).
    language : dict
        ``lang_*`` likelihoods of a sung work.
    sacred : float
        Default likelihood of ``genre_sacred``.
    modal : bool
        Pre-1600 repertoire: ``mode_modal`` = 1 whatever the key-finding says.
    """

    style: str
    collection: str
    region: str | None
    qpm: float
    vocal: float
    language: Mapping[str, float]
    sacred: float
    modal: bool = False


#: The strata of the stratified draw, in their fixed order.
STRATA: dict[str, Stratum] = {
    "essen_german": Stratum("folk_song", "essen", "germany", 100, 1.0, {"german": 1.0}, 0.0),
    "essen_china": Stratum("folk_song", "essen", "china", 92, 1.0, {"chinese": 1.0}, 0.0),
    "essen_luxembourg": Stratum("folk_song", "essen", "luxembourg", 100, 1.0,
                                {"luxembourgish": 1.0}, 0.0),
    "essen_lorraine": Stratum("folk_song", "essen", "lorraine", 100, 1.0, {"german": 1.0}, 0.0),
    "essen_ireland": Stratum("folk_song", "essen", "ireland", 96, 1.0,
                             {"irish": 0.5, "english": 0.5}, 0.0),
    "oneills": Stratum("fiddle_tune", "oneills", "ireland", 180, 0.0, {}, 0.0),
    "ryans": Stratum("fiddle_tune", "ryans", None, 180, 0.0, {}, 0.0),
    "airds": Stratum("fiddle_tune", "airds", "scotland", 116, 0.3, {"english": 1.0}, 0.0),
    "miscfolk": Stratum("fiddle_tune", "miscfolk", None, 120, 0.0, {}, 0.0),
    "bach": Stratum("chorale", "bach", "germany", 84, 1.0, {"german": 1.0}, 1.0),
    "palestrina": Stratum("renaissance_polyphony", "palestrina", "italy", 150, 1.0,
                          {"latin": 1.0}, 1.0, True),
    "monteverdi": Stratum("renaissance_polyphony", "monteverdi", "italy", 132, 1.0,
                          {"italian": 1.0}, 0.0, True),
    "renaissance": Stratum("renaissance_polyphony", "renaissance", None, 140, 1.0,
                           {"french": 1.0}, 0.0, True),
    "trecento": Stratum("medieval", "trecento", "italy", 150, 1.0, {"latin": 1.0}, 1.0, True),
    "classical": Stratum("classical_romantic", "classical", None, 112, 0.0, {}, 0.0),
}

#: Corpus folders that are not repertoire (test files, chord exercises, lead sheets).
_EXCLUDED_FOLDERS = {"demos", "theoryExercises", "leadSheet"}

#: Dance type -> default tempo (quarter notes per minute) when the score gives none.
DANCE_QPM = {
    "reel": 200, "hornpipe": 160, "jig": 180, "slip_jig": 180, "slide": 210, "polka": 180,
    "strathspey": 128, "fling": 140, "clog": 150, "march": 120, "waltz": 150, "air": 84,
    "walkaround": 140, "gavotte": 120, "quickstep": 200,
}
_DANCE_PATTERNS = (  # (regex on the lower-cased R: field or title, dance type); first match wins
    (r"slip\s*-?\s*jig", "slip_jig"), (r"highland fling|\bfling\b", "fling"),
    (r"\breel\b", "reel"), (r"hornpipe", "hornpipe"), (r"\bjig\b", "jig"),
    (r"strathspey", "strathspey"), (r"\bclog\b", "clog"), (r"\bwaltz\b", "waltz"),
    (r"\bmarch\b", "march"), (r"\bpolka\b", "polka"), (r"\bslide\b", "slide"),
    (r"walk\s*-?\s*around", "walkaround"), (r"gavotte", "gavotte"),
    (r"quick\s*-?\s*step", "quickstep"), (r"\bair\b", "air"),
)
#: Essen ``O:`` locale keywords -> region tag (first match wins).
_REGIONS = (
    ("china", "china"), ("taiwan", "china"), ("luxemburg", "luxembourg"),
    ("lothringen", "lorraine"), ("irland", "ireland"), ("schottland", "scotland"),
    ("gottschee", "gottschee"), ("jugoslawien", "gottschee"), ("niederlande", "netherlands"),
    ("oesterreich", "austria"), ("schweiz", "switzerland"), ("schlesien", "silesia"),
    ("polen", "silesia"), ("ungarn", "hungary"), ("mexiko", "mexico"), ("usa", "usa"),
    ("deutschland", "germany"),
)
#: Composer folder of the classical and renaissance strata -> region tag.
_FOLDER_REGION = {
    "beethoven": "austria", "mozart": "austria", "haydn": "austria", "schubert": "austria",
    "schoenberg": "austria", "webern": "austria", "schumann_robert": "germany",
    "schumann_clara": "germany", "weber": "germany", "cpebach": "germany", "handel": "england",
    "chopin": "poland", "corelli": "italy", "verdi": "italy", "beach": "usa", "joplin": "usa",
    "johnson_j_r": "usa", "liliuokalani": "hawaii", "josquin": "franco_flemish",
    "lusitano": "portugal", "luca": "italy",
}


class SkipWork(Exception):
    """A work that cannot become a track; ``str(exc)`` is the reason written to skipped.csv.

    Notebook: 00_overview.ipynb
    """


# --------------------------------------------------------------------------------------------
# small helpers


def _slug(text: str) -> str:
    """Lower-case ASCII identifier: runs of anything else become one underscore."""
    text = str(text).strip().lower().replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")
    text = re.sub(r"[^a-z0-9]+", "_", text.encode("ascii", "ignore").decode())
    return text.strip("_") or "x"


def _str(value: Any) -> str:
    """A text field of the inventory, '' when missing (pandas stores missing text as NaN)."""
    return value if isinstance(value, str) else ""


def _crc(text: str) -> int:
    return zlib.crc32(str(text).encode("utf-8"))


def _match_first(patterns, text: str) -> str | None:
    return next((name for pattern, name in patterns if re.search(pattern, text)), None)


def _corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


# --------------------------------------------------------------------------------------------
# the corpus inventory


def _scan_abc(path: Path) -> dict[int, dict]:
    """Header fields of every tune of an abc file: {X number: {field: value, 'lyrics': bool}}."""
    tunes: dict[int, dict] = {}
    current: dict = {}  # the file header, before the first X:, belongs to no tune
    # latin-1 never fails to decode, and the fields we read are ASCII keywords.
    for line in path.read_text(encoding="latin-1").splitlines():
        if not (m := re.match(r"^([A-Za-z]):\s*(.*?)\s*$", line)):
            continue
        field, value = m.groups()
        if field == "X":
            current = {"lyrics": False}
            if num := re.match(r"\d+", value):
                tunes.setdefault(int(num.group()), current)
        elif field in "wW":
            current["lyrics"] = True
        elif "K" not in current and field in "TROSBCKM":  # the header ends at its K: field
            current.setdefault(field, value)
    return tunes


def _trecento_composer(raw: str | None) -> str | None:
    """'Gherardello F-Pn 568' -> 'gherardello'; anonymous -> None (manuscript sigla dropped)."""
    # the name ends at the first token with a digit, a '?' or a library siglum ("F-"); pandas
    # stores a missing name as NaN
    tokens = re.split(r"[\n(]", raw)[0].split() if isinstance(raw, str) else []
    words = list(itertools.takewhile(lambda t: not re.search(r"\d|\?|^[A-Z]{1,3}-", t), tokens))
    name = _slug(" ".join(words))
    name = {"grattosus": "gratiosus"}.get(name, name)  # one encoder's typo in the corpus
    return None if not words or name.startswith(("anon", "anonymous")) else name


@functools.lru_cache(maxsize=1)
def _inventory_cached() -> pd.DataFrame:
    from music21 import corpus

    bundle = corpus.corpora.CoreCorpus().metadataBundle
    bundle.read()
    root = _corpus_root()
    scan_abc = functools.lru_cache(maxsize=None)(_scan_abc)   # a multi-tune file once
    rows = []
    # MetadataBundle has no __iter__ and its __getitem__ rebuilds a list per index (quadratic
    # iteration): read the ordered entries mapping of the pinned music21 directly.
    for entry in bundle._metadataEntries.values():
        md = entry.metadata
        if md is None:  # an opus-level entry (a whole multi-tune file): its tunes are listed too
            continue
        rel = str(entry.sourcePath).replace(os.sep, "/")
        name = PurePosixPath(rel)
        folder, stem, ext = name.parts[0], name.stem, name.suffix.lower()
        if folder in _EXCLUDED_FOLDERS or ext == ".rntxt" or stem.endswith("_bak"):
            continue
        number = int(entry.number) if entry.number not in (None, "") else -1  # -1: whole file
        tunes = scan_abc(root / rel) if ext == ".abc" else {}
        header = tunes.get(number if number >= 0 else min(tunes, default=0), {})
        stratum = _stratum_of(folder, stem, ext)
        if stratum is None:
            continue
        rows.append({
            "path": rel, "number": number, "folder": folder, "stem": stem, "ext": ext,
            "stratum": stratum, "title": str(md.title or header.get("T") or stem),
            "composer_raw": md.composer, "n_parts": int(md.numberOfParts or 1),
            "quarter_length": float(md.scoreQuarterLength or 0.0), "abc_R": header.get("R"),
            "abc_O": header.get("O") or md.localeOfComposition,
            **{f"abc_{f}": header.get(f) for f in "SBCK"},
            "abc_lyrics": bool(header.get("lyrics", False)),
        })
    df = pd.DataFrame(rows)
    # Josquin's abc files hold one voice per tune: the work is the whole file, voices merged.
    jos = df["folder"].eq("josquin") & df["ext"].eq(".abc")
    merged = (df[jos].groupby("path", sort=True)
              .agg(**{c: (c, "first") for c in df.columns if c not in ("path", "n_parts")},
                   n_parts=("n_parts", "sum")).reset_index().assign(number=-1))
    df = pd.concat([df[~jos], merged[df.columns]], ignore_index=True)
    df["merge_tunes"] = df["folder"].eq("josquin") & df["ext"].eq(".abc")
    # One encoding per work: the same folder/stem/number in several formats keeps the first of
    # this preference order (MusicXML is the richest in instruments and key modes).
    pref = {".mxl": 0, ".musicxml": 1, ".xml": 2, ".krn": 3, ".abc": 4}
    df["_pref"] = df["ext"].map(pref).fillna(9)
    df["_dir"] = df["path"].map(lambda p: p.rsplit("/", 1)[0])
    df = (df.sort_values(["_dir", "stem", "number", "_pref"])
          .drop_duplicates(["_dir", "stem", "number"], keep="first"))
    df["work_id"] = [p if n < 0 else f"{p}#{n}" for p, n in zip(df["path"], df["number"])]
    df["track_id"] = [_slug(d.replace("/", "-")) + "-" + _slug(s) + ("" if n < 0 else f"-{n}")
                      for d, s, n in zip(df["_dir"], df["stem"], df["number"])]
    dup = df["track_id"].duplicated(keep=False)
    df.loc[dup, "track_id"] = [f"{t}-{_crc(w) % 10**6:06d}"
                               for t, w in zip(df.loc[dup, "track_id"], df.loc[dup, "work_id"])]
    df = df.drop(columns=["_pref", "_dir"])
    # in this order: the artist is the composer when there is one
    for column, of in (("composer", _composer_of), ("artist_id", _artist_of),
                       ("region", _region_of), ("dance", _dance_of)):
        df[column] = [of(r) for r in df.itertuples()]
    order = {s: i for i, s in enumerate(STRATA)}
    return df.sort_values(["stratum", "work_id"], key=lambda c: c.map(order) if c.name == "stratum"
                          else c).reset_index(drop=True)


def _stratum_of(folder: str, stem: str, ext: str) -> str | None:
    if folder == "essenFolksong":
        if stem.startswith("test"):  # the Essen test files re-use songs from the others
            return None
        return {"han": "essen_china", "lux": "essen_luxembourg", "lot": "essen_lorraine",
                "irl": "essen_ireland"}.get(re.sub(r"\d+$", "", stem), "essen_german")
    fixed = {"oneills1850": "oneills", "ryansMammoth": "ryans", "airdsAirs": "airds",
             "miscFolk": "miscfolk", "nottingham-dataset": "miscfolk", "bach": "bach",
             "palestrina": "palestrina", "josquin": "renaissance", "luca": "renaissance",
             "lusitano": "renaissance", "trecento": "trecento", "ciconia": "trecento"}
    if folder == "monteverdi":
        return "monteverdi" if ext in (".mxl", ".xml", ".musicxml") else None
    return fixed.get(folder, "classical")


def _composer_of(r) -> str | None:
    fixed = {"bach": "bach_js", "palestrina": "palestrina", "monteverdi": "monteverdi"}
    if r.stratum in fixed:
        return fixed[r.stratum]
    if r.stratum in ("renaissance", "classical"):
        return r.folder.lower()
    if r.stratum == "trecento":
        return ("johannes_ciconia" if r.folder == "ciconia"
                else _trecento_composer(r.composer_raw))
    return None


def _artist_of(r) -> str:
    """The composer, else the collection's book or sub-collection."""
    if isinstance(r.composer, str):
        return r.composer
    if r.stratum.startswith("essen"):
        book = re.sub(r"\d+$", "", r.stem)
        source = _str(r.abc_S).split(",")[0]
        return f"essen_{_slug(book)}" + (f"_{_slug(source)}" if source.strip(" ])") else "")
    if r.stratum == "ryans":
        if isinstance(r.abc_C, str) and _slug(r.abc_C) not in ("x", "trad", "traditional"):
            return f"ryans_{_slug(r.abc_C)}"
        return "ryans_coles1000" if "cole" in str(r.abc_B).lower() else "ryans_mammoth"
    if r.stratum == "trecento":  # anonymous: the edition volume / manuscript is the "book"
        return _slug(re.match(r"(PMFC_\d+|[A-Za-z]+)", r.stem).group(1))
    return f"{_slug(r.folder)}_{_slug(r.stem)}"


def _region_of(r) -> str | None:
    if r.stratum.startswith("essen"):
        # a missing locale ("none", "nan") matches no region
        return _match_first(_REGIONS, str(r.abc_O).lower()) or STRATA[r.stratum].region
    if r.stratum == "miscfolk":
        return {"americanfifeopus": "usa", "northumbrianminstrelsyopus": "england"}.get(r.stem)
    if r.stratum in ("classical", "renaissance"):
        return _FOLDER_REGION.get(r.folder.lower())
    return STRATA[r.stratum].region


def _dance_of(r) -> str | None:
    if r.stratum not in ("oneills", "ryans", "airds", "miscfolk"):
        return None
    text = " | ".join(v for v in (r.abc_R, r.title) if isinstance(v, str)).lower()
    return _match_first(_DANCE_PATTERNS, text)


def inventory() -> pd.DataFrame:
    """The music21 corpus as a table of works, one row per renderable work.

    Built from music21's metadata bundle plus a scan of the abc headers (``R:`` dance type,
    ``O:`` locale, ``S:``/``B:`` source book, ``C:`` composer, ``K:`` key/mode, lyrics lines).
    Excluded: the ``demos``, ``theoryExercises`` and ``leadSheet`` folders, roman-numeral
    analyses (``.rntxt``), the Essen ``test*`` files and backup files. A work encoded in several
    formats appears once (MusicXML preferred). Josquin's abc files, one voice per tune, become
    one work per file with the voices merged. Memoised per process.

    Returns
    -------
    pandas.DataFrame
        One row per work (about 14,500), sorted by stratum then ``work_id``; columns include
        ``work_id`` (``"<corpus path>#<tune number>"``), ``track_id`` (a filesystem-safe slug),
        ``path``, ``number`` (int64, -1 for a whole file), ``stratum``, ``title``,
        ``composer``, ``artist_id``, ``region``, ``dance``, ``n_parts`` and the raw abc fields.

    Notebook: 00_overview.ipynb
    """
    return _inventory_cached().copy()


# --------------------------------------------------------------------------------------------
# the stratified draw


def stratum_quotas(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Split ``n`` draws across strata in proportion to the square root of their sizes.

    Square-root allocation keeps the 8,500 Essen songs from drowning the 100 trecento pieces
    while still giving big collections more tracks. A stratum never gets more than it holds;
    what it cannot take is re-allocated to the others (water-filling); rounding is by largest
    remainder, ties broken by stratum name.

    Parameters
    ----------
    sizes : mapping str -> int
        Number of available works per stratum (>= 0).
    n : int
        Total number of draws (>= 0). If it exceeds ``sum(sizes)`` every stratum is exhausted.

    Returns
    -------
    dict str -> int
        Quota per stratum (same keys), summing to ``min(n, sum(sizes))``.

    Notebook: 00_overview.ipynb
    """
    n = check_int("n", n, 0)
    for name, size in sizes.items():
        check_int(f"sizes[{name!r}]", size, 0)
    quota = dict.fromkeys(sizes, 0)
    active = sorted(s for s in sizes if sizes[s] > 0)
    remaining = min(n, sum(sizes.values()))
    while True:
        total = sum(math.sqrt(sizes[s]) for s in active)
        ideal = {s: remaining * math.sqrt(sizes[s]) / total for s in active}
        # a stratum is full when its share reaches its size: it gets everything, and what is
        # left is shared again among the others
        full = [s for s in active if ideal[s] >= sizes[s]]
        if not full:
            break
        for s in full:
            remaining -= sizes[s]
            quota[s] = sizes[s]
        active = [s for s in active if s not in full]
    quota.update({s: math.floor(ideal[s]) for s in active})
    left = remaining - sum(quota[s] for s in active)
    for s in sorted(active, key=lambda s: (-(ideal[s] - quota[s]), s))[:left]:
        quota[s] += 1
    return quota


def draw_order(works: pd.DataFrame, seed: int) -> dict[str, list[int]]:
    """A seeded permutation of every stratum's works: the order in which they are tried.

    The first ``quota`` works of a stratum are drawn; a failed work is replaced by the next one.
    Each stratum has its own random stream (``seed``, CRC-32 of its name), so adding or removing
    a stratum leaves the others' draws unchanged.

    Parameters
    ----------
    works : pandas.DataFrame
        The :func:`inventory` (or a subset of it) with a ``stratum`` column.
    seed : int
        Seed of the draw.

    Returns
    -------
    dict str -> list of int
        Row positions (``iloc``) in ``works`` per stratum, in draw order.

    Notebook: 00_overview.ipynb
    """
    seed = check_int("seed", seed, 0)
    rows = {s: np.flatnonzero(works["stratum"].to_numpy() == s) for s in STRATA}
    return {s: idx[np.random.default_rng([seed, _crc(s)]).permutation(idx.size)].tolist()
            for s, idx in rows.items() if idx.size}

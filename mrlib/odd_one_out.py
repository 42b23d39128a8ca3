"""Relative-similarity comparisons: odd-one-out votes, triplet constraints and their folds.

The 2017 protocol (Lu et al., Triplet MatchNet) learns from the MagnaTagATune *comparisons*:
in the TagATune bonus round, players heard three clips and voted for the one that sounded
least like the other two. ``comparisons_final.csv`` keeps, for each clip triple, how many
players picked each clip as the odd one out. This module

* reads and writes that file format (:func:`read_comparisons`, :func:`write_comparisons`);
* turns votes into constraints "a is closer to p than to n" (:func:`comparisons_to_triplets`),
  with a report that says what was dropped and why;
* simulates players voting on any catalog from an oracle similarity S
  (:func:`simulate_votes`), so the same code path serves MTAT and the synthetic catalog;
* splits constraints into cross-validation folds by triplet, by comparison or, stricter, by
  clip (:func:`triplet_folds`, :func:`fold_summary`).

Format: tab-separated with a header row; columns ``clip1_id clip2_id clip3_id clip1_numvotes
clip2_numvotes clip3_numvotes clip1_mp3_path clip2_mp3_path clip3_mp3_path``. The MTAT
release quotes every field and ends lines with CRLF (seen in a public reader of
``annotations_final.csv``; assumed the same for this file). Reading accepts quoted or bare
fields and either line end; writing reproduces the quoted CRLF form.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from mrlib.checks import as_float_matrix, as_index_matrix, check_choice, check_int
from mrlib.folds import kfold_indices

__all__ = [
    "COMPARISON_COLUMNS",
    "ID_COLUMNS",
    "VOTE_COLUMNS",
    "PATH_COLUMNS",
    "PAPER_N_TRIPLETS",
    "PAPER_N_CLIPS",
    "TripletReport",
    "Fold",
    "read_comparisons",
    "write_comparisons",
    "comparisons_to_triplets",
    "simulate_votes",
    "triplet_folds",
    "fold_summary",
]

ID_COLUMNS = ("clip1_id", "clip2_id", "clip3_id")
VOTE_COLUMNS = ("clip1_numvotes", "clip2_numvotes", "clip3_numvotes")
PATH_COLUMNS = ("clip1_mp3_path", "clip2_mp3_path", "clip3_mp3_path")
COMPARISON_COLUMNS = ID_COLUMNS + VOTE_COLUMNS + PATH_COLUMNS

#: What Lu et al. (ICASSP 2017, slide "Dataset and Evaluation") report for MagnaTagATune.
PAPER_N_TRIPLETS = 860
PAPER_N_CLIPS = 993


# --------------------------------------------------------------------------------------------
# reading and writing
# --------------------------------------------------------------------------------------------
def _normalise(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Columns in the canonical order, ids and votes as int64, paths as str."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{where} needs a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in COMPARISON_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; the comparisons_final.csv "
                         f"format needs {list(COMPARISON_COLUMNS)}, got {list(df.columns)}")
    out = df.loc[:, list(COMPARISON_COLUMNS)].copy()
    for col in ID_COLUMNS + VOTE_COLUMNS:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values != np.round(values)                    # fractions, and NaN: not a number
        if bad.any():
            raise ValueError(f"{where}: column {col!r} must hold integers, found e.g. "
                             f"{out.loc[bad, col].head(3).tolist()}")
        out[col] = values.astype(np.int64)
    if (out[list(VOTE_COLUMNS)] < 0).to_numpy().any():
        raise ValueError(f"{where}: vote counts must be >= 0")
    same = (np.diff(np.sort(out[list(ID_COLUMNS)].to_numpy(), axis=1), axis=1) == 0).any(axis=1)
    if same.any():
        raise ValueError(f"{where}: a comparison needs three different clips; rows "
                         f"{np.flatnonzero(same)[:3].tolist()} repeat one")
    out[list(PATH_COLUMNS)] = out[list(PATH_COLUMNS)].fillna("").astype(str)
    return out.reset_index(drop=True)


def read_comparisons(path: str | Path) -> pd.DataFrame:
    """Read a ``comparisons_final.csv`` file (MagnaTagATune format).

    Parameters
    ----------
    path : str or Path
        The tab-separated file. Quoted (as in the MTAT release) or unquoted fields, LF or
        CRLF line ends are all accepted.

    Returns
    -------
    pandas.DataFrame
        One row per comparison, columns :data:`COMPARISON_COLUMNS` in that order:
        ``clip{1,2,3}_id`` (int64 clip ids), ``clip{1,2,3}_numvotes`` (int64, how many
        players chose that clip as the odd one out) and ``clip{1,2,3}_mp3_path`` (str).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a column is missing, ids or votes are not non-negative integers, or a row names the
        same clip twice.

    Notebook: 08_triplet_matchnet.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"comparisons file not found: {path} (expected MagnaTagATune's "
                                f"tab-separated comparisons_final.csv with columns "
                                f"{list(COMPARISON_COLUMNS)})")
    # dtype=str keeps the clip paths verbatim; numbers are converted and checked below.
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quotechar='"')
    df.columns = [str(c).strip() for c in df.columns]
    return _normalise(df, str(path))


def write_comparisons(df: pd.DataFrame, path: str | Path) -> Path:
    """Write comparisons in the ``comparisons_final.csv`` format.

    Parameters
    ----------
    df : pandas.DataFrame
        Must hold the columns :data:`COMPARISON_COLUMNS` (extra columns are not written).
    path : str or Path
        Output file; parent folders are created.

    Returns
    -------
    Path
        The file written: tab-separated, header row, every field double-quoted, CRLF line
        ends, as in the MagnaTagATune release; :func:`read_comparisons` reads it back equal.

    Notebook: 08_triplet_matchnet.ipynb
    """
    out = _normalise(df, "write_comparisons")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    return path


# --------------------------------------------------------------------------------------------
# votes -> triplet constraints
# --------------------------------------------------------------------------------------------
@dataclass
class TripletReport:
    """What :func:`comparisons_to_triplets` kept and dropped (all counts are rows unless named).

    Attributes
    ----------
    n_rows : int
        Comparisons read.
    n_no_votes : int
        Rows where nobody voted (dropped).
    n_too_few_votes : int
        Rows with some votes but fewer than ``min_votes`` in total (dropped).
    n_ties : int
        Rows whose highest vote count is shared by two or three clips (dropped: no clear
        odd one out).
    n_low_margin : int
        Rows with a strict winner whose lead over the runner-up is below ``min_margin``
        (dropped; always 0 for ``min_margin=1``).
    n_missing_clips : int
        Rows kept by the votes but naming a clip absent from ``id_to_index`` (dropped).
    n_kept_rows : int
        Comparisons that produced constraints.
    n_triplets : int
        Constraints returned.
    n_unique_clips : int
        Distinct clips in the returned constraints.
    n_duplicates : int
        Constraints that repeat an earlier one exactly (kept; the same clip triple may have
        been played more than once).
    n_conflicts : int
        Distinct constraints (a, p, n) whose contradiction (a, n, p) is also returned,
        counted once per unordered pair, however often either repeats (both kept; a sign
        of disagreeing players across rows).
    rows : numpy.ndarray of int64, shape (n_triplets,)
        For each constraint, the row of the comparisons table it came from: pass it as
        ``groups`` to :func:`triplet_folds` to keep a comparison's constraints together.
    settings : dict
        The thresholds used.

    Notebook: 08_triplet_matchnet.ipynb
    """

    n_rows: int
    n_no_votes: int
    n_too_few_votes: int
    n_ties: int
    n_low_margin: int
    n_missing_clips: int
    n_kept_rows: int
    n_triplets: int
    n_unique_clips: int
    n_duplicates: int
    n_conflicts: int
    rows: np.ndarray = field(repr=False)
    settings: dict = field(default_factory=dict)

    def vs_paper(self) -> str:
        """One paragraph comparing these counts with Lu et al. 2017 (860 triplets, 993 clips).

        Notebook: 08_triplet_matchnet.ipynb
        """
        per_row = self.settings.get("per_comparison", "both")
        return (
            f"Lu et al. 2017 report {PAPER_N_TRIPLETS} triplets over {PAPER_N_CLIPS} clips; "
            f"this selection has {self.n_triplets} triplets over {self.n_unique_clips} clips "
            f"({self.n_kept_rows} comparisons x {2 if per_row == 'both' else 1} per comparison). "
            "The slides do not say how votes became triplets. Counts differ when a protocol "
            "keeps one triplet per comparison instead of two (per_comparison='one'), demands a "
            "vote margin or a vote total (min_margin, min_votes), removes contradictory or "
            "duplicated constraints, or drops clips whose audio is missing."
        )

    def __str__(self) -> str:
        return "\n".join([
            f"comparisons read        : {self.n_rows}",
            f"  dropped, no votes     : {self.n_no_votes}",
            f"  dropped, < min_votes  : {self.n_too_few_votes}",
            f"  dropped, tied top vote: {self.n_ties}",
            f"  dropped, < min_margin : {self.n_low_margin}",
            f"  dropped, unknown clip : {self.n_missing_clips}",
            f"  kept                  : {self.n_kept_rows} "
            f"(dropped {self.n_rows - self.n_kept_rows})",
            f"triplets (a, p, n)      : {self.n_triplets} over {self.n_unique_clips} unique clips",
            f"  exact duplicates      : {self.n_duplicates}",
            f"  contradictory pairs   : {self.n_conflicts}",
        ])


def _id_keys(values) -> pd.Index:
    """Clip ids as text keys: integers (also integral floats) and strings alike."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    return pd.Index([str(v).strip() for v in arr.tolist()])


def _triplet_counts(triplets: np.ndarray) -> dict[str, int]:
    """The report's counts of triplets, distinct clips, duplicate and contradictory rows."""
    uniq = np.unique(triplets, axis=0)
    # A contradictory pair (a, p, n) / (a, n, p) of distinct rows shows up twice among the rows
    # and their swaps (once from each side).
    _, counts = np.unique(np.concatenate([uniq, uniq[:, [0, 2, 1]]]), axis=0, return_counts=True)
    return {"n_triplets": len(triplets), "n_unique_clips": len(np.unique(triplets)),
            "n_duplicates": len(triplets) - len(uniq), "n_conflicts": int((counts > 1).sum() // 2)}


def _vote_drops(votes: np.ndarray, min_votes: int, min_margin: int) -> dict[str, np.ndarray]:
    """Masks (R,) of the rows dropped for each reason, keyed by the report's count field; a row
    counts under the first reason that applies."""
    total = votes.sum(axis=1)
    ordered = np.sort(votes, axis=1)                          # ascending
    top, second = ordered[:, 2], ordered[:, 1]
    first = np.select([total == 0, total < min_votes, top == second, top - second < min_margin],
                      [1, 2, 3, 4], default=0)
    reasons = ("n_no_votes", "n_too_few_votes", "n_ties", "n_low_margin")
    return {k: first == i for i, k in enumerate(reasons, start=1)}


def _map_ids(ids: np.ndarray, id_to_index) -> tuple[np.ndarray, np.ndarray]:
    """Clip ids -> catalog indices (-1 where unknown), and the rows naming an unknown clip."""
    # Ids are compared as text: mrlib.catalog keeps track ids as str ("7"), the MTAT
    # tables give integers (7); both become "7".
    keys, values = ((list(id_to_index), list(id_to_index.values())) if isinstance(id_to_index, dict)
                    else (id_to_index, np.arange(len(id_to_index))))
    lookup = pd.Series(values, index=_id_keys(keys), dtype="int64")
    if lookup.index.has_duplicates:
        raise ValueError("id_to_index lists the same clip id twice")
    mapped = lookup.reindex(_id_keys(ids.ravel())).to_numpy(dtype=float).reshape(ids.shape)
    unknown = np.isnan(mapped).any(axis=1)                    # NaN where the id is unknown
    return np.where(np.isnan(mapped), -1, mapped).astype(np.int64), unknown


def comparisons_to_triplets(
    df: pd.DataFrame,
    *,
    min_margin: int = 1,
    min_votes: int = 1,
    per_comparison: str = "both",
    id_to_index: Sequence | pd.Index | np.ndarray | dict | None = None,
) -> tuple[np.ndarray, TripletReport]:
    """Turn odd-one-out votes into relative constraints (a, p, n): "a is closer to p than to n".

    For a comparison of clips (c1, c2, c3) with votes (v1, v2, v3), the odd one out is the
    clip with strictly the most votes, say c3; it becomes the negative, and each of the two
    others serves as anchor with the other as positive::

        (c1, c2, c3)   and   (c2, c1, c3)          # per_comparison="both"
        (c1, c2, c3)                               # per_comparison="one" (first in column order)

    Rows are dropped, and counted in the report, when nobody voted, when fewer than
    ``min_votes`` votes were cast, when the top count is tied, or when the winner's lead over
    the runner-up is below ``min_margin`` (``min_margin=1`` only asks for a strict winner).

    Parameters
    ----------
    df : pandas.DataFrame
        Comparisons in the :data:`COMPARISON_COLUMNS` format (see :func:`read_comparisons`).
    min_margin : int, default 1
        Least lead (votes) of the odd one out over the second-most-voted clip; >= 1.
    min_votes : int, default 1
        Least total votes for a row to count; >= 1.
    per_comparison : {"both", "one"}, default "both"
        Two constraints per comparison (each non-odd clip as anchor) or only the first.
    id_to_index : sequence, pandas.Index, array or dict, optional
        Map clip ids to catalog indices: a sequence/Index/array lists the clip id of each
        catalog row (e.g. ``catalog.tracks.track_id``); a dict maps id -> index. Ids match
        as text, so the Catalog's str ids meet the tables' int ids. When given,
        the triplets hold catalog indices and rows naming an unknown clip are dropped
        (``n_missing_clips``). Otherwise the triplets hold clip ids.

    Returns
    -------
    triplets : numpy.ndarray of int64, shape (M, 3)
        Rows (anchor, positive, negative), clip ids or catalog indices, in the order of the
        comparisons (both constraints of a row next to each other).
    report : TripletReport
        Counts of what was kept and dropped, the source row of each triplet, and
        :meth:`TripletReport.vs_paper`, which sets the counts beside the paper's.

    Notes
    -----
    Lu et al. (2017) report 860 triplets over 993 unique clips from MagnaTagATune without
    saying how votes became triplets. Two constraints per decisive comparison is what the
    odd-one-out semantics implies (if c3 is odd, both d(c1, c2) < d(c1, c3) and
    d(c2, c1) < d(c2, c3)); keeping one per comparison, demanding a vote margin
    (``min_margin``) or a vote total (``min_votes``), removing contradictory constraints or
    clips without audio all change the count. Compare with :meth:`TripletReport.vs_paper`.

    Notebook: 08_triplet_matchnet.ipynb
    """
    min_margin, min_votes = check_int("min_margin", min_margin), check_int("min_votes", min_votes)
    check_choice("per_comparison", per_comparison, ("both", "one"))
    table = _normalise(df, "comparisons_to_triplets")
    ids, votes = (table[list(c)].to_numpy(np.int64) for c in (ID_COLUMNS, VOTE_COLUMNS))  # (R, 3)
    drops = _vote_drops(votes, min_votes, min_margin)
    keep = ~np.logical_or.reduce(list(drops.values()))
    unknown = np.zeros(len(table), dtype=bool)
    if id_to_index is not None:
        ids, unknown = _map_ids(ids, id_to_index)
    kept = np.flatnonzero(keep & ~unknown)
    odd = votes[kept].argmax(axis=1)                          # unique where kept
    # The two other positions in column order, then the odd one: odd = 0 -> (1, 2, 0), ...
    one = np.take_along_axis(ids[kept], np.array([[1, 2, 0], [0, 2, 1], [0, 1, 2]])[odd], axis=1)
    both = per_comparison == "both"
    # "both" interleaves, so that a comparison's two constraints sit next to each other
    triplets = np.ascontiguousarray(
        np.stack([one, one[:, [1, 0, 2]]], axis=1).reshape(-1, 3) if both else one, dtype=np.int64)
    rows = np.repeat(kept, 2) if both else kept
    settings = {"min_margin": min_margin, "min_votes": min_votes, "per_comparison": per_comparison,
                "indices": "catalog" if id_to_index is not None else "clip ids"}
    report = TripletReport(n_rows=len(table), **{k: int(v.sum()) for k, v in drops.items()},
                           n_missing_clips=int((keep & unknown).sum()), n_kept_rows=int(len(kept)),
                           **_triplet_counts(triplets), rows=rows.astype(np.int64), settings=settings)
    return triplets, report


# --------------------------------------------------------------------------------------------
# simulated players
# --------------------------------------------------------------------------------------------
def _random_triples(n_items: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct triples of distinct items, in random order within each (int64 (n, 3))."""
    out = np.empty((0, 3), dtype=np.int64)
    place = np.array([n_items * n_items, n_items, 1])     # a triple's key: its sorted items
    for _ in range(100):                                   # rejection rounds; rarely > 2
        need = n - len(out)
        if need == 0:
            break
        draw = rng.integers(0, n_items, size=(2 * need + 8, 3))
        ordered = np.sort(draw, axis=1)
        ok = (np.diff(ordered, axis=1) > 0).all(axis=1)        # 3 different items
        draw, key = draw[ok], ordered[ok] @ place
        # each triple's first draw, in draw order, unless an earlier round kept it
        first = np.sort(np.unique(key, return_index=True)[1])   # where each key is first drawn
        new = ~np.isin(key[first], np.sort(out, axis=1) @ place)
        out = np.concatenate([out, draw[first[new]][:need]])
    if len(out) < n:
        raise RuntimeError(f"could not draw {n} distinct triples from {n_items} items")
    return out


def _player_votes(S: np.ndarray, tri: np.ndarray, n_players: int, noise: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Odd-one-out vote counts (R, 3) of ``n_players`` logit-choice players per triple."""
    Ssym = 0.5 * (S + S.T)
    # Oddness of each position = similarity of the two *other* clips: (S_jk, S_ik, S_ij).
    u = Ssym[tri[:, [1, 0, 0]], tri[:, [2, 2, 1]]].astype(np.float64)               # (R, 3)
    if noise == 0:
        # Every player picks the most odd clip. Where the top oddness is shared (e.g. all three
        # pair similarities 0), perfect players cannot tell: they split evenly between the tied
        # clips (a remainder abstains), so the row reads as a tie and is dropped downstream.
        tied = u == u.max(axis=1, keepdims=True)
        return np.where(tied, (n_players // tied.sum(axis=1))[:, None], 0).astype(np.int64)
    g = rng.gumbel(size=(len(tri), n_players, 3))
    choice = (u[:, None, :] / noise + g).argmax(axis=2)               # (R, n_players)
    return np.stack([(choice == c).sum(axis=1) for c in range(3)], axis=1).astype(np.int64)


def simulate_votes(
    S: np.ndarray,
    n_comparisons: int,
    n_players: int = 10,
    noise: float = 0.05,
    seed: int = 0,
    *,
    clip_ids: Sequence | np.ndarray | None = None,
    paths: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Simulated TagATune players voting the odd one out of random clip triples, by an oracle S.

    For a triple (i, j, k), the clip least similar to the other two is the one outside the
    most similar pair: the mean similarity of clip i to the others is
    (S_ij + S_ik)/2 = (sum of the three pair similarities - S_jk)/2, so its "oddness" is
    u_i = S_jk. Each player picks

    .. math:: \\text{odd} = \\arg\\max_c \\; u_c / \\tau + g_c, \\qquad g_c \\sim \\text{Gumbel}(0, 1),

    i.e. clip c with probability softmax(u / tau)_c (a logit choice model), with temperature
    ``tau = noise``; ``noise=0`` gives noise-free players who all pick argmax u (and split
    evenly between clips whose oddness is exactly tied, the remainder abstaining, so such rows
    read as ties; with fewer players than tied clips nobody votes, and the row reads as one
    without votes). The votes of a row are the counts over ``n_players`` players.

    Parameters
    ----------
    S : numpy.ndarray, shape (N, N)
        Oracle similarity (e.g. ``mrlib.similarity.oracle(T, T)``), finite; only the entries
        S[i, j] of sampled pairs are read, and (S + S.T)/2 is used (votes are symmetric).
    n_comparisons : int
        Rows to simulate, each a distinct clip triple.
    n_players : int, default 10
        Players per row (the real data have a few to a few dozen votes per row).
    noise : float, default 0.05
        Choice temperature in units of S; 0 = noise-free. With S in [0, 1], 0.05 makes a
        similarity gap of 0.05 a 73% / 27% choice.
    seed : int, default 0
        Random seed: same seed, same table.
    clip_ids : sequence of int, length N, optional
        Clip id of each row of S (default 0 ... N-1, i.e. catalog indices).
    paths : sequence of str, length N, optional
        Audio path of each clip for the ``*_mp3_path`` columns (default "").

    Returns
    -------
    pandas.DataFrame
        In the comparisons_final format (:data:`COMPARISON_COLUMNS`), ready for
        :func:`write_comparisons` or :func:`comparisons_to_triplets`. With ``noise=0`` every
        row without an exact tie in S has a unanimous winner, and every constraint derived
        from the votes satisfies S[a, p] > S[a, n]: the oracle's CFR is 1.

    Notebook: 08_triplet_matchnet.ipynb
    """
    S = np.asarray(S)
    as_float_matrix("S", S)                    # 2-D, numbers, finite (S itself is used as given)
    if S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square (N, N) similarity matrix, got shape {S.shape}")
    N = S.shape[0]
    n_comparisons = check_int("n_comparisons", n_comparisons)
    n_players = check_int("n_players", n_players)
    if not np.isscalar(noise) or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    n_possible = N * (N - 1) * (N - 2) // 6                  # 0 for fewer than 3 clips
    if n_comparisons > n_possible:
        raise ValueError(f"n_comparisons={n_comparisons} exceeds the {n_possible} distinct "
                         f"triples of N={N} clips")
    clip_ids = np.asarray(np.arange(N, dtype=np.int64) if clip_ids is None else clip_ids)
    paths = np.asarray(np.full(N, "", dtype=object) if paths is None else paths, dtype=object)
    for name, values in (("clip_ids", clip_ids), ("paths", paths)):
        if values.shape != (N,):
            raise ValueError(f"{name} must have length N={N}, got shape {values.shape}")
    rng = np.random.default_rng(check_int("seed", seed, 0))
    tri = _random_triples(N, n_comparisons, rng)       # (R, 3) clip indices
    votes = _player_votes(S, tri, n_players, noise, rng)
    blocks = (clip_ids[tri], votes, paths[tri].astype(str))            # each (R, 3)
    return pd.DataFrame({col: block[:, c] for cols, block in zip(
        (ID_COLUMNS, VOTE_COLUMNS, PATH_COLUMNS), blocks) for c, col in enumerate(cols)})


# --------------------------------------------------------------------------------------------
# cross-validation folds
# --------------------------------------------------------------------------------------------
class Fold(NamedTuple):
    """One cross-validation fold: indices into the triplet array (unpacks as ``train, test``).

    Attributes
    ----------
    train, test : numpy.ndarray of int64
        Sorted indices into the (M, 3) triplet array.

    Notebook: 08_triplet_matchnet.ipynb
    """

    train: np.ndarray
    test: np.ndarray


def _greedy_partition(pos: np.ndarray, n_clips: int, n_folds: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Balanced clip partition that keeps clips sharing triplets together.

    Clips are streamed in breadth-first order over the co-occurrence graph (components in
    random order, each from a random start) and each goes to the fold with the largest
    ``(weight of its already placed neighbours there) * (1 - size / capacity)`` — the linear
    deterministic greedy rule of Stanton & Kliot (KDD 2012) — or, with no placed neighbour, to
    the smallest fold. Capacity ``ceil(n_clips / n_folds)`` keeps the folds balanced; three
    further sweeps let early clips follow their neighbours.
    """
    from scipy.sparse import coo_matrix  # scipy.sparse costs a third of a second to import
    from scipy.sparse.csgraph import breadth_first_order, connected_components

    # symmetric adjacency of clips; weight = number of triplets two clips share
    i = np.concatenate([pos[:, 0], pos[:, 0], pos[:, 1]])
    j = np.concatenate([pos[:, 1], pos[:, 2], pos[:, 2]])
    g = coo_matrix((np.ones(len(i)), (i, j)), shape=(n_clips, n_clips)).tocsr()
    graph = (g + g.T).tocsr()
    n_comp, labels = connected_components(graph, directed=False)
    starts = [int(rng.choice(np.flatnonzero(labels == comp))) for comp in rng.permutation(n_comp)]
    order = np.concatenate([breadth_first_order(graph, start, directed=False,
                                                return_predecessors=False) for start in starts])

    capacity = int(np.ceil(n_clips / n_folds))
    fold_of = np.full(n_clips, -1, dtype=np.int64)
    sizes = np.zeros(n_folds)
    indptr, indices, weights = graph.indptr, graph.indices, graph.data
    for _ in range(4):                         # one pass, then three re-streams
        # Later sweeps re-stream the clips with every other clip placed (Nishimura & Ugander,
        # KDD 2013): a clip placed early, before its neighbours, can move to them.
        for v in order:
            if fold_of[v] >= 0:
                sizes[fold_of[v]] -= 1
                fold_of[v] = -1
            nbr = indices[indptr[v]:indptr[v + 1]]
            w = weights[indptr[v]:indptr[v + 1]]
            placed = fold_of[nbr] >= 0
            pull = np.bincount(fold_of[nbr][placed], weights=w[placed], minlength=n_folds)
            score = pull * (1.0 - sizes / capacity)
            score[sizes >= capacity] = -np.inf
            # the strongest pull, or where nothing pulls, the smallest open fold
            f = int(np.argmax(score) if score.max() > 0 else
                    np.argmin(np.where(sizes >= capacity, np.inf, sizes)))
            fold_of[v] = f
            sizes[f] += 1
    return fold_of


def triplet_folds(
    triplets: np.ndarray,
    n_folds: int = 10,
    by: str = "triplet",
    seed: int = 0,
) -> list[Fold]:
    """K-fold splits of triplet constraints for the CFR cross-validation.

    * ``by="triplet"`` — shuffled K-fold over the constraints (what "10-fold cross validation"
      most plainly means); :func:`mrlib.evaluate.kfold_indices`, so the folds equal those of every other
      k-fold in mrlib for the same seed. Test clips are usually also seen in
      training, and so is, most of the time, the test constraint's twin: a comparison gives
      (a, p, n) and (p, a, n), which share the pair d(a, p) a metric learns.
    * ``by="comparison"`` — K-fold over the clip sets {a, p, n}: the constraints of one
      comparison (and of any other comparison of the same three clips) share a fold.
    * ``by="clip"`` — clip-disjoint (stricter): the clips are partitioned into ``n_folds``
      near-equal sets by a balanced greedy graph partitioner that places each clip with the
      clips it shares triplets with, so most comparisons stay whole and testable; fold f tests
      the triplets whose three clips all lie in set f and trains on the triplets with no clip
      in set f. Triplets mixing set f with other sets are in neither
      (count them with :func:`fold_summary`). No clip of a test triplet is seen in training.
      This suits sparse comparison graphs such as MTAT's, where a clip takes part in few
      comparisons; on a dense one (many random triples over few clips) almost every triplet
      straddles folds, so use fewer folds or more clips, and check :func:`fold_summary`.

    Parameters
    ----------
    triplets : numpy.ndarray of int, shape (M, 3)
        Constraints (a, p, n), clip ids or catalog indices.
    n_folds : int, default 10
        Number of folds, 2 <= n_folds <= number of triplets / clip sets / clips.
    by : {"triplet", "comparison", "clip"}, default "triplet"
    seed : int, default 0
        Shuffling seed; same seed, same folds.

    Returns
    -------
    list of Fold
        ``n_folds`` pairs ``(train, test)`` of int64 indices into ``triplets``, sorted.
        Except ``by="clip"``, the test sets partition 0..M-1 and train is the
        complement.

    Notebook: 08_triplet_matchnet.ipynb
    """
    t = as_index_matrix("triplets", triplets, "(M, 3)")
    if t.shape[1] != 3:
        raise ValueError(f"triplets must have shape (M, 3), got {t.shape}")
    n_folds, seed = check_int("n_folds", n_folds, 2), check_int("seed", seed, 0)
    check_choice("by", by, ("triplet", "comparison", "clip"))
    if by == "clip":
        # clip-disjoint: fold f tests the triplets inside clip set f, trains on those outside it
        clips = np.unique(t)
        if n_folds > len(clips):
            raise ValueError(f"n_folds={n_folds} exceeds the {len(clips)} clips to split")
        pos = np.searchsorted(clips, t)                                     # (M, 3) in 0..C-1
        fold_of_clip = _greedy_partition(pos, len(clips), n_folds, np.random.default_rng(seed))
        tf = fold_of_clip[pos]                                              # (M, 3) fold per clip
        return [Fold(np.flatnonzero(~(tf == f).any(axis=1)), np.flatnonzero((tf == f).all(axis=1)))
                for f in range(n_folds)]
    # One k-fold implementation for the whole suite: with the same seed, the baselines here
    # and Triplet MatchNet (mrlib.matchnet_cv) see the same folds, so per-fold
    # scores can be compared pairwise. Folds by comparison are folds over the clip sets.
    groups = (np.unique(np.sort(t, axis=1), axis=0, return_inverse=True)[1].ravel()
              if by == "comparison" else None)
    folds = kfold_indices(len(t), n_folds, groups=groups, seed=seed)
    return [Fold(train, test) for train, test in folds]


def fold_summary(folds: Sequence[Fold], n_triplets: int) -> pd.DataFrame:
    """Sizes of each fold, and how many triplets it uses neither for training nor for testing.

    Parameters
    ----------
    folds : sequence of (train, test)
        From :func:`triplet_folds`.
    n_triplets : int
        Total number of triplets M.

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``fold, n_train, n_test, n_dropped, share_dropped`` (share of M).

    Notebook: 08_triplet_matchnet.ipynb
    """
    n_triplets = check_int("n_triplets", n_triplets)
    n_train, n_test = (np.array([len(fold[k]) for fold in folds], dtype=np.int64) for k in (0, 1))
    n_drop = n_triplets - n_train - n_test
    return pd.DataFrame({"fold": np.arange(len(n_drop)), "n_train": n_train, "n_test": n_test,
                         "n_dropped": n_drop, "share_dropped": n_drop / n_triplets})

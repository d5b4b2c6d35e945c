"""Near-duplicate clips across a run (and other runs): LSH candidates, verified at a consistent time offset.

Usage (``rushes curate`` calls :func:`dedup_run` at the end of every run, before the final filter)::

    result = dedup_run("OUT", against=["s3://bucket/runs/older"])   # sets clips.duplicate_of in OUT
    dups = find_duplicates(clips_table)                              # pure: {clip_id: clip_id kept}

Every clip's ``signature`` (:mod:`rushes.curate.signature`: one 64-bit pHash per 0.5 s) is compared without
all pairs, so a run of a million clips costs about a sort of its hashes:

1. **Candidates**: each clip's distinct hashes go into ``tables`` hash tables, each keyed by its own fixed
   choice of ``bits_per_table`` of the 64 bits (bit-sampling LSH). Two frames within Hamming
   distance ``d`` share a table key with probability about ``1 - (1 - (1 - d/64)^k)^L`` per sample pair
   (k=24, L=16: 0.999 at d=2, 0.98 at d=4, 0.48 at d=8), and a duplicate clip has many sample pairs. Clips of one video are
   not compared (a video returning to a camera set-up is not a re-upload); a table key shared by more
   than ``max_bucket`` clips says nothing (e.g. a common title card) and yields no candidates. A pair is a
   candidate when it shares ``min_key_hits`` (2) keys: chance collisions of unrelated hashes then seldom
   reach verification (20,000 random 16-sample clips, a fifth of them still: 1,350 candidate pairs of 2e8).
2. **Verification**: for a candidate pair, the share of the shorter clip's hashed samples that have a
   near match (Hamming <= ``max_hamming``) in the other clip at one consistent time offset (+- ``slack``
   samples, since two copies sample frames up to half a step apart). A pair is a duplicate when that
   share is >= ``min_share`` with at least ``min_matches`` matching samples. Flat frames have no hash
   (:data:`rushes.curate.signature.NO_HASH`) and count for nothing, so distinct black shots never match.
3. **Keeper**: clips are visited best first; a clip with a verified match among the clips kept so far
   gets ``duplicate_of`` = the best of those, otherwise it is kept. Every mark thus points at a kept clip
   it matched itself (no chains: a copy whose missed cut spans two shots does not tie the two together).
   Best first means: a clip of a ``--dedup-against`` run (those are read only, never marked), a clip an
   earlier run into OUT wrote (it stays kept when a copy arrives), a clip no other filter rule rejects, a video
   clip over a still image (a still's one hash matches any frame of a clip it was grabbed from), more pixels,
   sharper (a re-encode is softer), longer (to 0.1 s), then the smaller clip_id.

Exact byte copies never get here: curate records them as duplicate videos rows before any decode.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rushes import manifests
from rushes import storage
from rushes.curate.signature import HASH_BITS, NO_HASH
from rushes.manifests.store import ManifestError

log = logging.getLogger(__name__)

# Columns the search reads: a million clips' signatures fit in memory, the rest of each row is not read.
SEARCH_COLUMNS = ["clip_id", "video_id", "kind", "width_px", "height_px", "duration_s", "sharpness",
                  "reject_reason", "signature", "duplicate_of", "created_at"]


@dataclass(frozen=True)
class DedupConfig:
    """How near-duplicates are found (measured on re-encoded, rescaled, cropped and trimmed copies of the
    shared footage in ``bench/dedup.py``)."""

    max_hamming: int = 10  # two sample hashes within this many differing bits (of 64) match
    min_share: float = 0.5  # share of the shorter clip's hashed samples that must match at one offset
    min_matches: int = 2  # and at least this many samples (a clip needs ~1 s of non-flat frames)
    slack: int = 1  # time-offset tolerance in samples (two copies sample frames up to half a step apart)
    tables: int = 16  # LSH hash tables
    bits_per_table: int = 24  # bits of the 64 each table keys on
    max_bucket: int = 256  # a table key shared by more clips gives no candidates (too common to tell apart)
    min_key_hits: int = 2  # a candidate pair shares at least this many (table, key) entries

    def __post_init__(self) -> None:
        if not 0 <= self.max_hamming < HASH_BITS // 2:
            raise ValueError(f"dedup max_hamming={self.max_hamming}: use 0..31 bits (default 10)")
        if not 0 < self.min_share <= 1:
            raise ValueError(f"dedup min_share={self.min_share}: use a share in (0, 1] (default 0.5)")
        for name, lo, hi in (("min_matches", 1, 10_000), ("slack", 0, 100), ("tables", 1, 64),
                             ("bits_per_table", 8, 40), ("max_bucket", 2, 1_000_000),
                             ("min_key_hits", 1, 1000)):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"dedup {name}={getattr(self, name)}: use {lo}..{hi}")


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2 has a kernel; older numpy goes through a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1)


def match_share(a: np.ndarray, b: np.ndarray, cfg: DedupConfig) -> tuple[float, int]:
    """(share, matches): the best share over time offsets of ``a``'s hashed samples with a near match in
    ``b`` at that offset (+- slack); ``a`` should be the clip with fewer hashed samples."""
    ia = np.flatnonzero(a != NO_HASH)
    jb = np.flatnonzero(b != NO_HASH)
    if len(ia) < needed_matches(a, cfg) or not len(jb):
        return 0.0, 0
    near = popcount(a[ia][:, None] ^ b[jb][None, :]) <= cfg.max_hamming  # (hashed a) x (hashed b)
    pi, pj = np.nonzero(near)
    if not len(pi):
        return 0.0, 0
    deltas = jb[pj] - ia[pi]  # time offset (samples) of each near pair
    best = 0
    for delta in np.unique(deltas):
        ok = np.abs(deltas - delta) <= cfg.slack
        best = max(best, len(np.unique(pi[ok])))  # samples of a matched at this offset
    return best / len(ia), best


def needed_matches(signature: np.ndarray, cfg: DedupConfig) -> int:
    """Matching samples a pair needs, ``signature`` being the one with fewer hashed samples: ``min_matches``, or
    1 for a signature of one sample (a still image, ``rushes.curate.still``: its one hash is all it has)."""
    return 1 if len(signature) == 1 else cfg.min_matches


def _table_keys(hashes: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """(tables, n) int64 keys: table t's key is its own fixed random choice of ``bits_per_table`` bits,
    tagged with t (independent choices: flipped bits spread evenly cannot hit every table, as they can
    hit every window of consecutive bits)."""
    rng = np.random.default_rng(20261202)  # fixed: keys must agree between runs and machines
    keys = np.empty((cfg.tables, len(hashes)), dtype=np.int64)
    one = np.uint64(1)
    for t in range(cfg.tables):
        key = np.zeros(len(hashes), dtype=np.uint64)
        for j, bit in enumerate(rng.choice(HASH_BITS, size=cfg.bits_per_table, replace=False).tolist()):
            key |= ((hashes >> np.uint64(bit)) & one) << np.uint64(j)
        keys[t] = key.astype(np.int64) | (t << cfg.bits_per_table)
    return keys


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based unique is many times slower on millions of int64)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def candidate_pairs(signatures: Sequence[np.ndarray], groups: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """(P, 2) indices i < j of clips from different ``groups`` (videos) sharing at least ``min_key_hits``
    LSH keys, unique. Unrelated hashes share a key by chance; a true duplicate shares many."""
    if not len(signatures):
        return np.empty((0, 2), dtype=np.int64)
    clip_of = np.repeat(np.arange(len(signatures)), [len(s) for s in signatures])
    hashes = np.concatenate(signatures).astype(np.uint64)
    clip_of, hashes = clip_of[hashes != NO_HASH], hashes[hashes != NO_HASH]
    keys = _table_keys(hashes, cfg).ravel()
    clips = np.tile(clip_of, cfg.tables)
    n = max(len(signatures), 1)
    packed = _sorted_unique(keys * n + clips)  # one entry per (key, clip), sorted by key
    keys, clips = packed // n, packed % n
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    pairs = [_pairs_within(clips, starts[(sizes == g)], g) for g in np.unique(sizes)
             if 2 <= g <= cfg.max_bucket]
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(pairs)
    pairs = np.sort(pairs[groups[pairs[:, 0]] != groups[pairs[:, 1]]], axis=1)
    pairs, hits = np.unique(pairs, axis=0, return_counts=True)
    # A still shot has one distinct hash: one shared key is all it can show.
    distinct = _distinct_counts(clip_of, hashes, len(signatures))
    need = np.minimum(cfg.min_key_hits, np.minimum(distinct[pairs[:, 0]], distinct[pairs[:, 1]]))
    return pairs[hits >= need]


def _distinct_counts(clip_of: np.ndarray, hashes: np.ndarray, n: int) -> np.ndarray:
    """Distinct hashes per clip."""
    order = np.lexsort((hashes, clip_of))
    c, h = clip_of[order], hashes[order]
    first = np.r_[True, (c[1:] != c[:-1]) | (h[1:] != h[:-1])] if len(c) else np.zeros(0, bool)
    return np.bincount(c[first], minlength=n)


def _pairs_within(clips: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Every pair of members of the groups of ``size`` members starting at ``starts`` (vectorised)."""
    a, b = np.triu_indices(size, k=1)
    return np.stack([clips[starts[:, None] + a].ravel(), clips[starts[:, None] + b].ravel()], axis=1)


def _rank_keys(t: pa.Table, external: np.ndarray, before=None) -> list[tuple]:
    """Sort key per clip: the smaller is kept (see the module docstring)."""
    rows = t.select(["clip_id", "kind", "width_px", "height_px", "duration_s", "sharpness", "reject_reason",
                     "created_at"]).to_pylist()
    keys = []
    for ext, r in zip(external, rows):
        others = [x for x in (r["reject_reason"] or "").split(";") if x and x != "near_duplicate"]
        earlier = before is not None and r["created_at"] is not None and r["created_at"] < before
        keys.append((not ext, not earlier, bool(others), r["kind"] == "image",  # a clip wins over a still of it
                     -((r["width_px"] or 0) * (r["height_px"] or 0)),
                     -(r["sharpness"] if r["sharpness"] is not None else -math.inf), -round(r["duration_s"] or 0.0, 1),
                     r["clip_id"]))
    return keys


def verified_pairs(signatures: Sequence[np.ndarray], groups: np.ndarray, cfg: DedupConfig,
                   external: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Candidate pairs (:func:`candidate_pairs`) that pass verification (:func:`match_share`)."""
    counts = np.array([np.count_nonzero(s) for s in signatures])
    out = []
    for i, j in candidate_pairs(signatures, groups, cfg).tolist():
        if external is not None and external[i] and external[j]:
            continue
        a, b = (i, j) if counts[i] <= counts[j] else (j, i)
        share, matches = match_share(signatures[a], signatures[b], cfg)
        if share >= cfg.min_share and matches >= needed_matches(signatures[a], cfg):
            out.append((i, j))
    return out


def find_duplicates(clips: pa.Table, external: np.ndarray | None = None, cfg: DedupConfig | None = None,
                    before=None) -> dict[str, str]:
    """``{clip_id: clip_id kept}`` for every duplicate clip of ``clips`` (SEARCH_COLUMNS at least) that is
    not ``external`` (a bool per row: clips of other runs, which win and are never marked). Clips created
    before the datetime ``before`` (earlier runs into the same OUT) win over newer ones.

    Clips are visited best first (:func:`_rank_keys`): a clip with a verified match among the clips kept so
    far points at the best of them, else it is kept. So every mark points at a kept clip it matched
    itself: a copy whose missed cut spans two shots never links those two shots to each other.
    """
    cfg = cfg or DedupConfig()
    n = clips.num_rows
    external = np.zeros(n, dtype=bool) if external is None else np.asarray(external, dtype=bool)
    sigs = [np.asarray(s or [], dtype=np.uint64) for s in clips["signature"].to_pylist()]
    groups = pc.dictionary_encode(clips["video_id"].combine_chunks()).indices.to_numpy(zero_copy_only=False)
    neighbours: dict[int, list[int]] = {}
    for i, j in verified_pairs(sigs, groups, cfg, external):
        neighbours.setdefault(i, []).append(j)
        neighbours.setdefault(j, []).append(i)
    keys = _rank_keys(clips, external, before)
    ids = clips["clip_id"].to_pylist()
    kept: set[int] = set()
    out = {}
    for i in sorted(neighbours, key=keys.__getitem__):
        matched = [j for j in neighbours[i] if j in kept]
        if matched and not external[i]:
            out[ids[i]] = ids[min(matched, key=keys.__getitem__)]
        else:
            kept.add(i)
    return out


def _read_search_columns(run_dir, role: str) -> tuple[pa.Table, list]:
    """SEARCH_COLUMNS of every clips part of ``run_dir`` and the part each row came from."""
    tables, parts = [], []
    for path in manifests.part_paths(run_dir, "clips"):
        try:
            t = _read_part_columns(path)
        except (ManifestError, KeyError, pa.ArrowInvalid) as exc:
            raise ManifestError(f"{role} {run_dir}: {path} has no clip signatures (written by an older rushes, "
                                f"before clips schema v{manifests.SCHEMA_VERSIONS['clips']}): rerun `rushes curate` "
                                f"with the video it came from among the inputs (a rerun redoes videos curated by an "
                                f"older rushes), or curate into a new OUT ({exc})") from exc
        tables.append(t.cast(pa.schema([manifests.schema_for("clips").field(c) for c in SEARCH_COLUMNS])))
        parts.extend([path] * t.num_rows)
    schema = pa.schema([manifests.schema_for("clips").field(c) for c in SEARCH_COLUMNS])
    return (pa.concat_tables(tables) if tables else schema.empty_table()), parts


def _read_part_columns(path) -> pa.Table:
    """SEARCH_COLUMNS of one clips part; ``kind`` (added in clips schema v4) is null in an older part."""
    try:
        return manifests.read_part(path, "clips", columns=SEARCH_COLUMNS)
    except (ManifestError, KeyError, pa.ArrowInvalid):
        older = [c for c in SEARCH_COLUMNS if c != "kind"]
        t = manifests.read_part(path, "clips", columns=older)
        return t.add_column(older.index("video_id") + 1, "kind", pa.nulls(t.num_rows, pa.string()))


def check_against(against: Sequence, out) -> None:
    """Raise :class:`ManifestError` naming the fix unless every run in ``against`` has a clips manifest
    and none is OUT itself (OUT is always searched)."""
    for other in against:
        same = (str(other).rstrip("/") == str(out).rstrip("/") if storage.is_remote(other) or storage.is_remote(out)
                else Path(other).resolve() == Path(out).resolve())
        if same:
            raise ManifestError(f"--dedup-against {other} is OUT itself, which is always searched: name other runs")
        try:
            found = manifests.part_paths(other, "clips")
        except OSError as exc:
            raise ManifestError(f"--dedup-against {other}: cannot list it ({exc}); check the path or bucket and "
                                f"the AWS credentials") from exc
        if not found:
            raise ManifestError(f"--dedup-against {other}: no clips manifest "
                                f"({manifests.manifest_dir(other, 'clips')}/*.parquet); give the OUT of an earlier "
                                f"`rushes curate` run")


def dedup_run(run_dir, against: Sequence = (), cfg: DedupConfig | None = None,
              refilter: Callable[[pa.Table], pa.Table] | None = None, before=None) -> dict:
    """Set ``duplicate_of`` on every clip of ``run_dir`` (all its parts, earlier runs' too) against the
    run itself and the runs in ``against`` (read only; local folders or bucket URIs). Clips created
    before ``before`` (a datetime: when this run started) win over this run's, so a clip an earlier run
    kept (and that may be captioned or trained on already) stays kept when a copy arrives.

    Each part whose ``duplicate_of`` changed is rewritten atomically under its own name (passed through
    ``refilter`` first, e.g. the run's filter, so keep and duplicate_of change in one write). Returns
    ``{"clips", "against_clips", "duplicates", "parts_rewritten", "dedup_s"}``.
    """
    started = time.perf_counter()
    own, parts = _read_search_columns(run_dir, "OUT")
    others = [_read_search_columns(other, "--dedup-against")[0] for other in against]
    table = pa.concat_tables([own, *others])
    external = np.r_[np.zeros(own.num_rows, dtype=bool), np.ones(table.num_rows - own.num_rows, dtype=bool)]
    dups = find_duplicates(table, external, cfg, before)
    old = dict(zip(own["clip_id"].to_pylist(), own["duplicate_of"].to_pylist()))
    changed = {str(p) for p, cid in zip(parts, own["clip_id"].to_pylist()) if dups.get(cid) != old[cid]}
    for path in sorted(changed):
        _rewrite_part(run_dir, path, dups, refilter)
    result = {"clips": own.num_rows, "against_clips": table.num_rows - own.num_rows, "duplicates": len(dups),
              "parts_rewritten": len(changed), "dedup_s": round(time.perf_counter() - started, 3)}
    log.info("dedup: %d near-duplicate clip(s) of %d (+%d in other runs), %d part(s) rewritten", len(dups),
             own.num_rows, result["against_clips"], len(changed))
    return result


def _rewrite_part(run_dir, path: str, dups: dict[str, str], refilter) -> None:
    part = manifests.read_part(path, "clips")
    values = pa.array([dups.get(c) for c in part["clip_id"].to_pylist()], pa.string())
    part = part.set_column(part.schema.get_field_index("duplicate_of"), part.schema.field("duplicate_of"), values)
    if refilter is not None:
        part = refilter(part)
    name = storage.name(path) if storage.is_remote(path) else Path(path).name
    manifests.write_part(run_dir, "clips", part, part_name=name.removesuffix(".parquet"))

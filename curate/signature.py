"""Perceptual clip signatures from the analysis frame stream (no second decode), for near-duplicate search.

Usage (the curate adapter feeds it beside :class:`rushes.curate.scores.FrameSignals`)::

    sig = FrameSignature()
    result = analyse_video(path, [splitter, signals, sig])        # rushes.curate.decode: one decode
    row["signature"] = sig.clip_signature(clip.start_frame, clip.end_frame)

What is sampled: the first frame of every ``step_s`` (0.5 s) bucket of PTS on the video's absolute time
grid (bucket ``floor(pts_s / step_s)``). The grid does not depend on where decoding started, so a video
decoded in time chunks samples the same frames as one pass (:meth:`FrameSignature.state`, ``export`` and
``merged`` carry the samples across chunks, see :mod:`rushes.curate.chunks`).

What is hashed: a 64-bit DCT perceptual hash (pHash) of each sampled frame: its luma, shrunk with an area
filter to 32x32, DCT-II, then one bit per low-frequency coefficient (the 64 lowest after the DC term, in
order of frequency) set when the coefficient is above their median. Low frequencies survive re-encoding,
rescaling and a few percent of crop; the median split makes it brightness- and contrast-invariant. Hamming
distance between hashes measures how different two frames look (0..64; unrelated frames sit near 32).

Frames with too little structure hash to :data:`NO_HASH` (0), which never matches: black, flat and
faded-out frames (luma std of the 32x32 copy below ``min_luma_std``) would otherwise give noise bits, or
the same bits for every black shot. A clip's signature is one entry per bucket from its first sampled
bucket to its last (``NO_HASH`` where the bucket's frame was flat or no frame of the clip fell in it), so
entry ``i`` of two signatures can be compared at a time offset of whole buckets (:mod:`rushes.curate.dedup`).
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from rushes.media.frames import Frame

NO_HASH = 0  # a sample that must never match: a flat frame, or no frame of the clip in that bucket
HASH_BITS = 64


@dataclass(frozen=True)
class SignatureConfig:
    """How frames are sampled and hashed. Changing a value changes the hashes: bump the clips schema."""

    step_s: float = 0.5  # one sample per bucket of this many seconds of PTS (absolute grid)
    hash_side: int = 32  # px; the luma is area-shrunk to hash_side x hash_side before the DCT
    min_luma_std: float = 4.0  # luma std (0..255) of the shrunk copy below which a frame has no hash

    def __post_init__(self) -> None:
        if not 0.05 <= self.step_s <= 10:
            raise ValueError(f"signature step_s={self.step_s}: use 0.05..10 s (default 0.5)")
        if not 16 <= self.hash_side <= 128:
            raise ValueError(f"signature hash_side={self.hash_side}: use 16..128 px (default 32)")
        if not 0 <= self.min_luma_std < 128:
            raise ValueError(f"signature min_luma_std={self.min_luma_std}: use 0..128 (default 4)")


def _low_frequencies(count: int = HASH_BITS) -> np.ndarray:
    """Flat indices (in an 11x11 block) of the ``count`` lowest-frequency DCT terms after DC."""
    side = 11
    order = sorted(((u + v, u, v) for u in range(side) for v in range(side) if u or v))
    return np.array([u * side + v for _, u, v in order[:count]], dtype=np.intp)


_LOW = _low_frequencies()
_WEIGHTS = (1 << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)


def frame_hash(rgb: np.ndarray, config: SignatureConfig | None = None) -> int:
    """64-bit pHash of an RGB uint8 frame, or :data:`NO_HASH` when it is too flat to say anything."""
    cfg = config or SignatureConfig()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    small = cv2.resize(grey, (cfg.hash_side, cfg.hash_side), interpolation=cv2.INTER_AREA).astype(np.float32)
    if float(small.std()) < cfg.min_luma_std:
        return NO_HASH
    coeffs = cv2.dct(small)[:11, :11].ravel()[_LOW]
    bits = coeffs > np.median(coeffs)
    value = int((bits.astype(np.uint64) * _WEIGHTS).sum(dtype=np.uint64))
    return value or 1  # all-zero bits cannot come from a median split; keep NO_HASH unambiguous anyway


class FrameSignature:
    """Samples and hashes one video's analysis frames; cuts per-clip signatures. One instance per video.

    Time chunks (:mod:`rushes.curate.chunks`): :meth:`state`, :meth:`export` and :meth:`merged` let separate tasks
    sample a long video and join their samples into exactly what one instance fed every frame would hold.
    """

    def __init__(self, config: SignatureConfig | None = None) -> None:
        self.config = config or SignatureConfig()
        self._bucket = array("q")  # absolute bucket of each sample, increasing
        self._index = array("q")  # decoded-frame index of the sampled frame
        self._pts = array("d")  # its PTS (s)
        self._hash = array("Q")
        self._count = 0

    def add(self, frame: Frame) -> None:
        """Consume the next analysis frame; hash it when it is the first of its PTS bucket."""
        index = frame.index if frame.index is not None else self._count
        self._count = index + 1
        bucket = self._bucket_of(frame.pts_s)
        if self._bucket and bucket <= self._bucket[-1]:
            return
        self._bucket.append(bucket)
        self._index.append(index)
        self._pts.append(frame.pts_s)
        self._hash.append(frame_hash(frame.rgb, self.config))

    def _bucket_of(self, pts_s: float) -> int:
        return math.floor(pts_s / self.config.step_s + 1e-9)

    def state(self, next_pts_s: float = 0.0) -> bytes:
        """What shapes the samples from ``next_pts_s`` on: the sample already taken in that frame's bucket
        (its PTS), or nothing. Two chunks agree from a frame on exactly when this is equal there."""
        if self._bucket and self._bucket[-1] == self._bucket_of(next_pts_s):
            return struct.pack("<qd", self._bucket[-1], self._pts[-1])
        return b"-"

    def export(self, start_s: float, end_s: float | None) -> dict:
        """The samples of frames with ``start_s <= pts < end_s`` (None: to the end), as pts-keyed columns."""
        pts = np.frombuffer(self._pts, np.float64)
        sel = (pts >= start_s) & (pts < (math.inf if end_s is None else end_s))
        return {"bucket": np.frombuffer(self._bucket, np.int64)[sel].copy(), "pts": pts[sel].copy(),
                "hash": np.frombuffer(self._hash, np.uint64)[sel].copy(), "config": self.config}

    @classmethod
    def merged(cls, parts: Sequence[dict], pts_s) -> FrameSignature:
        """The signature of a whole video from its chunks' :meth:`export` s (in time order) and the PTS of
        all its frames (sample indices are re-derived from them)."""
        out = cls(parts[0]["config"] if parts else None)
        if not parts:
            return out
        pts = np.concatenate([p["pts"] for p in parts])
        out._bucket.extend(np.concatenate([p["bucket"] for p in parts]).tolist())
        out._pts.extend(pts.tolist())
        out._index.extend(np.searchsorted(np.asarray(pts_s, dtype=np.float64), pts).tolist())
        out._hash.extend(np.concatenate([p["hash"] for p in parts]).tolist())
        out._count = len(pts_s)
        return out

    def clip_signature(self, start_frame: int, end_frame: int) -> list[int]:
        """Signature of frames [start_frame, end_frame): one hash per bucket from the clip's first sampled
        bucket to its last, :data:`NO_HASH` for flat frames and buckets without a frame; [] when none."""
        index = np.frombuffer(self._index, np.int64)
        lo, hi = np.searchsorted(index, [start_frame, end_frame], side="left")
        if hi <= lo:
            return []
        bucket = np.frombuffer(self._bucket, np.int64)[lo:hi]
        out = np.zeros(int(bucket[-1] - bucket[0]) + 1, dtype=np.uint64)
        out[bucket - bucket[0]] = np.frombuffer(self._hash, np.uint64)[lo:hi]
        return out.tolist()

    @property
    def num_samples(self) -> int:
        """Frames hashed so far."""
        return len(self._hash)

"""PDQ perceptual hashes of frames and hash-list matching: the one owner of ``pdqhash``.

Usage::

    hex_hash, quality = frame_hash(rgb)              # 256-bit PDQ (64 hex digits) and its quality 0..100
    blocklist = Blocklist.read("known.txt")          # one hex hash per line (a vPDQ CSV line works too)
    matched = blocklist.match_fraction(clip_hashes, max_distance=31)   # share of the clip's hashes listed

PDQ is Meta's photo hash (ThreatExchange), the family platforms exchange for known abusive material. The
hash is computed by ``pdqhash`` (Python bindings that compile the reference C++ of ThreatExchange; built from
its source by pip: ``.ci/install`` needs a C++ compiler), so it is the reference's output by construction.
vPDQ, its video form, is PDQ of one frame per second; curate keeps the same: one hash per second of the
video's absolute time grid (frames with PDQ quality below ``MIN_QUALITY``, e.g. black or flat frames, are
not hashed, as vPDQ's matcher ignores them).

A hash file line is either a bare hash (``f8f8...``) or comma-separated fields: vPDQ's own output is
``frame_number,quality,hash,timestamp``; the hash is then the field that is 64 hex digits (the third in
vPDQ's case). Blank lines and ``#`` comments are skipped; any other line is an error naming its number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_QUALITY = 50  # vPDQ's default quality tolerance: hashes of lower quality are unreliable (flat frames)
DEFAULT_MAX_DISTANCE = 31  # ThreatExchange's recommended PDQ match threshold (of 256 bits)
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class PdqUnavailable(RuntimeError):
    """``pdqhash`` is not installed."""


def available() -> bool:
    try:
        import pdqhash  # noqa: F401
    except ImportError:
        return False
    return True


def frame_hash(rgb: np.ndarray) -> tuple[str, int]:
    """(PDQ hash as 64 hex digits, quality 0..100) of one RGB uint8 frame, by the reference implementation."""
    try:
        import pdqhash
    except ImportError as exc:
        raise PdqUnavailable("PDQ hashes need pdqhash: pip install 'rushes[guard]' (or pip install pdqhash; it "
                             "compiles, so a C++ compiler must be installed)") from exc
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    return bits_to_hex(np.asarray(bits)), int(quality)


def bits_to_hex(bits: np.ndarray) -> str:
    """ThreatExchange's hex form (``Hash256::format``: words 15..0, 4 hex digits each) of ``pdqhash``'s bit
    vector, which lists the same bits from the most significant bit of word 15 down to bit 0 of word 0."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def hex_to_words(hashes) -> np.ndarray:
    """``(n, 4)`` uint64 of 64-hex-digit hashes (for Hamming distances by XOR and popcount)."""
    raw = bytes.fromhex("".join(hashes)) if len(hashes) else b""
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


def parse_line(line: str) -> str | None:
    """The hash of one hash-file line, lower case, or None for a blank or ``#`` line; raises ValueError."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = [f.strip() for f in text.split(",")]
    found = [f for f in fields if _HEX.match(f)]
    if not found:
        raise ValueError(f"no 64-hex-digit PDQ hash in {text[:80]!r}: write one hash per line, or vPDQ's "
                         f"frame,quality,hash,timestamp")
    return found[0].lower()


@dataclass(frozen=True)
class Blocklist:
    """Known PDQ hashes; :meth:`match_fraction` tells how much of a clip they cover."""

    words: np.ndarray  # (n, 4) uint64

    @classmethod
    def from_hashes(cls, hashes) -> Blocklist:
        return cls(hex_to_words(sorted(set(hashes))))

    @classmethod
    def parse(cls, text: str, name: str = "hash list") -> Blocklist:
        hashes = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                found = parse_line(line)
            except ValueError as exc:
                raise ValueError(f"{name} line {number}: {exc}") from None
            if found:
                hashes.append(found)
        return cls.from_hashes(hashes)

    @classmethod
    def read(cls, path) -> Blocklist:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="strict")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the hash list {path}: {exc}; give a text file of hex PDQ hashes") from exc
        return cls.parse(text, str(path))

    def to_text(self) -> str:
        """One hash per line (what a run keeps in ``OUT/config/block_hashes.txt``)."""
        return "".join(f"{''.join(f'{int(w):016x}' for w in row)}\n" for row in self.words)

    def __len__(self) -> int:
        return len(self.words)

    def min_distances(self, hashes) -> np.ndarray:
        """Hamming distance of each hash to its nearest listed hash (256 when the list is empty)."""
        query = hex_to_words(hashes)
        out = np.full(len(query), 256, dtype=np.int64)
        for start in range(0, len(self.words), 4096):  # bounded memory: (queries, 4096, 4) at a time
            block = self.words[start:start + 4096]
            dist = np.bitwise_count(query[:, None, :] ^ block[None, :, :]).sum(axis=2)
            out = np.minimum(out, dist.min(axis=1).astype(np.int64)) if dist.size else out
        return out

    def match_fraction(self, hashes, max_distance: int = DEFAULT_MAX_DISTANCE) -> float | None:
        """Share of ``hashes`` within ``max_distance`` bits of a listed hash; None for a clip without hashes."""
        hashes = [h for h in (hashes or []) if h]
        if not hashes:
            return None
        if not len(self):
            return 0.0
        return float((self.min_distances(hashes) <= max_distance).mean())

"""Invisible watermarks of the ``invisible-watermark`` package (``imwatermark``), decoded from video frames.

Usage::

    decoder = MarkDecoder()
    scores = decoder.measure(rgb)        # {mark name: per-bit scores 0..1}, or {} for a frame under 256x256
    name, match = best_mark([scores, ...])   # the known mark a clip's frames agree with best, and the share of bits

Stable Diffusion's reference scripts mark every output with this package's ``dwtDct`` method: SD 1.x/2.x's
``txt2img.py`` embeds the bytes ``StableDiffusionV1`` (136 bits), SDXL's ``sgm`` the 48-bit message
``0b101100111110110010010000011110111011000110011110`` (:data:`KNOWN_MARKS`). ``dwtDct`` (imwatermark's
``EmbedMaxDct``, scales ``[0, 36, 36]``, 4x4 blocks) writes the message cyclically, one bit per 4x4 block of
the Haar-DWT approximation band of the U channel: bit = the remainder of the block's largest non-DC
coefficient modulo 36 (above 18: 1). The package decodes with a Python loop over blocks (about a second
for a 1080p frame); :func:`block_bits` does the same arithmetic vectorised (tested bit-exact against it), and
one pass serves every known mark (only the cyclic bit assignment differs by message length).

Video is harder than stills: H.264 in yuv420p keeps the U channel at half size (one sample per 2x2 pixels,
which is what the approximation band is anyway) but quantises it coarsely, and where the picture has little
colour x264 flattens the mark's small chroma steps away, so every such block reads the same value (a B/W film
reads 256 everywhere: 256 mod 36 = 4, a 0). Deciding each bit at imwatermark's fixed 0.5 then returns the
content's bias, not the message (half of CRF 18 clips failed so). :class:`MarkDecoder` therefore reads each
block *softly* (:func:`soft_block_values`: its remainder as a phase, 0 at 36k + 9 where the encoder writes a 0,
1 at 36k + 27, 0.5 between, so damaged blocks count little), averages the per-bit scores over every sampled
frame of the clip (a marked video carries the mark in every frame), and decides each bit against the mean of
all the message's bit scores: the blocks of every bit are spread over the whole frame, so the content's bias
is the same for all bits and cancels. On a clean marked still the result is imwatermark's (or better: it
also reads stills whose flat areas defeat imwatermark's own decoder). The mark does not survive rescaling,
cropping or strong compression: the decode runs on the frame at its native size. An unmarked clip agrees
with a known message on about half of its bits; ``match`` >= 0.85 over 48 or 136 bits is far outside what
chance gives (measured on the footage: at most 0.62).
"""

from __future__ import annotations

import cv2
import numpy as np

SCALE = 36  # imwatermark's dwtDct default scale of the U channel
BLOCK = 4
MIN_PIXELS = 256 * 256  # imwatermark refuses smaller images
# Lossy video shaves the block maxima the mark is written in: the encoder's peak comes back about 4-8 units lower
# (mean error -4.8 to -7.4 at x264 CRF 18, 320x240 to 1280x720, on the shared footage). Reading the phase 4 units up
# centres it between no loss (stills, lossless: 9 + 4 stays on the 0 side) and a heavy one.
PEAK_LOSS = 4.0


def _bits_of_int(value: int, length: int) -> np.ndarray:
    return np.array([int(b) for b in bin(value)[2:].zfill(length)], dtype=np.uint8)


KNOWN_MARKS = {
    "stable-diffusion-v1": np.unpackbits(np.frombuffer(b"StableDiffusionV1", dtype=np.uint8)),
    "stable-diffusion-xl": _bits_of_int(0b101100111110110010010000011110111011000110011110, 48),
}


class MarksUnavailable(RuntimeError):
    """PyWavelets (a dependency of ``invisible-watermark``) is not installed."""


def available() -> bool:
    try:
        import imwatermark  # noqa: F401
        import pywt  # noqa: F401
    except ImportError:
        return False
    return True


def block_bits(bgr: np.ndarray) -> np.ndarray:
    """imwatermark ``EmbedMaxDct.decode``'s per-block bit (0/1), in its block order (row-major), of a BGR frame."""
    try:
        import pywt
    except ImportError as exc:
        raise MarksUnavailable("invisible-watermark decoding needs the invisible-watermark package (and its "
                               "PyWavelets): pip install 'rushes[guard]'") from exc
    row, col = bgr.shape[:2]
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    ca, _ = pywt.dwt2(yuv[:row // 4 * 4, :col // 4 * 4, 1], "haar")  # channel 1 (U): the only one scaled > 0
    r, c = ca.shape[0] // BLOCK, ca.shape[1] // BLOCK
    blocks = ca[:r * BLOCK, :c * BLOCK].reshape(r, BLOCK, c, BLOCK).transpose(0, 2, 1, 3).reshape(r * c, BLOCK * BLOCK)
    rest = blocks[:, 1:]
    pos = np.abs(rest).argmax(axis=1)
    val = np.abs(rest[np.arange(len(rest)), pos])
    return (np.mod(val, SCALE) > 0.5 * SCALE).astype(np.float64)


def bit_scores(bits: np.ndarray, length: int) -> np.ndarray:
    """Mean block bit per message bit (block k carries bit k % length), as imwatermark averages them."""
    slot = np.arange(len(bits)) % length
    counts = np.bincount(slot, minlength=length)
    return np.bincount(slot, weights=bits, minlength=length) / np.maximum(counts, 1)


def soft_block_values(rgb: np.ndarray) -> np.ndarray:
    """Per-block soft bit (0..1) of an RGB frame, in imwatermark's block order: the same block maximum as
    :func:`block_bits` (U channel as OpenCV converts it, its Haar approximation band = twice the 2x2 means),
    read as a phase: 0 at ``36k + 9`` (where the encoder puts a 0), 1 at ``36k + 27`` (a 1), 0.5 halfway, after
    adding back :data:`PEAK_LOSS` (what a lossy codec takes off a peak)."""
    row, col = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    u = cv2.cvtColor(np.ascontiguousarray(rgb[:row, :col]), cv2.COLOR_RGB2YUV)[:, :, 1].astype(np.uint16)
    ca = u[0::2, 0::2] + u[1::2, 0::2] + u[0::2, 1::2] + u[1::2, 1::2]  # 2 * the Haar approximation band
    r, c = ca.shape[0] // BLOCK, ca.shape[1] // BLOCK
    rest = ca[:r * BLOCK, :c * BLOCK].reshape(r, BLOCK, c, BLOCK).transpose(0, 2, 1, 3).reshape(r * c, -1)[:, 1:]
    val = rest.max(axis=1) * 0.5 + PEAK_LOSS  # values are >= 0: the largest magnitude is the largest
    return 0.5 - 0.5 * np.sin(val * (2 * np.pi / SCALE))


class MarkDecoder:
    """Decodes every known mark from RGB frames (native size)."""

    def __init__(self, marks: dict | None = None) -> None:
        self.marks = dict(KNOWN_MARKS if marks is None else marks)

    def measure(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """{mark: per-bit soft scores 0..1} of one RGB frame; {} when it is smaller than imwatermark decodes."""
        if rgb.shape[0] * rgb.shape[1] < MIN_PIXELS:
            return {}
        soft = soft_block_values(rgb)
        return {name: bit_scores(soft, len(msg)) for name, msg in self.marks.items()}


def best_mark(samples: list[dict[str, np.ndarray]], marks: dict | None = None) -> tuple[str | None, float | None]:
    """(name, share of bits that agree) of the known mark the averaged scores of ``samples`` match best; (None,
    None) without a decodable sample. A bit is 1 where its averaged score is above the mean of all the
    message's bit scores: the content's own bias (flat chroma reads as one value everywhere) is the same
    for every bit, since the blocks of each bit are spread over the whole frame, and cancels."""
    marks = KNOWN_MARKS if marks is None else marks
    best: tuple[str | None, float | None] = (None, None)
    for name, message in marks.items():
        rows = [s[name] for s in samples if name in s]
        if not rows:
            continue
        score = np.mean(rows, axis=0)
        bits = (score > score.mean()).astype(np.uint8)
        match = float((bits == message).mean())
        if best[1] is None or match > best[1]:
            best = (name, match)
    return best

"""A still image curated as a one-frame clip: its videos-row facts, its analysis frame, its clips row.

A still (jpg, png, webp, bmp, tiff: ``rushes.media.images``) goes into the same manifests as a video, with
``kind = 'image'``: one videos row (the probe facts Pillow gives: format, sizes, EXIF rotation, bit depth) and
one clips row spanning ``start_s = end_s = 0`` (one frame, no duration). The one analysis frame is built as a
video's are (display orientation, bilinear shrink to ``analysis_long_side_px``, a sharper area-shrunk copy for
OCR) and fed to the same consumers, so its quality and text scores and its near-duplicate signature are
comparable with clips'. Motion scores stay null: the filter's motion, duration and camera rules do not apply
to images (``rushes.curate.filter``). The clip has no clip file: training and captioning read the still itself.

Usage (``rushes.curate.adapter`` calls it for an input named like an image)::

    info = probe_still(path)                              # ImageInfo, or raises StillError
    row, clip = still_rows(video_id, path, info, cfg, run)   # videos-row facts, clips row
"""

from __future__ import annotations

import cv2
import numpy as np

from rushes.curate.signature import FrameSignature
from rushes.manifests import make_id, now_utc
from rushes.media.frames import Frame
from rushes.media.images import ImageError, ImageInfo, probe_image, read_image

KIND = "image"


class StillError(RuntimeError):
    """A still that cannot be curated: ``stage`` is the videos row's error_stage (probe or decode)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def probe_still(path: str) -> ImageInfo:
    """Header facts of the still ``path``; raises :class:`StillError` (stage ``probe``)."""
    try:
        return probe_image(path)
    except ImageError as exc:
        raise StillError("probe", str(exc)) from exc


def videos_facts(info: ImageInfo) -> dict:
    """The videos-row columns a still fills: Pillow's facts in the columns a video's probe fills."""
    return {"kind": KIND, "container": info.format.lower(), "codec": info.format.lower(), "pix_fmt": info.mode,
            "bit_depth": info.bit_depth, "coded_width_px": info.coded_width_px,
            "coded_height_px": info.coded_height_px, "sar": "1:1", "rotation_deg": info.rotation_deg,
            "width_px": info.width_px, "height_px": info.height_px, "duration_s": 0.0,
            "num_frames_probe": info.frames, "num_frames_decoded": 1, "has_audio": False, "vfr": False,
            "warning": (f"{info.frames} frames in the file (animated or multi-page): the first is curated"
                        if info.frames > 1 else None)}


def _fit(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def analysis_frame(rgb: np.ndarray, consumers, long_side_px: int) -> None:
    """Feed the still's one frame to ``consumers`` as the video decode pass feeds a frame (a sharper copy first
    to those that ask for one)."""
    h, w = rgb.shape[:2]
    for consumer in consumers:
        side = consumer.detail_side(0.0) if hasattr(consumer, "detail_side") else 0
        if side:
            consumer.add_detail(Frame(0, 0.0, cv2.resize(rgb, _fit(w, h, side), interpolation=cv2.INTER_AREA)))
    size = _fit(w, h, long_side_px)
    small = rgb if size == (w, h) else cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    for consumer in consumers:
        consumer.add(Frame(0, 0.0, small))


def still_rows(video_id: str, path: str, info: ImageInfo, cfg, run) -> tuple[dict, dict]:
    """The videos-row facts and the one clips row of the still ``path`` (a local file); raises
    :class:`StillError` (stage ``decode``) when its pixels do not decode."""
    try:
        rgb = read_image(path)  # (H, W, 3) uint8, display orientation
    except ImageError as exc:
        raise StillError("decode", str(exc)) from exc
    signature = FrameSignature()
    signals = None
    score_cfg = cfg.score_config()
    if score_cfg is not None:
        from rushes.curate.scores import FrameSignals

        signals = FrameSignals(score_cfg)
    analysis_frame(rgb, [c for c in (signature, signals) if c is not None], cfg.analysis_long_side_px)
    width, height = info.width_px, info.height_px
    row = {
        "clip_id": make_id("clip", video_id, KIND), "video_id": video_id, "kind": KIND, "clip_path": None,
        "scene_index": 0, "window_index": 0, "start_s": 0.0, "end_s": 0.0, "duration_s": 0.0,
        "start_frame": 0, "end_frame": 1, "num_frames": 1, "width_px": width, "height_px": height, "fps": None,
        "detector": None, "detector_params": None, "keep": True, "reject_reason": None,
        "signature": signature.clip_signature(0, 1),
        "config_hash": run.config_hash, "tool_versions": run.tool_versions, "created_at": now_utc(),
    }
    if signals is not None:
        row.update(signals.clip_scores(0, 1, width, height))
    else:
        row["aspect_ratio"] = width / height
    return videos_facts(info), row

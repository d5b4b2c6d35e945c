"""What a video file is, from ffprobe's JSON: container, codec, pixel format, sizes, rotation, rates, audio.

``probe_video(path)`` returns a :class:`Probe` or raises :class:`ProbeError` with a message naming the
file, the cause and the fix. It never decodes pictures; the decode pass (``rushes.curate.decode``) confirms
the frame count and timing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction

from rushes.media.ffmpeg import FFmpegError, RefusedFormat, run_ffprobe_json
from rushes.media.frames import Track, display_rotation, display_size, duration_tag_s, main_track

# A stream whose nominal and average rates differ by more than this is variable-frame-rate.
VFR_TOLERANCE = 0.01


class ProbeError(RuntimeError):
    """The file is missing, unreadable, not a video, or has no decodable video stream."""


@dataclass(frozen=True)
class Probe:
    """Facts about one video file (first video stream). Sizes are pixels, times seconds."""

    container: str
    codec: str
    pix_fmt: str
    bit_depth: int | None
    coded_width_px: int
    coded_height_px: int
    sar: Fraction
    rotation_deg: int  # clockwise rotation to display orientation: 0, 90, 180, 270
    width_px: int  # display width (SAR and rotation applied)
    height_px: int
    fps: float  # nominal rate (r_frame_rate)
    avg_fps: float  # average rate (avg_frame_rate)
    vfr: bool
    duration_s: float | None
    num_frames: int | None  # as claimed by the container; may be wrong
    start_s: float  # start time of the video stream
    format_start_s: float  # start time of the container (ffmpeg seeks relative to it)
    has_audio: bool
    audio_codec: str | None

    def row(self) -> dict:
        """Columns of the videos manifest filled by the probe."""
        return {
            "container": self.container, "codec": self.codec, "pix_fmt": self.pix_fmt, "bit_depth": self.bit_depth,
            "coded_width_px": self.coded_width_px, "coded_height_px": self.coded_height_px,
            "sar": f"{self.sar.numerator}:{self.sar.denominator}", "rotation_deg": self.rotation_deg,
            "width_px": self.width_px, "height_px": self.height_px, "fps": self.fps, "avg_fps": self.avg_fps,
            "vfr": self.vfr, "duration_s": self.duration_s, "num_frames_probe": self.num_frames,
            "has_audio": self.has_audio, "audio_codec": self.audio_codec,
        }


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0/1")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value)


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and value >= 0 else None  # drop NaN and negatives


def _sar(stream: dict) -> Fraction:
    text = stream.get("sample_aspect_ratio") or "1:1"
    m = re.fullmatch(r"(\d+):(\d+)", text)
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        return Fraction(1)  # "0:1" means unknown: square pixels
    return Fraction(int(m.group(1)), int(m.group(2)))


def _rotation(stream: dict) -> int:
    # Newer ffprobe reports the display matrix as side data; older ones as a "rotate" tag (clockwise).
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return display_rotation(float(side["rotation"]))
    tag = (stream.get("tags") or {}).get("rotate")
    return display_rotation(-float(tag)) if tag else 0


def _bit_depth(stream: dict) -> int | None:
    raw = stream.get("bits_per_raw_sample")
    if raw and str(raw).isdigit():
        return int(raw)
    m = re.search(r"p(9|10|12|14|16)", stream.get("pix_fmt") or "")
    return int(m.group(1)) if m else (8 if stream.get("pix_fmt") else None)


def _check_readable(path: str) -> None:
    if "://" in path:
        raise ProbeError(f"{path} is a URL; only local (or mounted shared) files are read so far: copy it locally "
                         f"(e.g. `aws s3 sync`) or mount the bucket, and pass the local path")
    if not os.path.exists(path):
        raise ProbeError(f"{path} does not exist; check the path (inputs may be files, folders, globs "
                         f"or a .txt list of paths)")
    if os.path.isdir(path):
        raise ProbeError(f"{path} is a directory; pass it as an input folder or point at a video file")
    if os.path.getsize(path) == 0:
        raise ProbeError(f"{path} is empty (0 bytes); re-copy or re-download it, or remove it from the input")
    if not os.access(path, os.R_OK):
        raise ProbeError(f"{path} is not readable; fix its permissions")


def _main_video(videos: list[dict]) -> dict:
    """The ffprobe stream the decoders will read: :func:`rushes.media.frames.main_track`'s rule."""
    def facts(s: dict) -> Track:
        frames = s.get("nb_frames")
        duration = duration_tag_s((s.get("tags") or {}).get("DURATION")) or _float(s.get("duration")) or 0.0
        return Track(int(s.get("index", 0)), bool((s.get("disposition") or {}).get("attached_pic")),
                     int(frames) if str(frames).isdigit() else 0, duration)

    index = main_track([facts(s) for s in videos])
    return next(s for s in videos if int(s.get("index", 0)) == index)


def probe_video(path: str, timeout_s: float = 60.0) -> Probe:
    """Probe ``path`` with ffprobe. Raises :class:`ProbeError` naming the file, the cause and the fix."""
    _check_readable(path)
    try:
        info = run_ffprobe_json(path, timeout_s=timeout_s)
    except RefusedFormat as exc:
        raise ProbeError(str(exc)) from exc
    except FFmpegError as exc:
        raise ProbeError(f"ffprobe cannot read {path}: {exc}. The file is probably truncated or not a video; "
                         f"re-copy it or remove it from the input") from exc
    streams = info.get("streams") or []
    videos = [s for s in streams if s.get("codec_type") == "video"]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        kind = "audio-only" if audios else "not a video"
        raise ProbeError(f"{path} has no video stream ({kind}); remove it from the input")
    v = _main_video(videos)
    fmt = info.get("format") or {}
    width, height = int(v.get("width") or 0), int(v.get("height") or 0)
    if width <= 0 or height <= 0:
        raise ProbeError(f"{path}: video stream has no frame size (codec {v.get('codec_name')!r}); "
                         f"the file is probably truncated; re-copy it")
    sar, rotation = _sar(v), _rotation(v)
    disp_w, disp_h = display_size(width, height, sar, rotation)
    fps, avg = _rate(v.get("r_frame_rate")), _rate(v.get("avg_frame_rate"))
    nb = v.get("nb_frames")
    return Probe(
        container=fmt.get("format_name") or "unknown", codec=v.get("codec_name") or "unknown",
        pix_fmt=v.get("pix_fmt") or "unknown", bit_depth=_bit_depth(v),
        coded_width_px=width, coded_height_px=height, sar=sar, rotation_deg=rotation,
        width_px=disp_w, height_px=disp_h, fps=fps or avg, avg_fps=avg or fps,
        vfr=bool(fps and avg and abs(fps - avg) > VFR_TOLERANCE * fps),
        duration_s=_float(v.get("duration")) or _float(fmt.get("duration")),
        num_frames=int(nb) if nb and str(nb).isdigit() else None,
        start_s=_float(v.get("start_time")) or 0.0, format_start_s=_float(fmt.get("start_time")) or 0.0,
        has_audio=bool(audios), audio_codec=audios[0].get("codec_name") if audios else None,
    )

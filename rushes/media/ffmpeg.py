"""The one owner of the ffmpeg and ffprobe executables: where they are, and how they are run safely.

Every call takes an argument list (never a shell string), a timeout, drains stderr, and restricts
protocols (``-protocol_whitelist``) so a crafted playlist cannot read other files or the network. A user's
media file is also opened with a demuxer allow-list (``-format_whitelist``, :data:`MEDIA_DEMUXERS`): real
containers only, never a playlist, concat list or image sequence, which would open files nobody named.
PyAV (``rushes.media.frames``) opens files with the same two lists.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_PROTOCOLS = "file,pipe"
# Demuxers of real media containers (a file that holds its own media). Left out on purpose: hls, dash, concat
# (ffconcat), image2 and the image pipes (png_pipe, jpeg_pipe, ...), which read other files or are still images.
MEDIA_DEMUXERS = ",".join((
    "mov", "matroska", "avi", "mpeg", "mpegts", "asf", "flv", "ogg", "mxf", "dv", "yuv4mpegpipe", "nut", "ivf",
    "rm", "wtv", "h264", "hevc", "m4v", "mpegvideo", "vc1", "gxf", "lxf", "r3d", "mjpeg_2000",
))
# What a refused demuxer is, for the error message (a name not listed here is reported by its demuxer name).
_REFUSED_KINDS = {
    "hls": "an HLS playlist", "dash": "a DASH manifest", "concat": "an ffconcat list", "image2": "an image sequence",
    "webm_dash_manifest": "a DASH manifest",
}


class FFmpegError(RuntimeError):
    """ffmpeg/ffprobe failed, timed out, or is not installed."""


class RefusedFormat(FFmpegError):
    """The file is not a media container (a playlist, a list of files, a still image): refused unread."""


@dataclass(frozen=True)
class Completed:
    """Result of a finished ffmpeg/ffprobe call."""

    stdout: bytes
    stderr: str


@functools.cache
def ffmpeg_path() -> str:
    """Path of ffmpeg: ``$RUSHES_FFMPEG``, then ``PATH``, then the ``imageio-ffmpeg`` wheel."""
    env = os.environ.get("RUSHES_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # optional fallback shipping a static ffmpeg
    except ImportError:
        raise FFmpegError("ffmpeg not found: install it (Debian: apt-get install ffmpeg), "
                          "or pip install imageio-ffmpeg, or set RUSHES_FFMPEG") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def ffprobe_path() -> str:
    """Path of ffprobe: ``$RUSHES_FFPROBE``, then ``PATH``, then next to ffmpeg."""
    env = os.environ.get("RUSHES_FFPROBE")
    if env:
        return env
    found = shutil.which("ffprobe")
    if found:
        return found
    sibling = os.path.join(os.path.dirname(ffmpeg_path()), "ffprobe")
    if os.path.exists(sibling):
        return sibling
    raise FFmpegError("ffprobe not found: install ffmpeg (Debian: apt-get install ffmpeg) or set RUSHES_FFPROBE")


@functools.cache
def ffmpeg_version() -> str:
    """Version string of the ffmpeg executable, e.g. '5.1.6-0+deb12u1'."""
    out = run_ffmpeg(["-version"], timeout_s=30, whitelist=None).stdout.decode(errors="replace")
    m = re.search(r"ffmpeg version (\S+)", out)
    return m.group(1) if m else "unknown"


def _run(cmd: list[str], timeout_s: float, input_bytes: bytes | None = None) -> Completed:
    try:
        # Never the terminal as stdin: a child in a background process group that reads it is stopped (SIGTTIN).
        stdin = None if input_bytes is not None else subprocess.DEVNULL
        proc = subprocess.run(cmd, input=input_bytes, stdin=stdin, capture_output=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"{os.path.basename(cmd[0])} timed out after {timeout_s:.0f} s: "
                          f"{' '.join(cmd[:12])} ...; raise the timeout for very long inputs") from exc
    except FileNotFoundError as exc:
        raise FFmpegError(f"cannot run {cmd[0]}: {exc}") from exc
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise FFmpegError(f"{os.path.basename(cmd[0])} exited {proc.returncode}: {tail}")
    return Completed(proc.stdout, stderr)


def run_ffmpeg(args: Sequence[str], timeout_s: float = 600, whitelist: str | None = DEFAULT_PROTOCOLS,
               input_bytes: bytes | None = None) -> Completed:
    """Run ffmpeg with ``args`` (quiet, non-interactive, protocol whitelist applied before inputs)."""
    cmd = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if whitelist:
        cmd += ["-protocol_whitelist", whitelist]
    return _run(cmd + list(args), timeout_s, input_bytes)


def media_input(path: str) -> list[str]:
    """``-format_whitelist ... -i path``: the input options of a user's media file (real containers only)."""
    return ["-format_whitelist", MEDIA_DEMUXERS, "-i", path]


def refused_format(path: str, demuxer: str) -> str:
    """The message for a file whose format is not a media container: what it is, and that nothing it names
    was opened."""
    if demuxer.endswith("_pipe") or demuxer in ("gif", "webp", "bmp"):
        what = f"a still image ({demuxer.removesuffix('_pipe')}), not a video"
    else:
        what = f"{_REFUSED_KINDS.get(demuxer, f'a {demuxer} file')}, not a video container"
    return (f"{path} is {what}: rushes reads only self-contained video files and never opens the files a "
            f"playlist or list names; pass the video files themselves")


# Leading bytes of the refused formats, for naming what a file is when PyAV (which reports no demuxer) refuses it.
_SIGNATURES = ((b"#EXTM3U", "hls"), (b"ffconcat version", "concat"), (b"\x89PNG\r\n\x1a\n", "png_pipe"),
               (b"\xff\xd8\xff", "jpeg_pipe"), (b"GIF87a", "gif"), (b"GIF89a", "gif"), (b"BM", "bmp_pipe"),
               (b"II*\x00", "tiff_pipe"), (b"MM\x00*", "tiff_pipe"))


def sniff_format(path: str) -> str | None:
    """The refused demuxer a file's first bytes point to (``hls``, ``png_pipe``, ...), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if b"<MPD" in head:
        return "dash"
    return None


def whitelist_refusal(stderr: str) -> str | None:
    """The demuxer ffmpeg refused because it is not in :data:`MEDIA_DEMUXERS`, from its stderr, else None."""
    m = re.search(r"\[(\w+) @ [^]]*\] Format not on whitelist", stderr)
    return m.group(1) if m else None


def run_ffprobe_json(path: str, timeout_s: float = 60, whitelist: str = DEFAULT_PROTOCOLS) -> dict:
    """ffprobe ``-show_format -show_streams`` of ``path`` (a media container: playlists and image
    sequences are refused, see :func:`refused_format`) as a dict."""
    cmd = [ffprobe_path(), "-hide_banner", "-loglevel", "error", "-protocol_whitelist", whitelist,
           "-format_whitelist", MEDIA_DEMUXERS, "-print_format", "json", "-show_format", "-show_streams", path]
    try:
        out = _run(cmd, timeout_s)
    except FFmpegError as exc:
        refused = whitelist_refusal(str(exc))
        if refused:
            raise RefusedFormat(refused_format(path, refused)) from exc
        raise
    try:
        return json.loads(out.stdout.decode(errors="replace") or "{}")
    except json.JSONDecodeError as exc:
        raise FFmpegError(f"ffprobe printed invalid JSON for {path}: {exc}") from exc

"""The one owner of the ffmpeg and ffprobe executables: where they are, and how they are run safely.

Every call takes an argument list (never a shell string), a timeout, drains stderr, and restricts
protocols (``-protocol_whitelist``) so a crafted playlist cannot read other files or the network.
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


class FFmpegError(RuntimeError):
    """ffmpeg/ffprobe failed, timed out, or is not installed."""


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
        proc = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout_s, check=False)
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


def run_ffprobe_json(path: str, timeout_s: float = 60, whitelist: str = DEFAULT_PROTOCOLS) -> dict:
    """ffprobe ``-show_format -show_streams`` of ``path`` as a dict."""
    cmd = [ffprobe_path(), "-hide_banner", "-loglevel", "error", "-protocol_whitelist", whitelist,
           "-print_format", "json", "-show_format", "-show_streams", path]
    out = _run(cmd, timeout_s)
    try:
        return json.loads(out.stdout.decode(errors="replace") or "{}")
    except json.JSONDecodeError as exc:
        raise FFmpegError(f"ffprobe printed invalid JSON for {path}: {exc}") from exc

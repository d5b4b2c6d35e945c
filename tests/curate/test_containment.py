"""Only the files the user named are read: playlists, concat lists and still images are refused unread.

Each playlist points at a sentinel FIFO that serves a real video segment: if probe, decode or encode opened
it, the sentinel records it (and the video would have been curated as ``ok``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rushes.curate.adapter import RunInfo, process_video
from rushes.curate.config import EncodeConfig, debug
from rushes.curate.encode import EncodeError, EncodeJob, encode_clips
from rushes.curate.probe import ProbeError, probe_video
from rushes.manifests import read
from rushes.media.ffmpeg import run_ffmpeg
from rushes.media.frames import DecodeError, FrameReader, iter_frames, stream_info
from rushes.testing.sentinel import Sentinel
from rushes.testing.synth import make_cut_video

PLAYLISTS = {
    "hls.m3u8": ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{seg}\n#EXT-X-ENDLIST\n", "HLS playlist"),
    "hls_named.mp4": ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{seg}\n#EXT-X-ENDLIST\n", "HLS playlist"),
    "concat_named.mp4": ("ffconcat version 1.0\nfile '{seg}'\n", "ffconcat list"),
}


@pytest.fixture(scope="module")
def segment(tmp_path_factory) -> bytes:
    """Bytes of a real 2 s MPEG-TS video: what a playlist's segment would serve."""
    d = tmp_path_factory.mktemp("seg")
    return Path(make_cut_video(d / "seg.ts", [1.0, 1.0], fps=25, size=(160, 120)).path).read_bytes()


def _playlist(tmp_path: Path, name: str, segment: bytes) -> tuple[Path, Sentinel, str]:
    outside = tmp_path / "outside"
    outside.mkdir()
    sentinel = Sentinel(outside / "segment.ts", payload=segment)
    text, kind = PLAYLISTS[name]
    path = tmp_path / name
    path.write_text(text.format(seg=sentinel.path))
    return path, sentinel, kind


@pytest.mark.parametrize("name", sorted(PLAYLISTS))
def test_probe_decode_and_encode_refuse_a_playlist_without_opening_its_segment(tmp_path, segment, name):
    path, sentinel, kind = _playlist(tmp_path, name, segment)
    with sentinel:
        with pytest.raises(ProbeError, match=kind) as probed:
            probe_video(str(path))
        assert name in str(probed.value) and "pass the video files themselves" in str(probed.value)
        for decode in (lambda: FrameReader(str(path)), lambda: list(iter_frames(str(path))),
                       lambda: stream_info(str(path))):
            with pytest.raises(DecodeError, match=kind):
                decode()
        with pytest.raises(EncodeError):
            encode_clips(str(path), [EncodeJob("c", 0.0, 1.0)], tmp_path / "clips", 160, 120, EncodeConfig())
    assert not sentinel.opened, f"{name}: the segment the playlist names was opened"
    assert not list((tmp_path / "clips").glob("*.mp4"))


def test_a_playlist_in_the_input_gets_an_error_row_naming_it(tmp_path, segment):
    path, sentinel, kind = _playlist(tmp_path, "hls_named.mp4", segment)
    with sentinel:
        outcome = process_video(str(path), tmp_path / "run", dataclasses.replace(debug(), scores_preset=None),
                                RunInfo("t", "{}"))
    row = read(tmp_path / "run", "videos").to_pylist()[0]
    assert (outcome.status, row["status"], row["error_stage"]) == ("error", "error", "probe")
    assert kind in row["error_message"] and "hls_named.mp4" in row["error_message"]
    assert not sentinel.opened and read(tmp_path / "run", "clips").num_rows == 0


@pytest.mark.parametrize("ext,kind", [("png", "png"), ("jpg", "jpeg")])
def test_a_still_image_named_mp4_is_an_error_row_saying_so(tmp_path, ext, kind):
    image = tmp_path / f"frame.{ext}"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=1", "-frames:v", "1", "-y", str(image)],
               timeout_s=60, whitelist=None)
    named = tmp_path / "photo.mp4"
    named.write_bytes(image.read_bytes())
    with pytest.raises(ProbeError, match=rf"still image \({kind}\), not a video"):
        probe_video(str(named))
    with pytest.raises(DecodeError, match=r"still image"):
        FrameReader(str(named))
    process_video(str(named), tmp_path / "run", debug(), RunInfo("t", "{}"))
    row = read(tmp_path / "run", "videos").to_pylist()[0]
    assert row["status"] == "error" and "still image" in row["error_message"] and "photo.mp4" in row["error_message"]

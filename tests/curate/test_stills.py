"""Still images curated as one-frame clips: probed, hashed, scored, signed and filtered into the same manifests
as videos, with kind = 'image'; a still named .mp4 stays an error row."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from rushes.curate.config import RayConfig, debug
from rushes.curate.filter import FilterConfig, apply_filter
from rushes.curate.inputs import collect_inputs
from rushes.curate.pipeline import run_curate
from rushes.manifests import read
from rushes.media.frames import sample_frames
from rushes.media.images import read_image
from rushes.testing.synth import make_cut_video


def _texture(w: int, h: int, seed: int) -> np.ndarray:
    """A sharp, colourful picture: blocks of random colour with edges everywhere."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:h, :w]


@pytest.fixture(scope="module")
def stills(tmp_path_factory, footage_dir, ray_local):
    d = tmp_path_factory.mktemp("stills")
    Image.fromarray(_texture(320, 240, 1)).save(d / "blocks.png")
    Image.fromarray(_texture(300, 260, 2)).save(d / "blocks.webp", lossless=True)
    Image.fromarray(_texture(260, 300, 3)).save(d / "blocks.bmp")
    grey16 = (np.linspace(0, 65535, 320 * 240).reshape(240, 320) % 65536).astype(np.uint16)
    Image.fromarray(grey16).save(d / "ramp16.tiff")  # 16-bit grey
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(d / "black.png")
    # a real footage frame as a JPEG, tagged EXIF orientation 6 (shown rotated 90 degrees clockwise)
    frame = sample_frames(str(footage_dir / "psd_testvideo.mp4"), [2.0], size=(480, 270))[0].rgb
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(frame).save(d / "phone.jpg", quality=90, exif=exif)
    Image.fromarray(_texture(320, 240, 4)).save(d / "still_named.mp4", format="PNG")  # a still named .mp4
    v = make_cut_video(d / "clip.mp4", [3.0], fps=10, size=(320, 240))
    grab = sample_frames(v.path, [1.5])[0].rgb  # a frame of the video, saved as a still: a near-duplicate
    Image.fromarray(grab).save(d / "grab.jpg", quality=95)
    out = tmp_path_factory.mktemp("run") / "out"
    summary = run_curate([str(d)], out, debug(), RayConfig())
    return d, out, summary, frame


def _by_name(rows):
    return {r["path"].rsplit("/", 1)[-1]: r for r in rows}


def test_stills_are_one_frame_clips_of_kind_image_in_the_same_manifests(stills):
    d, out, summary, _ = stills
    videos = _by_name(read(out, "videos").to_pylist())
    clips = {r["video_id"]: r for r in read(out, "clips").to_pylist()}
    assert summary["inputs_skipped"] == {}
    for name in ("blocks.png", "blocks.webp", "blocks.bmp", "ramp16.tiff", "black.png", "phone.jpg", "grab.jpg"):
        v = videos[name]
        assert (v["status"], v["kind"], v["num_clips"]) == ("ok", "image", 1), v
        assert v["content_hash"] and v["num_frames_decoded"] == 1 and v["duration_s"] == 0.0
        c = clips[v["video_id"]]
        assert (c["kind"], c["start_s"], c["end_s"], c["num_frames"], c["clip_path"]) == ("image", 0.0, 0.0, 1, None)
        assert c["width_px"] == v["width_px"] and c["height_px"] == v["height_px"]
        assert c["sharpness"] is not None and c["brightness_mean"] is not None and c["text_area_frac"] is not None
        assert c["motion_mean"] is None and c["camera_motion"] is None  # a still has no motion
        assert len(c["signature"]) == 1
    assert (videos["phone.jpg"]["width_px"], videos["phone.jpg"]["height_px"]) == (270, 480)  # EXIF applied
    assert videos["phone.jpg"]["rotation_deg"] == 90
    assert (videos["ramp16.tiff"]["bit_depth"], videos["blocks.webp"]["container"]) == (16, "webp")
    assert videos["clip.mp4"]["kind"] == "video" and {c["kind"] for c in clips.values()} == {"image", "video"}
    bad = videos["still_named.mp4"]  # as before stills were curated: named a video, it is probed as one
    assert (bad["status"], bad["error_stage"]) == ("error", "probe") and "still image" in bad["error_message"]


def test_the_filter_judges_stills_without_the_rules_about_time(stills):
    d, out, _, _ = stills
    videos = {r["video_id"]: r["path"].rsplit("/", 1)[-1] for r in read(out, "videos").to_pylist()}
    clips = {videos[r["video_id"]]: r for r in read(out, "clips").to_pylist()}
    for name in ("blocks.png", "blocks.webp", "blocks.bmp", "phone.jpg"):
        assert clips[name]["keep"], clips[name]["reject_reason"]  # no too_short, motion< or missing_scores
    reasons = clips["black.png"]["reject_reason"].split(";")
    assert "dark" in reasons and not any(r.startswith(("motion", "too_short", "missing")) for r in reasons)
    strict = FilterConfig(min_motion=0.5, reject_camera_motion=("static",), min_duration_s=5.0)
    judged = {videos[r["video_id"]]: r for r in apply_filter(read(out, "clips"), strict).to_pylist()}
    assert judged["blocks.png"]["keep"] and not judged["clip.mp4"]["keep"]


def test_a_still_grabbed_from_a_clip_is_its_near_duplicate_and_the_clip_stays(stills):
    d, out, _, _ = stills
    videos = {r["video_id"]: r["path"].rsplit("/", 1)[-1] for r in read(out, "videos").to_pylist()}
    clips = {videos[r["video_id"]]: r for r in read(out, "clips").to_pylist()}
    assert clips["grab.jpg"]["duplicate_of"] == clips["clip.mp4"]["clip_id"]
    assert "near_duplicate" in clips["grab.jpg"]["reject_reason"].split(";")
    assert clips["clip.mp4"]["duplicate_of"] is None  # the video clip wins over a still of it
    assert clips["blocks.png"]["duplicate_of"] is None


def test_the_still_is_read_in_display_orientation(stills):
    d, _, _, frame = stills
    rgb = read_image(str(d / "phone.jpg"))
    assert rgb.shape == (480, 270, 3)
    assert np.abs(rgb.astype(int) - np.rot90(frame, k=-1).astype(int)).mean() < 6  # JPEG at q90


def test_folders_and_lists_take_stills_and_other_files_are_counted(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(_texture(64, 48, 5)).save(tmp_path / "a" / "x.PNG")
    (tmp_path / "a" / "notes.md").write_text("shot list")
    shutil.copy(tmp_path / "a" / "x.PNG", tmp_path / "y.jpeg")
    (tmp_path / "list.txt").write_text("a\ny.jpeg\n")
    found = collect_inputs([str(tmp_path / "list.txt")])
    assert [p.rsplit("/", 1)[-1] for p in found.paths] == ["x.PNG", "y.jpeg"]
    assert found.skipped_counts() == {"not_video": 1}

"""Per-clip scores: synthetic clips of known motion/quality/text, and orderings on real footage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rushes.curate.decode import analyse_video
from rushes.curate.filter import PRESETS as FILTER_PRESETS
from rushes.curate.filter import apply_filter
from rushes.curate.scores import PRESETS, SCORE_COLUMNS, FrameSignals, ScoreConfig
from rushes.manifests import conform
from rushes.manifests.schema import CLIP_SCORES
from rushes.media.ffmpeg import run_ffmpeg
from rushes.media.frames import Frame, fit_size, iter_frames, stream_info

W, H, FPS, SECONDS = 320, 240, 25, 2
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# A frozen canvas of blurred noise (texture everywhere, so optical flow is well defined), larger than
# the view, so a moving crop is a camera pan/tilt of exactly known speed.
CANVAS = ("color=c=gray:size=1280x960:rate={fps},noise=alls=100:allf=u,gblur=sigma=2.5,eq=contrast=4,"
          "trim=end_frame=1,loop=loop=-1:size=1:start=0,setpts=N/{fps}/TB")
DIAG = float(np.hypot(W, H))


def _crop(x: str, y: str) -> str:
    return f"crop={W}:{H}:x='{x}':y='{y}':exact=1"


def _text(line: str, y: str) -> str:
    return (f"drawtext=fontfile={FONT}:text='{line}':fontsize=22:fontcolor=white:borderw=2:"
            f"x=(w-tw)/2:y={y}")


CLIPS = {
    "still": _crop("480", "360"),
    "pan_slow": _crop("100+25*t", "360"),  # content moves left 25 px/s: camera pans right
    "pan_fast": _crop("100+75*t", "360"),
    "pan_back": _crop("600-50*t", "360"),  # content moves right: camera pans left
    "tilt": _crop("480", "400-50*t"),  # content moves down: camera tilts up
    "zoom_in": f"zoompan=z='1+0.01*on':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d=1:s={W}x{H}:fps={FPS}",
    "zoom_out": f"zoompan=z='1.6-0.01*on':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d=1:s={W}x{H}:fps={FPS}",
    "blurred": _crop("100+25*t", "360") + ",gblur=sigma=3",
    "texted": _crop("100+25*t", "360") + "," + _text("BURNED IN SUBTITLE", "h-50") + ","
              + _text("second line here", "h-25"),
    "black": None,
}


def _make(path: Path, vf: str | None, fps: int = FPS, drop_every_third: bool = False) -> None:
    src = (["-f", "lavfi", "-i", f"color=black:size={W}x{H}:rate={fps}"] if vf is None else
           ["-f", "lavfi", "-i", CANVAS.format(fps=fps), "-vf", vf])
    # Variable frame rate like psd_goldeneye-vfr-drop3: every third frame dropped, timestamps kept.
    rate = (["-fps_mode", "passthrough"] if drop_every_third else ["-r", str(fps)])
    if drop_every_third:
        src[-1] += r",select='not(eq(mod(n\,3)\,2))'"
    run_ffmpeg([*src, "-t", str(SECONDS), *rate, "-pix_fmt", "yuv420p", "-c:v", "libx264",
                "-preset", "ultrafast", "-crf", "18", "-y", str(path)], timeout_s=120, whitelist=None)


def _score(path, config: ScoreConfig | None = None, size=None) -> dict:
    signals = FrameSignals(config)
    for frame in iter_frames(str(path), size=size):
        signals.add(frame)
    w, h = size or (W, H)
    return signals.clip_scores(0, signals.num_frames, w, h)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, dict]:
    """Scores of every synthetic clip (each made with ffmpeg lavfi, 2 s, 320x240, 25 fps)."""
    if not FONT.exists():
        pytest.skip(f"font {FONT} missing: install fonts-dejavu-core for the drawtext clip")
    d = tmp_path_factory.mktemp("synth")
    out = {}
    for name, vf in CLIPS.items():
        _make(d / f"{name}.mp4", vf)
        out[name] = _score(d / f"{name}.mp4")
    # The slow pan again at twice the frame rate: motion is per second, so it must read the same.
    _make(d / "pan_slow_50fps.mp4", CLIPS["pan_slow"], fps=50)
    out["pan_slow_50fps"] = _score(d / "pan_slow_50fps.mp4")
    _make(d / "pan_slow_vfr.mp4", CLIPS["pan_slow"], drop_every_third=True)
    out["pan_slow_vfr"] = _score(d / "pan_slow_vfr.mp4")
    out["pan_slow_every_frame"] = _score(d / "pan_slow.mp4", PRESETS["debug"]())
    out["pan_slow_fast_preset"] = _score(d / "pan_slow.mp4", PRESETS["fast"]())
    out["_dir"] = d
    return out


def test_keys_are_the_schema_score_columns(synth):
    assert set(synth["still"]) == set(SCORE_COLUMNS) == {f.name for f in CLIP_SCORES}
    conform([{"clip_id": "c", "video_id": "v", "keep": True, **synth["still"]}], "clips")


def test_motion_is_in_frame_diagonals_per_second_and_ordered(synth):
    # Known speeds: 25 and 75 px/s over a 400 px diagonal.
    assert synth["pan_slow"]["motion_mean"] == pytest.approx(25 / DIAG, rel=0.2)
    assert synth["pan_fast"]["motion_mean"] == pytest.approx(75 / DIAG, rel=0.2)
    assert synth["tilt"]["motion_mean"] == pytest.approx(50 / DIAG, rel=0.2)
    assert synth["still"]["motion_mean"] < 0.002
    for key in ("motion_mean", "motion_p90", "frame_diff_mean"):
        assert synth["still"][key] < synth["pan_slow"][key] < synth["pan_fast"][key], key


def test_motion_does_not_depend_on_frame_rate_or_sampling(synth):
    slow = synth["pan_slow"]["motion_mean"]
    assert synth["pan_slow_50fps"]["motion_mean"] == pytest.approx(slow, rel=0.15)
    assert synth["pan_slow_vfr"]["motion_mean"] == pytest.approx(slow, rel=0.15)
    assert synth["pan_slow_vfr"]["frame_diff_mean"] == pytest.approx(synth["pan_slow"]["frame_diff_mean"], rel=0.3)
    assert synth["pan_slow_every_frame"]["motion_mean"] == pytest.approx(slow, rel=0.15)
    assert synth["pan_slow_fast_preset"]["motion_mean"] == pytest.approx(slow, rel=0.2)
    assert synth["pan_slow_fast_preset"]["camera_motion"] == "pan_right"


@pytest.mark.parametrize("name, label", [("still", "static"), ("pan_slow", "pan_right"), ("pan_fast", "pan_right"),
                                         ("pan_back", "pan_left"), ("tilt", "tilt_up"), ("zoom_in", "zoom_in"),
                                         ("zoom_out", "zoom_out"), ("black", "static")])
def test_camera_motion_label(synth, name, label):
    assert synth[name]["camera_motion"] == label


def test_black_clip_is_black_flat_and_filtered_as_dark(synth):
    black = synth["black"]
    assert black["brightness_mean"] < 0.01 and black["black_frame_frac"] == 1.0 and black["flat_frame_frac"] == 1.0
    assert synth["pan_slow"]["black_frame_frac"] == 0.0 and synth["pan_slow"]["flat_frame_frac"] == 0.0
    rows = [{"clip_id": n, "video_id": "v", "keep": True, "start_s": 0.0, "end_s": 2.0, "duration_s": 2.0,
             "width_px": W, "height_px": H, **synth[n]} for n in ("black", "pan_slow")]
    out = apply_filter(conform(rows, "clips"), FILTER_PRESETS["default"]())
    reasons = out.column("reject_reason").to_pylist()
    assert "dark" in reasons[0].split(";") and reasons[1] is None


def test_sharpness_orders_sharp_above_blurred_copy(synth):
    assert synth["pan_slow"]["sharpness"] > 5 * synth["blurred"]["sharpness"]


def test_burned_in_text_raises_text_area(synth):
    assert synth["pan_slow"]["text_area_frac"] < 0.005
    assert synth["texted"]["text_area_frac"] > 0.01 + synth["pan_slow"]["text_area_frac"]


def test_clip_spans_do_not_mix_across_a_cut(synth):
    """Frames of a still shot then a fast pan fed as one video: each span scores only its own frames."""
    d = synth["_dir"]
    signals = FrameSignals()
    n = 0
    for shot in ("still", "pan_fast"):
        for f in iter_frames(str(d / f"{shot}.mp4")):
            signals.add(Frame(n, n / FPS, f.rgb))
            n += 1
    half = n // 2
    first, second = signals.clip_scores(0, half, W, H), signals.clip_scores(half, n, W, H)
    assert first["motion_mean"] == pytest.approx(synth["still"]["motion_mean"], abs=0.002)
    assert second["motion_mean"] == pytest.approx(synth["pan_fast"]["motion_mean"], rel=0.15)
    assert first["camera_motion"] == "static" and second["camera_motion"] == "pan_right"
    empty = signals.clip_scores(n, n + 5, W, H)
    assert empty["motion_mean"] is None and empty["aspect_ratio"] == pytest.approx(W / H)


def test_odd_frames_do_not_break_scoring():
    """Slivers, a size change mid-stream, repeated timestamps and frames without an index still score."""
    rng = np.random.default_rng(0)
    signals = FrameSignals()
    sizes = [(6, 256)] * 5 + [(144, 256)] * 10 + [(120, 160)] * 10
    for i, (h, w) in enumerate(sizes):
        pts = (i // 2) / 25  # every timestamp twice
        signals.add(Frame(None, pts, rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
    scores = signals.clip_scores(0, len(sizes), 256, 144)
    assert signals.num_frames == len(sizes)
    assert scores["brightness_mean"] == pytest.approx(0.5, abs=0.05)
    assert scores["motion_mean"] is not None and scores["text_area_frac"] is not None


def test_config_validation_names_the_fix():
    with pytest.raises(ValueError, match="flow_long_side"):
        ScoreConfig(flow_long_side=1000)
    with pytest.raises(ValueError, match="text_fps"):
        ScoreConfig(text_fps=-1)


def _real(footage_dir: Path, name: str, end_s: float | None = None, start_s: float | None = None) -> dict:
    path = str(footage_dir / name)
    info = stream_info(path)
    size = fit_size(info.width_px, info.height_px, max_side=256)
    signals = FrameSignals()
    for i, f in enumerate(iter_frames(path, size=size, start_s=start_s, end_s=end_s)):
        signals.add(Frame(i, f.pts_s, f.rgb))
    return signals.clip_scores(0, signals.num_frames, *size)


def test_real_footage_motion_ordering(footage_dir):
    cockatoo = _real(footage_dir, "iio_cockatoo.mp4", end_s=5.0)
    chaplin = _real(footage_dir, "mpy_chaplin.mp4", end_s=5.0)
    assert cockatoo["motion_mean"] > 3 * chaplin["motion_mean"]
    assert chaplin["motion_mean"] > FILTER_PRESETS["default"]().min_motion, "calm real footage is not frozen"


def test_real_footage_black_opening_is_dark_and_fade_end_is_not(footage_dir):
    # psd_testvideo: frames 0-29 (~1 s) are black; the next shot (frame 30 on) is a lit leaf.
    rows = [
        {**_real(footage_dir, "psd_testvideo.mp4", end_s=1.0), "clip_id": "opening", "width_px": 1280, "height_px": 720},
        {**_real(footage_dir, "psd_testvideo.mp4", start_s=1.2, end_s=3.0), "clip_id": "leaf", "width_px": 1280,
         "height_px": 720},
        # one clip for the whole of a shot that fades to black over its last ~2 s: not dark overall
        {**_real(footage_dir, "mpy_video_with_failing_audio.mp4"), "clip_id": "fade", "width_px": 640, "height_px": 360},
    ]
    table = conform([{**r, "video_id": "v", "keep": True, "duration_s": 3.0} for r in rows], "clips")
    reasons = apply_filter(table, FILTER_PRESETS["default"]()).column("reject_reason").to_pylist()
    assert "dark" in reasons[0].split(";")
    assert "dark" not in (reasons[1] or "") and "dark" not in (reasons[2] or "")


def test_real_footage_subtitle_raises_text_area(footage_dir, tmp_path):
    """A subtitle line drawn over real film is found; the same shot without it reads as (almost) no text."""
    if not FONT.exists():
        pytest.skip(f"font {FONT} missing: install fonts-dejavu-core for drawtext")
    src = str(footage_dir / "mpy_chaplin.mp4")
    scores = {}
    for name, extra in (("plain", ""), ("subtitled", "," + _text("I told you not to come back here", "h-40")
                                          .replace("fontsize=22", "fontsize=28"))):
        out = tmp_path / f"{name}.mp4"
        run_ffmpeg(["-t", "3", "-i", src, "-vf", "scale=640:-2" + extra, "-an", "-c:v", "libx264",
                    "-preset", "ultrafast", "-y", str(out)], timeout_s=120)
        # Through curate's real pass: OCR (the default when installed) reads the sharper copy it builds.
        signals = FrameSignals()
        result = analyse_video(str(out), [signals], long_side_px=256)
        scores[name] = signals.clip_scores(0, result.num_frames, *result.analysis_size)["text_area_frac"]
    assert scores["plain"] < 0.005
    assert scores["subtitled"] > FILTER_PRESETS["default"]().max_text_area > scores["plain"]

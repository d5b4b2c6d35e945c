"""Training shows what the caption says: no silent caption cut, and a long clip's frames span all of it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from rushes.inspect.summary import format_summary, summarize
from rushes.manifests import store
from rushes.manifests.clips import captioned_clips
from rushes.media.frames import iter_frames
from rushes.testing.synth import make_cut_video
from rushes.testing.tiny import save_tiny_text_encoder
from rushes.testing.train_manifests import Clip, write_manifest
from rushes.testing.train_shards import encode_in_process
from rushes.train.config import preset
from rushes.train.data import frame_times, prepare
from rushes.train.encode import decode_batch, plan_encode
from rushes.train.encoders import TextEncoder, default_text_tokens
from rushes.train.loop import train
from rushes.train.model import unpatchify
from rushes.train.plan import with_text_budget

LONG = ("a red kite rises over a windy beach while two children run after it along the wet sand, the camera pans "
        "left to follow them past a lifeguard tower, waves break in white lines and the low sun turns the water gold")


def test_the_caption_budget_is_the_encoders_default_unless_set(tiny_t5, tmp_path):
    clip = save_tiny_text_encoder(tmp_path / "clip", kind="clip")
    cfg = preset("tiny").with_overrides(data={"text_encoder": tiny_t5})
    assert cfg.data.max_text_tokens is None  # no number until the encoder is known
    assert with_text_budget(cfg).data.max_text_tokens == default_text_tokens("t5") == 300
    assert with_text_budget(cfg.with_overrides(data={"max_text_tokens": 40})).data.max_text_tokens == 40
    clip_cfg = cfg.with_overrides(data={"text_encoder": clip, "max_text_tokens": 500})
    assert with_text_budget(clip_cfg).data.max_text_tokens == 77  # CLIP's position table bounds it
    assert default_text_tokens("umt5") == 512  # Wan's text encoder
    enc = TextEncoder(tiny_t5)  # the default budget keeps a dense caption whole
    emb, mask = enc.encode([LONG])
    assert int(mask.sum()) == enc.token_counts([LONG])[0] > 64  # the old fixed cut (64) would have lost its end


@pytest.fixture(scope="module")
def captioned_out(tmp_path_factory):
    """OUT with three clips: two with captions longer than 16 tokens of the tiny tokenizer, one short."""
    root = tmp_path_factory.mktemp("budget")
    v = make_cut_video(root / "src.mp4", [1.0, 1.0, 1.0], fps=8, size=(48, 32))
    return write_manifest(root / "out", [Clip(v.path, 0.0, 1.0, 48, 32, LONG),
                                         Clip(v.path, 1.0, 2.0, 48, 32, LONG.upper()),
                                         Clip(v.path, 2.0, 3.0, 48, 32, "a dog")])


@pytest.mark.parametrize("encoded", [False, True], ids=["on-the-fly", "encodings"])
def test_every_caption_cut_to_the_budget_is_counted_in_the_log_summary_and_inspect(captioned_out, tiny_t5,
                                                                                  tmp_path, encoded):
    out = shutil.copytree(captioned_out, tmp_path / "out")
    cfg = preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "max_text_tokens": 16, "max_frames": 4,
                                              "clip_tokens": 128, "batch_tokens": 512},
                                        train={"steps": 1, "val_every": 100})
    if encoded:
        encode_in_process(out, cfg)
    said = []
    result = train(out, tmp_path / "run", cfg, echo=said.append)
    assert (result.captions_over_budget, result.caption_token_budget) == (2, 16)
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert (first["captions_over_budget"], first["caption_token_budget"]) == (2, 16)
    assert any("2 of 3 captions longer than the 16-token budget" in s for s in said)
    entry = store.read_summary(out)["train"]
    assert (entry["captions_over_budget"], entry["caption_token_budget"]) == (2, 16)
    assert "captions cut to the 16-token budget (train): 2 of 3" in format_summary(summarize(out))
    if encoded:
        assert store.read_summary(out).get("encode") is None  # encode_in_process writes no summary; train read
        # the counts from the shards' caption_tokens column


def _time_ramp(path, seconds: int, fps: int):
    """A video of ``seconds`` at ``fps`` whose luma rises with time."""
    src = f"color=black:size={{w}}x{{h}}:rate={{fps}},geq=lum='30+200*T/{seconds}':cb=128:cr=128"
    return make_cut_video(path, [float(seconds)], fps=fps, size=(64, 48), sources=[src])


def _shown_times(video_path, frames: np.ndarray) -> list[float]:
    """The PTS of the source frame each of ``frames`` (T, H, W, 3) uint8 is: the frame of equal size with the
    nearest mean brightness (the luma ramp makes every frame's brightness distinct)."""
    h, w = frames.shape[1:3]
    table = [(f.pts_s, f.rgb.astype(np.float64).mean()) for f in iter_frames(video_path, size=(w, h))]
    pts, means = np.array([t for t, _ in table]), np.array([m for _, m in table])
    assert np.all(np.diff(means) > 0.5), "the ramp must make every frame distinct"
    return [float(pts[np.argmin(np.abs(means - f.astype(np.float64).mean()))]) for f in frames]


def _check_span(times: list[float], start: float, end: float, n: int, fps: float, src_fps: float) -> None:
    """Every frame lies inside [start, end) and the frames cover it: each stands for one step of the span (the
    training rate's period; span / n when the span holds more than n frames at that rate), consecutive frames
    are one step apart, and at most one step is left at either end (one source frame of slack: a frame is shown
    from its PTS on)."""
    slack = 1.0 / src_fps + 1e-6
    step = (end - start) / n if int((end - start) * fps + 1e-6) > n else 1.0 / fps
    assert len(times) == n
    assert all(start - slack <= t < end for t in times), (times, start, end)
    assert times[0] - start <= step and end - times[-1] <= step + slack, (times, start, end)
    assert all(abs((b - a) - step) <= slack for a, b in zip(times, times[1:])), (times, step)


def test_every_training_sample_lies_inside_its_captioned_span_and_covers_it(tiny_t5, tmp_path):
    fps_src = 8  # 80 frames over 200 luma levels: every frame distinct
    v = _time_ramp(tmp_path / "ramp.mp4", 10, fps_src)
    spans = [(0.5, 9.5), (2.0, 3.0), (4.0, 4.55), (6.0, 9.9)]  # 72 frames at 8 fps; 8; 4; 31
    out = write_manifest(tmp_path / "out", [Clip(v.path, a, b, 64, 48, f"span {a}-{b}") for a, b in spans])
    cfg = preset("tiny").with_overrides(data={"text_encoder": tiny_t5})  # 8 fps, at most 8 frames
    d, patch = cfg.data, cfg.model.patch_size
    sources = captioned_clips(out)
    prepared = prepare(sources, d, patch, tmp_path / "cache", lambda: TextEncoder(tiny_t5), lambda: None)
    assert not prepared.skipped
    for src, ex in zip(sources, prepared.examples):
        video = unpatchify(ex.tokens, ex.grid, patch, 3)  # (3, T, H, W) in [-1, 1]: what the model trains on
        rgb = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()
        times = _shown_times(v.path, rgb)
        _check_span(times, src.start_s, src.end_s, rgb.shape[0], d.fps, fps_src)
    # `rushes encode` decodes the same frames
    frames = decode_batch(plan_encode(out, d, tmp_path / "enc").tasks, d, patch).to_pylist()
    for src, row in zip(sources, frames):
        rgb = np.frombuffer(row["frames"], np.uint8).reshape(row["frames_shape"])
        _check_span(_shown_times(v.path, rgb), src.start_s, src.end_s, rgb.shape[0], d.fps, fps_src)


@pytest.mark.parametrize("start,end,frames,fps", [(0.0, 60.0, 8, 8.0), (1.0, 2.0, 8, 8.0), (3.0, 3.4, 3, 8.0),
                                                  (0.0, 1.0, 5, 8.0), (0.0, 12.0, 81, 16.0)])
def test_frame_times_cover_the_span_at_the_training_rate_or_below(start, end, frames, fps):
    times = frame_times(start, end, frames, fps)  # (0, 1, 5 at 8 fps): a causal VAE's 1 + 4k frames of 8
    _check_span(times, start, end, frames, fps, src_fps=1e9)
    assert times == sorted(times)


def test_window_captions_train_each_on_its_own_frames(tiny_t5, tmp_path):
    """`--caption-level window`: a clip captioned per window (`rushes caption --window-s`) gives one example per
    window, whose frames lie inside that window and cover it, under that window's caption; from a source span and
    from an encoded clip file alike, in training and in `rushes encode`. A clip's windows stay on one side of the
    validation split, and a window outside its clip is refused, naming both."""
    from rushes.manifests.clips import window_of
    from rushes.testing.grey_clips import cut_clip_file
    from rushes.train.data import split_validation

    fps_src = 8
    v = _time_ramp(tmp_path / "ramp.mp4", 12, fps_src)
    out = tmp_path / "out"
    cut_clip_file(v.path, out / "media" / "c1.mp4", 6.0, 12.0)
    write_manifest(out, [Clip(v.path, 0.0, 6.0, 64, 48, "the first six seconds"),
                         Clip(v.path, 6.0, 12.0, 64, 48, "the last six seconds", clip_path="media/c1.mp4"),
                         Clip(v.path, 1.0, 2.0, 64, 48, "a clip without windows")])
    windows = {"clip0000": [(0.0, 3.0), (3.0, 6.0)], "clip0001": [(6.0, 8.5), (8.5, 12.0)]}
    store.write_part(out, "captions", [
        {"caption_id": f"w{cid}{a}", "clip_id": cid, "caption": f"window {a}-{b}", "status": "ok",
         "created_at": store.now_utc(), "window_start_s": a, "window_end_s": b}
        for cid, spans in windows.items() for a, b in spans], part_name="part-1")

    assert [c.clip_id for c in captioned_clips(out)] == ["clip0000", "clip0001", "clip0002"]
    win = captioned_clips(out, level="window")
    assert [c.clip_id for c in win] == ["clip0000@0.000-3.000", "clip0000@3.000-6.000", "clip0001@6.000-8.500",
                                        "clip0001@8.500-12.000", "clip0002"]
    assert [c.caption for c in win[:4]] == ["window 0.0-3.0", "window 3.0-6.0", "window 6.0-8.5", "window 8.5-12.0"]
    assert [c.parent for c in win] == ["clip0000", "clip0000", "clip0001", "clip0001", None]
    assert len(captioned_clips(out, level="both")) == 7
    cfg = preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "caption_level": "window"})
    d, patch = cfg.data, cfg.model.patch_size
    prepared = prepare(win, d, patch, tmp_path / "cache", lambda: TextEncoder(tiny_t5), lambda: None)
    assert not prepared.skipped and [e.caption for e in prepared.examples] == [c.caption for c in win]

    def shown(rgb):
        return _shown_times(v.path, rgb)

    for src, ex in zip(win, prepared.examples):
        video = unpatchify(ex.tokens, ex.grid, patch, 3)
        rgb = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()
        _check_span(shown(rgb), src.source_start_s, src.source_start_s + src.duration_s, rgb.shape[0], d.fps,
                    fps_src)
    tasks = plan_encode(out, d, tmp_path / "enc").tasks
    assert tasks.column("clip_id").to_pylist() == [c.clip_id for c in win]
    for src, row in zip(win, decode_batch(tasks, d, patch).to_pylist()):
        rgb = np.frombuffer(row["frames"], np.uint8).reshape(row["frames_shape"])
        _check_span(shown(rgb), src.source_start_s, src.source_start_s + src.duration_s, rgb.shape[0], d.fps,
                    fps_src)

    train_set, val = split_validation(prepared.examples, 1)
    assert {e.clip_id.split("@")[0] for e in train_set}.isdisjoint({e.clip_id.split("@")[0] for e in val}) and val
    outside = window_of(win[-1], 0.5, 3.0, "before the clip")
    assert outside.refused and "clip0002" in outside.refused and "[0.5, 3.0)" in outside.refused

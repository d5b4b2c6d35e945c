"""The transformers backend and the adapter, in process: what reaches the model, and per-clip failures."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pytest
import spy
from rushes.testing.grey_clips import level_at

from rushes.caption.adapter import FRAMES_SCHEMA, CaptionActor, decode_batch
from rushes.caption.captioner import ModelNotFoundError, frame_spec, load_processor, resolve_model
from rushes.caption.config import preset
from rushes.caption.frames import ClipFrames, FrameSpec, frame_times


def _tasks(video, spans, path=None) -> pa.Table:
    return pa.Table.from_pylist([
        {"clip_id": f"clip-{a}-{b}", "path": path or str(video), "offset_s": 0.0, "start_s": float(a),
         "end_s": float(b), "width_px": 96, "height_px": 64} for a, b in spans])


@pytest.fixture(scope="module")
def qwen_cfg(tiny_vlms):
    return preset("debug", model=str(tiny_vlms["qwen2_5_vl"]))


def test_resolve_model_pins_a_local_folder_by_its_weights(tmp_path, tiny_vlms, qwen_cfg):
    first = resolve_model(qwen_cfg)
    assert first == resolve_model(qwen_cfg)
    assert first.captioner.startswith(str(tiny_vlms["qwen2_5_vl"]) + "@") and first.load_revision is None
    copy = tmp_path / "finetuned"
    shutil.copytree(tiny_vlms["qwen2_5_vl"], copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one weight changes
    weights.write_bytes(bytes(data))
    other = resolve_model(preset("debug", model=str(copy)))
    assert other.captioner.split("@")[1] != first.captioner.split("@")[1]
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model(preset("debug", model=str(tmp_path)))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(preset("debug", model=str(tmp_path / "missing")))


def test_frame_spec_follows_the_processor(tiny_vlms):
    qwen = preset("default", model=str(tiny_vlms["qwen2_5_vl"]))
    smol = preset("default", model=str(tiny_vlms["smolvlm"]))
    assert frame_spec(load_processor(resolve_model(qwen), qwen), qwen) == FrameSpec(max_pixels=56 * 56)
    assert frame_spec(load_processor(resolve_model(smol), smol), smol).max_side == 32


def test_generate_batches_video_inputs_in_order(grey_video, qwen_cfg):
    cap = spy.make_spy()(qwen_cfg, resolve_model(qwen_cfg))
    assert cap.video_mode and cap.device == "cpu" and str(cap.dtype) == "torch.float32"
    frames = decode_batch(_tasks(grey_video, [(0, 2), (6, 10), (2, 3)]), FrameSpec(max_side=64), 4, None)
    from rushes.caption.adapter import frames_from_row

    clips = [frames_from_row(r) for r in frames.to_pylist()]
    clips[0] = ClipFrames(rgb=clips[0].rgb[:2], times_s=clips[0].times_s[:2])  # a shorter prompt first
    expected = [[level_at(t) for t in c.times_s] for c in clips]
    gens = cap.generate(clips, "Describe this video.")
    call = cap.calls[-1]
    assert call["levels"] == expected
    assert call["shapes"] == [[2, 42, 64, 3], [4, 42, 64, 3], [4, 42, 64, 3]]
    assert call["texts"][0].endswith("<|vision_end|>Describe this video.<|im_end|>\n<|im_start|>assistant\n")
    # Each result belongs to its own clip: its prompt length is that clip's alone (the padded batch is longer).
    alone = [int(cap.build_inputs([c], "Describe this video.")["input_ids"].shape[1]) for c in clips]
    assert alone[0] < alone[1] == alone[2]
    assert [g.input_tokens for g in gens] == alone
    assert len(gens) == 3 and all(0 < g.output_tokens <= 16 for g in gens)


def test_families_without_video_input_get_frames_as_images(grey_video, qwen_cfg):
    cap = spy.make_spy()(qwen_cfg, resolve_model(qwen_cfg))
    cap.video_mode = False  # what a processor without a video processor gets
    frames = decode_batch(_tasks(grey_video, [(0, 2), (4, 6)]), FrameSpec(max_side=64), 4, None)
    from rushes.caption.adapter import frames_from_row

    gens = cap.generate([frames_from_row(r) for r in frames.to_pylist()], "Describe.")
    call = cap.calls[-1]
    assert all(t.count("<|image_pad|>") == 4 for t in call["texts"])
    assert "image_grid_thw" in call["tensor_shapes"] and len(gens) == 2
    assert call["levels"] == [[10, 10, 30, 30], [90, 90, 110, 110]]


def test_actor_halves_batches_on_oom_and_records_per_clip_failures(tmp_path, grey_video, tiny_vlms, qwen_cfg):
    log = tmp_path / "spy.jsonl"
    cfg = preset("debug", model=str(tiny_vlms["qwen2_5_vl"]), batch_size=4, retry_flagged=False)
    actor = CaptionActor(cfg, resolve_model(cfg), "dense-v1", "cfg", {"rushes": "x"},
                         captioner_cls=spy.make_spy(log, oom_above=1, fail_level=130))
    spans = [(0, 2), (2, 4), (4, 6), (6, 8)]
    frames = decode_batch(_tasks(grey_video, spans), FrameSpec(max_side=64), 4, None)
    missing = decode_batch(_tasks(grey_video, [(8, 10)], path=str(tmp_path / "gone.mp4")), FrameSpec(64), 4, None)
    assert missing.column("error_message")[0].as_py().startswith("clip clip-8-10: cannot decode")
    rows = actor(pa.concat_tables([frames, missing]).cast(FRAMES_SCHEMA)).to_pylist()
    assert [r["clip_id"] for r in rows] == [f"clip-{a}-{b}" for a, b in [*spans, (8, 10)]]
    by_id = {r["clip_id"]: r for r in rows}
    assert by_id["clip-6-8"]["error_stage"] == "generate" and "clip-6-8" in by_id["clip-6-8"]["error_message"]
    assert by_id["clip-8-10"]["error_stage"] == "frames"
    for a, b in spans[:3]:
        row = by_id[f"clip-{a}-{b}"]
        assert row["status"] == "ok" and row["caption"].startswith(str([level_at(t) for t in frame_times(a, b, 4)]))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ooms = [r["oom"] for r in records if "oom" in r]
    assert ooms == [4, 2, 2], "a batch of 4 is retried as 2+2, then as single clips"

"""The code around vLLM's offline engine, with a fake of the ``vllm`` API (vllm itself needs a CUDA GPU and its own
torch, so it is not installed here): what reaches ``LLM`` and ``LLM.generate``, and how its outputs become rows.
Without vllm, ``--engine vllm`` stops at once naming the package."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pytest
from rushes.testing.grey_clips import level_at, make_run

from rushes.caption.adapter import CaptionActor, decode_batch
from rushes.caption.captioner import resolve_model
from rushes.caption.config import preset
from rushes.caption.engine import EngineUnavailableError, check_engine
from rushes.caption.frames import FrameSpec, frame_times, frames_sha256
from rushes.manifests import store


@dataclass
class _Completion:
    text: str
    token_ids: list
    finish_reason: str


@dataclass
class _RequestOutput:
    prompt_token_ids: list
    outputs: list = field(default_factory=list)


def _fake_vllm(calls: list) -> types.ModuleType:
    """A ``vllm`` module with the parts of the API the engine uses: LLM(...), LLM.generate, SamplingParams."""
    mod = types.ModuleType("vllm")
    mod.__version__ = "0.0.fake"

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            calls.append({"init": kw})

        def generate(self, prompts, params, use_tqdm=True):
            calls.append({"prompts": prompts, "params": params.kw})
            outs = []
            for p in prompts:
                frames, _meta = p["multi_modal_data"]["video"][0]
                levels = [int(round(float(f.mean()) / 10.0) * 10) for f in frames]
                finish = "length" if levels[0] == 90 else "stop"  # span (4, 6) hits the token limit
                outs.append(_RequestOutput(list(range(37)), [_Completion(f"{levels} a grey card", [1, 2, 3], finish)]))
            return outs

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    return mod


def _frames(video, spans):
    tasks = pa.Table.from_pylist([
        {"clip_id": f"clip-{a}-{b}", "path": str(video), "offset_s": 0.0, "start_s": float(a), "end_s": float(b),
         "width_px": 96, "height_px": 64} for a, b in spans])
    return decode_batch(tasks, FrameSpec(max_side=64), 4, None)


def test_vllm_engine_sends_each_clip_its_own_frames_through_the_chat_template(grey_video, tiny_vlms, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(calls))
    cfg = preset("debug", model=str(tiny_vlms["qwen2_5_vl"]), engine="vllm", retry_flagged=False, seed=4,
                 vllm_gpu_memory_utilization=0.45)
    resolved = resolve_model(cfg)
    spans = [(4, 6), (0, 2), (8, 10)]
    frames = _frames(grey_video, spans)

    rows = CaptionActor(cfg, resolved, "dense-v1", "cfg", {})(frames).to_pylist()

    init = calls[0]["init"]
    assert init["model"] == resolved.load_name and init["limit_mm_per_prompt"] == {"video": 1}
    assert init["seed"] == 4 and init["gpu_memory_utilization"] == 0.45 and init["dtype"] == "auto"
    call = calls[1]
    assert call["params"] == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 16, "seed": 4}
    for (a, b), req, row in zip(spans, call["prompts"], rows):
        assert req["prompt"].count("<|video_pad|>") == 1 and "Describe this video clip in detail" in req["prompt"]
        assert req["prompt"].endswith("<|im_start|>assistant\n")
        assert req["mm_processor_kwargs"] == {"do_sample_frames": False}
        video, meta = req["multi_modal_data"]["video"][0]
        assert frames_sha256(video) == row["frames_sha256"], "the row records the frames vLLM was given"
        assert meta["fps"] == pytest.approx(2.0) and meta["total_num_frames"] == 4
        assert row["caption"].startswith(str([level_at(t) for t in frame_times(a, b, 4)]))
        assert row["engine"] == "vllm" and row["engine_version"] == "vllm 0.0.fake"
        assert row["input_tokens"] == 37 and row["output_tokens"] == 3
    assert [r["flag_truncated"] for r in rows] == [True, False, False]
    assert [r["caption_flags"] for r in rows][0].startswith("truncated")


def test_families_without_a_video_processor_get_images(grey_video, tiny_vlms, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(calls))
    from rushes.caption.vllm_engine import VllmCaptioner

    cfg = preset("debug", model=str(tiny_vlms["qwen2_5_vl"]), engine="vllm")
    cap = VllmCaptioner(cfg, resolve_model(cfg))
    cap.video_mode = False
    from rushes.caption.adapter import frames_from_row

    clip = frames_from_row(_frames(grey_video, [(0, 2)]).to_pylist()[0])
    req = cap.request(clip, "Describe.")
    assert req["prompt"].count("<|image_pad|>") == 4 and len(req["multi_modal_data"]["image"]) == 4
    assert all(np.array_equal(a, b) for a, b in zip(req["multi_modal_data"]["image"], clip.rgb))


def test_without_vllm_the_run_stops_at_once_naming_the_package(tmp_path, grey_video, tiny_vlms, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` sees where it is not installed
    cfg = preset("debug", model=str(tiny_vlms["qwen2_5_vl"]), engine="vllm")
    with pytest.raises(EngineUnavailableError, match="pip install vllm"):
        check_engine(cfg)
    from rushes.cli import main

    out = tmp_path / "run"
    make_run(out, grey_video, [(0, 2)])
    assert main(["caption", str(out), "--engine", "vllm", "--model", str(tiny_vlms["qwen2_5_vl"])]) == 2
    err = capsys.readouterr().err
    assert "--engine vllm needs the vllm package" in err and "pip install vllm" in err
    assert not store.part_paths(out, "captions")

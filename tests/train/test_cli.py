"""`rushes train` from a manifest dir (with resume and dry run) and `rushes sample` writing a playable MP4."""

from __future__ import annotations

import argparse
import json

import av
import pytest

from rushes.cli import build_parser, main


def test_train_then_sample_from_the_command_line(synth_out, tiny_t5, tmp_path, capsys):
    run = tmp_path / "run"
    common = [str(synth_out), "--run", str(run), "--preset", "tiny", "--text-encoder", tiny_t5,
              "--max-frames", "4", "--clip-tokens", "128", "--batch-tokens", "256", "--log-every", "1"]
    assert main(["train", *common, "--steps", "2", "--dry-run"]) == 0
    assert "3 captioned kept clip(s)" in capsys.readouterr().out and not run.exists()
    assert main(["train", *common, "--steps", "2", "--progress-every", "0"]) == 0
    out = capsys.readouterr().out  # not a terminal: a progress line per --progress-every seconds (0: every step)
    assert [ln.split(",")[0] for ln in out.splitlines() if ln.startswith("train progress:")] == \
        ["train progress: step 1/2", "train progress: step 2/2"]
    assert main(["train", *common, "--steps", "3"]) == 0  # same run dir: resumes at step 2
    out = capsys.readouterr().out
    assert "resumed from" in out and "trained steps 2 -> 3" in out
    assert "train progress: step 3/3," in out and "ETA 0m00s" in out
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 3

    video = tmp_path / "s.mp4"
    assert main(["sample", str(run), "--prompt", "vertical colour bars", "--frames", "6", "--size", "24x40",
                 "--steps", "3", "--out", str(video)]) == 0
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    assert len(frames) == 6 and frames[0].shape == (24, 40, 3)

    assert main(["sample", str(run), "--prompt", "x", "--size", "25x40", "--out", str(video)]) == 2
    assert "multiple of 4" in capsys.readouterr().err


def test_errors_go_to_stderr_with_exit_2(synth_out, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--fps", "-1"]) == 2
    out = capsys.readouterr()
    assert "argument --fps: must be in (0, 240], got -1.0" in out.err and out.out == ""
    assert main(["train", str(tmp_path / "empty"), "--run", str(run), "--dry-run"]) == 2
    out = capsys.readouterr()
    assert "rushes train:" in out.err and "captions manifest" in out.err and out.out == ""
    assert main(["train", str(synth_out), "--run", str(run), "--parallel", "fsdp"]) == 2
    out = capsys.readouterr()
    assert "--parallel fsdp needs --workers N" in out.err and not run.exists()
    assert main(["sample", str(tmp_path / "nothing"), "--prompt", "x", "--out", str(tmp_path / "x.mp4")]) == 2
    out = capsys.readouterr()
    assert "not a training run" in out.err and out.out == ""


@pytest.mark.parametrize("command", ["train", "sample"])
def test_help_explains_every_flag_and_its_default(command, capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = action.option_strings[-1]
        assert action.help and len(action.help) > 15, f"{flag} has no explanation"
        entry = " ".join(sub.formatter_class("x")._get_help_string(action).split()) % vars(action)
        assert entry in text, f"{flag}: its help is not shown"
        assert "default" in entry or action.required, f"{flag}: --help does not state its default"
    if command == "train":
        assert "google/t5-v1_1-base" in text and "tiny 200, small 20000" in text  # preset defaults spelled out


def test_train_and_sample_in_latent_space_with_a_video_vae(synth_out, tiny_t5, tmp_path):
    from rushes.testing.tiny import save_tiny_vae

    vae = save_tiny_vae(tmp_path / "wan", kind="wan")  # 4x causal in time, 4x in space, 4 channels
    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--text-encoder", tiny_t5, "--vae", vae,
                 "--max-frames", "5", "--clip-tokens", "64", "--batch-tokens", "256", "--steps", "2"]) == 0
    assert json.loads((run / "config.json").read_text())["model"]["in_channels"] == 4
    video = tmp_path / "latent.mp4"
    assert main(["sample", str(run), "--prompt", "bars", "--frames", "5", "--size", "32x32", "--steps", "2",
                 "--out", str(video)]) == 0
    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (32, 32, 3)
    from PIL import Image

    still = tmp_path / "still.png"
    Image.fromarray(frames[0]).resize((40, 48)).save(still)
    for flags in (["--image", str(still), "--last-image", str(still)], ["--video", str(video), "--extend-s", "0.5"],
                  ["--video", str(video), "--strength", "0.5"]):  # latent frames given: a causal VAE's first one alone
        out = tmp_path / "cond.mp4"
        assert main(["sample", str(run), "--prompt", "bars", "--frames", "5", "--size", "32x32", "--steps", "2",
                     *flags, "--out", str(out)]) == 0, flags
        with av.open(str(out)) as c:
            assert len([f for f in c.decode(video=0)]) == 5
    assert main(["sample", str(run), "--prompt", "bars", "--frames", "4", "--size", "32x32",
                 "--out", str(video)]) == 2  # a causal VAE needs 1 + 4k frames


def test_empty_captions_with_a_tokenizer_that_adds_no_end_token(synth_out, tmp_path):
    # Such a tokenizer gives zero tokens for "", the caption of caption dropout and the default negative prompt.
    from rushes.testing.tiny import save_tiny_text_encoder
    from rushes.train.encoders import TextEncoder

    t5 = save_tiny_text_encoder(tmp_path / "t5", kind="t5", end_token=False)
    assert TextEncoder(t5).tokenizer([""])["input_ids"] == [[]]
    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--text-encoder", t5, "--max-frames", "4",
                 "--clip-tokens", "128", "--batch-tokens", "256", "--steps", "3", "--caption-dropout", "0.9",
                 "--log-every", "1"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 3 and all(0 < v < 10 for v in losses)
    video = tmp_path / "empty.mp4"
    assert main(["sample", str(run), "--prompt", "", "--frames", "2", "--size", "16x16", "--steps", "2",
                 "--out", str(video)]) == 0
    with av.open(str(video)) as c:
        assert len([f for f in c.decode(video=0)]) == 2


@pytest.mark.parametrize("marker, why", [
    ("step-zzz", "not a checkpoint name"), ("step-0000009", "does not exist"),
    ("../../elsewhere/step-0000009", "not a checkpoint name"), ("/etc", "not a checkpoint name"),
])
def test_a_marker_naming_no_checkpoint_is_an_error_never_a_restart(synth_out, tiny_t5, tmp_path, capsys, marker,
                                                                   why):
    run = tmp_path / "run"
    common = [str(synth_out), "--run", str(run), "--preset", "tiny", "--text-encoder", tiny_t5, "--max-frames", "4",
              "--clip-tokens", "128", "--batch-tokens", "256"]
    assert main(["train", *common, "--steps", "2", "--checkpoint-every", "2"]) == 0
    (run / "checkpoints" / "latest").write_text(marker)
    log_before = (run / "log.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", *common, "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert why in err and "step-0000002" in err and "Traceback" not in err, err  # names the one that exists
    assert (run / "log.jsonl").read_text() == log_before, "nothing trained from step 1"
    assert main(["sample", str(run), "--prompt", "x", "--frames", "2", "--size", "16x16", "--steps", "1",
                 "--out", str(tmp_path / "s.mp4")]) == 2
    assert why in capsys.readouterr().err and not (tmp_path / "s.mp4").exists()


def test_a_nan_loss_stops_training_with_exit_2_and_keeps_the_last_good_checkpoint(synth_out, tiny_t5, tmp_path,
                                                                                  capsys, monkeypatch):
    from rushes.train import loop

    calls, real = [], loop.training_loss

    def diverging(*args, **kwargs):  # what a learning rate of 1e30 does by the third step
        loss, parts = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan"), parts) if len(calls) >= 3 else (loss, parts)

    monkeypatch.setattr(loop, "training_loss", diverging)
    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--preset", "tiny", "--text-encoder", tiny_t5,
                 "--max-frames", "4", "--clip-tokens", "128", "--batch-tokens", "256", "--steps", "4",
                 "--checkpoint-every", "2", "--log-every", "1"]) == 2
    err = capsys.readouterr().err
    assert "step 3: the loss is nan" in err and "learning rate" in err, err
    assert (run / "checkpoints" / "latest").read_text() == "step-0000002", "the last good checkpoint is kept"
    assert [json.loads(line).get("step") for line in (run / "log.jsonl").read_text().splitlines()
            if "loss" in line] == [1, 2]


@pytest.mark.parametrize("device, says", [("cuda", "no CUDA device"), ("cuda:3", "no CUDA device"),
                                          ("nosuch", "not a torch device")])
def test_a_device_this_machine_lacks_is_refused_before_any_work(synth_out, tmp_path, capsys, device, says):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the cuda cases are real devices here")
    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--preset", "tiny", "--device", device]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err
    assert not run.exists(), "nothing was written"
    assert main(["sample", str(tmp_path), "--prompt", "x", "--device", device, "--out", str(tmp_path / "s.mp4")]) == 2
    assert says in capsys.readouterr().err


def test_sample_refuses_a_size_that_cannot_fit_and_an_output_over_the_run(synth_out, tiny_t5, tmp_path, capsys):
    import resource

    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--preset", "tiny", "--text-encoder", tiny_t5,
                 "--max-frames", "4", "--clip-tokens", "128", "--batch-tokens", "256", "--steps", "1"]) == 0
    capsys.readouterr()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["sample", str(run), "--prompt", "x", "--frames", "1024", "--size", "4096x4096",
                 "--out", str(tmp_path / "big.mp4")]) == 2
    err = capsys.readouterr().err
    assert "GiB free" in err and "fewer frames or a smaller size" in err, err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2_000_000, "refused before allocating"
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text() / "ema.safetensors"
    weights = ckpt.read_bytes()
    assert main(["sample", str(run), "--prompt", "x", "--frames", "2", "--size", "16x16", "--out", str(ckpt)]) == 2
    assert "own checkpoints/ folder" in capsys.readouterr().err and ckpt.read_bytes() == weights


def test_sample_from_a_still_a_clip_to_extend_and_a_clip_to_edit(synth_out, tiny_t5, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from rushes.media.frames import write_video

    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--preset", "tiny", "--text-encoder", tiny_t5,
                 "--max-frames", "4", "--clip-tokens", "128", "--batch-tokens", "256", "--steps", "1"]) == 0
    rng = np.random.default_rng(0)
    still = tmp_path / "still.png"
    Image.fromarray((rng.random((50, 70, 3)) * 255).astype(np.uint8)).save(still)  # any size: fitted
    clip = tmp_path / "clip.mp4"
    write_video(str(clip), (rng.random((12, 40, 56, 3)) * 255).astype(np.uint8), 8.0)
    common = ["--prompt", "bars", "--frames", "6", "--size", "24x32", "--steps", "2", "--no-visible-watermark"]
    for i, flags in enumerate([["--image", str(still)], ["--image", str(still), "--last-image", str(still)],
                               ["--video", str(clip), "--extend-s", "0.25"],
                               ["--video", str(clip), "--strength", "0.6"]]):
        out = tmp_path / f"o{i}.mp4"
        assert main(["sample", str(run), *common, *flags, "--out", str(out)]) == 0, flags
        with av.open(str(out)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == 6 and frames[0].shape == (24, 32, 3)
    capsys.readouterr()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    for flags, words in [(["--image", str(broken)], "cannot read image"),
                         (["--video", str(broken), "--extend-s", "0.25"], "cannot decode video"),
                         (["--video", str(clip)], "--extend-s S"), (["--strength", "0.5"], "--video")]:
        assert main(["sample", str(run), *common, *flags, "--out", str(tmp_path / "x.mp4")]) == 2, flags
        err = [line for line in capsys.readouterr().err.splitlines() if "C2PA" not in line]  # the signer notice
        assert words in err[-1] and (len(err) == 1 or err[0].startswith("usage:")), err  # a bad combination: usage

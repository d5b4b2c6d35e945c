"""``rushes export``: each format read back by its own reader, the clips are the right spans, names are readable,
exports are atomic and resumable, and bad input is one clear line."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from rushes.export.dest import Destination
from rushes.media.frames import iter_frames
from rushes.testing.curated_run import CAPTIONS, NAMES

KEPT = sorted(NAMES.values())
CLIP_OF = {name: cid for cid, name in NAMES.items()}
# The colour of each span's first frame (the fixture's shots are solid red, blue, green; cb1 is test bars).
COLOUR = {"ca1": 0, "ca2": 2, "cu1": 1}


def _frames(path) -> tuple[int, list]:
    """Decoded frame count of a clip file and the mean RGB of its first frame."""
    frames = list(iter_frames(str(path)))
    return len(frames), frames[0].rgb.reshape(-1, 3).mean(axis=0).tolist()


def _check_clip(path, clip_id: str) -> None:
    """The file is the clip's 2 s span (20 frames at 10 fps) and starts with its shot's picture."""
    n, rgb = _frames(path)
    assert n == 20, f"{path}: {n} frames, expected the 2 s span at 10 fps"
    if clip_id in COLOUR:
        assert max(range(3), key=lambda c: rgb[c]) == COLOUR[clip_id], f"{path} starts with {rgb}: another span"


def test_webdataset_shards_read_by_the_webdataset_package(curated_run, export, tmp_path):
    wds = pytest.importorskip("webdataset", reason="pip install webdataset (the test extra)")
    dest = tmp_path / "wds"
    assert export(curated_run, dest, "--format", "webdataset", "--shard-size", "3") == 0
    assert sorted(p.name for p in dest.iterdir()) == ["export.json", "shard-000000.tar", "shard-000001.tar"]
    record = json.loads((dest / "export.json").read_text())
    assert record["complete"] and record["exported"] == 4 and record["urls"] == "shard-{000000..000001}.tar"
    seen = {}
    for sample in wds.WebDataset(str(dest / record["urls"]), shardshuffle=False):
        assert set(sample) >= {"__key__", "mp4", "txt", "json"}
        seen[sample["__key__"]] = sample
    assert sorted(seen) == KEPT
    for key, sample in seen.items():
        cid = CLIP_OF[key]
        meta = json.loads(sample["json"])
        assert sample["txt"].decode() == CAPTIONS[cid] and meta["caption"] == CAPTIONS[cid]
        assert meta["clip_id"] == cid and meta["fps"] == 10.0 and (meta["width_px"], meta["height_px"]) == (160, 120)
        clip = tmp_path / f"{key}.mp4"
        clip.write_bytes(sample["mp4"])
        _check_clip(clip, cid)
    assert json.loads(seen["beach-va000000_2s00-4s00"]["json"])["source_start_s"] == 2.0


def test_folder_is_what_finetrainers_reads(curated_run, export, tmp_path):
    dest = tmp_path / "folder"
    assert export(curated_run, dest, "--format", "folder") == 0
    videos = (dest / "videos.txt").read_text().splitlines()
    prompts = (dest / "prompts.txt").read_text().splitlines()
    assert videos == [f"videos/{n}.mp4" for n in KEPT] and len(prompts) == len(videos)
    for rel, prompt in zip(videos, prompts):
        cid = CLIP_OF[Path(rel).stem]
        assert prompt == " ".join(CAPTIONS[cid].split())  # one line per caption
        _check_clip(dest / rel, cid)
    assert sorted(p.name for p in dest.iterdir()) == ["export.json", "prompts.txt", "videos", "videos.txt"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_jsonl_read_by_hugging_face_datasets(curated_run, export, tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    dest = tmp_path / fmt
    assert export(curated_run, dest, "--format", fmt, "--where", "motion_mean >= 0.1") == 0
    table = dest / f"metadata.{fmt}"
    rows = datasets.load_dataset("csv" if fmt == "csv" else "json", data_files=str(table), split="train").to_list()
    assert [r["clip_id"] for r in rows] == ["ca2", "cb1", "cu1"]  # in name order; ca1 (motion 0.05) left out
    for r in rows:
        assert r["caption"] == CAPTIONS[r["clip_id"]] and (r["start_s"], r["end_s"]) == (0.0, 2.0)
        assert (r["fps"], r["width_px"], r["height_px"], r["num_frames"]) == (10.0, 160, 120, 20)
        _check_clip(dest / r["path"], r["clip_id"])
    assert rows[0]["source_start_s"] == 2.0 and rows[0]["source"].endswith("/a/beach.mp4")


def test_spans_only_lists_the_source_spans_and_writes_no_clip(curated_run, export, tmp_path):
    dest = tmp_path / "spans"
    assert export(curated_run, dest, "--format", "jsonl", "--spans-only", "--caption-field", "caption_short") == 0
    rows = [json.loads(line) for line in (dest / "metadata.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in dest.iterdir()) == ["export.json", "metadata.jsonl"]
    by_id = {r["clip_id"]: r for r in rows}
    assert by_id["ca2"]["path"].endswith("/a/beach.mp4") and (by_id["ca2"]["start_s"], by_id["ca2"]["end_s"]) == (2, 4)
    assert by_id["ca2"]["caption"] == "A blue field"  # caption_short


def test_an_interrupted_export_continues_and_never_shows_half_a_file(curated_run, export, tmp_path, monkeypatch):
    dest = tmp_path / "resume"
    real_put, puts = Destination.put_file, []

    def put_then_crash(self, local, rel):
        if len(puts) == 2:
            Path(self.path(rel)).with_name(f"_tmp-{Path(rel).name}-dead").write_bytes(b"half")  # a killed copy
            raise KeyboardInterrupt
        puts.append(rel)
        real_put(self, local, rel)

    monkeypatch.setattr(Destination, "put_file", put_then_crash)
    assert export(curated_run, dest, "--format", "folder", "--workers", "1") == 130
    assert sorted(p.name for p in (dest / "videos").iterdir() if not p.name.startswith("_tmp-")) == \
        sorted(Path(p).name for p in puts)
    assert not (dest / "videos.txt").exists() and not json.loads((dest / "export.json").read_text())["complete"]
    inodes = {p.name: p.stat().st_ino for p in (dest / "videos").iterdir()}
    monkeypatch.setattr(Destination, "put_file", real_put)
    assert export(curated_run, dest, "--format", "folder") == 0
    files = {p.name: p.stat().st_ino for p in (dest / "videos").iterdir()}
    assert sorted(files) == [f"{n}.mp4" for n in KEPT]  # the dead temporary is gone
    assert all(files[Path(p).name] == inodes[Path(p).name] for p in puts), "finished clips are not written again"
    assert json.loads((dest / "export.json").read_text())["complete"]
    assert export(curated_run, dest, "--format", "folder") == 0  # a finished export reruns as a no-op


def test_another_export_into_the_same_dest_is_refused(curated_run, export, tmp_path, capsys):
    dest = tmp_path / "one"
    assert export(curated_run, dest, "--format", "csv") == 0
    assert export(curated_run, dest, "--format", "csv", "--where", "motion_mean > 0.2") == 2
    err = capsys.readouterr().err
    assert "holds another export" in err and "samples_hash" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert export(curated_run, other, "--format", "csv") == 2
    assert "is not empty and holds no rushes export" in capsys.readouterr().err


def _copy_run(curated_run, root):
    """A copy of the curated run whose videos manifest names the copied sources."""
    from rushes.manifests import store

    shutil.copytree(curated_run.parent, root)
    run = root / "run"
    videos = store.read(run, "videos").to_pylist()
    for v in videos:
        v["path"] = v["path"].replace(str(curated_run.parent), str(root))
    store.write_part(run, "videos", videos, part_name="part-0")
    return run


def test_a_clip_that_failed_inside_a_written_shard_is_retried_by_the_rerun(curated_run, export, tmp_path):
    """A webdataset shard written without a clip that failed is written again, whole, by the next run."""
    import tarfile

    run = _copy_run(curated_run, tmp_path / "copy")
    source = tmp_path / "copy" / "src" / "été ü.mp4"
    kept = source.with_name("kept.bin")
    source.rename(kept)
    dest = tmp_path / "wds"
    assert export(run, dest, "--format", "webdataset", "--shard-size", "2") == 1
    record = json.loads((dest / "export.json").read_text())
    assert [f["clip_id"] for f in record["failed"]] == ["cu1"] and record["exported"] == 3

    def members():
        return sorted(m for p in sorted(dest.glob("shard-*.tar")) for m in tarfile.open(p).getnames()
                      if m.endswith(".mp4"))

    assert len(members()) == 3
    kept.rename(source)  # the source is back: the rerun writes the shard that lacks it again
    assert export(run, dest, "--format", "webdataset", "--shard-size", "2") == 0
    record = json.loads((dest / "export.json").read_text())
    assert record["failed"] == [] and record["exported"] == 4
    assert members() == [f"{name}.mp4" for name in KEPT]


def test_window_captions_export_as_samples_of_their_own_span(curated_run, export, tmp_path):
    """`--caption-level window`: each captioned window is a sample of its own, cut to its span with its caption,
    from a source video and from curate's clip file alike; a clip without windows is exported whole."""
    import numpy as np

    from rushes.manifests import store

    run = _copy_run(curated_run, tmp_path / "copy")
    windows = {"ca2": [(2.0, 3.0), (3.0, 4.0)], "cb1": [(0.0, 1.0), (1.0, 2.0)]}
    store.write_part(run, "captions", [
        {"caption_id": f"w-{cid}-{a}", "clip_id": cid, "caption": f"{cid} from {a:g} s", "status": "ok",
         "created_at": store.now_utc(), "window_start_s": a, "window_end_s": b}
        for cid, spans in windows.items() for a, b in spans], part_name="part-w")
    dest = tmp_path / "win"
    assert export(run, dest, "--format", "jsonl", "--caption-level", "window") == 0
    rows = {r["clip_id"]: r for r in map(json.loads, (dest / "metadata.jsonl").read_text().splitlines())}
    assert sorted(rows) == ["ca1", "ca2@2.000-3.000", "ca2@3.000-4.000", "cb1@0.000-1.000", "cb1@1.000-2.000",
                            "cu1"]
    assert rows["ca2@3.000-4.000"]["caption"] == "ca2 from 3 s" and rows["ca1"]["caption"] == CAPTIONS["ca1"]
    assert (rows["ca2@3.000-4.000"]["source_start_s"], rows["ca2@3.000-4.000"]["source_end_s"]) == (3.0, 4.0)
    for cid in ("ca2@2.000-3.000", "ca2@3.000-4.000", "cb1@0.000-1.000", "cb1@1.000-2.000"):
        n, rgb = _frames(dest / rows[cid]["path"])
        assert n == 10, (cid, n)  # the window's 1 s at 10 fps, not its clip's 2 s
    _, rgb = _frames(dest / rows["ca2@3.000-4.000"]["path"])
    assert max(range(3), key=lambda c: rgb[c]) == COLOUR["ca2"]
    # The clip file's second window starts with the clip file's frame at 1 s (test bars move: not its first frame).
    clip_file = [f.rgb for f in iter_frames(str(run / "media" / "vb000000" / "cb1.mp4"))]
    second = next(iter(iter_frames(str(dest / rows["cb1@1.000-2.000"]["path"])))).rgb
    diffs = [np.abs(f.astype(float) - second.astype(float)).mean() for f in clip_file]
    assert int(np.argmin(diffs)) == 10, diffs


def test_a_clip_that_cannot_be_cut_fails_alone(curated_run, export, tmp_path, capsys):
    root = tmp_path / "copy"
    run = _copy_run(curated_run, root)
    (root / "src" / "été ü.mp4").unlink()
    dest = tmp_path / "partial"
    assert export(run, dest, "--format", "jsonl") == 1
    err = capsys.readouterr().err
    assert "1 clips failed" in err and "export.json" in err
    record = json.loads((dest / "export.json").read_text())
    assert record["exported"] == 3 and [f["clip_id"] for f in record["failed"]] == ["cu1"]
    assert "été ü.mp4" in record["failed"][0]["error"]
    assert len((dest / "metadata.jsonl").read_text().splitlines()) == 3


def test_bad_sources_and_formats_are_one_line_errors(curated_run, export, tmp_path, capsys):
    assert export(tmp_path / "nope", tmp_path / "d1", "--format", "csv") == 2
    assert "does not exist" in capsys.readouterr().err
    assert export(curated_run, tmp_path / "d2", "--format", "diffusers") == 2
    assert "is a curated run" in capsys.readouterr().err
    assert export(curated_run, tmp_path / "d3", "--format", "folder", "--spans-only") == 2
    assert "--spans-only" in capsys.readouterr().err
    assert export(curated_run, tmp_path / "d4", "--format", "csv", "--where", "no_such_column > 1") == 2
    err = capsys.readouterr().err
    assert "no_such_column" in err and "--where" in err
    assert export(curated_run, curated_run, "--format", "csv") == 2


def _training_run(tmp_path) -> Path:
    run = tmp_path / "train-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    return run


def test_diffusers_format_dispatches_to_the_training_export(export, tmp_path, monkeypatch, capsys):
    run = _training_run(tmp_path)
    monkeypatch.setitem(sys.modules, "rushes.train.export", None)  # as if the module were absent
    assert export(run, tmp_path / "d", "--format", "diffusers") == 2
    err = capsys.readouterr().err
    assert "rushes.train.export" in err and len(err.strip().splitlines()) == 1
    calls = []
    fake = types.ModuleType("rushes.train.export")
    fake.export_diffusers = lambda run_dir, dest, *, weights, lora: calls.append((run_dir, dest, weights, lora))
    monkeypatch.setitem(sys.modules, "rushes.train.export", fake)
    assert export(run, tmp_path / "d", "--format", "diffusers", "--weights", "ema", "--lora", "separate") == 0
    assert calls == [(str(run), str(tmp_path / "d"), "ema", "separate")]
    assert export(run, tmp_path / "d5", "--format", "webdataset") == 2
    assert "is a training run" in capsys.readouterr().err


def test_an_interrupted_rerun_keeps_the_earlier_failures_to_retry(curated_run, export, tmp_path, monkeypatch):
    """A rerun stopped before it rewrote the shard missing a clip still retries that clip the next time; a damaged
    failure list in export.json is read as none rather than crashing."""
    import tarfile

    from rushes.export import formats
    from rushes.export.config import ExportConfig

    run = _copy_run(curated_run, tmp_path / "copy")
    source = tmp_path / "copy" / "src" / "été ü.mp4"
    kept = source.with_name("kept.bin")
    source.rename(kept)
    dest = tmp_path / "wds"
    assert export(run, dest, "--format", "webdataset", "--shard-size", "2") == 1
    kept.rename(source)

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(formats, "_write_units", stop)
        with pytest.raises(KeyboardInterrupt):
            formats.export_curated(run, dest, ExportConfig(format="webdataset", shard_size=2))
    assert export(run, dest, "--format", "webdataset", "--shard-size", "2") == 0
    names = sorted(m for p in dest.glob("shard-*.tar") for m in tarfile.open(p).getnames() if m.endswith(".mp4"))
    assert names == [f"{name}.mp4" for name in KEPT]
    assert formats._earlier_failures({"failed": None}) == {}
    assert formats._earlier_failures({"failed": [{"name": ["x"]}, "junk"]}) == {}

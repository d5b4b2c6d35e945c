"""A generated corpus of short videos with bad inputs mixed in, each case with the outcome ``rushes curate`` owes it.

:func:`make_corpus` writes ``n`` short good videos (lavfi sources, 1-3 s, 96-160 px, H.264/MPEG-4/MPEG-2 in
mp4/mkv/avi/ts) and about 10% bad inputs of every kind issue 12 lists (at least one of each): zero-byte,
truncated, text named ``.mp4``, PNG/JPEG named ``.mp4``, an HLS playlist named ``.mp4`` and a real ``.m3u8``
(named explicitly) and an ffconcat list named ``.mp4``, each pointing at a :class:`Sentinel` FIFO outside the
inputs, a corrupt middle, an audio-only file, ``.txt``/``.json`` files in the folder, a symlinked folder and a
byte-identical copy. :func:`outcomes` turns a finished run's videos rows and the expanded inputs into the actual
outcome of every case, in the same words as :attr:`Case.expect`. ``bench/soak.py`` and
``tests/curate/test_corpus.py`` use both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rushes.curate.inputs import collect_inputs
from rushes.manifests import read
from rushes.media.ffmpeg import run_ffmpeg
from rushes.storage.names import display
from rushes.testing.sentinel import Sentinel

GOOD = [  # (lavfi source, codec args, extension)
    ("testsrc2", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ".mp4"),
    ("mandelbrot", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ".mkv"),
    ("smptebars", ["-c:v", "mpeg4", "-q:v", "5"], ".avi"),
    ("rgbtestsrc", ["-c:v", "mpeg2video", "-q:v", "5"], ".ts"),
    ("life=mold=10:ratio=0.5", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ".mov"),
]
HLS = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{seg}\n#EXT-X-ENDLIST\n"


@dataclass(frozen=True)
class Case:
    """One input: its kind, its path (as the run records it: resolved), and the outcome it must get.

    ``expect`` is ``ok`` (a damaged file too: what decodes is kept), ``error:<stage>``, ``duplicate`` (a ``duplicate`` row naming the original) or
    ``skipped:<reason>``; ``match`` is a phrase the error message must contain.
    """

    kind: str
    path: str
    expect: str
    match: str = ""


@dataclass
class Corpus:
    """The corpus root, the inputs to pass to ``rushes curate``, every case and the sentinels to check."""

    root: Path
    inputs: list[str]
    cases: list[Case] = field(default_factory=list)
    sentinels: list[Sentinel] = field(default_factory=list)
    payload: bytes = b""  # what a sentinel serves: a real 2 s MPEG-TS video

    def footage_seconds(self) -> float:
        return sum(_seconds(c.path) for c in self.cases if c.expect == "ok")

    def sentinels_opened(self) -> int:
        return sum(s.opened for s in self.sentinels)

    def close(self) -> None:
        for s in self.sentinels:
            s.close()


def _seconds(path: str) -> float:
    return float(Path(path).stem.rsplit("_", 1)[-1].rstrip("s"))


def _video(path: Path, i: int, seconds: int | None = None, extra: Iterable[str] = ()) -> Path:
    src, codec, _ = GOOD[i % len(GOOD)]
    size = (160, 120) if i % 2 else (96, 64)
    seconds = seconds or 1 + i % 3
    sep = ":" if "=" in src else "="
    run_ffmpeg(["-f", "lavfi", "-i", f"{src}{sep}size={size[0]}x{size[1]}:rate=15",
                # neighbouring videos look different (the hue), and no two of up to 1,200 are identical (a small box
                # at a place of their own; MPEG-TS keeps no metadata that would tell them apart)
                "-t", str(seconds), "-vf", f"hue=h={i * 7 % 360},drawbox=x={i % 40}:y={i // 40 % 30}:w=4:h=4:"
                                           f"color=white:t=fill",
                *codec, "-g", "15", *extra, "-y", str(path)], timeout_s=120, whitelist=None)
    return path


def _good(folder: Path, i: int) -> Path:
    return _video(folder / f"v{i:04d}_{1 + i % 3}s{GOOD[i % len(GOOD)][2]}", i)


def _image(path: Path, codec_ext: str, j: int) -> None:
    tmp = path.with_name(f".{path.stem}.{codec_ext}")
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=1", "-frames:v", "1", "-y", str(tmp)],
               timeout_s=60, whitelist=None)
    path.write_bytes(tmp.read_bytes() + f"\ncase {j}".encode())  # bytes after the image: each file distinct
    tmp.unlink()


def _sentinel(c: Corpus, payload: bytes) -> Sentinel:
    s = Sentinel(c.root / "outside" / f"segment{len(c.sentinels)}.ts", payload)
    c.sentinels.append(s)
    return s


def _zero_byte(c: Corpus, d: Path, j: int) -> Case:
    (p := d / f"bad{j:03d}_empty.mp4").write_bytes(b"")
    return Case("zero-byte .mp4", str(p), "error:input", "is empty (0 bytes)")


def _truncated(c: Corpus, d: Path, j: int) -> Case:
    whole = _video(d / f".whole{j}.mp4", j, 3).read_bytes()  # index (moov) at the end: cut off
    (d / f".whole{j}.mp4").unlink()
    (p := d / f"bad{j:03d}_truncated.mp4").write_bytes(whole[: len(whole) // 2])
    return Case("truncated .mp4 (index cut off)", str(p), "error:probe", "probably truncated")


def _text(c: Corpus, d: Path, j: int) -> Case:
    (p := d / f"bad{j:03d}_text.mp4").write_text(f"this is not a video (case {j})\n" * 20)
    return Case("text named .mp4", str(p), "error:probe", "not a video")


def _png(c: Corpus, d: Path, j: int) -> Case:
    _image(p := d / f"bad{j:03d}_png.mp4", "png", j)
    return Case("PNG named .mp4", str(p), "error:probe", "still image (png)")


def _jpeg(c: Corpus, d: Path, j: int) -> Case:
    _image(p := d / f"bad{j:03d}_jpeg.mp4", "jpg", j)
    return Case("JPEG named .mp4", str(p), "error:probe", "still image (jpeg)")


def _hls_named(c: Corpus, d: Path, j: int) -> Case:
    (p := d / f"bad{j:03d}_hls.mp4").write_text(HLS.format(seg=_sentinel(c, c.payload).path))
    return Case("HLS playlist named .mp4 (segment: sentinel)", str(p), "error:probe", "HLS playlist")


def _m3u8(c: Corpus, d: Path, j: int) -> Case:
    (p := c.root / f"explicit{j:03d}.m3u8").write_text(HLS.format(seg=_sentinel(c, c.payload).path))
    c.inputs.append(str(p))  # named explicitly: a file the user names always gets a row
    return Case("real .m3u8 named explicitly (segment: sentinel)", str(p), "error:probe", "HLS playlist")


def _concat(c: Corpus, d: Path, j: int) -> Case:
    (p := d / f"bad{j:03d}_concat.mp4").write_text(f"ffconcat version 1.0\nfile '{_sentinel(c, c.payload).path}'\n")
    return Case("ffconcat list named .mp4 (file: sentinel)", str(p), "error:probe", "ffconcat")


def _corrupt_middle(c: Corpus, d: Path, j: int) -> Case:
    data = bytearray(_video(d / f".whole{j}.mp4", j, 6, ["-movflags", "+faststart"]).read_bytes())
    (d / f".whole{j}.mp4").unlink()
    a, b = int(len(data) * 0.40), int(len(data) * 0.55)
    data[a:b] = bytes((i * 7919) % 251 for i in range(b - a))
    (p := d / f"bad{j:03d}_corrupt_6s.mp4").write_bytes(bytes(data))
    return Case("corrupt middle (15% of bytes overwritten)", str(p), "ok")


def _audio_only(c: Corpus, d: Path, j: int) -> Case:
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={440 + j}:duration=1", "-c:a", "aac", "-y",
                str(p := d / f"bad{j:03d}_audio.mp4")], timeout_s=60, whitelist=None)
    return Case("audio-only .mp4", str(p), "error:probe", "no video stream (audio-only)")


def _not_video(c: Corpus, d: Path, j: int) -> Case:
    (d / f"notes{j:03d}.txt").write_text("notes, not a list: only a .txt named as an input is read as one\n")
    c.cases.append(Case(".txt file in the folder", str(d / f"notes{j:03d}.txt"), "skipped:not_video"))
    (p := d / f"meta{j:03d}.json").write_text('{"note": "not a video"}\n')
    return Case(".json file in the folder", str(p), "skipped:not_video")


def _symlinked_folder(c: Corpus, d: Path, j: int) -> Case:
    target = c.root / "elsewhere" / f"f{j:03d}"
    target.mkdir(parents=True)
    video = _video(target / f"linked{j:03d}_2s.mp4", j, 2)
    (d / f"link{j:03d}").symlink_to(target, target_is_directory=True)
    return Case("video in a symlinked folder (resolved path recorded)", str(video.resolve()), "ok")


def _copy(c: Corpus, d: Path, j: int) -> Case:
    original = d / f"orig{j:03d}_1s.mp4"
    _video(original, j, 1)
    (p := d / f"zcopy{j:03d}_1s.mp4").write_bytes(original.read_bytes())
    c.cases.append(Case("original of a byte-identical copy", str(original), "ok"))
    return Case("byte-identical copy", str(p), "duplicate", "byte-identical copy of")


def _pts_restart(c: Corpus, d: Path, j: int) -> Case:
    # Two files of one codec in MPEG-TS (what byte-joining happens to), each with its own clock from 0.
    parts = [_video(d / f".part{j:03d}{k}.ts", j, 2, ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts"])
             for k in range(2)]
    (p := d / f"joined{j:03d}_4s.ts").write_bytes(b"".join(x.read_bytes() for x in parts))  # `cat a.ts b.ts`
    for x in parts:
        x.unlink()
    return Case("MPEG-TS joined byte by byte (PTS restart)", str(p), "error:decode", "timestamps jump back")


def _late_start(c: Corpus, d: Path, j: int) -> Case:
    p = _video(d / f"late{j:03d}_2s.ts", j, 2, ["-output_ts_offset", "10", "-f", "mpegts"])
    return Case("MPEG-TS whose clock starts at 10 s", str(p), "ok")


def _cover_track(c: Corpus, d: Path, j: int) -> Case:
    cover, real = _video(d / f".cover{j:03d}.mkv", j, 1, ["-frames:v", "1"]), _video(d / f".real{j:03d}.mp4", j, 2)
    p = d / f"covered{j:03d}_2s.mkv"
    run_ffmpeg(["-i", str(cover), "-i", str(real), "-map", "0:v", "-map", "1:v", "-c", "copy", "-y", str(p)],
               timeout_s=60, whitelist=None)
    cover.unlink()
    real.unlink()
    return Case("one-frame cover track before the real video", str(p), "ok")


def _odd_name(c: Corpus, d: Path, j: int) -> Case:
    video = _video(d / f".odd{j:03d}.mp4", j, 1)
    p = os.fsdecode(os.fsencode(d) + f"/caf\xe9{j:03d}_1s.mp4".encode("latin-1"))  # a name that is not UTF-8
    os.rename(video, p)
    return Case("file name that is not UTF-8", p, "ok")


BAD = [_zero_byte, _truncated, _text, _png, _jpeg, _hls_named, _m3u8, _concat, _corrupt_middle, _audio_only,
       _not_video, _symlinked_folder, _copy, _pts_restart, _late_start, _cover_track, _odd_name]


def make_corpus(root: str | os.PathLike, n: int = 500, bad_fraction: float = 0.1) -> Corpus:
    """Write ``n`` good videos plus ``max(len(BAD), bad_fraction * n)`` bad inputs (every kind at least once)
    under ``root``; the caller must :meth:`Corpus.close` it (its sentinels' threads)."""
    root = Path(root).resolve()
    footage = root / "footage"
    (root / "outside").mkdir(parents=True)
    footage.mkdir()
    seg = _video(root / "outside" / ".segment.ts", 0, 2).read_bytes()
    c = Corpus(root, [str(footage)], payload=seg)
    for i in range(n):
        c.cases.append(Case("good " + GOOD[i % len(GOOD)][2].lstrip("."), str(_good(footage, i)), "ok"))
    for j in range(max(len(BAD), round(bad_fraction * n))):
        c.cases.append(BAD[j % len(BAD)](c, footage, j))
    return c


def _actual(row: dict | None) -> tuple[str, str]:
    """(outcome in :attr:`Case.expect`'s words, the row's message) of one input."""
    if row is None:
        return "missing", ""
    message = row.get("error_message") or row.get("warning") or ""
    if row["status"] == "ok":
        return "ok", message
    if row["status"] == "duplicate":
        return "duplicate", message
    return f"{row['status']}:{row['error_stage']}", message


def outcomes(corpus: Corpus, out: str | os.PathLike) -> list[dict]:
    """Every case with its actual outcome in ``out``: the videos row for its path, or the reason its folder's
    expansion (:func:`rushes.curate.inputs.collect_inputs`, what ``rushes curate`` runs) left it out."""
    rows = {r["path"]: r for r in read(out, "videos").to_pylist()}
    found = collect_inputs(corpus.inputs, exclude_dir=out)
    skipped = {p: reason for reason, paths in found.skipped.items() for p in paths}
    result = []
    for case in corpus.cases:
        actual, message = _actual(rows.get(display(case.path)))  # a name that is not UTF-8 is stored escaped
        if actual == "missing" and case.path in skipped:
            actual = f"skipped:{skipped[case.path]}"
        passed = actual == case.expect and case.match in message
        result.append({"case": case, "actual": actual, "message": message, "pass": passed})
    return result


def accounting(corpus: Corpus, out: str | os.PathLike, summary: dict) -> dict:
    """Inputs named or expanded vs. inputs accounted for (videos rows + files counted as skipped by the run)."""
    found = collect_inputs(corpus.inputs, exclude_dir=out)
    rows = read(out, "videos").to_pylist()
    skipped = sum(summary.get("inputs_skipped", {}).values())
    statuses = {"ok": 0, "error": 0, "duplicate": 0}
    for r in rows:
        outcome = _actual(r)[0].split(":")[0]
        statuses[outcome] = statuses.get(outcome, 0) + 1
    total = len(found.paths) + sum(found.skipped_counts().values())
    return {**statuses, "skipped": skipped, "total": total,
            "accounted": sum(statuses.values()) + skipped, "cases": len(corpus.cases)}

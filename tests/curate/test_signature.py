"""Clip signatures (rushes.curate.signature) and the near-duplicate search (rushes.curate.dedup) on synthetic frames."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import pytest

from rushes import manifests
from rushes.curate.dedup import DedupConfig, candidate_pairs, dedup_run, find_duplicates, match_share, popcount
from rushes.curate.signature import NO_HASH, FrameSignature, SignatureConfig, frame_hash
from rushes.media.frames import Frame


def scene(seed: int, size=(256, 144)) -> np.ndarray:
    """A natural-looking RGB picture: smoothed noise at a few scales (distinct per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w), np.float32)
    for cells in (4, 12, 40):
        img += cv2.resize(rng.normal(size=(cells * h // w + 1, cells)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
    img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
    return np.repeat(img[:, :, None], 3, axis=2).astype(np.uint8)


def shot(seed: int, seconds: float, fps: float = 25.0, start_s: float = 0.0, pan_px: float = 20.0):
    """Frames of a slowly panning shot over a wide picture: (pts_s, rgb) pairs."""
    wide = scene(seed, size=(256 + int(pan_px * seconds) + 1, 144))
    n = int(round(seconds * fps))
    return [(start_s + i / fps, wide[:, int(pan_px * i / fps):int(pan_px * i / fps) + 256]) for i in range(n)]


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_hash_survives_rescale_recompression_and_small_crop_but_not_another_picture():
    img = scene(1)
    h = frame_hash(img)
    half = cv2.resize(cv2.resize(img, (128, 72), interpolation=cv2.INTER_AREA), (256, 144))
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 20])
    cropped = cv2.resize(img[4:140, 6:250], (256, 144))  # ~5% off
    assert hamming(h, frame_hash(half)) <= 4
    assert hamming(h, frame_hash(cv2.imdecode(jpg, cv2.IMREAD_COLOR))) <= 6
    assert hamming(h, frame_hash(cropped)) <= 10
    others = [hamming(h, frame_hash(scene(s))) for s in range(2, 22)]
    assert min(others) > 12, others


def test_flat_black_and_faded_frames_have_no_hash():
    rng = np.random.default_rng(0)
    black = rng.integers(0, 6, size=(144, 256, 3), dtype=np.uint8)  # black with sensor noise
    grey = np.full((144, 256, 3), 128, np.uint8)
    faded = (scene(3).astype(np.float32) * 0.03).astype(np.uint8)  # 97% through a fade to black
    for img in (black, grey, faded):
        assert frame_hash(img) == NO_HASH
    assert frame_hash(scene(3)) != NO_HASH


def test_samples_first_frame_of_each_absolute_half_second_and_chunks_merge_to_one_pass():
    frames = shot(4, 6.0, fps=30.0, start_s=0.31)
    whole = FrameSignature()
    for i, (t, rgb) in enumerate(frames):
        whole.add(Frame(i, t, rgb))
    exp = whole.export(0.0, None)
    assert list(exp["bucket"]) == list(range(0, 13))  # 0.31..6.28 s -> buckets 0..12
    assert [t // 0.5 for t in exp["pts"]] == list(exp["bucket"])
    assert all(t == min(f for f, _ in frames if f // 0.5 == t // 0.5) for t in exp["pts"])  # first of each
    # Time chunks as rushes.curate.chunks runs them: each decodes from a warm-up start (mid-bucket here), counts
    # frames from its own first one, and exports its span; states agree where spans meet.
    pts = [t for t, _ in frames]
    parts = []
    for warm_s, start_s, end_s in ((0.0, 0.0, 2.0), (1.2, 2.0, 4.1), (3.3, 4.1, None)):
        part = FrameSignature()
        for i, (t, rgb) in enumerate(f for f in frames if f[0] >= warm_s):
            if t == min(x for x in pts if x >= start_s):
                assert part.state(t) == _state_at(frames, t), start_s
            part.add(Frame(i, t, rgb))
        parts.append(part.export(start_s, end_s))
    # A warm-up that starts inside the span's first bucket sampled another frame for it: the states differ,
    # so rushes.curate.chunks redoes the video in one task instead of joining a wrong sample.
    late = FrameSignature()
    for i, (t, rgb) in enumerate(f for f in frames if 4.2 <= f[0] < 4.3):
        late.add(Frame(i, t, rgb))
    first = min(x for x in pts if x >= 4.3)
    assert late.state(first) != _state_at(frames, first) and late.state(first) != b"-"
    merged = FrameSignature.merged(parts, pts)
    for key in ("bucket", "pts", "hash"):
        assert np.array_equal(merged.export(0.0, None)[key], exp[key]), key
    assert merged.clip_signature(40, 150) == whole.clip_signature(40, 150)


def _state_at(frames, next_pts_s):
    one = FrameSignature()
    for i, (t, rgb) in enumerate(frames):
        if t >= next_pts_s:
            return one.state(t)
        one.add(Frame(i, t, rgb))


def test_clip_signature_one_entry_per_bucket_with_gaps_and_flat_frames_as_no_hash():
    sig = FrameSignature(SignatureConfig(step_s=0.5))
    black = np.zeros((144, 256, 3), np.uint8)
    pts = [0.0, 0.5, 1.0, 2.5, 3.0]  # nothing decoded in 1.5-2.5 s (a damaged region)
    for i, t in enumerate(pts):
        sig.add(Frame(i, t, black if i == 1 else scene(i)))
    s = sig.clip_signature(0, 5)
    assert len(s) == 7 and s[1] == NO_HASH and s[3] == s[4] == NO_HASH
    assert all(v != NO_HASH for k, v in enumerate(s) if k in (0, 2, 5, 6))
    assert sig.clip_signature(2, 4) == [s[2], NO_HASH, NO_HASH, s[5]]
    assert sig.clip_signature(5, 9) == []


def signature_of(frames) -> np.ndarray:
    sig = FrameSignature()
    for i, (t, rgb) in enumerate(frames):
        sig.add(Frame(i, t, rgb))
    return np.array(sig.clip_signature(0, len(frames)), np.uint64)


def test_match_share_finds_a_trimmed_copy_at_its_time_offset_and_rejects_another_shot():
    cfg = DedupConfig()
    original = signature_of(shot(5, 8.0))
    trimmed = signature_of([(t - 1.3, rgb) for t, rgb in shot(5, 8.0)[int(1.3 * 25):]])  # first 1.3 s dropped
    share, matches = match_share(trimmed, original, cfg)
    assert share >= 0.9 and matches >= 10
    other = signature_of(shot(6, 8.0))
    assert match_share(other, original, cfg)[0] < 0.2
    black = np.zeros(16, np.uint64)  # two all-black clips: nothing to compare, never a match
    assert match_share(black, black, cfg) == (0.0, 0)
    # Two distinct shots that are black at the same times: black samples count for nothing.
    half_black_a, half_black_b = original.copy(), other[:len(original)].copy()
    half_black_a[::2] = half_black_b[::2] = NO_HASH
    assert match_share(half_black_a, half_black_b, cfg)[0] < 0.2


def test_match_share_needs_one_consistent_time_offset():
    cfg = DedupConfig()
    slides = np.array([frame_hash(scene(100 + k)) for k in range(12)], np.uint64)  # a new picture every 0.5 s
    assert match_share(slides, slides, cfg) == (1.0, 12)
    assert match_share(slides[3:9], slides, cfg) == (1.0, 6)  # a cut-out, found at its offset
    # The same pictures in another order are another clip: at any one offset only one or two line up.
    assert match_share(slides[::-1], slides, cfg)[0] <= 0.25
    assert popcount(np.array([0xFF, 2**64 - 1], np.uint64)).tolist() == [8, 64]


def _table(rows):
    return manifests.conform([{"clip_id": r[0], "video_id": r[1], "signature": r[2], "width_px": r[3],
                               "height_px": r[3] * 9 // 16, "duration_s": 8.0, "sharpness": r[4], "keep": True}
                              for r in rows], "clips")


def test_find_duplicates_pairs_only_copies_and_keeps_the_better_clip_deterministically():
    a, b = signature_of(shot(7, 8.0)), signature_of(shot(8, 8.0))
    rng = np.random.default_rng(1)
    noisy = np.array([int(h) ^ (1 << int(rng.integers(64))) ^ (1 << int(rng.integers(64))) if h else 0
                      for h in a], np.uint64)  # a's copy, two bits off per sample
    rows = [("c-a", "v1", a.tolist(), 1280, 100.0), ("c-b", "v1", b.tolist(), 1280, 100.0),
            ("c-a-half", "v2", noisy.tolist(), 640, 150.0), ("c-b-again", "v3", b.tolist(), 1280, 100.0)]
    t = _table(rows)
    assert find_duplicates(t) == {"c-a-half": "c-a", "c-b-again": "c-b"}  # more pixels, then smaller id
    assert find_duplicates(t.take([3, 2, 1, 0])) == {"c-a-half": "c-a", "c-b-again": "c-b"}  # order-free
    # A clip of another run always wins, and is never marked itself.
    assert find_duplicates(t, external=np.array([False, False, True, False])) == {"c-a": "c-a-half",
                                                                                   "c-b-again": "c-b"}
    # Clips of one video are never compared (a return to the same camera set-up is not a re-upload).
    assert find_duplicates(_table([rows[1], ("c-b2", "v1", b.tolist(), 1280, 1.0)])) == {}


def test_lsh_candidates_scale_without_all_pairs_and_keep_true_pairs():
    rng = np.random.default_rng(2)
    n = 20_000
    sigs = [rng.integers(1, 2**63, size=16, dtype=np.uint64) for _ in range(n)]  # unrelated clips
    sigs[n - 1] = sigs[5] ^ np.uint64(0b1001)  # one near copy
    pairs = candidate_pairs(sigs, np.arange(n), DedupConfig())
    # Random hashes share a 24-bit key by chance (~24,000 clip pairs here) but seldom two.
    assert [5, n - 1] in pairs.tolist() and len(pairs) < 1000


def test_dedup_run_rewrites_only_changed_parts_atomically_and_never_writes_other_runs(tmp_path):
    a, b = signature_of(shot(9, 6.0)), signature_of(shot(10, 6.0))
    own, other = tmp_path / "own", tmp_path / "other"
    manifests.write_part(own, "clips", _table([("c1", "v1", a.tolist(), 1280, 1.0)]), part_name="part-v1")
    manifests.write_part(own, "clips", _table([("c2", "v2", b.tolist(), 1280, 1.0)]), part_name="part-v2")
    manifests.write_part(other, "clips", _table([("o1", "v9", a.tolist(), 640, 1.0)]), part_name="part-v9")
    before = {p: p.stat().st_mtime_ns for p in (own / "clips").iterdir()} | {
        p: p.stat().st_mtime_ns for p in (other / "clips").iterdir()}
    result = dedup_run(own, against=[other])
    assert (result["duplicates"], result["parts_rewritten"], result["against_clips"]) == (1, 1, 1)
    clips = manifests.read(own, "clips")
    assert dict(zip(clips["clip_id"].to_pylist(), clips["duplicate_of"].to_pylist())) == {"c1": "o1", "c2": None}
    after = {p: p.stat().st_mtime_ns for p in before}
    assert [p.name for p in before if before[p] != after[p]] == ["part-v1.parquet"]
    assert not [p for p in (own / "clips").iterdir() if p.name.startswith("_")]
    assert dedup_run(own, against=[other])["parts_rewritten"] == 0  # idempotent
    assert dedup_run(own)["parts_rewritten"] == 1  # without the other run c1 is no duplicate any more
    assert manifests.read(own, "clips")["duplicate_of"].null_count == 2


def test_old_runs_without_signatures_fail_with_the_rewrite_message(tmp_path):
    old = manifests.conform([{"clip_id": "c", "video_id": "v", "keep": True}], "clips").drop_columns(
        ["signature", "duplicate_of"])
    (tmp_path / "clips").mkdir()
    import pyarrow.parquet as pq

    pq.write_table(old, tmp_path / "clips" / "part-v.parquet")
    with pytest.raises(manifests.ManifestError, match="rewrite it with this version"):
        manifests.read(tmp_path, "clips")
    with pytest.raises(manifests.ManifestError, match="rerun `rushes curate` with the video it came from"):
        dedup_run(tmp_path)


def test_near_duplicate_rule_rejects_marked_clips_in_every_preset_but_none():
    from rushes.curate.filter import PRESETS, apply_filter

    t = _table([("c1", "v1", [], 1280, 300.0), ("c2", "v2", [], 1280, 300.0)])
    t = t.set_column(t.schema.get_field_index("duplicate_of"), t.schema.field("duplicate_of"),
                     pa.array([None, "c1"], pa.string()))
    for preset in PRESETS:
        out = apply_filter(t, PRESETS[preset](), preset=preset)
        marked = out["reject_reason"][1].as_py() or ""
        assert ("near_duplicate" in marked.split(";")) == (preset != "none"), preset
        assert "near_duplicate" not in (out["reject_reason"][0].as_py() or ""), preset


def test_clips_of_an_earlier_run_stay_kept_when_a_better_copy_arrives():
    from datetime import datetime, timedelta, timezone

    a = signature_of(shot(11, 6.0))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = _table([("old", "v1", a.tolist(), 640, 1.0), ("new-hd", "v2", a.tolist(), 1920, 500.0)])
    rows = rows.set_column(rows.schema.get_field_index("created_at"), rows.schema.field("created_at"),
                           pa.array([t0, t0 + timedelta(hours=1)], rows.schema.field("created_at").type))
    assert find_duplicates(rows) == {"old": "new-hd"}  # one run: more pixels win
    assert find_duplicates(rows, before=t0 + timedelta(minutes=1)) == {"new-hd": "old"}  # the kept clip stays

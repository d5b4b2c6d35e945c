"""Sample names: readable, unique, file-system safe, with no dot (WebDataset splits a key at its first dot)."""

from __future__ import annotations

import os

from rushes.export.samples import name_samples, seconds_text, stem
from rushes.manifests.clips import KeptClip
from rushes.storage.names import display


def _clip(clip_id: str, video_id: str, start: float, end: float) -> KeptClip:
    return KeptClip(clip_id, video_id, "/src/x.mp4", start, end, start, 160, 120, False)


def test_a_name_is_the_stem_and_the_span():
    assert seconds_text(12.4) == "12s40" and seconds_text(0) == "0s00" and seconds_text(3599.999) == "3600s00"
    assert name_samples([(_clip("c1", "v1", 12.4, 15.9), "/data/My clip.v2.mp4")]) == ["My_clip_v2_12s40-15s90"]


def test_names_that_are_not_utf8_or_safe_become_safe_text():
    raw = os.fsdecode(b"/in/caf\xe9 \xff.mp4")  # a Linux name that is not UTF-8
    assert stem(display(raw)) == "caf_xe9_xff"
    assert stem("s3://bucket/raw/a;b|c<d>.mov") == "a_b_c_d"
    assert stem("/in/été ü.mp4") == "été_ü" and stem("/in/.mp4") == "mp4" and stem("/in/...") == "video"
    assert len(stem("/in/" + "x" * 300 + ".mp4")) == 60


def test_equal_stems_and_equal_spans_get_ids_and_every_name_is_unique():
    rows = [(_clip("c1", "va", 0, 2), "/a/beach.mp4"), (_clip("c2", "vb", 0, 2), "/b/beach.mp4"),
            (_clip("c3", "vc", 0, 2), "/c/other.mp4"), (_clip("c4aaaaaaaa", "vc", 0, 2.001), "/c/other.mp4"),
            (_clip("c5bbbbbbbb", "vc", 0.001, 2), "/c/other.mp4")]
    names = name_samples(rows)
    assert names[:2] == ["beach-va_0s00-2s00", "beach-vb_0s00-2s00"]  # two videos named beach
    assert names[2:] == ["other_0s00-2s00-c3", "other_0s00-2s00-c4aaaaaa", "other_0s00-2s00-c5bbbbbb"]
    assert len(set(names)) == len(names) and not any("." in n or "/" in n for n in names)


def test_an_edited_id_never_names_a_path():
    rows = [(_clip("../../etc/x", "../v", 0, 2), "/a/x.mp4"), (_clip("../../etc/y", "../w", 0, 2), "/b/x.mp4")]
    assert not any("/" in n or "." in n for n in name_samples(rows))

"""The filter read back from the clips manifest: thresholds per score column, failing scores, untrusted JSON."""

from __future__ import annotations

import json

from rushes.inspect.thresholds import Threshold, active_filter, failing_scores, thresholds_of


def _row(keep=False, reason=None, params=None, preset="strict", **scores):
    return {"clip_id": "c", "keep": keep, "reject_reason": reason, "filter_preset": preset,
            "filter_params": json.dumps(params) if isinstance(params, dict) else params, "duration_s": 2.0,
            "motion_mean": 0.1, "sharpness": 20.0, "camera_motion": "shaky", "shake_score": 0.9, **scores}


def test_thresholds_map_to_their_score_columns_and_a_new_rule_is_found_by_name():
    columns = {"motion_mean", "sharpness", "shake_score", "black_frame_frac"}
    got = thresholds_of({"min_motion": 0.01, "max_motion": None, "min_sharpness": 150, "max_shake": 0.5,
                         "max_black_frame_frac": 0.1, "reject_missing": True, "min_short_side_px": 240}, columns)
    assert got["motion_mean"] == Threshold(min=0.01, min_field="min_motion")
    assert got["sharpness"].min == 150 and got["shake_score"] == Threshold(max=0.5, max_field="max_shake")
    assert "short_side_px" not in got and set(got) == {"motion_mean", "sharpness", "shake_score", "black_frame_frac"}


def test_failing_scores_of_a_rejected_clip():
    params = {"min_sharpness": 150.0, "min_motion": 0.01, "max_shake": 0.5, "reject_camera_motion": ["shaky"]}
    rows = [_row(reason="blurry;camera=shaky", params=params), _row(keep=True, params=params)]
    active = active_filter(rows)
    assert active.preset == "strict" and active.clips == 2 and active.camera_rejected == ("shaky",)
    assert failing_scores(rows[0], ["blurry", "camera=shaky"], active) == ["sharpness", "shake_score", "camera"]
    assert failing_scores(_row(sharpness=None), ["too_short"], active) == ["shake_score", "dur"]


def test_params_that_are_not_a_json_object_or_not_numbers_are_left_out():
    assert active_filter([_row(params="{not json")]).thresholds == {}
    assert active_filter([_row(params="[1, 2]")]).params == {}
    odd = active_filter([_row(params={"min_sharpness": "150", "min_motion": True})])
    assert odd.thresholds == {}
    mixed = active_filter([_row(params={"min_sharpness": 1}), _row(params={"min_sharpness": 1}),
                           _row(params={"min_sharpness": 2}, preset="default")])
    assert (mixed.preset, mixed.clips, mixed.others) == ("strict", 2, 1)
    assert active_filter([]).preset is None


def test_guardrail_scores_behind_a_rejection():
    """The mark's match rejects at or above its min_ field (it is no lower bound); faces map to face_area_frac;
    a C2PA source type the rule rejects is named; a clean clip's low match is not a failing score."""
    params = {"min_invisible_mark_match": 0.85, "max_face_area": 0.0, "max_nsfw": 0.8, "reject_ai_generated": True}
    rows = [_row(reason="ai_generated", params=params, invisible_mark_match=0.85, face_area_frac=None, nsfw=0.1),
            _row(reason="faces", params=params, invisible_mark_match=0.52, face_area_frac=0.2, nsfw=0.1),
            _row(reason="ai_generated", params=params, invisible_mark_match=0.5, face_area_frac=0.0, nsfw=0.1,
                 c2pa_source_type="trainedAlgorithmicMedia")]
    active = active_filter(rows)
    assert active.thresholds["invisible_mark_match"] == Threshold(max=0.85, max_field="min_invisible_mark_match",
                                                                  max_inclusive=True)
    assert failing_scores(rows[0], ["ai_generated"], active) == ["invisible_mark_match"]
    assert failing_scores(rows[1], ["faces"], active) == ["face_area_frac"]
    assert failing_scores(rows[2], ["ai_generated"], active) == ["c2pa"]
    off = active_filter([_row(params={**params, "reject_ai_generated": False})])
    assert "invisible_mark_match" not in off.thresholds

"""Prompts are versioned in code and their outputs parsed without crashing on malformed text."""

from __future__ import annotations

import json

import pytest

from rushes.caption.prompts import LATEST, PROMPTS, RECORDED_HASHES, ParseError, get_prompt, parse_output


def test_prompt_text_cannot_change_without_a_new_version():
    for version, prompt in PROMPTS.items():
        assert version in RECORDED_HASHES, f"record the hash of new prompt {version}"
        assert prompt.text_hash() == RECORDED_HASHES[version], (
            f"the text of {version} changed: add a new version instead of editing a released one")
    assert all(v in PROMPTS for v in LATEST.values())


def test_get_prompt_by_name_or_version():
    assert get_prompt("dense").version == "dense-v1"
    assert get_prompt("structured-v1").structured
    with pytest.raises(ValueError, match="dense"):
        get_prompt("nope")


def test_dense_prompt_covers_what_a_training_caption_needs():
    text = get_prompt("dense").text.lower()
    for topic in ("subject", "action", "setting", "camera motion", "framing", "lighting", "style", "visible text"):
        assert topic in text


def test_dense_output_gives_caption_and_first_sentence():
    parsed = parse_output(get_prompt("dense"), "  A red car drives at night. Neon lights reflect.  ")
    assert parsed.caption == "A red car drives at night. Neon lights reflect."
    assert parsed.caption_short == "A red car drives at night."
    with pytest.raises(ParseError):
        parse_output(get_prompt("dense"), "   ")


def test_structured_output_is_validated():
    prompt = get_prompt("structured-v1")
    obj = {"short_caption": "A dog runs.", "dense_caption": "A brown dog runs across a field.",
           "camera_motion": "pan right", "shot_type": "wide"}
    parsed = parse_output(prompt, "Here you go:\n```json\n" + json.dumps(obj) + "\n```")
    assert (parsed.caption, parsed.caption_short, parsed.camera_motion_text, parsed.shot_type) == (
        obj["dense_caption"], obj["short_caption"], "pan right", "wide")
    assert json.loads(parsed.caption_json) == obj
    for bad in ("no json here", '{"short_caption": "x"', "[1, 2]", json.dumps({**obj, "shot_type": ""}),
                json.dumps({k: v for k, v in obj.items() if k != "camera_motion"})):
        with pytest.raises(ParseError):
            parse_output(prompt, bad)


def test_structured_v2_fields_parse_into_columns():
    prompt = get_prompt("structured")
    assert prompt.version == "structured-v2"
    obj = {"short_caption": "A dog runs.", "dense_caption": "A brown dog runs across a field at dusk.",
           "subjects": ["a brown dog", " a red ball "], "action": "the dog chases the ball, then stops",
           "shot_type": "wide", "camera_motion": "pan right", "lighting": "golden hour", "style": "live action"}
    parsed = parse_output(prompt, json.dumps(obj))
    assert (parsed.subjects, parsed.action, parsed.lighting, parsed.style) == (
        "a brown dog; a red ball", obj["action"], "golden hour", "live action")
    assert (parsed.shot_type, parsed.camera_motion_text) == ("wide", "pan right")
    with pytest.raises(ParseError, match="lighting"):
        parse_output(prompt, json.dumps({**obj, "lighting": ""}))
    # v1 rows keep parsing with v1's four fields.
    assert parse_output(get_prompt("structured-v1"), json.dumps(obj)).subjects is None


def test_a_prompt_file_is_versioned_by_its_text():
    own = get_prompt("dense", text="Say what happens in this clip.")
    again = get_prompt("dense", text="Say what happens in this clip.")
    other = get_prompt("dense", text="Say what happens in this clip!")
    assert own.version == again.version and own.version.startswith("dense-v1+file-") and other.version != own.version
    assert own.text == "Say what happens in this clip." and not own.structured
    structured = get_prompt("structured", text='Answer with JSON: {"short_caption": ...}')
    assert structured.structured and structured.fields == get_prompt("structured").fields
    assert get_prompt(own.version, text=own.text).version == own.version
    with pytest.raises(ValueError, match="--prompt-file"):
        get_prompt(own.version)

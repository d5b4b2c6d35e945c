"""Caption prompts, versioned in code, and the parser of their outputs.

A prompt's ``version`` is stored on every caption row; changing a prompt's text without a new
version would silently mix captions of two prompts under one name, so ``tests/caption`` holds each
version's text to a recorded hash. To change a prompt: add a new :class:`Prompt` with a new version,
point the name at it in :data:`LATEST`, and record its hash in :data:`RECORDED_HASHES`.

Usage::

    p = get_prompt("structured")          # latest version of a name, or get_prompt("structured-v1")
    parsed = parse_output(p, model_text)  # ParsedCaption, or raises ParseError
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """One versioned prompt: ``structured`` prompts ask for JSON and are parsed and validated."""

    name: str
    version: str
    text: str
    structured: bool = False

    def text_hash(self) -> str:
        """sha256 prefix of the prompt text (what the recorded hashes hold)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


DENSE_V1 = Prompt(
    name="dense",
    version="dense-v1",
    text=(
        "Describe this video clip in detail for a text-to-video training set. In one paragraph, cover: "
        "the main subject(s) and their appearance; the action and how it unfolds over time; the setting "
        "and background; the camera motion (static, pan, tilt, zoom, tracking, handheld) and framing "
        "(close-up, medium, wide); the lighting, colours and visual style; and any visible text. "
        "Describe only what is visible. Do not start with 'The video shows'."
    ),
)

STRUCTURED_V1 = Prompt(
    name="structured",
    version="structured-v1",
    text=(
        "Describe this video clip for a text-to-video training set. Answer with one JSON object and "
        "nothing else, with these string fields: \"short_caption\" (one sentence), \"dense_caption\" "
        "(one detailed paragraph: subjects, action over time, setting, lighting and style, visible text), "
        "\"camera_motion\" (static, pan left, pan right, tilt up, tilt down, zoom in, zoom out, tracking, "
        "handheld or other), \"shot_type\" (extreme close-up, close-up, medium, wide, extreme wide or other)."
    ),
    structured=True,
)

PROMPTS: dict[str, Prompt] = {p.version: p for p in (DENSE_V1, STRUCTURED_V1)}
LATEST: dict[str, str] = {"dense": "dense-v1", "structured": "structured-v1"}

# The text hash of every released version; a test fails when a version's text changes.
RECORDED_HASHES: dict[str, str] = {
    "dense-v1": "ba196eaca08396de",
    "structured-v1": "a74f50bf47942455",
}

STRUCTURED_FIELDS = ("short_caption", "dense_caption", "camera_motion", "shot_type")


class ParseError(ValueError):
    """The model's output does not follow the prompt's format."""


@dataclass(frozen=True)
class ParsedCaption:
    """Caption fields parsed from one model output."""

    caption: str
    caption_short: str | None = None
    caption_json: str | None = None
    camera_motion_text: str | None = None
    shot_type: str | None = None


def get_prompt(name: str) -> Prompt:
    """The prompt for a name (``dense`` -> its latest version) or an exact version (``dense-v1``)."""
    version = LATEST.get(name, name)
    if version not in PROMPTS:
        raise ValueError(f"unknown prompt {name!r}; use one of {', '.join([*LATEST, *PROMPTS])}")
    return PROMPTS[version]


def first_sentence(text: str, max_chars: int = 200) -> str:
    """The first sentence of ``text`` (cut at ``max_chars``), used as the short caption of dense prompts."""
    match = re.search(r"(.+?[.!?])(\s|$)", text.strip(), flags=re.S)
    sentence = (match.group(1) if match else text.strip()).strip()
    return sentence[:max_chars]


def parse_output(prompt: Prompt, text: str) -> ParsedCaption:
    """Turn a model output into caption fields; raises :class:`ParseError` when it is malformed."""
    text = text.strip()
    if not prompt.structured:
        if not text:
            raise ParseError("empty caption")
        return ParsedCaption(caption=text, caption_short=first_sentence(text))
    obj = _extract_json_object(text)
    missing = [f for f in STRUCTURED_FIELDS if not isinstance(obj.get(f), str) or not obj[f].strip()]
    if missing:
        raise ParseError(f"JSON output lacks non-empty string field(s) {missing}")
    return ParsedCaption(caption=obj["dense_caption"].strip(), caption_short=obj["short_caption"].strip(),
                         caption_json=json.dumps(obj, ensure_ascii=False),
                         camera_motion_text=obj["camera_motion"].strip(), shot_type=obj["shot_type"].strip())


def _extract_json_object(text: str) -> dict:
    # Models often wrap JSON in ```json fences or add a sentence around it: take the outermost {...}.
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ParseError("no JSON object in the output")
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ParseError("the JSON output is not an object")
    return obj

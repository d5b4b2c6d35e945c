"""Caption prompts, versioned in code, and the parser of their outputs.

A prompt's ``version`` is stored on every caption row; changing a prompt's text without a new
version would silently mix captions of two prompts under one name, so ``tests/caption`` holds each
version's text to a recorded hash. To change a prompt: add a new :class:`Prompt` with a new version,
point the name at it in :data:`LATEST`, and record its hash in :data:`RECORDED_HASHES`.

Usage::

    p = get_prompt("structured")          # latest version of a name, or get_prompt("structured-v1")
    p = get_prompt("dense", text=open("my_prompt.txt").read())   # version dense-v1+file-<hash>
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
    fields: tuple[str, ...] = ()  # JSON fields a structured prompt's output must have

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
    fields=("short_caption", "dense_caption", "camera_motion", "shot_type"),
)

STRUCTURED_V2 = Prompt(
    name="structured",
    version="structured-v2",
    text=(
        "Describe this video clip for a text-to-video training set. Answer with one JSON object and "
        "nothing else, with these string fields: \"short_caption\" (one sentence), \"dense_caption\" "
        "(one detailed paragraph: subjects, action over time, setting, lighting and style, visible text), "
        "\"subjects\" (the main subjects and their appearance), \"action\" (what happens, in order), "
        "\"shot_type\" (extreme close-up, close-up, medium, wide, extreme wide or other), \"camera_motion\" "
        "(static, pan left, pan right, tilt up, tilt down, zoom in, zoom out, tracking, handheld or other), "
        "\"lighting\" (e.g. daylight, golden hour, night, studio, low key, neon) and \"style\" (e.g. "
        "live action, animation, black and white film, documentary, screen recording)."
    ),
    structured=True,
    fields=("short_caption", "dense_caption", "subjects", "action", "shot_type", "camera_motion", "lighting",
            "style"),
)

PROMPTS: dict[str, Prompt] = {p.version: p for p in (DENSE_V1, STRUCTURED_V1, STRUCTURED_V2)}
LATEST: dict[str, str] = {"dense": "dense-v1", "structured": "structured-v2"}

# The text hash of every released version; a test fails when a version's text changes.
RECORDED_HASHES: dict[str, str] = {
    "dense-v1": "ba196eaca08396de",
    "structured-v1": "a74f50bf47942455",
    "structured-v2": "211c0d5b9cb3e325",
}

STRUCTURED_FIELDS = STRUCTURED_V2.fields
# JSON field -> caption column, for the fields that are not the caption itself.
FIELD_COLUMNS = {"camera_motion": "camera_motion_text", "shot_type": "shot_type", "subjects": "subjects",
                 "action": "action", "lighting": "lighting", "style": "style"}


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
    subjects: str | None = None
    action: str | None = None
    lighting: str | None = None
    style: str | None = None


def get_prompt(name: str, text: str | None = None) -> Prompt:
    """The prompt for a name (``dense`` -> its latest version) or an exact version (``dense-v1``).

    With ``text`` (a ``--prompt-file``), that text replaces the named prompt's and the version becomes
    ``<version>+file-<sha256 prefix of the text>``: the same file gives the same version, an edit a new one.
    A version of that form given as ``name`` needs its ``text`` again.
    """
    base, _, file_hash = name.partition("+file-")
    version = LATEST.get(base, base)
    if version not in PROMPTS:
        raise ValueError(f"unknown prompt {name!r}; use one of {', '.join([*LATEST, *PROMPTS])}")
    prompt = PROMPTS[version]
    if text is None:
        if file_hash:
            raise ValueError(f"prompt {name!r} came from a prompt file: pass its text again (--prompt-file)")
        return prompt
    own = Prompt(prompt.name, "", text, prompt.structured, prompt.fields)
    return Prompt(prompt.name, f"{version}+file-{own.text_hash()[:12]}", text, prompt.structured, prompt.fields)


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
    values = {f: _field_text(obj.get(f)) for f in prompt.fields}
    missing = [f for f, v in values.items() if not v]
    if missing:
        raise ParseError(f"JSON output lacks non-empty string field(s) {missing}")
    columns = {FIELD_COLUMNS[f]: v for f, v in values.items() if f in FIELD_COLUMNS}
    return ParsedCaption(caption=values["dense_caption"], caption_short=values["short_caption"],
                         caption_json=json.dumps(obj, ensure_ascii=False), **columns)


def _field_text(value) -> str | None:
    """A field as text: a string stripped, a list of strings joined with '; ' (models list subjects)."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = "; ".join(v.strip() for v in value if v.strip())
    return value.strip() or None if isinstance(value, str) else None


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

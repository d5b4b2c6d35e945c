"""Checks run on every caption, recorded as columns: empty, truncated, repetition loop, refusal, wrong language.

A flagged caption is retried once (the adapter), then kept with its flags; training selection skips flagged
captions unless asked not to (``rushes.manifests.clips.captioned_clips(include_flagged=True)``).

- ``empty``: nothing but white space.
- ``truncated``: generation stopped at the token limit (``finish_reason == 'length'``).
- ``repetition``: a loop: fewer than half of the word 3-grams are distinct (at least 12 words), one phrase of up
  to 8 words repeated 4+ times in a row at the end, or long text that compresses below a fifth of its size.
- ``refusal``: the model declines or says it cannot see the video ("I'm sorry", "I cannot describe", "as an AI").
- ``language``: ``--language`` was given and the caption is confidently in another language. Detection is a
  small built-in heuristic, no model: the Unicode script (Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai,
  Hangul, kana, Han), then for Latin script the share of each language's commonest words (en, de, fr, es, it, pt,
  nl). Text it is unsure of (short, mixed) is not flagged.

Usage::

    result = check_caption(text, finish_reason="stop", language="en")
    result.flags        # ('repetition',) ...; empty when clean
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass

FLAG_NAMES = ("empty", "truncated", "repetition", "refusal", "language")

_STOPWORDS = {
    "en": "the a an and of in on with is are to at from its his her their this that while as by for into it".split(),
    "de": "der die das und ist ein eine mit auf im den dem von zu sich nicht auch des einer einem wird".split(),
    "fr": "le la les et un une des est dans sur avec du au en qui pour par se son sa ses de".split(),
    "es": "el la los las y un una es en con del al se por para su sus que como está de mientras".split(),
    "it": "il lo la gli le e un una è di del della con su per nel nella che sono mentre".split(),
    "pt": "o a os as e um uma é em com do da no na por para seu sua que são de enquanto".split(),
    "nl": "de het een en van is in op met aan zijn die dat voor naar bij ook terwijl".split(),
}
_SCRIPTS = {"CYRILLIC": "ru", "GREEK": "el", "ARABIC": "ar", "HEBREW": "he", "DEVANAGARI": "hi", "THAI": "th",
            "HANGUL": "ko", "HIRAGANA": "ja", "KATAKANA": "ja", "CJK": "zh"}
LANGUAGES = tuple(sorted({*_STOPWORDS, *_SCRIPTS.values()}))
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
                  "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "el": "Greek", "ar": "Arabic", "he": "Hebrew",
                  "hi": "Hindi", "th": "Thai", "ko": "Korean", "ja": "Japanese", "zh": "Chinese"}

_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i apologi[sz]e|unfortunately,? i|as an ai\b)"
    r"|\b(i|we) (cannot|can't|can not|am unable to|'m unable to|am not able to|do not|don't) "
    r"(see|view|watch|access|describe|help|assist|process|provide|analy[sz]e|open|play)\b"
    r"|\bas an ai( language)? model\b|\bno (video|image|frames?) (was|were|is|are) (provided|attached|shown)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class CaptionCheck:
    """The outcome of the checks on one caption."""

    empty: bool = False
    truncated: bool = False
    repetition: bool = False
    refusal: bool = False
    language: bool | None = None  # None: no language asked for
    detected_language: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(name for name in FLAG_NAMES if getattr(self, name))

    def columns(self) -> dict:
        """The row's check columns (``flag_*``, ``caption_flags``, ``caption_language``)."""
        return {"flag_empty": self.empty, "flag_truncated": self.truncated, "flag_repetition": self.repetition,
                "flag_refusal": self.refusal, "flag_language": self.language,
                "caption_flags": ";".join(self.flags) or None, "caption_language": self.detected_language}


def is_repetitive(text: str) -> bool:
    """True when ``text`` loops (see the module docstring)."""
    words = re.findall(r"\w+", text.lower())
    if len(words) >= 12:
        grams = list(zip(words, words[1:], words[2:]))
        if len(set(grams)) < 0.5 * len(grams):
            return True
    for size in range(1, 9):  # a phrase repeated at the end: the usual shape of a decoding loop
        tail = words[-4 * size:]
        if len(tail) == 4 * size and len(words) >= 8 and all(tail[i] == tail[i % size] for i in range(len(tail))):
            return True
    raw = text.strip().encode()
    return len(raw) >= 200 and len(zlib.compress(raw, 9)) < 0.2 * len(raw)


def is_refusal(text: str) -> bool:
    """True when the model declines or says it cannot see the input."""
    return bool(_REFUSAL.search(text.strip()))


def _script_of(ch: str) -> str | None:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    if name.startswith("LATIN"):
        return "LATIN"
    return next((s for s in _SCRIPTS if name.startswith(s)), None)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text``'s language, or None when unsure (see the module docstring)."""
    scripts = Counter(s for s in map(_script_of, text) if s)
    total = sum(scripts.values())
    if total < 8:
        return None
    kana = scripts.pop("HIRAGANA", 0) + scripts.pop("KATAKANA", 0)
    scripts["CJK"] += kana  # Japanese mixes kana and kanji: one family, told apart below
    script, count = scripts.most_common(1)[0]
    if count < 0.6 * total:
        return None
    if script != "LATIN":
        if script == "CJK" and kana > 0.1 * total:
            return "ja"
        return _SCRIPTS[script]
    words = re.findall(r"[^\W\d_]+", text.lower())
    if len(words) < 4:
        return None
    hits = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items() for stop in [set(stop)]}
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2 or top < 0.1 * len(words) or top < 1.3 * second:
        return None
    return best


def check_caption(text: str, finish_reason: str | None, language: str | None = None) -> CaptionCheck:
    """Run every check on one caption."""
    stripped = text.strip()
    if not stripped:
        return CaptionCheck(empty=True, truncated=finish_reason == "length",
                            language=None if language is None else False)
    detected = detect_language(stripped)
    return CaptionCheck(empty=False, truncated=finish_reason == "length", repetition=is_repetitive(stripped),
                        refusal=is_refusal(stripped),
                        language=None if language is None else (detected is not None and detected != language),
                        detected_language=detected)

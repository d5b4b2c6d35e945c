"""The checks recorded on every caption: what each catches, and what it must leave alone."""

from __future__ import annotations

import pytest

from rushes.caption.checks import check_caption, detect_language, is_refusal, is_repetitive

GOOD = ("A woman in a red coat walks along a wet city street at night while the camera tracks her from the left; "
        "neon signs reflect in the puddles and the handheld framing is a medium shot.")


def test_a_good_caption_passes_every_check():
    result = check_caption(GOOD, "stop", language="en")
    assert result.flags == () and result.detected_language == "en"
    assert result.columns()["caption_flags"] is None and result.columns()["flag_language"] is False
    assert check_caption(GOOD, "stop").columns()["flag_language"] is None, "no language asked: not checked"


@pytest.mark.parametrize("text", [
    "the dog runs " * 10,
    "A man walks. " + "and then and then and then and then and then and then",
    "ha" * 200,
    "A cat sits on a mat, on a mat, on a mat, on a mat, on a mat",
])
def test_loops_are_caught(text):
    assert is_repetitive(text)
    assert "repetition" in check_caption(text, "stop").flags


def test_ordinary_repeated_words_are_not_a_loop():
    assert not is_repetitive(GOOD)
    assert not is_repetitive("The dog runs and the dog jumps and the dog sleeps in the sun by the old red barn.")


@pytest.mark.parametrize("text", ["I'm sorry, but I can't help with that.", "Sorry, I cannot see the video.",
                                  "As an AI language model I do not watch videos.",
                                  "Unfortunately, I am unable to view the frames.",
                                  "I cannot describe this image."])
def test_refusals_are_caught(text):
    assert is_refusal(text) and "refusal" in check_caption(text, "stop").flags


def test_captions_that_mention_sorry_things_are_not_refusals():
    assert not is_refusal("A sorry-looking dog sits in the rain while a man apologises to a waiter.")
    assert not is_refusal(GOOD)


def test_truncation_and_emptiness_come_from_the_generation():
    assert check_caption(GOOD, "length").flags == ("truncated",)
    empty = check_caption("   ", "stop", language="en")
    assert empty.flags == ("empty",) and empty.columns()["caption_flags"] == "empty"


@pytest.mark.parametrize("text,lang", [
    (GOOD, "en"),
    ("Eine Frau im roten Mantel geht nachts eine nasse Straße entlang, und die Kamera folgt ihr mit der Hand.", "de"),
    ("Une femme en manteau rouge marche la nuit dans une rue mouillée et la caméra la suit de la gauche.", "fr"),
    ("Una mujer con un abrigo rojo camina por una calle mojada de noche y la cámara la sigue.", "es"),
    ("Женщина в красном пальто идёт ночью по мокрой улице, камера следует за ней.", "ru"),
    ("一个穿红色外套的女人在夜晚潮湿的街道上行走，摄像机从左侧跟随她。", "zh"),
    ("赤いコートの女性が夜の濡れた通りを歩いていて、カメラが左から彼女を追っている。", "ja"),
])
def test_language_detection_and_the_language_flag(text, lang):
    assert detect_language(text) == lang
    assert check_caption(text, "stop", language="en").language is (lang != "en")


def test_unsure_language_is_not_flagged():
    for text in ("OK", "12345 67890", "Zorblax quindle frum"):
        assert detect_language(text) is None
        assert check_caption(text, "stop", language="de").language is False

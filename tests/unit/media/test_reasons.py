"""A processing failure's stored English reason, said again in the reader's language (hub.media.reasons)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from flask import Flask
from flask_babel import force_locale

from hub.media import ffmpeg, reasons
from hub.media.reasons import localized_error, localized_reason

FFMPEG_SOURCE = Path(ffmpeg.__file__).read_text(encoding="utf-8")


def _reasons_in_ffmpeg() -> list[str]:
    """Each MediaError's first argument in ffmpeg.py, with its f-string holes filled by "7"."""
    constants = {
        node.targets[0].id: node.value.value
        for node in ast.walk(ast.parse(FFMPEG_SOURCE))
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    found = []
    for node in ast.walk(ast.parse(FFMPEG_SOURCE)):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MediaError" and node.args):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant):
            found.append(first.value)
        elif isinstance(first, ast.Name):
            if first.id in constants:
                found.append(constants[first.id])
        elif isinstance(first, ast.JoinedStr):
            found.append("".join(p.value if isinstance(p, ast.Constant) else "7" for p in first.values))
    return found


def test_every_reason_ffmpeg_gives_has_a_message() -> None:
    found = _reasons_in_ffmpeg()
    assert len(found) > 15  # the search itself works
    # "Processing this file {what}; ..." fills its hole with one of two phrases: try both.
    found = [
        text.replace("file 7;", f"file {what};")
        for text in found
        for what in ("made no progress for 7 min", "took longer than the 7 min allowed")
    ]
    missing = {text for text in found if not any(p.fullmatch(text) for p, _ in reasons._PATTERNS)}
    assert not missing, f"add these to hub.media.reasons.REASONS (and translate them): {missing}"


def test_the_check_can_fail() -> None:
    assert not any(p.fullmatch("A reason nobody wrote down.") for p, _ in reasons._PATTERNS)


@pytest.mark.parametrize(
    ("stored", "zh", "en"),
    [
        ("The file is truncated or damaged.", "文件不完整或已损坏。", "The file is truncated or damaged."),
        (
            "The recording is 5 h 3 min long; the longest we accept is 4 h.",
            "录像时长 5 小时 3 分，最长接受 4 小时。",
            "The recording is 5 h 3 min long; the longest we accept is 4 h.",
        ),
        (
            "video-360p: We could not convert this file; it may be damaged.; audio: The file is empty.",
            "视频 360p：无法转换此文件，文件可能已损坏。；仅音频：文件是空的。",
            "Video 360p: We could not convert this file; it may be damaged.; Audio only: The file is empty.",
        ),
        # Text the pipeline did not write (an older hub's, an operator's): shown as it is.
        ("Something else went wrong", "Something else went wrong", "Something else went wrong"),
    ],
)
def test_stored_reasons_read_in_both_languages(app: Flask, stored: str, zh: str, en: str) -> None:
    with app.test_request_context():
        with force_locale("zh"):
            assert localized_error(stored) == zh
        with force_locale("en"):
            assert localized_error(stored) == en


def test_no_english_left_in_any_chinese_reason(app: Flask) -> None:
    with app.test_request_context(), force_locale("zh"):
        for message in reasons.REASONS:
            sample = re.sub(r"%\((\w+)\)s", "7", message)
            said = localized_reason(sample)
            assert said != sample and not re.search(r"[A-Za-z]{3,}", said.replace("PDF", "")), (message, said)

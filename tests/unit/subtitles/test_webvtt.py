"""Reading subtitle files: encodings, SRT to WebVTT, and every refusal naming its line."""

from __future__ import annotations

import pytest

from hub.errors import Invalid
from hub.subtitles.webvtt import MAX_BYTES, MAX_CUES, TooLarge, normalise, parse_transcript

SRT = """1
00:00:01,000 --> 00:00:04,500
同学们好，今天我们学习<i>配方法</i>。

2
00:00:05,000 --> 00:01:02,250
把方程化成 (x+m)^2 = n 的形式
& 求解

"""

VTT = """WEBVTT - 第一课

NOTE 这是注释

STYLE
::cue { color: red }

intro
00:01.000 --> 00:04.000 align:start position:10% onload:alert(1)
<v 王老师>Quadratic equations</v> <b>today</b>

00:00:05.000 --> 00:00:06.000
second &lt;cue&gt;
"""


def test_srt_in_gbk_becomes_utf8_webvtt() -> None:
    # Notepad on a Chinese Windows saves "ANSI", i.e. GBK: the usual SRT from a teacher.
    subs = normalise(SRT.replace("\n", "\r\n").encode("gbk"))
    assert (subs.source_format, subs.encoding) == ("srt", "gb18030")
    vtt = subs.vtt().decode("utf-8")
    assert vtt.startswith("WEBVTT\n\n1\n00:00:01.000 --> 00:00:04.500\n同学们好，今天我们学习配方法。\n")
    assert "00:00:05.000 --> 00:01:02.250\n把方程化成 (x+m)^2 = n 的形式\n&amp; 求解\n" in vtt
    assert "\r" not in vtt and "<i>" not in vtt
    assert [c.start for c in subs.cues] == [1.0, 5.0]


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"\xef\xbb\xbf" + SRT.encode("utf-8"), "utf-8-sig"),
        (SRT.encode("utf-8"), "utf-8"),
        (SRT.encode("utf-16"), "utf-16"),  # with its BOM, little-endian here
        (b"\xfe\xff" + SRT.encode("utf-16-be"), "utf-16"),
    ],
)
def test_encodings_with_and_without_bom(data: bytes, encoding: str) -> None:
    subs = normalise(data)
    assert subs.encoding == encoding
    assert subs.cues[0].text == "同学们好，今天我们学习配方法。"
    assert not subs.vtt().startswith(b"\xef\xbb\xbf")


def test_webvtt_keeps_cues_and_safe_settings_and_drops_markup() -> None:
    subs = normalise(VTT.encode())
    assert subs.source_format == "webvtt"
    assert [(c.start, c.end) for c in subs.cues] == [(1.0, 4.0), (5.0, 6.0)]
    assert subs.cues[0].text == "Quadratic equations today"
    assert subs.cues[0].settings == "align:start position:10%"
    vtt = subs.vtt().decode()
    assert "STYLE" not in vtt and "NOTE" not in vtt and "color" not in vtt and "onload" not in vtt
    # Entities are decoded for the transcript and escaped again in the file.
    assert subs.cues[1].text == "second <cue>"
    assert "second &lt;cue&gt;" in vtt
    assert parse_transcript(subs.transcript()) == [(1.0, "Quadratic equations today"), (5.0, "second <cue>")]


def test_the_normalised_file_reads_back_the_same() -> None:
    once = normalise(SRT.encode("gbk"))
    twice = normalise(once.vtt())
    assert twice.vtt() == once.vtt()


def test_markup_cannot_escape_the_cue() -> None:
    subs = normalise(b"1\n00:00:01,000 --> 00:00:02,000\n<script>alert(1)</script> a --> b <img src=x onerror=y>\n")
    assert subs.cues[0].text == "alert(1) a --> b"
    assert b"<" not in subs.vtt().split(b"\n", 4)[4] and b"--&gt; b" in subs.vtt()


def test_overlapping_cues_are_kept() -> None:
    # Two speakers at once are ordinary WebVTT: start times ordered, ends may overlap.
    subs = normalise(b"WEBVTT\n\n00:00:01.000 --> 00:00:05.000\nA\n\n00:00:02.000 --> 00:00:03.000\nB\n")
    assert [c.text for c in subs.cues] == ["A", "B"]


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (b"1\n00:00:01,000 -> 00:00:02,000\nx\n", 2, "timing line"),
        (b"1\n00:00:01 --> 00:00:02,000\nx\n", 2, "not well formed"),
        (b"1\n00:00:61,000 --> 00:01:02,000\nx\n", 2, "above 59"),
        (b"1\n00:00:03,000 --> 00:00:02,000\nx\n", 2, "ends before it starts"),
        (b"1\n00:00:05,000 --> 00:00:06,000\na\n\n2\n00:00:01,000 --> 00:00:02,000\nb\n", 6, "time order"),
        (b"WEBVTTX\n\n00:01.000 --> 00:02.000\nx\n", 1, "WEBVTT"),
        (b"WEBVTT\n\nhello\nworld\n", 4, "timing line"),
    ],
)
def test_bad_files_are_refused_with_the_line(data: bytes, line: int, words: str) -> None:
    with pytest.raises(Invalid) as refused:
        normalise(data)
    assert f"Line {line}:" in refused.value.message and words in refused.value.message
    assert refused.value.status == 422 and "file" in refused.value.fields


def test_cues_after_the_end_of_the_recording_are_refused() -> None:
    data = b"1\n00:00:01,000 --> 00:00:02,000\na\n\n2\n00:00:40,000 --> 00:00:42,000\nb\n"
    assert len(normalise(data, duration=40.0).cues) == 2  # within the tolerance
    with pytest.raises(Invalid) as refused:
        normalise(data, duration=30.0)
    assert "Line 6:" in refused.value.message and "00:00:42.000" in refused.value.message


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf\r\n  \n", b"WEBVTT\n\n", b"1\n00:00:01,000 --> 00:00:02,000\n\n"])
def test_empty_files_are_refused(data: bytes) -> None:
    with pytest.raises(Invalid):
        normalise(data)


def test_binary_and_undecodable_text_is_refused() -> None:
    with pytest.raises(Invalid) as refused:
        normalise(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)))
    assert "UTF-8" in refused.value.message and "GB18030" in refused.value.message
    with pytest.raises(Invalid):
        normalise(b"1\n00:00:01,000 --> 00:00:02,000\n\xff\xff\xff\n")


def test_oversize_files_and_too_many_cues_are_413() -> None:
    with pytest.raises(TooLarge) as refused:
        normalise(b"x" * (MAX_BYTES + 1))
    assert refused.value.status == 413
    many = "".join(
        f"{i}\n00:00:{i // 1000 % 60:02d},{i % 1000:03d} --> 00:00:59,999\nx\n\n" for i in range(MAX_CUES + 1)
    )
    with pytest.raises(TooLarge):
        normalise(many.encode())


def test_an_english_track_from_windows_reads_as_windows_1252() -> None:
    data = "1\r\n00:00:01,000 --> 00:00:02,000\r\nDon\u2019t forget the caf\u00e9\r\n".encode("cp1252")
    subs = normalise(data, language="en")
    assert (subs.encoding, subs.cues[0].text) == ("cp1252", "Don\u2019t forget the caf\u00e9")
    # As a Chinese track the same bytes are tried as GB18030, where "é" before a line end is no character.
    with pytest.raises(Invalid):
        normalise(data, language="zh")

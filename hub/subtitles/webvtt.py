"""Subtitle files in, normalised WebVTT out: encoding detection, SRT conversion, validation.

Pure functions on bytes, no database or storage: the service (hub.subtitles.services)
calls :func:`normalise` and stores what it returns. Every refusal is an ``Invalid``
(or ``TooLarge``) whose message names the line, so an uploader can fix the file.

Encoding, without a detection library: a byte-order mark decides (UTF-8, UTF-16 LE/BE);
without one, strict UTF-8 is tried first (valid UTF-8 is almost never GBK text by
accident), then GB18030, the superset of GBK and GB2312 that Notepad on a Chinese
Windows writes as "ANSI" (Windows-1252 instead for an English track). GB18030 decodes
many byte strings, so what it yields is then checked for control characters: binary
files and other code pages end there.

What comes out is plain text cues: tags (SRT's <i>/<font>, WebVTT's <c>/<v>/<ruby>)
are removed, entities decoded, and `&`, `<`, `>` escaped again, so the cue text is the
same inert text whether a browser shows it from the <track> or a page shows it in a
search snippet. STYLE and REGION blocks (CSS) and NOTE comments are dropped.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from hub.errors import HubError, Invalid
from hub.i18n import N_

MAX_BYTES = 2 * 1024 * 1024
"""Largest subtitle file accepted: a 4-hour lecture with a cue every 2 s is about 600 KB."""
MAX_CUES = 20_000
MAX_CUE_CHARS = 1000
"""Characters of text in one cue: a subtitle is a line or two, not a page."""
DURATION_TOLERANCE = 5.0
"""Seconds a cue may end after the material's end: encoders round, and the last cue often lingers."""


class TooLarge(HubError):
    status = 413
    code = "too_large"


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str  # plain text, lines joined with "\n", not escaped
    settings: str = ""  # WebVTT cue settings kept (position, line, align, size, vertical)


@dataclass(frozen=True)
class Subtitles:
    cues: list[Cue]
    source_format: str  # "webvtt" | "srt"
    encoding: str

    def vtt(self) -> bytes:
        """The normalised WebVTT file (UTF-8, no BOM, LF line ends)."""
        out = ["WEBVTT", ""]
        for number, cue in enumerate(self.cues, start=1):
            timing = f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}"
            out.append(str(number))
            out.append(f"{timing} {cue.settings}".rstrip())
            out.extend(_escape(line) for line in cue.text.split("\n"))
            out.append("")
        return "\n".join(out).encode("utf-8")

    def transcript(self) -> str:
        """One line per cue, "<start seconds>\\t<text>": what search indexes and finds times in."""
        return "\n".join(f"{cue.start:.3f}\t{cue.text.replace(chr(10), ' ')}" for cue in self.cues)


def parse_transcript(transcript: str) -> list[tuple[float, str]]:
    """The (start, text) pairs of :meth:`Subtitles.transcript`."""
    pairs: list[tuple[float, str]] = []
    for line in transcript.splitlines():
        start, _, text = line.partition("\t")
        try:
            pairs.append((float(start), text))
        except ValueError:
            continue
    return pairs


def format_timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def decode(data: bytes, language: str | None = None) -> tuple[str, str]:
    """The text of a subtitle file and the encoding it was read in; Invalid when it is not text.

    Without a BOM or valid UTF-8, the track's language picks the legacy code page: GB18030
    for Chinese; for English, Windows-1252 (an English SRT from Windows with a curly
    apostrophe, byte 0x92, would otherwise read as GB18030 and come out as a Chinese character).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        candidates = ["utf-8-sig"]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ["utf-16"]  # the BOM says which byte order
    elif language == "en":
        candidates = ["utf-8", "cp1252"]
    else:
        candidates = ["utf-8", "gb18030"]
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _CONTROL.search(text) is None:
            return text, encoding
    raise Invalid(
        N_("The subtitle file is not text in UTF-8, UTF-16 or GB18030 (GBK); save it as UTF-8 and upload it again."),
        {"file": N_("Unknown text encoding")},
    )


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TIMESTAMP = r"(?:(\d{1,3}):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIMESTAMP}\s*-->\s*{_TIMESTAMP}(.*)$")
_TAG = re.compile(r"<[^>\n]*>")
_SETTING = re.compile(r"^(?:vertical|line|position|size|align):[A-Za-z0-9.%,-]{1,20}$")


def _escape(line: str) -> str:
    # `&`, `<` and `>` are all WebVTT's cue text needs escaped; "-->" cannot end the cue then.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(line: str) -> str:
    """Cue text without tags or entities, control characters or surrounding space."""
    return html.unescape(_TAG.sub("", line)).replace("\u00a0", " ").strip()


def _seconds(hours: str | None, minutes: str, secs: str, fraction: str, line: int) -> float:
    if int(minutes) > 59 or int(secs) > 59:
        raise Invalid(
            N_("Line %(line)s: a timestamp has minutes or seconds above 59."), {"file": N_("Bad timestamp")}, line=line
        )
    # "1,5" in a sloppy SRT means 500 ms: the digits are a decimal fraction.
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(fraction.ljust(3, "0")) / 1000


def normalise(data: bytes, *, duration: float | None = None, language: str | None = None) -> Subtitles:
    """Read an SRT or WebVTT file and check it; Invalid or TooLarge saying what is wrong and where.

    `duration` (seconds), when the material's is known, bounds the cue times; `language`
    (zh, en) chooses the legacy encoding tried after UTF-8 (see :func:`decode`).
    """
    if len(data) > MAX_BYTES:
        raise TooLarge(
            N_("The subtitle file is larger than %(limit)s MB."), {"file": N_("Too large")}, limit=MAX_BYTES // 1048576
        )
    if not data.strip(b" \t\r\n\xef\xbb\xbf\xff\xfe\x00"):
        raise Invalid(N_("The subtitle file is empty."), {"file": N_("Empty file")})
    text, encoding = decode(data, language)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = lines[0].strip() if lines else ""
    is_vtt = first == "WEBVTT" or first.startswith(("WEBVTT ", "WEBVTT\t"))
    if not is_vtt and first.upper().startswith("WEBVTT"):
        raise Invalid(
            N_("Line 1: a WebVTT file starts with the word WEBVTT alone or followed by a space."),
            {"file": N_("Bad header")},
        )
    cues = _cues(lines, is_vtt)
    if not cues:
        raise Invalid(
            N_("The subtitle file has no cues (no line like 00:00:01,000 --> 00:00:04,000)."), {"file": N_("No cues")}
        )
    if duration is not None:
        last_line, last = max(cues, key=lambda pair: pair[1].end)
        if last.end > duration + DURATION_TOLERANCE:
            raise Invalid(
                N_("Line %(line)s: a cue ends at %(time)s, after the end of the recording (%(length)s)."),
                {"file": N_("Cue after the end")},
                line=last_line,
                time=format_timestamp(last.end),
                length=format_timestamp(duration),
            )
    return Subtitles([cue for _, cue in cues], "webvtt" if is_vtt else "srt", encoding)


def _cues(lines: list[str], is_vtt: bool) -> list[tuple[int, Cue]]:
    """(line number of the timing line, cue) for each cue, checked."""
    cues: list[tuple[int, Cue]] = []
    i = 0
    if is_vtt:
        # The header block runs to the first blank line (old files put metadata there).
        while i < len(lines) and lines[i].strip():
            i += 1
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block_start = i
        block: list[str] = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        head = block[0].strip()
        if is_vtt and (head.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in head):
            continue  # comments and CSS: not carried
        timing_at = 0 if "-->" in block[0] else 1
        if timing_at >= len(block) or "-->" not in block[timing_at]:
            raise Invalid(
                N_("Line %(line)s: expected a timing line like 00:00:01,000 --> 00:00:04,000."),
                {"file": N_("Bad cue")},
                line=block_start + 1 + min(timing_at, len(block) - 1),
            )
        line_no = block_start + 1 + timing_at
        match = _TIMING.match(block[timing_at])
        if match is None:
            raise Invalid(
                N_("Line %(line)s: the timestamps are not well formed (hh:mm:ss,mmm or hh:mm:ss.mmm)."),
                {"file": N_("Bad timestamp")},
                line=line_no,
            )
        g = match.groups()
        start = _seconds(g[0], g[1], g[2], g[3], line_no)
        end = _seconds(g[4], g[5], g[6], g[7], line_no)
        if end <= start:
            raise Invalid(
                N_("Line %(line)s: the cue ends before it starts."), {"file": N_("Bad timestamp")}, line=line_no
            )
        if cues and start < cues[-1][1].start:
            raise Invalid(
                N_("Line %(line)s: this cue starts before the one above it; cues must be in time order."),
                {"file": N_("Cues out of order")},
                line=line_no,
            )
        settings = " ".join(s for s in g[8].split() if _SETTING.match(s)) if is_vtt else ""
        text = "\n".join(p for p in (_plain(line) for line in block[timing_at + 1 :]) if p)
        if len(text) > MAX_CUE_CHARS:
            raise Invalid(
                N_("Line %(line)s: the cue has more than %(limit)s characters of text."),
                {"file": N_("Cue too long")},
                line=line_no,
                limit=MAX_CUE_CHARS,
            )
        if text:  # a cue with nothing to show is dropped, not refused
            cues.append((line_no, Cue(start, end, text, settings)))
            if len(cues) > MAX_CUES:
                raise TooLarge(
                    N_("The subtitle file has more than %(limit)s cues."), {"file": N_("Too many cues")}, limit=MAX_CUES
                )
    return cues

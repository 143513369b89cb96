"""Why a file could not be processed, in the reader's language.

The pipeline stores a failure's reason as plain English (``MediaError.reason``:
written for an uploader, never ffmpeg's own words, which go to the logs), in
``Rendition.error`` and, joined as ``profile: reason; ...``, in ``Material.error``.
Stored text stays English so that the API, the logs and school servers agree on
it; pages translate it when they show it: each reason ffmpeg.py can give is a
catalog message here, with ``%(name)s`` where ffmpeg.py puts a number, and a
stored reason is matched back to its message and said again in the reader's
language. tests/unit/media/test_reasons.py checks that every ``MediaError`` in
ffmpeg.py has its message here, so a new reason cannot reach a page in English
alone.
"""

from __future__ import annotations

import re

from flask_babel import gettext

from hub.i18n import N_, duration, label
from hub.media.profiles import PROFILES

REASONS = (
    N_("The server cannot process media right now (%(program)s is not installed)."),
    N_("Processing took too long; the file may be damaged."),
    N_("We could not convert this file; it may be damaged."),
    N_("Processing this file made no progress for %(minutes)s min; it may be damaged."),
    N_("Processing this file took longer than the %(minutes)s min allowed; it may be damaged."),
    N_("The server ran out of disk space; it will try again."),
    N_("The picture is %(width)sx%(height)s pixels, more than we accept."),
    N_("Processing this file used more processor time than allowed."),
    N_("Converting this file would write more data than allowed."),
    N_("Processing this file needs more memory than allowed; it may be damaged."),
    N_("Processing was interrupted; it will try again."),
    N_("The file is empty."),
    N_("This file is not a video, audio, image or PDF we can read."),
    N_("The file has %(count)s tracks; the most we accept is %(limit)s."),
    N_("We found no picture or sound we can decode in this file."),
    N_("Reading the file took too long; it may be damaged."),
    N_("The length of the recording cannot be read; the file may be damaged."),
    N_("The recording is %(length)s long; the longest we accept is %(limit)s."),
    N_(
        "The image is %(width)sx%(height)s pixels (%(megapixels)s megapixels); "
        "the largest we accept is %(limit)s megapixels."
    ),
    N_("The video is %(width)sx%(height)s; the largest we accept is %(max_width)sx%(max_height)s."),
    N_("The file is truncated or damaged."),
    N_("Only part of the file could be read; it may be damaged."),
)
"""Every reason ffmpeg.py gives, as catalog messages (the English is what it stores)."""

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_LENGTH = re.compile(r"(?:(\d+) h)? ?(?:(\d+) min)?|(\d+) s")


def _pattern(message: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(message)
    # split() alternates text and names: text, name, text, name, ..., text
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
    return re.compile(regex)


_PATTERNS = [(_pattern(message), message) for message in REASONS]


def _length(text: str) -> str:
    """ffmpeg.py's "1 h 5 min" / "45 s" in the reader's language."""
    match = _LENGTH.fullmatch(text)
    if match is None or not any(match.groups()):
        return text
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return duration(hours * 3600 + minutes * 60 + seconds)


def localized_reason(reason: str) -> str:
    """One stored reason in the reader's language; text no message matches is shown as it is."""
    for pattern, message in _PATTERNS:
        match = pattern.fullmatch(reason.strip())
        if match is None:
            continue
        values = match.groupdict()
        if "%(length)s" in message:  # a recording's length and the limit, both as ffmpeg.py writes them
            values = {name: _length(value) for name, value in values.items()}
        return str(gettext(message, **values))
    return reason


_PROFILE_PREFIX = re.compile(r"(?:^|; )(" + "|".join(re.escape(name) for name in PROFILES) + r"): ")


def localized_error(error: str | None) -> str:
    """A material's or rendition's stored error in the reader's language.

    A material's error lists its failed renditions as ``video-360p: reason; audio: reason``
    (reasons have semicolons of their own, so it is split at the profile names).
    """
    if not error:
        return ""
    starts = list(_PROFILE_PREFIX.finditer(error))
    if not starts:
        return localized_reason(error)
    if starts[0].start() != 0:
        return error  # not the pipeline's shape: say it as it is
    parts = []
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(error)
        reason = error[match.end() : end]
        profile = label("profile", match[1])
        parts.append(str(gettext("%(profile)s: %(reason)s", profile=profile, reason=localized_reason(reason))))
    return str(gettext("; ")).join(parts)

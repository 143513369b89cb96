"""Request text into values, for every view: numbers, ids, JSON bodies, redirect targets.

Families of hostile input used to end in a 500 because a parser or the database
was handed text it cannot hold. Each is closed here once, for every route:

- **Integers.** Python's ``int()`` accepts ``"١٢"`` (Arabic-Indic digits) and
  ``"1_000"``, ``str.isdigit()`` is true for ``"²"`` that ``int()`` then refuses,
  and ``int()`` raises on more than 4,300 digits. :func:`parse_int` takes ASCII
  digits only and never hands ``int()`` more digits than its bound can have.
- **Ids.** Row ids are signed 64-bit in PostgreSQL (bigint) and SQLite
  (INTEGER); SQLite's driver raises on a larger Python int instead of finding no
  row. Paths use :class:`IdConverter` (registered as ``<int:…>`` app-wide: an id
  past 2^63-1 is no address, 404); bodies and query strings use the :data:`Id`
  and :data:`Cursor` pydantic types (422 with the field named).
- **JSON depth.** Python's ``json`` recurses per nesting level and raises
  RecursionError near 1,000 levels; a body is measured without recursion first
  and refused past :data:`MAX_JSON_DEPTH` (400).
- **NUL characters.** PostgreSQL text cannot hold U+0000 (SQLite can, so only the
  service run showed it): :func:`refuse_nul` refuses one in a path, query string
  or form, and :func:`loads_json` in a JSON body (400), before any view runs.
- **Redirect targets.** A ``next=`` holding CR/LF cannot be put in a Location
  header (werkzeug raises), and a tab or backslash turns ``/\\t/evil.example`` into
  another host for a browser. :func:`safe_next` is the one check for every
  ``next=``: a path on this site, or the home page.
"""

from __future__ import annotations

import json
import re
import unicodedata
from itertools import accumulate
from typing import Annotated, Any
from urllib.parse import urlsplit

from flask import Flask, request, url_for
from flask.json.provider import DefaultJSONProvider
from pydantic import Field
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter, Map

from hub.errors import HubError

MAX_ID = 2**63 - 1
"""The largest row id: PostgreSQL's bigint and SQLite's INTEGER are signed 64-bit."""

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A row id in a JSON body or query string: larger ones are refused (422), never looked up."""

Cursor = Annotated[int, Field(ge=0, le=MAX_ID)]
"""A position in a sequence (a feed's ``since``): 0 for the start, compared with row ids."""

MAX_JSON_DEPTH = 64
"""Nesting levels a request body may have; the deepest body the API takes has 3."""

MAX_NEXT_CHARS = 2000
"""Longer ``next=`` targets are not pages of this site (browsers' own URL limit is about this)."""

_DIGITS = re.compile(r"[0-9]+")  # a str pattern's [0-9] is ASCII only, unlike \d


def parse_int(text: str | None, *, low: int = 0, high: int = MAX_ID) -> int | None:
    """``text`` as a whole number in ``[low, high]`` (``0 <= low``), or None.

    Only ASCII digits: no sign, spaces, underscores or other scripts' digits.
    """
    if text is None or not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(high)):
        return None  # out of range, and never thousands of digits for int()
    value = int(digits)
    return value if low <= value <= high else None


def clamp_int(digits: str, cap: int = MAX_ID) -> int:
    """ASCII ``digits`` as a number, reading any numeral above ``cap`` as ``cap``.

    For protocol fields where a huge number still has a meaning (RFC 9110 asks
    recipients of a Range to expect "potentially large decimal numerals"): a byte
    position past 2^63-1 is past the end of any file, as 2^63-1 is.
    """
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"not ASCII digits: {digits[:20]!r}")
    value = parse_int(digits, high=cap)
    return cap if value is None else value


class IdConverter(BaseConverter):
    """``<int:…>`` in every route: a row id, ASCII digits from 1 to 2^63-1; anything else is a 404."""

    regex = r"[0-9]+"
    weight = 50
    part_isolating = True

    def __init__(self, map: Map) -> None:
        # No arguments: <int(max=…):…> would otherwise be accepted and silently ignored.
        super().__init__(map)

    def to_python(self, value: str) -> int:
        number = parse_int(value, low=1)
        if number is None:
            # Not ValidationError: werkzeug converts after matching the path, so it would
            # answer 405 wherever another method's rule shares the path (PATCH next to GET).
            raise NotFound()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


class UnsafeJson(ValueError):
    """Valid JSON the hub does not take; a ValueError, as json's own errors are.

    ``template`` and ``params`` are the message for hub.errors (translated on pages).
    """

    def __init__(self, template: str, **params: object) -> None:
        super().__init__(template % params)
        self.template = template
        self.params = params


class JsonTooDeep(UnsafeJson):
    """Arrays and objects nested deeper than the limit."""


class JsonHasNul(UnsafeJson):
    """A string holding U+0000, which PostgreSQL text cannot store."""


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def check_json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise JsonTooDeep when ``text`` nests arrays and objects deeper than ``limit``.

    Linear and without recursion: brackets inside strings do not count, and a text
    with no more opening brackets than ``limit`` is not scanned at all.
    """
    if text.count("[") + text.count("{") <= limit:
        return
    steps = (1 if b in "[{" else -1 for b in _BRACKET.findall(_JSON_STRING.sub("", text)))
    if max(accumulate(steps), default=0) > limit:
        from hub.i18n import N_

        raise JsonTooDeep(N_("The body nests deeper than %(limit)s levels."), limit=limit)


def _check_json_strings(text: str, value: Any) -> None:
    # A raw NUL is invalid JSON already; only the escape needs a look at the values.
    if "\\u0000" not in text:
        return
    pending = [value]  # depth is bounded by now, but a list keeps this free of recursion
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            from hub.i18n import N_

            raise JsonHasNul(N_("Text in the body may not contain the NUL character (\\u0000)."))


def _decode(raw: bytes | str) -> str:
    # As json.loads decodes bytes (UTF-8, -16 or -32): so a UTF-16 character whose
    # bytes look like a bracket is not counted as one.
    return raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")


def loads_json(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted text: UnsafeJson when too deep or holding NUL, ValueError when invalid."""
    text = _decode(raw)
    check_json_depth(text, limit)
    value = json.loads(text)
    _check_json_strings(text, value)
    return value


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON with :func:`loads_json`'s checks, so ``request.get_json()`` anywhere answers 400."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        text = _decode(s)
        check_json_depth(text)
        value = super().loads(text, **kwargs)
        _check_json_strings(text, value)
        return value


class InvalidText(HubError):
    code = "invalid_text"


_FORMS = {"application/x-www-form-urlencoded", "multipart/form-data"}


def refuse_nul() -> None:
    """Refuse a NUL character anywhere in the path, query string or form (400).

    No field has a use for one and PostgreSQL text cannot hold one: a search, a
    login or a course title holding it would fail in the database (500).
    """
    texts: list[str | None] = [request.path]
    texts.extend(text for pair in request.args.items(multi=True) for text in pair)
    if request.mimetype in _FORMS:
        texts.extend(text for pair in request.form.items(multi=True) for text in pair)
        texts.extend(file.filename for _name, file in request.files.items(multi=True))
    if any(text and "\x00" in text for text in texts):
        from hub.i18n import N_

        raise InvalidText(N_("Text in this request contains the NUL character (U+0000), which no field can hold."))


def safe_next(target: str | None) -> str:
    """Where a ``next=`` may send the reader: a path on this site, safe in a Location header.

    Anything else (another host, a scheme, control characters, a backslash that a
    browser reads as a slash, an over-long value) goes to the home page instead.
    """
    if (
        not target
        or len(target) > MAX_NEXT_CHARS
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(unicodedata.category(ch)[0] == "C" for ch in target)
    ):
        return url_for("catalog.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("catalog.home")
    return target  # werkzeug percent-encodes non-ASCII (a Chinese query) when it sends the header


def init_app(app: Flask) -> None:
    """Ids in paths, JSON bodies and NUL characters, for every route; before any blueprint is registered."""
    app.url_map.converters["int"] = IdConverter
    app.before_request(refuse_nul)
    provider = JSONProvider(app)
    # Keep what create_app chose for the default provider (ensure_ascii: Chinese stays readable).
    vars(provider).update({k: v for k, v in vars(app.json).items() if k != "_app"})
    app.json = provider

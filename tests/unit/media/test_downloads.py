"""The range / conditional-request decision (RFC 9110), without Flask; and download counting."""

from __future__ import annotations

from datetime import date

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from hub.db import get_database
from hub.media.downloads import (
    Decision,
    counts_as_completed,
    decide,
    download_counts,
    etag_for,
    parse_range,
    record_download,
)
from hub.media.models import Blob
from tests.conftest import Accounts

SHA = "ab" * 32
OTHER = "cd" * 32
SIZE = 1000


def d(range_header: str | None = None, **kw: str) -> Decision:
    return decide(size=kw.pop("size", SIZE), sha256=SHA, range_header=range_header, **kw)  # type: ignore[arg-type]


def test_no_range_is_the_whole_file() -> None:
    assert d() == Decision(200, 0, 999)
    assert d().length == SIZE


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-499", 0, 499),
        ("bytes=500-999", 500, 999),
        ("bytes=500-5000", 500, 999),  # last-pos past the end is clamped
        ("bytes=-500", 500, 999),  # suffix
        ("bytes=-5000", 0, 999),  # suffix longer than the file: the whole file as 206
        ("bytes=100-", 100, 999),  # open-ended
        ("bytes=999-", 999, 999),
        ("bytes=0-0", 0, 0),
        ("BYTES = 10-19", 10, 19),  # the unit is case-insensitive
        ("bytes= 10-19 ", 10, 19),
        ("bytes=10-19,", 10, 19),  # empty list elements are allowed
        ("bytes=2000-3000, 10-19", 10, 19),  # unsatisfiable specs are dropped
    ],
)
def test_single_ranges(header: str, start: int, end: int) -> None:
    decision = d(header)
    assert decision == Decision(206, start, end, f"bytes {start}-{end}/{SIZE}")
    assert decision.length == end - start + 1


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=5000-6000,-0"])
def test_unsatisfiable(header: str) -> None:
    assert d(header) == Decision(416, content_range=f"bytes */{SIZE}")


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=0-9,-10", "bytes=" + ",".join(["0-1"] * 100)])
def test_multiple_ranges_send_the_whole_file(header: str) -> None:
    assert d(header) == Decision(200, 0, 999)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=abc",
        "bytes=5-2",  # last before first: invalid
        "bytes=0-9,5-2",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=0x10-20",
        "bytes=１-２",  # full-width digits are not DIGIT
        "items=0-9",
        "0-9",
        "bytes=0-9;q=1",
        "bytes==0-9",
        "\x00\xff",
    ],
)
def test_garbage_range_headers_are_ignored(header: str) -> None:
    assert parse_range(header) is None
    assert d(header) == Decision(200, 0, 999)


def test_parse_range_shapes() -> None:
    assert parse_range("bytes=0-1,-5,7-") == [(0, 1), (None, 5), (7, None)]
    assert parse_range(None) is None


def test_empty_blob_is_always_sent_whole() -> None:
    assert d("bytes=0-", size=0) == Decision(200, 0, -1)  # type: ignore[arg-type]
    assert d("bytes=-5", size=0).length == 0  # type: ignore[arg-type]


def test_etag_is_the_hash() -> None:
    assert etag_for(SHA) == f'"{SHA}"'


@pytest.mark.parametrize("header", [f'"{SHA}"', f'W/"{SHA}"', "*", f'"{OTHER}", "{SHA}"', f' "x" ,W/"{SHA}"'])
def test_if_none_match_gives_304(header: str) -> None:
    assert d(if_none_match=header).status == 304
    assert d("bytes=0-9", if_none_match=header).status == 304


@pytest.mark.parametrize("header", [f'"{OTHER}"', "", "garbage", SHA, f'"{SHA}'])
def test_if_none_match_other_tags(header: str) -> None:
    assert d(if_none_match=header).status == 200


def test_if_range_fresh_honours_the_range() -> None:
    assert d("bytes=500-", if_range=f'"{SHA}"') == Decision(206, 500, 999, "bytes 500-999/1000")


@pytest.mark.parametrize(
    "if_range",
    [f'"{OTHER}"', f'W/"{SHA}"', "Mon, 23 Nov 2026 10:00:00 GMT", "", "garbage"],
)
def test_if_range_stale_or_date_sends_the_whole_file(if_range: str) -> None:
    assert d("bytes=500-", if_range=if_range) == Decision(200, 0, 999)
    # A stale If-Range also turns an unsatisfiable range into the whole file.
    assert d("bytes=5000-", if_range=if_range).status == 200


def test_completion_is_the_body_that_reaches_the_last_byte() -> None:
    assert counts_as_completed(d(), SIZE)
    assert counts_as_completed(d("bytes=500-"), SIZE)
    assert counts_as_completed(d("bytes=-1"), SIZE)
    assert not counts_as_completed(d("bytes=0-499"), SIZE)
    assert not counts_as_completed(d("bytes=5000-"), SIZE)
    assert not counts_as_completed(d(if_none_match="*"), SIZE)


def test_record_and_sum_download_counts(app: Flask, db: Session, make: Accounts) -> None:
    school = make.school()
    db.add_all([Blob(sha256=SHA, size=SIZE), Blob(sha256=OTHER, size=SIZE)])
    db.commit()
    database = get_database(app)
    day = date(2026, 11, 23)
    for _ in range(3):
        record_download(database, SHA, school.id, day)
    record_download(database, SHA, None, day)
    record_download(database, SHA, None, day)
    record_download(database, OTHER, None, date(2026, 11, 1))
    counts = {(t.sha256, t.day, t.school_id): t.count for t in download_counts(db, date(2026, 11, 20))}
    assert counts == {(SHA, day, school.id): 3, (SHA, day, None): 2}
    assert len(download_counts(db, date(2026, 1, 1))) == 3

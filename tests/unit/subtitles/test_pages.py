"""Subtitles on pages: the uploader's plain form (no JavaScript), and <track>s on the lesson page."""

from __future__ import annotations

import io
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.subtitles.models import Subtitle
from tests.conftest import Accounts
from tests.support.courses import seed_course
from tests.unit.uploads.test_views import _csrf, _signed_in

SRT = "1\n00:00:01,000 --> 00:00:03,000\n今天学习配方法\n".encode("gbk")


def test_uploader_attaches_and_removes_subtitles_with_a_plain_form(app: Flask, make: Accounts, db: Session) -> None:
    school = make.school()
    seeded = seed_course(app.extensions["hub.storage"], db, school.id)
    client = _signed_in(app, make, school=school)
    video = seeded.material_ids["video"]
    page = client.get(f"/upload/lessons/{seeded.lesson_ids[0]}")
    assert page.status_code == 200
    action = f"/upload/materials/{video}/subtitles"
    assert f'action="{action}"' in page.text and 'enctype="multipart/form-data"' in page.text
    token = _csrf(page.text)

    bad = client.post(
        action,
        data={
            "csrf_token": token,
            "language": "zh",
            "file": (io.BytesIO(b"1\n00:00:09,000 --> 00:00:01,000\nx\n"), "a.srt"),
        },
    )
    # The lesson page again, with the reason in the reader's language (Chinese by default).
    assert bad.status_code == 422 and "第 2 行" in bad.text and "结束时间早于开始时间" in bad.text
    assert db.scalar(select(Subtitle)) is None

    done = client.post(
        action, data={"csrf_token": token, "language": "zh", "label": "普通话", "file": (io.BytesIO(SRT), "a.srt")}
    )
    assert done.status_code == 303 and done.headers["Location"].endswith(f"#material-{video}")
    page = client.get(f"/upload/lessons/{seeded.lesson_ids[0]}")
    assert "普通话" in page.text and "1 条字幕" in page.text
    removed = client.post(f"{action}/zh/delete", data={"csrf_token": _csrf(page.text)})
    assert removed.status_code == 303
    db.expire_all()
    assert db.scalar(select(Subtitle)) is None


def test_lesson_page_has_tracks_and_starts_where_a_link_says(
    app: Flask, client: FlaskClient, make: Accounts, db: Session
) -> None:
    school = make.school()
    seeded = seed_course(app.extensions["hub.storage"], db, school.id)
    up = make.bearer(make.user("up@haidian.cn", db.get_one(School, school.id), "uploader"))
    video = seeded.material_ids["video"]
    for language, text in (("zh", SRT), ("en", b"1\n00:00:01,000 --> 00:00:02,000\nHello\n")):
        r = client.post(
            f"/api/v1/materials/{video}/subtitles",
            data={"file": (io.BytesIO(text), "a.srt"), "language": language},
            headers=up,
        )
        assert r.status_code == 201
    lesson = f"/lessons/{seeded.lesson_ids[0]}"
    zh_page = client.get(lesson, headers={"Accept-Language": "zh-CN"}).text
    tracks = re.findall(r"<track [^>]*>", zh_page)
    assert len(tracks) == 2 and all('kind="subtitles"' in t and "/api/v1/subtitles/" in t for t in tracks)
    assert [t for t in tracks if " default" in t] == [t for t in tracks if 'srclang="zh"' in t]
    en_page = client.get(lesson, headers={"Accept-Language": "en"}).text
    assert next(t for t in re.findall(r"<track [^>]*>", en_page) if " default" in t).count('srclang="en"') == 1
    # A link from a transcript hit: the media fragment starts the player there, no script needed.
    started = client.get(f"{lesson}?t=83&m={video}").text
    sources = re.findall(r'<source src="([^"]+)"', started)
    assert sources and all(s.endswith("#t=83") for s in sources)
    assert "#t=" not in "".join(re.findall(r'<source src="([^"]+)"', client.get(f"{lesson}?t=83&m=99999").text))
    assert "#t=" not in client.get(f"{lesson}?t=-5").text

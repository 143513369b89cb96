"""Course ZIPs carry each subtitle track beside its video, named like it, and the offline page uses it."""

from __future__ import annotations

import base64
import io
import json
import zipfile

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.accounts.models import School
from tests.conftest import Accounts
from tests.support.courses import seed_course

SRT = "1\n00:00:01,000 --> 00:00:03,000\n今天学习配方法\n".encode("gbk")


def test_the_zip_has_the_vtt_beside_the_video(app: Flask, client: FlaskClient, db: Session, make: Accounts) -> None:
    school = make.school()
    seeded = seed_course(app.extensions["hub.storage"], db, school.id)
    up = make.bearer(make.user("up@haidian.cn", db.get_one(School, school.id), "uploader"))
    before = client.get(f"/courses/{seeded.course_id}/download?quality=240p")
    before.close()
    r = client.post(
        f"/api/v1/materials/{seeded.material_ids['video']}/subtitles",
        data={"file": (io.BytesIO(SRT), "a.srt"), "language": "zh"},
        headers=up,
    )
    assert r.status_code == 201
    vtt = client.get(r.json["url"]).data

    for quality in ("240p", "360p", "original"):
        response = client.get(f"/courses/{seeded.course_id}/download?quality={quality}")
        assert response.status_code == 200 and response.headers["Content-Length"] == str(len(response.data))
        archive = zipfile.ZipFile(io.BytesIO(response.data))
        response.close()  # frees its slot among the streamed downloads
        assert archive.testzip() is None
        manifest = json.loads(archive.read("manifest.json"))
        video = next(
            f["path"]
            for f in manifest["files"]
            if f.get("material", {}).get("id") == seeded.material_ids["video"] and "subtitles" not in f
        )
        track = video.rsplit(".", 1)[0] + ".zh.vtt"
        assert archive.read(track) == vtt
        entry = next(f for f in manifest["files"] if f["path"] == track)
        assert entry["media_type"] == "text/vtt"
        assert entry["subtitles"] == {"language": "zh", "label": "中文", "for": video}
        sums = archive.read("SHA256SUMS").decode()
        assert f"{entry['sha256']}  {track}" in sums
        page = archive.read("index.html").decode()
        # The page carries the track's bytes: Chromium refuses a <track> from another file:// URL.
        data_url = "data:text/vtt;charset=utf-8;base64," + base64.b64encode(vtt).decode()
        assert f'<track kind="subtitles" srclang="zh" label="中文" src="{data_url}" default>' in page
    # The subtitles are part of what the ZIP's entity tag names.
    after = client.get(f"/courses/{seeded.course_id}/download?quality=240p")
    assert after.status_code == 200, after.headers
    assert before.headers["ETag"] != after.headers["ETag"]

"""Whole-course ZIPs (choice of files, manifest, offline index.html) and the data-saver switch."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import date
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.media.downloads import download_counts
from hub.media.views import DATA_SAVER_COOKIE
from tests.conftest import Accounts
from tests.support.courses import SeededCourse, seed_course


@pytest.fixture
def seeded(app: Flask, db: Session, make: Accounts) -> SeededCourse:
    return seed_course(app.extensions["hub.storage"], db, make.school().id)


def fetch(client: FlaskClient, seeded: SeededCourse, **kw: Any) -> tuple[zipfile.ZipFile, dict[str, Any], bytes]:
    r = client.get(f"/courses/{seeded.course_id}/download", **kw)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Length"] == str(len(r.data))
    archive = zipfile.ZipFile(io.BytesIO(r.data))
    assert archive.testzip() is None
    return archive, json.loads(archive.read("manifest.json")), r.data


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "poster") and value is not None:
                self.targets.append(value)


def test_manifest_sums_match_the_files(client: FlaskClient, seeded: SeededCourse) -> None:
    archive, manifest, _ = fetch(client, seeded)
    assert manifest["format"] == "oer-hub-course/1"
    assert manifest["course"]["title"] == "一元二次方程" and manifest["course"]["school"] == "海淀实验小学"
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(archive.namelist()) == set(listed) | {"manifest.json", "SHA256SUMS"}
    for path, entry in listed.items():
        data = archive.read(path)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    sums = archive.read("SHA256SUMS").decode().splitlines()
    assert sorted(sums) == sorted(f"{f['sha256']}  {f['path']}" for f in manifest["files"])


def test_offline_index_links_only_files_in_the_zip(client: FlaskClient, seeded: SeededCourse) -> None:
    archive, manifest, _ = fetch(client, seeded)
    page = archive.read("index.html").decode("utf-8")
    assert '<meta charset="utf-8">' in page and "配方法讲解" in page
    parser = Links()
    parser.feed(page)
    assert parser.targets, "the offline page links its files"
    names = set(archive.namelist())
    for target in parser.targets:
        assert "://" not in target and not target.startswith("/"), target  # relative: works from file://
        assert target in names, target
    media = [f["path"] for f in manifest["files"] if f["path"] != "index.html"]
    assert all(path in parser.targets for path in media)  # and every file is reachable from it
    assert re.search(r'<video controls[^>]* src="01 配方法/01 配方法讲解.mp4"', page)


def profiles(manifest: dict[str, Any]) -> dict[str, str]:
    # The file chosen for each material (not its poster or subtitles, which go with it).
    return {f["material"]["title"]: f["profile"] for f in manifest["files"] if f.get("profile", "poster") != "poster"}


def test_quality_chooses_the_files(client: FlaskClient, seeded: SeededCourse) -> None:
    _, smallest, _ = fetch(client, seeded, query_string={"quality": "smallest"})
    assert profiles(smallest) == {"配方法讲解": "video-240p", "练习题": "document", "图示": "original"}
    assert [s["title"] for s in smallest["skipped"]] == ["还在处理"]  # still processing: not in the ZIP
    _, best, _ = fetch(client, seeded, query_string={"quality": "best"})
    assert profiles(best)["配方法讲解"] == "video-360p"
    _, p360, _ = fetch(client, seeded, query_string={"quality": "360p"})
    assert profiles(p360)["配方法讲解"] == "video-360p"
    _, original, _ = fetch(client, seeded, query_string={"quality": "original"})
    assert set(profiles(original).values()) == {"original"} and not original["skipped"]
    assert client.get(f"/courses/{seeded.course_id}/download?quality=4k").status_code == 422


def _player(page: str) -> str:
    """The player's markup alone (the page's JSON-LD also names every rendition, in its own order)."""
    found = re.search(r"<video\b.*?</video>", page, re.S)
    assert found, "no <video> on the page"
    return found[0]


def test_data_saver_is_the_default_and_can_be_turned_off(client: FlaskClient, seeded: SeededCourse) -> None:
    _, manifest, _ = fetch(client, seeded)
    assert manifest["quality"] == "smallest"
    lesson = f"/lessons/{seeded.lesson_ids[0]}"
    smallest, largest = seeded.by_role["video-240p"], seeded.by_role["video-360p"]
    page = _player(client.get(lesson).get_data(as_text=True))
    assert page.index(smallest) < page.index(largest)  # the first <source> is what plays
    # The switch is a plain form post without a CSRF token (see hub.media.views).
    r = client.post("/preferences/data-saver", data={"data_saver": "0", "next": lesson})
    assert r.status_code == 303 and r.headers["Location"].endswith(lesson)
    assert f"{DATA_SAVER_COOKIE}=0" in r.headers["Set-Cookie"]
    page = client.get(lesson).get_data(as_text=True)
    assert _player(page).index(largest) < _player(page).index(smallest)
    assert '<b id="data-saver-state">关</b>' in page
    _, manifest, _ = fetch(client, seeded)
    assert manifest["quality"] == "best"
    client.post("/preferences/data-saver", data={"data_saver": "1", "next": lesson})
    _, manifest, _ = fetch(client, seeded)
    assert manifest["quality"] == "smallest"


def test_data_saver_switch_refuses_other_sites(client: FlaskClient) -> None:
    r = client.post("/preferences/data-saver", data={"data_saver": "0"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "Set-Cookie" not in r.headers
    r = client.post("/preferences/data-saver", data={"data_saver": "0", "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["Location"] == "/"


def test_course_page_links_the_zip_with_its_size(client: FlaskClient, seeded: SeededCourse) -> None:
    page = client.get(f"/courses/{seeded.course_id}").get_data(as_text=True)
    link = re.search(r'<a id="download-course" href="([^"]+)"[^>]*>.*?ZIP[^0-9]*([0-9.,]+ [KM]?B)', page, re.S)
    assert link is not None
    size = client.head(link.group(1)).headers["Content-Length"]
    assert link.group(2) == f"{int(size) / 1024:.1f} KB"


def test_ranges_and_conditionals_on_the_zip(client: FlaskClient, seeded: SeededCourse, db: Session) -> None:
    url = f"/courses/{seeded.course_id}/download"
    _, _, whole = fetch(client, seeded)
    etag = client.head(url).headers["ETag"]
    half = len(whole) // 2
    rest = client.get(url, headers={"Range": f"bytes={half}-", "If-Range": etag})
    assert rest.status_code == 206 and rest.headers["Content-Range"] == f"bytes {half}-{len(whole) - 1}/{len(whole)}"
    assert whole[:half] + rest.data == whole
    assert client.get(url, headers={"Range": "bytes=-22"}).data == whole[-22:]
    stale = client.get(url, headers={"Range": f"bytes={half}-", "If-Range": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200 and stale.data == whole
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    unsatisfiable = client.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert unsatisfiable.status_code == 416 and unsatisfiable.headers["Content-Range"] == f"bytes */{len(whole)}"
    # Four bodies ran to the last byte (two 200s, two 206s to the end): each media file counted four times.
    db.rollback()
    counts = {t.sha256: t.count for t in download_counts(db, date(2000, 1, 1))}
    assert counts[seeded.by_role["video-240p"]] == counts[seeded.by_role["document"]] == 4
    assert seeded.by_role["video-360p"] not in counts and seeded.by_role["poster"] not in counts


def test_etag_follows_the_content(app: Flask, client: FlaskClient, seeded: SeededCourse, db: Session) -> None:
    from hub.catalog.models import Material

    url = f"/courses/{seeded.course_id}/download"
    before = client.head(url).headers["ETag"]
    assert client.head(url).headers["ETag"] == before  # stable across requests
    pending = db.get(Material, seeded.material_ids["pending"])
    assert pending is not None
    pending.title = "改了标题"
    db.commit()
    assert client.head(url).headers["ETag"] != before


def test_visibility(app: Flask, client: FlaskClient, db: Session, make: Accounts) -> None:
    school = make.school("另一所学校")
    draft = seed_course(app.extensions["hub.storage"], db, school.id, status="draft", title="草稿")
    assert client.get(f"/courses/{draft.course_id}/download").status_code == 404
    assert client.get("/courses/999/download").status_code == 404


def test_a_course_without_lessons_is_a_valid_small_zip(client: FlaskClient, db: Session, make: Accounts) -> None:
    from hub.catalog.models import Course

    course = Course(
        school_id=make.school().id,
        title="空课程",
        category="curriculum",
        subject="math",
        grades_mask=1 << 9,
        language="zh",
        license="CC-BY-4.0",
        status="published",
    )
    db.add(course)
    db.commit()
    assert "download-course" in client.get(f"/courses/{course.id}").get_data(as_text=True)
    r = client.get(f"/courses/{course.id}/download")
    archive = zipfile.ZipFile(io.BytesIO(r.data))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["SHA256SUMS", "index.html", "manifest.json"]
    assert [f["path"] for f in json.loads(archive.read("manifest.json"))["files"]] == ["index.html"]


def _video(original_size: int, renditions: dict[str, int | None], status: str = "ready") -> Any:
    """A transient material: profile → blob size (None: skipped, the original was smaller)."""
    from hub.catalog.models import Material
    from hub.media.models import Blob, Rendition

    material = Material(kind="video", title="t", filename="a.mp4", status=status)
    material.original = Blob(sha256="0" * 64, size=original_size, media_type="video/mp4")
    for i, (profile, size) in enumerate(renditions.items(), start=1):
        if size is None:
            material.renditions.append(Rendition(profile=profile, status="skipped"))
        else:
            blob = Blob(sha256=str(i) * 64, size=size, media_type="video/mp4")
            material.renditions.append(Rendition(profile=profile, status="ready", blob=blob, bytes=size))
    return material


@pytest.mark.parametrize(
    ("original", "renditions", "quality", "expected"),
    [
        (900, {"video-360p": 600, "video-240p": 300}, "smallest", "video-240p"),
        (900, {"video-360p": 600, "video-240p": 300}, "best", "video-360p"),
        (900, {"video-360p": 600, "video-240p": 300}, "240p", "video-240p"),
        (200, {"video-360p": 600, "video-240p": None}, "smallest", "original"),  # skipped: the original is smaller
        (200, {"video-360p": 600, "video-240p": None}, "240p", "original"),
        (900, {"video-360p": 600}, "240p", "video-360p"),  # lacking the profile: the cheapest there is
        (900, {"video-360p": 600, "video-240p": 300}, "original", "original"),
    ],
)
def test_choose_file(original: int, renditions: dict[str, int | None], quality: str, expected: str) -> None:
    from hub.media.course_download import choose_file

    chosen = choose_file(_video(original, renditions), quality)
    assert chosen is not None and chosen.profile == expected


def test_a_video_still_processing_has_nothing_to_download() -> None:
    from hub.media.course_download import choose_file

    assert choose_file(_video(900, {}, status="processing"), "smallest") is None


def test_streamed_zips_are_bounded_and_give_their_slot_back(app: Flask, seeded: SeededCourse) -> None:
    # The test client has no wsgi.file_wrapper, so every ZIP takes the streamed path that
    # S3 storage takes, holding a server thread while the client reads.
    url = f"/courses/{seeded.course_id}/download"
    limit = app.extensions["hub.settings"].streamed_downloads
    client = app.test_client()
    held = [client.get(url, buffered=False) for _ in range(limit)]
    assert [r.status_code for r in held] == [200] * limit
    refused = client.get(url)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "60"
    assert "一分钟后再试" in refused.get_data(as_text=True)
    assert client.get(url, headers={"Accept": "application/json"}).get_json()["error"]["code"] == "busy"
    held.pop().close()  # a client that left, or a download that ended, frees its slot
    again = client.get(url)
    assert again.status_code == 200 and zipfile.ZipFile(io.BytesIO(again.data)).testzip() is None
    for response in held:
        response.close()


# -- issue 14: names by title, posters, sizes, one language ------------------------------


def test_portable_names_keep_chinese_and_pass_windows_and_fat32() -> None:
    from hub.media.course_download import NAME_CHARS, portable_name

    assert portable_name("配方法讲解") == "配方法讲解"
    assert portable_name('a<b>c:d"e/f\\g|h?i*j') == "a b c d e f g h i j"
    assert portable_name("第一课\x00\x1f\u200b\n结束. . ") == "第一课 结束"
    for reserved in ("CON", "con", "Nul.txt", "COM1", "lpt9.mp4", "AUX "):
        assert portable_name(reserved).startswith("_"), reserved
    assert portable_name("CONSOLE") == "CONSOLE"
    assert portable_name("...") == "_" and portable_name("") == "_"
    assert len(portable_name("长" * 500)) == NAME_CHARS


def test_zip_names_files_by_title_with_posters(client: FlaskClient, seeded: SeededCourse) -> None:
    archive, manifest, _ = fetch(client, seeded)
    names = set(archive.namelist())
    assert "01 配方法/01 配方法讲解.mp4" in names  # lesson 1, material 1, by their titles
    assert "01 配方法/01 配方法讲解.jpg" in names  # its poster, beside it under the same name
    assert archive.read("01 配方法/01 配方法讲解.jpg") == seeded.blobs[seeded.by_role["poster"]]
    for info in archive.infolist():
        assert info.flag_bits & 0x800  # UTF-8 names: unzip tools keep the Chinese
        for part in info.filename.split("/"):
            assert not re.search(r'[<>:"\\|?*\x00-\x1f]', part) and part == part.rstrip(". ")
    page = archive.read("index.html").decode()
    assert 'poster="01 配方法/01 配方法讲解.jpg"' in page
    posters = [f for f in manifest["files"] if "poster" in f]
    assert [p["poster"]["for"] for p in posters] == ["01 配方法/01 配方法讲解.mp4"]


def test_zip_names_from_awkward_titles(app: Flask, db: Session, make: Accounts) -> None:
    from sqlalchemy import select

    from hub.catalog.models import Material
    from hub.media.course_download import plan_course_download

    seeded = seed_course(app.extensions["hub.storage"], db, make.school().id)
    materials = {m.title: m for m in db.scalars(select(Material))}
    materials["练习题"].title = "CON"  # a Windows device name
    materials["图示"].title = "图示: 第1张?. "
    db.commit()
    with app.test_request_context():
        plan = plan_course_download(db, None, app.extensions["hub.storage"], seeded.course_id, "smallest")
    paths = {f.chosen.material.title: f.path for f in plan.files}
    folder = paths["CON"].split("/")[0]
    assert folder.endswith(" 公式法")
    assert paths["CON"] == f"{folder}/01 CON.pdf"  # numbered, so no longer a device name
    assert paths["图示: 第1张?. "] == f"{folder}/02 图示 第1张.png"


def test_offline_page_is_in_the_requesters_language_with_small_sizes(client: FlaskClient, seeded: SeededCourse) -> None:
    zh = fetch(client, seeded, headers={"Accept-Language": "zh-CN"})[0].read("index.html").decode()
    en = fetch(client, seeded, headers={"Accept-Language": "en"})[0].read("index.html").decode()
    assert '<html lang="zh-CN">' in zh and "离线版" in zh and "尚未处理完" in zh
    assert '<html lang="en">' in en and "Offline copy" in en and "not processed yet" in en
    # No English words on the Chinese page but the file formats' and licence's names.
    body = zh.split("<body>", 1)[1]  # after the head's style sheet
    visible = re.sub(r"<[^>]+>|manifest\.json|sha256|CC-BY-SA-4\.0|\.mp4|\.pdf|\.png|\.jpg", "", body)
    assert not re.search(r"[A-Za-z]{3,}", visible), re.findall(r"[A-Za-z]{3,}", visible)
    assert "离线版" not in en and "尚未" not in en
    # A 12 KB file reads 11.7 KB, not 0.0 MB.
    assert "0.0 MB" not in zh and "0.0 MB" not in en and re.search(r"· [0-9.,]+ KB</p>", en)


def test_offline_page_lists_a_videos_chapters_as_links_into_the_file(
    app: Flask, client: FlaskClient, db: Session, seeded: SeededCourse
) -> None:
    from sqlalchemy import select

    from hub.catalog.models import Material

    video = db.scalars(select(Material).where(Material.title == "配方法讲解")).one()
    video.chapters = [0.0, 8.0, 17.0]
    db.commit()
    archive, manifest, _ = fetch(client, seeded, headers={"Accept-Language": "zh"})
    page = archive.read("index.html").decode()
    href = "01 配方法/01 配方法讲解.mp4"
    assert f'<a href="{href}#t=8">第 2 页</a> 0:08' in page and f'<a href="{href}#t=17">第 3 页</a> 0:17' in page
    [entry] = [f for f in manifest["files"] if f["path"] == href]
    assert entry["chapters"] == [0.0, 8.0, 17.0]

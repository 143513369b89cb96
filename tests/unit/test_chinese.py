"""Chinese end to end: no English on the Chinese side, in pages, API errors and the page scripts.

The catalog check (tests/unit/test_i18n.py) finds strings marked for translation
without a translation; these tests find the ones never marked: they look at what
a reader actually gets in Chinese.
"""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub import i18n
from hub.uploads.messages import SCRIPT_MESSAGES
from tests.conftest import Accounts
from tests.support.chinese import english_words

STATIC = Path(i18n.__file__).parent / "static"
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

# ---------------------------------------------------------------- the page scripts

_JS_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_JS_STRING = re.compile(r"'((?:[^'\\\n]|\\.)*)'|\"((?:[^\"\\\n]|\\.)*)\"")
# Where a literal becomes text on the screen: any letter there is a word a reader sees.
_JS_TEXT_SINK = re.compile(
    r"(?:textContent|innerText|innerHTML|placeholder|title|value)\s*=\s*$"
    r"|(?:createTextNode|alert|confirm|prompt|say|fail)\(\s*$"
    r"|\bel\([^()]*,[^()]*,\s*$"
    r"|setAttribute\(\s*['\"](?:title|aria-label|placeholder|alt)['\"]\s*,\s*$"
)
# Two words in a row, or one with a sentence's end: a message, not a key, selector or header.
_JS_WORDS = re.compile(r"[A-Za-z]{2,}[ ,;]+[A-Za-z]{2,}|[A-Za-z]{2,}(?:…|\.\.\.)|^[A-Z][a-z]+[.!?]$")


def script_texts(source: str) -> list[str]:
    """String literals in a script that read as words for a person: each should be a message key instead."""
    code = _JS_COMMENT.sub(lambda m: " " * len(m.group(0)), source)
    found = []
    for match in _JS_STRING.finditer(code):
        text = match.group(1) if match.group(1) is not None else match.group(2)
        if text == "use strict":
            continue
        before = code[max(0, match.start() - 80) : match.start()]
        if CJK.search(text) or _JS_WORDS.search(text) or (re.search("[A-Za-z]", text) and _JS_TEXT_SINK.search(before)):
            found.append(text)
    return found


def test_the_page_scripts_have_no_words_of_their_own() -> None:
    found = {path.name: texts for path in sorted(STATIC.glob("*.js")) if (texts := script_texts(path.read_text()))}
    assert not found, f"give these to the script from the server (see hub/uploads/messages.py): {found}"


def test_the_script_text_check_can_fail() -> None:
    source = """
      // a comment: Connection lost
      this.say('已暂停 Paused');
      el('button', 'pause', 'Pause');
      node.textContent = 'Ready';
      this.fail('The file is too large.');
      var s = 'Connection lost; retrying';
      var u = 'Uploading…', done = 'Done.', key = 'hub.position.';
      xhr.setRequestHeader('Upload-Offset', 'application/offset+octet-stream');
      el('span', 'state', t('paused'));
      form.querySelectorAll('[data-status=pending], [data-status=processing]');
    """
    assert script_texts(source) == [
        "已暂停 Paused",
        "Pause",
        "Ready",
        "The file is too large.",
        "Connection lost; retrying",
        "Uploading…",
        "Done.",
    ]


def _upload_page_messages(app: Flask, language: str) -> dict[str, object]:
    """The upload script's messages as the lesson page renders them into its form."""
    from hub.uploads.messages import script_messages

    with app.test_request_context(headers={"Accept-Language": language}):
        rendered = app.jinja_env.from_string("<form data-messages='{{ m|tojson }}'>").render(m=script_messages(2**30))
    attribute = re.search(r"data-messages='([^']*)'", rendered)
    assert attribute, rendered
    messages: dict[str, object] = json.loads(html.unescape(attribute.group(1)))
    return messages


def test_every_message_the_upload_script_uses_is_rendered_in_both_languages(app: Flask) -> None:
    source = _JS_COMMENT.sub("", (STATIC / "tus-upload.js").read_text())
    keys = set(re.findall(r"\bt\(\s*'([^']+)'", source))
    tables = set(re.findall(r"\blabel\(\s*'([^']+)'", source))
    assert {"paused", "retrying_in"} <= keys and tables == {"status", "kind"}  # the scan itself works
    zh, en = _upload_page_messages(app, "zh"), _upload_page_messages(app, "en")
    assert keys | tables <= set(zh), f"the script asks for keys the page does not render: {keys - set(zh)}"
    assert set(SCRIPT_MESSAGES) <= keys | {"too_large"}, f"unused: {set(SCRIPT_MESSAGES) - keys}"
    for key, text in zh.items():
        texts = text.values() if isinstance(text, dict) else [text]
        english = en[key].values() if isinstance(en[key], dict) else [en[key]]  # type: ignore[union-attr]
        assert all(CJK.search(str(t)) for t in texts), f"{key}: {text} is not Chinese"
        assert not any(CJK.search(str(t)) for t in english), f"{key}: {en[key]} is not English"
    assert "1.0 GB" in str(zh["too_large"])


# ---------------------------------------------------------------- API errors


def _error_classes() -> set[str]:
    import importlib
    import pkgutil

    import hub
    from hub.errors import HubError

    for module in pkgutil.walk_packages(hub.__path__, "hub."):
        importlib.import_module(module.name)
    found, pending = set(), [HubError]
    while pending:
        cls = pending.pop()
        found.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return found


def untranslatable_raises(source: str, classes: set[str]) -> list[str]:
    """Calls making a hub error whose message is not a template marked with N_ (an f-string, a plain literal)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        message = node.args[0]
        if name in classes and isinstance(message, ast.Constant | ast.JoinedStr | ast.BinOp):
            found.append(f"{node.lineno}: {ast.unparse(message)[:80]}")
    return found


def test_every_error_message_is_a_template_the_catalog_translates() -> None:
    classes = _error_classes()
    hub_dir = STATIC.parent
    found = {
        str(path.relative_to(hub_dir)): lines
        for path in sorted(hub_dir.rglob("*.py"))
        if (lines := untranslatable_raises(path.read_text(encoding="utf-8"), classes))
    }
    assert not found, f"mark these messages with N_ and pass values as parameters (%(name)s): {found}"


def test_the_error_message_check_can_fail() -> None:
    source = 'raise Invalid(f"No course {id}.")\nraise NotFound("Gone.")\nraise Conflict(N_("Taken %(x)s."), x=1)\n'
    assert untranslatable_raises(source, {"Invalid", "NotFound", "Conflict"}) == [
        "1: f'No course {id}.'",
        "2: 'Gone.'",
    ]


def _api_errors(client: FlaskClient, bearer: dict[str, str], language: str) -> dict[str, dict[str, object]]:
    """One error of each kind a client of the API meets, in ``language``."""
    headers = {"Accept-Language": language}
    auth = {**headers, **bearer}
    tus = {**auth, "Tus-Resumable": "1.0.0"}
    answers = {
        "invalid body": client.post("/api/v1/courses", json={"title": "", "grades": []}, headers=auth),
        "invalid query": client.get("/api/v1/courses?grade=12&page=x", headers=headers),
        "invalid_json": client.post("/api/v1/courses", data=b"{", content_type="application/json", headers=auth),
        "unauthorized": client.post("/api/v1/courses", json={}, headers=headers),
        "not_found": client.get("/api/v1/courses/999", headers=headers),
        "no route": client.get("/api/v1/nothing-here", headers=headers),
        "method": client.delete("/api/v1/courses", headers=headers),
        "tus version": client.post("/api/v1/uploads/", headers={**auth, "Upload-Length": "10"}),
        "tus header": client.post("/api/v1/uploads/", headers=tus),
        "tus empty": client.post("/api/v1/uploads/", headers={**tus, "Upload-Length": "0"}),
        "tus metadata": client.post(
            "/api/v1/uploads/", headers={**tus, "Upload-Length": "9", "Upload-Metadata": "filename !!"}
        ),
    }
    bodies = {}
    for name, answer in answers.items():
        assert answer.status_code >= 400 and answer.is_json, (name, answer.status_code, answer.text[:200])
        bodies[name] = answer.json["error"]
    return bodies


def test_api_errors_answer_in_the_language_asked_for_with_the_same_codes(client: FlaskClient, make: Accounts) -> None:
    bearer = make.bearer(make.user("up@haidian.cn", make.school()))
    zh = _api_errors(client, bearer, "zh-CN,zh;q=0.9")
    en = _api_errors(client, bearer, "en-US,en;q=0.8")
    assert {k: v["code"] for k, v in zh.items()} == {k: v["code"] for k, v in en.items()}
    for name in zh:
        texts = [str(zh[name]["message"]), *map(str, dict(zh[name]["fields"]).values())]  # type: ignore[call-overload]
        english = [str(en[name]["message"]), *map(str, dict(en[name]["fields"]).values())]  # type: ignore[call-overload]
        assert all(CJK.search(t) for t in texts), f"{name}: {zh[name]} is not Chinese"
        assert not any(CJK.search(t) for t in english), f"{name}: {en[name]} is not English"
    # Labels, not field names; pydantic's own words never.
    assert zh["invalid body"]["fields"]["grades"] == "年级：请至少选择 1 项。"  # type: ignore[index]
    assert zh["invalid query"]["fields"] == {"grade": "年级不能大于 9。", "page": "页码必须是整数。"}
    assert en["invalid query"]["fields"] == {
        "grade": "Grade must be at most 9.",
        "page": "Page must be a whole number.",
    }
    # A program that names no language gets the English it always got.
    plain = client.get("/api/v1/courses/999").json["error"]
    assert plain == en["not_found"]


def test_every_field_of_the_api_has_a_label() -> None:
    from hub.api import OPERATIONS
    from hub.i18n import FIELD_LABELS

    models = {m for op in OPERATIONS for m in (op.body, op.query, op.form) if m is not None}
    assert len(models) > 5
    missing = {f"{m.__name__}.{name}" for m in models for name in m.model_fields if name not in FIELD_LABELS}
    assert not missing, f"add labels to hub.i18n.FIELD_LABELS for: {sorted(missing)}"


# ---------------------------------------------------------------- pages


# Words that are the same on the Chinese side: names, units, formats, the language switch.
def test_the_page_check_can_fail() -> None:
    html = """<html><head><title>课程 Courses</title><script>var a = 'Pause';</script></head><body>
      <p>排队中 · processing failed · 12.3 MB · CC-BY-SA-4.0 · up@haidian.cn · 360p · SSIM 0.95</p>
      <button title="Remove">删除</button><input type="submit" value="Save">
      <a lang="en" href="/language/en">English</a><p lang="en">An English course</p>
      <code>hub sync pull</code><p>运行 hub sync init --token T，HUB_UPSTREAM_URL · Asia/Shanghai</p>
      <img alt="封面" src="/x.png"><br><p>Grade 3</p></body></html>"""
    assert english_words(html) == ["Courses", "processing failed", "Remove", "Save", "Grade"]


def _seed(db: Session, make: Accounts, app: Flask) -> dict[str, int]:
    """A catalog with something in every state: a published and a draft course, materials pending to failed."""
    from hub.catalog import services
    from hub.catalog.models import Material
    from hub.catalog.schemas import CourseCreate, LessonCreate
    from hub.media.models import Rendition
    from tests.conftest import COURSE
    from tests.unit.uploads.conftest import mp4_bytes

    school = make.school()
    make.school("通渭县第一小学", "rural")
    uploader = make.user("up@haidian.cn", school, "uploader", password=PASSWORD)
    make.user("admin@haidian.cn", school, "admin", password=PASSWORD)
    course = services.create_course(db, uploader, CourseCreate(**COURSE))
    lesson = services.create_lesson(db, uploader, course.id, LessonCreate(title="配方法", unit="第二十一章"))
    services.create_lesson(db, uploader, course.id, LessonCreate(title="公式法"))
    storage = app.extensions["hub.storage"]
    states = [("pending", 0, ""), ("processing", 25, ""), ("ready", 100, ""), ("failed", 0, "")]
    for i, (status, progress, error) in enumerate(states):
        material = services.add_material(
            db,
            storage,
            uploader,
            lesson.id,
            io.BytesIO(mp4_bytes(4000, seed=i)),
            filename=f"第{i}课.mp4",
            title=f"第{i}课",
        )
        db.flush()
        row = db.get(Material, material.id)
        assert row is not None
        row.status, row.progress, row.error = status, progress, error
        if status == "ready":
            size = {"bytes": 4000, "kbps": 180.0, "width": 426, "height": 240, "duration": 12.0, "ssim": 0.96}
            db.add(
                Rendition(
                    material_id=row.id, profile="video-240p", status="ready", blob_sha256=row.original_sha256, **size
                )
            )
    services.publish_course(db, uploader, course.id)
    draft = services.create_course(db, uploader, CourseCreate(**{**COURSE, "title": "草稿课程"}))
    db.commit()
    return {"course": course.id, "lesson": lesson.id, "draft": draft.id}


PASSWORD = "correct horse"
_NOT_PAGES = ("/api/", "/static/", "/language/", "/logout", "/oai", "/sitemap", "/robots", "/blobs/")


def _crawl(client: FlaskClient, starts: list[str], limit: int = 60) -> dict[str, str]:
    """Pages of this site reachable from ``starts`` by links, as HTML in Chinese."""
    pages: dict[str, str] = {}
    queue = list(starts)
    while queue and len(pages) < limit:
        path = queue.pop(0)
        if path in pages:
            continue
        answer = client.get(path)
        if answer.mimetype != "text/html":
            continue
        pages[path] = answer.text
        for href in re.findall(r'href="(/[^"#]*)', answer.text):
            href = html.unescape(href)
            if not href.startswith(_NOT_PAGES) and "/download" not in href and href not in pages:
                queue.append(href)
    return pages


def _signed_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie("hub_lang", "zh")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token, "the sign-in form carries a CSRF token"
    form = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form).status_code in (302, 303)
    return client


def test_no_english_on_the_chinese_side_of_any_page(app: Flask, db: Session, make: Accounts) -> None:
    ids = _seed(db, make, app)
    anonymous = app.test_client()
    anonymous.set_cookie("hub_lang", "zh")
    # Error pages too: a bad filter, an unknown address, a refused method.
    starts = ["/", "/courses?grade=12&subject=x", "/nothing-here", "/search?q=方程", "/login"]
    pages = _crawl(anonymous, starts)
    pages |= _crawl(_signed_in(app, "up@haidian.cn"), ["/upload/", f"/upload/lessons/{ids['lesson']}"])
    pages |= _crawl(_signed_in(app, "admin@haidian.cn"), ["/admin/schools/", "/admin/sync/", "/admin/servers/"])
    assert {"/", "/upload/", f"/upload/lessons/{ids['lesson']}", f"/lessons/{ids['lesson']}"} <= set(pages)
    assert len(pages) >= 12, sorted(pages)
    found = {path: words for path, text in sorted(pages.items()) if (words := english_words(text))}
    assert not found, f"untranslated on the Chinese side: {found}"

"""The interface in Chinese and English: catalogs complete, language choice, natural formatting."""

from __future__ import annotations

import ast
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from hub import i18n

HUB = Path(i18n.__file__).parent
TEMPLATES = HUB / "templates"
ZH_PO = i18n.SOURCE_DIR / "zh" / "LC_MESSAGES" / "messages.po"


def _extracted() -> dict[str, str]:
    """Every message id in the code and templates, as `make messages` extracts them (id → where)."""
    keywords = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
    method_map = [("**/translations/**", "ignore"), ("templates/**.html", "jinja2"), ("**.py", "python")]
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        HUB, method_map=method_map, keywords=keywords
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        found.setdefault(msgid, f"hub/{filename}:{lineno}")
    return found


def test_every_interface_string_has_a_chinese_translation() -> None:
    with ZH_PO.open("rb") as f:
        catalog = read_po(f, locale="zh")
    extracted = _extracted()
    assert len(extracted) > 50  # the extraction itself works
    problems = []
    for msgid, where in sorted(extracted.items()):
        message = catalog.get(msgid)
        strings = [] if message is None else [message.string] if isinstance(message.string, str) else message.string
        if message is None or message.fuzzy or not strings or not all(strings):
            problems.append(f"{where}: {msgid!r} has no Chinese translation")
            continue
        problems += [f"{where}: {msgid!r}: {error}" for error in message.check(catalog)]
    assert not problems, "run `make messages`, then translate in hub/translations/zh:\n" + "\n".join(problems)


_TRANSLATORS = {*DEFAULT_KEYWORDS, "lazy_gettext"}


def _calls_inside_fstrings(source: str) -> list[int]:
    """Lines where a gettext call sits inside an f-string: Babel's extractor does not see it."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id in _TRANSLATORS:
                    lines.append(inner.lineno)
    return lines


def test_no_translated_string_hides_inside_an_fstring() -> None:
    found = {
        f"hub/{path.relative_to(HUB)}:{line}"
        for path in sorted(HUB.rglob("*.py"))
        for line in _calls_inside_fstrings(path.read_text(encoding="utf-8"))
    }
    assert not found, f"`make messages` would not extract these (move the call out of the f-string): {sorted(found)}"
    assert _calls_inside_fstrings("x = f'{gettext(\"Offline copy\")} · {n}'") == [1]


# Text that is the same in every language: units, symbols, data examples.
_SAME_IN_EVERY_LANGUAGE = {"kbit/s", "Mbit/s", "人教版", "—", "·", "›", "‹", "✕", "%", "/", ":", "?", "!"}
_JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.S)
_ATTRIBUTES = re.compile(r'\b(?:placeholder|title|alt|aria-label|value)="([^"]*)"')


def _bare_text(source: str) -> list[str]:
    """Human words in a template outside any Jinja expression (so outside every gettext call)."""
    source = re.sub(r"<(script|style)\b.*?</\1>", " ", source, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", _JINJA.sub(" ", source))
    words = re.split(r"\s+", re.sub(r"&[#\w]+;", " ", text))
    words += _ATTRIBUTES.findall(_JINJA.sub("", source))
    return [
        w
        for w in words
        if re.search(r"\w", w) and w not in _SAME_IN_EVERY_LANGUAGE and not re.fullmatch(r"[\d.,%]+", w)
    ]


def test_templates_have_no_text_outside_the_catalog() -> None:
    found = {
        str(path.relative_to(HUB)): words
        for path in sorted(TEMPLATES.rglob("*.html"))
        if (words := _bare_text(path.read_text(encoding="utf-8")))
    }
    assert not found, f"wrap these in {{{{ _('...') }}}}: {found}"


def test_the_bare_text_check_can_fail() -> None:
    assert _bare_text('<p>课时 Lessons {{ _("Lessons") }}</p><input placeholder="如：第一单元">') == [
        "课时",
        "Lessons",
        "如：第一单元",
    ]
    assert _bare_text('<p>{{ _("Lessons") }} · <span>{{ n }}</span> kbit/s</p>') == []


def _home(client: FlaskClient, **headers: str) -> str:
    return client.get("/", headers=headers).text


def test_language_from_accept_language_else_chinese(client: FlaskClient) -> None:
    assert '<html lang="zh-CN">' in _home(client)
    assert "按学科和年级浏览" in _home(client, **{"Accept-Language": "zh-TW,zh;q=0.9"})
    english = _home(client, **{"Accept-Language": "en-GB,en;q=0.8"})
    assert '<html lang="en">' in english and "Browse by subject and grade" in english and "按学科" not in english
    assert "按学科和年级浏览" in _home(client, **{"Accept-Language": "fr-FR,de;q=0.5"})
    assert "按学科和年级浏览" in _home(client, **{"Accept-Language": "en;q=0.2, zh-CN;q=0.9"})


def test_the_switch_is_a_link_remembered_in_a_cookie(client: FlaskClient) -> None:
    home = _home(client)
    assert 'href="/language/en?next=/"' in home
    switched = client.get("/language/en?next=/courses?subject%3Dmath")
    assert switched.status_code == 303 and switched.headers["Location"] == "/courses?subject=math"
    cookie = switched.headers["Set-Cookie"]
    assert cookie.startswith(f"{i18n.COOKIE}=en;") and "Max-Age=31536000" in cookie and "SameSite=Lax" in cookie
    # The cookie wins over the browser's language, on every page.
    listing = client.get("/courses?subject=math", headers={"Accept-Language": "zh-CN"})
    assert "Mathematics" in listing.text and 'href="/language/zh?next=/courses?subject%3Dmath"' in listing.text
    assert "按学科和年级浏览" in client.get("/language/zh", follow_redirects=True).text
    # Never a redirect to another site, and an unknown language changes nothing.
    assert client.get("/language/en?next=//evil.example/").headers["Location"] == "/"
    assert client.get("/language/en?next=https://evil.example/").headers["Location"] == "/"
    unknown = client.get("/language/fr?next=/courses")
    assert unknown.status_code == 303 and "Set-Cookie" not in unknown.headers


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "zh",
            ["800 B", "12.3 KB", "4.5 MB", "1.2 GB", "45 秒", "3 分 20 秒", "5 分钟", "1 小时 5 分", "2 小时",
             "3 分 20 秒", "1 秒", "2026年12月1日", "七至九年级", "三年级 / 四年级", "数学", "课后服务"],
        ),
        (
            "en",
            ["800 B", "12.3 KB", "4.5 MB", "1.2 GB", "45 s", "3 min 20 s", "5 min", "1 h 5 min", "2 h",
             "3 min 20 s", "1 s", "Dec 1, 2026", "Grades 7–9", "Grade 3 / Grade 4", "Mathematics", "After-school"],
        ),
    ],
)  # fmt: skip
def test_sizes_durations_and_dates_read_naturally(app: Flask, language: str, expected: list[str]) -> None:
    with app.test_request_context(headers={"Accept-Language": language}):
        assert [
            i18n.filesize(800),
            i18n.filesize(12_600),
            i18n.filesize(4_700_000),
            i18n.filesize(1_300_000_000),
            i18n.duration(45),
            i18n.duration(200),
            i18n.duration(300),
            i18n.duration(3900),
            i18n.duration(7200),
            # 6.3 MB at 256 kbit/s is 196.9 s: rounded up to the next 10 s, never promised shorter.
            i18n.download_time(6_300_000, 256),
            i18n.download_time(10, 256),
            i18n.date(datetime(2026, 11, 30, 20, 30, tzinfo=UTC)),  # already Dec 1 in Beijing (HUB_TIMEZONE)
            i18n.grades_label([9, 7, 8]),
            i18n.grades_label([3, 4]),
            i18n.subject_label("math"),
            i18n.category_label("after-school"),
        ] == expected


def test_catalogs_are_compiled_when_the_po_changes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "zh" / "LC_MESSAGES").mkdir(parents=True)
    po = source / "zh" / "LC_MESSAGES" / "messages.po"
    po.write_text('msgid ""\nmsgstr "Content-Type: text/plain; charset=utf-8\\n"\n\nmsgid "Home"\nmsgstr "首页"\n')
    target = tmp_path / "out"
    i18n.compile_catalogs(source, target)
    mo = target / "zh" / "LC_MESSAGES" / "messages.mo"
    assert "首页".encode() in mo.read_bytes()

    compiled_at = mo.stat().st_mtime_ns
    i18n.compile_catalogs(source, target)
    assert mo.stat().st_mtime_ns == compiled_at  # unchanged .po: nothing rewritten

    po.write_text(po.read_text().replace("首页", "主页"))
    os.utime(po, ns=(compiled_at + 10**9, compiled_at + 10**9))
    i18n.compile_catalogs(source, target)
    assert "主页".encode() in mo.read_bytes() and "首页".encode() not in mo.read_bytes()
    assert [p.name for p in mo.parent.iterdir()] == ["messages.mo"]  # no partial files left behind

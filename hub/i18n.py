"""The interface in Simplified Chinese and English (Flask-Babel).

Message ids are English; ``hub/translations/zh`` translates them. The language
is the ``hub_lang`` cookie when a reader chose one with the switch in the page
header (a plain link: no JavaScript, no account), else the best of
``Accept-Language``, else Chinese: most readers are Chinese teachers whose
phones do not always say so.

Catalogs are compiled from the ``.po`` files when the app starts, not by a
separate build step: a ``.mo`` is derived data, and compiling it here means a
fresh clone, an edited ``.po`` and a test run can never see a stale one (``make
install`` is skipped by a plain ``pytest``). It costs one ``stat`` per catalog
when nothing changed and ~20 ms when a ``.po`` did. The ``.mo`` goes beside its
``.po`` (git ignores it) or, when the package directory is read-only, into
``HUB_DATA_DIR/translations``.

Sizes, durations and dates are formatted here too, so that "12.3 MB",
"3 分 20 秒" / "3 min 20 s" and "2026年12月1日" / "Dec 1, 2026" read naturally.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from flask import Blueprint, Flask, has_request_context, redirect, request, url_for
from flask_babel import Babel, format_date, format_datetime, format_decimal, get_locale, gettext, lazy_gettext
from werkzeug.wrappers import Request, Response

from hub.catalogs import SOURCE_DIR as SOURCE_DIR
from hub.catalogs import compile_catalogs as compile_catalogs
from hub.config import Settings
from hub.inputs import safe_next
from hub.vocab import CATEGORIES, GRADE_NAMES, SUBJECTS

LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"
COOKIE = "hub_lang"
API_PREFIX = "/api/"
COOKIE_MAX_AGE = 365 * 24 * 3600
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}  # each in its own language: never translated

blueprint = Blueprint("i18n", __name__)


def N_(message: str) -> str:  # the gettext convention for "mark now, translate where shown"
    """Mark ``message`` for extraction; it is translated when shown (e.g. on an error page)."""
    return message


def select_locale() -> str:
    if not has_request_context():
        return DEFAULT_LOCALE
    return locale_of(request)


def locale_of(request: Request) -> str:
    """The language of the answer to ``request`` (also part of hub.pagecache's key)."""
    chosen = request.cookies.get(COOKIE)
    if chosen in LOCALES:
        return chosen
    # By quality, on the primary subtag: werkzeug's best_match prefers an exact "en;q=0.2"
    # over "zh-CN;q=0.9" for our bare "zh", which is the wrong answer for that reader.
    for tag, quality in request.accept_languages:
        primary = tag.split("-")[0].split("_")[0].lower()
        if quality > 0 and primary in LOCALES:
            return primary
    if request.path.startswith(API_PREFIX):
        # Programs that name no language (scripts, school servers) keep the English they always got.
        return "en"
    return DEFAULT_LOCALE


def current_locale() -> str:
    return str(get_locale() or DEFAULT_LOCALE).split("_")[0]


def _translation_dir(data_dir: Path) -> Path:
    try:
        compile_catalogs(SOURCE_DIR, SOURCE_DIR)
        return SOURCE_DIR
    except OSError:  # an installed, read-only package: compile into the instance's own directory
        target = data_dir / "translations"
        compile_catalogs(SOURCE_DIR, target)
        return target


# ---------------------------------------------------------------- vocabulary labels

# Codes of the data model as a reader sees them; lazy, so they follow each request's language.
CODE_LABELS = {
    "status": {
        "draft": lazy_gettext("draft"),
        "submitted": lazy_gettext("waiting for review"),
        "published": lazy_gettext("published"),
        "withdrawn": lazy_gettext("withdrawn"),
    },
    # A course's history (hub.catalog.history): what happened, as a sentence's verb.
    "event": {
        "submitted": lazy_gettext("submitted for review"),
        "approved": lazy_gettext("approved and published"),
        "returned": lazy_gettext("returned for changes"),
        "published": lazy_gettext("published"),
        "withdrawn": lazy_gettext("withdrawn"),
    },
    "material": {
        "pending": lazy_gettext("waiting"),
        "processing": lazy_gettext("processing"),
        "ready": lazy_gettext("ready"),
        "failed": lazy_gettext("processing failed"),
    },
    "kind": {
        "video": lazy_gettext("Video"),
        "audio": lazy_gettext("Audio"),
        "document": lazy_gettext("Document"),
        "image": lazy_gettext("Image"),
    },
    "type": {"course": lazy_gettext("Course"), "lesson": lazy_gettext("Lesson")},
    "profile": {
        "video-360p": lazy_gettext("Video 360p"),
        "video-240p": lazy_gettext("Video 240p"),
        "audio": lazy_gettext("Audio only"),
        "poster": lazy_gettext("Poster"),
        "document": lazy_gettext("Document (small)"),
        "image": lazy_gettext("Image (small)"),
    },
}


# Fields of forms, JSON bodies and query strings, named as a reader knows them: error
# messages say "年级" where pydantic would say "grades" (hub.errors.invalid_from_pydantic).
# tests/unit/test_chinese.py checks every field of every API model has one.
FIELD_LABELS = {
    "title": lazy_gettext("Title"),
    "summary": lazy_gettext("Summary"),
    "category": lazy_gettext("Category"),
    "subject": lazy_gettext("Subject"),
    "grades": lazy_gettext("Grades"),
    "grade": lazy_gettext("Grade"),
    "county": lazy_gettext("County"),
    "from": lazy_gettext("From"),  # the reach dashboard's period: the query's name for ReachQuery.from_
    "from_": lazy_gettext("From"),
    "to": lazy_gettext("To"),
    "group_by": lazy_gettext("Group by"),
    "edition": lazy_gettext("Textbook edition"),
    "edition_other": lazy_gettext("Edition not in the list"),
    "mine": lazy_gettext("My school's courses only"),
    "lessons": lazy_gettext("Lessons"),
    "note": lazy_gettext("Note"),
    "volume": lazy_gettext("Volume"),
    "language": lazy_gettext("Language"),
    "license": lazy_gettext("Licence"),
    "teacher": lazy_gettext("Teacher"),
    "school": lazy_gettext("School"),
    "unit": lazy_gettext("Unit"),
    "position": lazy_gettext("Position"),
    "status": lazy_gettext("Status"),
    "page": lazy_gettext("Page"),
    "per_page": lazy_gettext("Results per page"),
    "q": lazy_gettext("Search words"),
    "type": lazy_gettext("Type"),
    "kind": lazy_gettext("Kind"),
    "file": lazy_gettext("File"),
    "label": lazy_gettext("Label"),
    "upload": lazy_gettext("Upload"),
    "email": lazy_gettext("Email"),
    "password": lazy_gettext("Password"),
    "name": lazy_gettext("Name"),
    "body": lazy_gettext("The body"),
    "limit": lazy_gettext("Number of suggestions"),
    "course": lazy_gettext("Course"),
    "courses": lazy_gettext("Courses"),
    "paired_with": lazy_gettext("Paired school"),
    # What school servers send (hub sync): read by their operators.
    "sha256": lazy_gettext("File checksums (sha256)"),
    "since": lazy_gettext("Changes since"),
    "id": lazy_gettext("Report id"),
    "counts": lazy_gettext("Download counts"),
    "manifest_version": lazy_gettext("Manifest version"),
    "applied_version": lazy_gettext("Applied version"),
    "host_name": lazy_gettext("Host name"),
    "storage_budget": lazy_gettext("Storage budget"),
    "storage_free": lazy_gettext("Free storage"),
    "storage_used": lazy_gettext("Used storage"),
    "via": lazy_gettext("Synced via"),
    # Search filters by textbook alignment (hub.search.api).
    "textbook": lazy_gettext("Textbook"),
    "chapter": lazy_gettext("Chapter"),
    # A lesson's place in its course's textbook (hub.catalog.schemas).
    "node": lazy_gettext("Textbook chapter"),
}


def field_label(name: str) -> str:
    """A field's label in the language of the moment; an unknown field (a client's typo) is named as sent."""
    found: Any = FIELD_LABELS.get(name, name)  # a lazy string: formats in the language of the moment
    return cast(str, found)


def label(table: str, code: str) -> str:
    return str(CODE_LABELS.get(table, {}).get(code, code))


def subject_label(code: str) -> str:
    zh, en = SUBJECTS.get(code, (code, code))
    return zh if current_locale() == "zh" else en


def category_label(code: str) -> str:
    zh, en = CATEGORIES.get(code, (code, code))
    return zh if current_locale() == "zh" else en


def grade_label(grade: int) -> str:
    if current_locale() == "zh":
        return GRADE_NAMES.get(grade, str(grade))
    return f"Grade {grade}"


def grades_label(grades: list[int]) -> str:
    """Consecutive grades as a range: 七至九年级 / Grades 7–9; others listed."""
    if not grades:
        return ""
    ordered = sorted(grades)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        if current_locale() == "zh":
            return f"{GRADE_NAMES[ordered[0]][0]}至{GRADE_NAMES[ordered[-1]]}"
        return f"Grades {ordered[0]}–{ordered[-1]}"
    return " / ".join(grade_label(g) for g in ordered)


# ---------------------------------------------------------------- numbers, sizes, times


def filesize(size: int | None) -> str:
    """Bytes as a reader thinks of them: 800 B, 12.3 KB, 4.5 MB, 1.2 GB (powers of 1024)."""
    if size is None:
        return ""
    if size < 1024:
        return f"{format_decimal(size)} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{format_decimal(value, format='#,##0.0')} {unit}"


def duration(seconds: float | None) -> str:
    """A length of time: 45 秒 / 45 s, 3 分 20 秒 / 3 min 20 s, 1 小时 5 分 / 1 h 5 min."""
    if seconds is None:
        return ""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        if minutes:
            return str(gettext("%(h)d h %(m)d min", h=hours, m=minutes))
        return str(gettext("%(h)d h", h=hours))
    if minutes:
        if secs:
            return str(gettext("%(m)d min %(s)d s", m=minutes, s=secs))
        return str(gettext("%(m)d min", m=minutes))
    return str(gettext("%(s)d s", s=secs))


def clock(seconds: float | None) -> str:
    """A position in a recording as players show it: 0:05, 12:30, 1:02:03."""
    if seconds is None:
        return ""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def download_time(size: int | None, kbit_per_s: int) -> str:
    """How long a download takes at a link speed, as precise as a waiting teacher cares."""
    if not size:
        return ""
    seconds = size * 8 / (kbit_per_s * 1000)
    if seconds < 60:
        rounded = max(1, math.ceil(seconds))
    elif seconds < 600:
        rounded = math.ceil(seconds / 10) * 10  # 3 min 20 s, not 3 min 17 s
    elif seconds < 3600:
        rounded = math.ceil(seconds / 60) * 60
    else:
        rounded = math.ceil(seconds / 300) * 300
    return duration(rounded)


def quality_note(quality: Mapping[str, Any] | None, ssim: float | None) -> str:
    """What a video rendition traded to keep its budget, and its SSIM against the floor; "" when nothing.

    From the structured ``Rendition.quality`` (hub.media.quality.describe), so it is
    said in the reader's language: "Reduced to 10 fps, 288p to keep 200 kbit/s;
    SSIM 0.941, below the 0.95 target."
    """
    if not quality or ssim is None:
        return ""
    parts = []
    if quality.get("fps", 0) < quality.get("full_fps", 0):
        parts.append(str(gettext("%(fps)s fps", fps=format_decimal(quality["fps"], format="#,##0.##"))))
    if quality.get("height", 0) < quality.get("full_height", 0):
        parts.append(f"{quality['height']}p")
    numbers = {
        "budget": quality.get("budget_kbps", 0),
        "ssim": format_decimal(ssim, format="0.000"),
        "floor": format_decimal(quality.get("floor", 0), format="0.00"),
    }
    met = quality.get("met", True)
    if parts:
        what = str(gettext(", ")).join(parts)
        if met:
            return str(
                gettext(
                    "Reduced to %(what)s to keep %(budget)s kbit/s; SSIM %(ssim)s (target %(floor)s).",
                    what=what,
                    **numbers,
                )
            )
        return str(
            gettext(
                "Reduced to %(what)s to keep %(budget)s kbit/s; SSIM %(ssim)s, below the %(floor)s target.",
                what=what,
                **numbers,
            )
        )
    if not met:
        return str(
            gettext(
                "SSIM %(ssim)s at %(budget)s kbit/s, below the %(floor)s target: the picture has more detail "
                "or grain than this budget can keep.",
                **numbers,
            )
        )
    return ""


def date(value: datetime | None) -> str:
    if value is None:
        return ""
    return str(format_date(value, format="medium"))


def when(value: datetime | str | None) -> str:
    """A moment (or its ISO text) as a date and time in HUB_TIMEZONE: 2026-12-01 22:05."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    # Babel's zone is HUB_TIMEZONE (init_app); 24-hour ISO-like digits read the same in both languages.
    return str(format_datetime(moment, format="yyyy-MM-dd HH:mm"))


# ---------------------------------------------------------------- the switch


@blueprint.get("/language/<code>")
def switch_language(code: str) -> Response:
    response = redirect(safe_next(request.args.get("next")), code=303)
    if code in LOCALES:
        response.set_cookie(COOKIE, code, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True)
    return response


def switch_url(code: str) -> str:
    """The switch link for ``code``, coming back to the page the reader is on."""
    here = request.full_path.rstrip("?") if has_request_context() else "/"
    return url_for("i18n.switch_language", code=code, next=here)


def init_app(app: Flask, settings: Settings) -> None:
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LOCALE
    app.config["BABEL_DEFAULT_TIMEZONE"] = settings.timezone
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(_translation_dir(settings.data_dir))
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(blueprint)
    app.jinja_env.filters.update(
        filesize=filesize, duration=duration, clock=clock, download_time=download_time, date=date, when=when
    )
    from hub.errors import localize

    app.jinja_env.filters["localize"] = localize  # a Text (a reason kept with its values) in the reader's language
    app.jinja_env.globals["quality_note"] = quality_note

    @app.context_processor
    def _i18n() -> dict[str, object]:
        return {
            "locale": current_locale(),
            "LOCALES": LOCALES,
            "LANGUAGE_NAMES": LANGUAGE_NAMES,
            "switch_url": switch_url,
            "subject_label": subject_label,
            "category_label": category_label,
            "grade_label": grade_label,
            "grades_label": grades_label,
            "label": label,
            # A message marked with N_ elsewhere, translated here (no %-formatting of its text).
            "translate": gettext,
        }


__all__ = ["N_", "gettext", "init_app", "lazy_gettext"]

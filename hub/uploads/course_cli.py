"""``hub course list`` and ``hub course show``: an uploader's courses, read over the API.

Like ``hub upload``, these are clients (``--url``, ``--token``) that run on the
uploader's own machine, so the ids an upload needs come from here rather than from
page URLs. ``--json`` prints the API's own documents, for scripts.
"""

from __future__ import annotations

from typing import Any

import click

from hub.clitext import HubGroup
from hub.uploads.cli import connection_options, human_size
from hub.uploads.client import TusClient
from hub.uploads.terminal import _, in_brackets, language, print_json, status_label, stdout_is_terminal
from hub.vocab import SUBJECTS

PER_PAGE = 100  # the API's largest page


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.group("course", cls=HubGroup, help=_("Courses on a hub: list them, show one with its lessons and materials."))
def course_cli() -> None:
    pass


def _subject(code: str) -> str:
    zh, en = SUBJECTS.get(code, (code, code))
    return zh if language() == "zh" else en


@course_cli.command("list", help=_("Courses: id, status, lessons, subject and title."))
@click.option(
    "--mine", is_flag=True, help=_("Only my school's courses, drafts and withdrawn ones too (needs --token).")
)
@click.option(
    "--status",
    type=click.Choice(["published", "draft", "withdrawn", "all"]),
    default=None,
    help=_("Only courses with this status (default: all with --mine, else published)."),
)
@click.option("--json", "as_json", is_flag=True, help=_("Print the courses as one JSON document."))
@connection_options(required_token=False)
def course_list(mine: bool, status: str | None, as_json: bool, url: str, token: str) -> None:
    if mine and not token:
        raise click.UsageError(_("--mine needs --token (or HUB_TOKEN)"))
    client = TusClient(url, token)
    query = f"status={status or ('all' if mine else 'published')}&per_page={PER_PAGE}" + ("&mine=true" if mine else "")
    items: list[dict[str, Any]] = []
    try:
        page = 1
        while True:
            answer = client.get_json(f"/api/v1/courses?{query}&page={page}")
            items += answer["items"]
            if not answer["items"] or len(items) >= answer["total"]:
                break
            page += 1
    finally:
        client.close()
    if as_json:
        print_json({"items": items, "total": len(items)})
        return
    if not stdout_is_terminal():
        # One line for a log or a script's message; --json has everything.
        listed = "; ".join(f"{c['id']} {c['title']} ({status_label(c['status'])})" for c in items)
        click.echo(_("%(n)s courses", n=len(items)) + (f": {listed}" if items else ""))
        return
    if not items:
        click.echo(_("No courses."))
        return
    click.echo("\t".join((_("id"), _("status"), _("lessons"), _("subject"), _("title"))))
    for course in items:
        click.echo(
            "\t".join(
                (
                    str(course["id"]),
                    status_label(course["status"]),
                    str(course.get("lessons", 0)),
                    _subject(course["subject"]),
                    course["title"],
                )
            )
        )


def _by_status(items: list[dict[str, Any]]) -> str:
    """How many of ``items`` are in each status, in brackets: ' (2 ready, 1 failed)'."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return in_brackets([_("%(n)s %(status)s", n=n, status=status_label(s)) for s, n in sorted(counts.items())])


@course_cli.command("show", help=_("A course with its lessons, materials, their statuses and renditions."))
@click.argument("course_id", metavar="ID", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help=_("Print the course and its lessons as one JSON document."))
@connection_options(required_token=False)
def course_show(course_id: int, as_json: bool, url: str, token: str) -> None:
    client = TusClient(url, token)
    try:
        course = client.get_json(f"/api/v1/courses/{course_id}")
        lessons = client.get_json(f"/api/v1/courses/{course_id}/lessons")["items"]
    finally:
        client.close()
    if as_json:
        print_json({"course": course, "lessons": lessons})
        return
    materials = [m for lesson in lessons for m in lesson.get("materials", [])]
    renditions = [r for m in materials for r in m.get("renditions", [])]
    summary = _(
        "Course %(id)s “%(title)s” (%(status)s): %(lessons)s lessons, %(materials)s materials",
        id=course["id"],
        title=course["title"],
        status=status_label(course["status"]),
        lessons=len(lessons),
        materials=len(materials),
    ) + _by_status(materials)
    if renditions:
        summary += _(", %(n)s renditions", n=len(renditions)) + _by_status(renditions)
    click.echo(summary)
    if not stdout_is_terminal():
        return
    for lesson in lessons:
        click.echo(_("%(position)s. %(title)s (lesson %(id)s)", **{k: lesson[k] for k in ("position", "title", "id")}))
        for material in lesson.get("materials", []):
            click.echo(
                "   "
                + _(
                    "Material %(id)s “%(title)s”: %(status)s",
                    id=material["id"],
                    title=material["title"],
                    status=status_label(material["status"]),
                )
                + (f" {material['progress']}%" if material["status"] == "processing" else "")
            )
            for rendition in material.get("renditions", []):
                size = human_size(rendition["bytes"]) if rendition.get("bytes") else ""
                kbps = f"{round(rendition['kbps'])} kbit/s" if rendition.get("kbps") else ""
                details = " · ".join(part for part in (size, kbps) if part)
                click.echo(
                    f"      {rendition['profile']}: {status_label(rendition['status'])}"
                    + (f" · {details}" if details else "")
                )
            if material.get("error"):
                click.echo("      " + str(material["error"]))

"""``hub upload``: send lesson files and course folders to a hub, resuming where they stopped.

The upload URL of each file is kept in a small state file, so running the same
command again after a dropped link, a closed laptop or a server restart goes on
from the server's offset instead of starting over. What is already on the hub is
asked of the hub (hub.uploads.plan), so a second run adds only what is missing.
The HTTP side is hub.uploads.client; waiting for renditions, hub.uploads.watch.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from hub.clitext import HubCommand
from hub.uploads.client import MiB, Sha256Refused, TusClient, UploadError, sha256_file
from hub.uploads.plan import FilePlan, LessonPlan, plan_folder, plan_lesson
from hub.uploads.terminal import _, print_json, status_label, stderr_is_terminal, stdout_is_terminal
from hub.uploads.watch import wait_for_materials

# ---------------------------------------------------------------------------
# What has been done, so a second run resumes.


class State:
    """A small JSON file: upload URLs of unfinished files, lessons and materials already made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            self.data = {}

    @classmethod
    def default(cls) -> State:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(cache / "oer-hub" / "uploads.json")

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Replace atomically: a killed run must not leave half a file (and forget everything).
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads.")
        with os.fdopen(fd, "w") as out:
            json.dump(self.data, out, ensure_ascii=False, indent=1)
        os.replace(tmp, self.path)


def _file_key(client: TusClient, target: str, path: Path) -> str:
    stat = path.stat()
    return f"{client.base_url}|{target}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


# ---------------------------------------------------------------------------
# Uploading one file, and a folder.


_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".pdf": "application/pdf",
}


def file_sha256(state: State, path: Path) -> str:
    """The file's sha256, remembered by path, size and mtime: a re-run does not read 5 GB again to skip it."""
    stat = path.stat()
    key = f"sha256|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    known = state.get(key)
    if isinstance(known, str):
        return known
    digest = sha256_file(path)
    state.set(key, digest)
    return digest


def upload_file(
    client: TusClient, state: State, path: Path, lesson: int, title: str, sha256: str, show_progress: bool
) -> dict[str, Any]:
    """Upload ``path`` (resuming a run that stopped) and make it a material of ``lesson``."""
    key = _file_key(client, f"lesson:{lesson}", path)
    length = path.stat().st_size
    if length == 0:
        raise UploadError(_("%(path)s is empty", path=path))
    url = state.get(key)
    point = client.resume_point(url) if url else None
    if url and point is None:
        click.echo(_("%(name)s: the unfinished upload expired on the server; starting over", name=path.name), err=True)
    if point is None:
        # The sha256 is known already (files are matched by it): declared at creation, it
        # lets the server hash each byte once and check the file when the last one arrives.
        url = client.create(length, path.name, _TYPES.get(path.suffix.lower(), ""), sha256)
        state.set(key, url)
        point = (0, sha256)
    offset, declared = point
    assert url is not None
    try:
        with path.open("rb") as file, _progress(path.name, length, offset, show_progress) as progress:
            # An upload an older `hub upload` created declared nothing: its chunks keep their checksums.
            client.send(url, file, length, offset, progress, checksums=declared != sha256)
    except Sha256Refused:
        state.set(key, None)  # the server discarded that upload: a re-run starts a new one
        raise
    described = client.describe(url)
    if described.get("status") != "complete":
        raise UploadError(
            _(
                "the server has %(have)s of %(length)s bytes; run the command again",
                have=described.get("offset"),
                length=length,
            )
        )
    if described.get("sha256") != sha256:
        state.set(key, None)
        raise UploadError(
            _("the server's copy of %(name)s differs from the file (sha256); run again to re-send", name=path.name)
        )
    reply = client.json_request(
        _("adding the material"), "POST", f"/api/v1/lessons/{lesson}/materials", {"upload": url, "title": title}
    )
    if reply.status not in (200, 201):
        raise UploadError(
            _("the file arrived, but the server did not make it a material: %(why)s", why=reply.message())
        )
    material: dict[str, Any] = reply.json()
    state.set(key, None)
    return material


@contextlib.contextmanager
def _progress(label: str, length: int, start: int, show: bool) -> Iterator[Callable[[int], None]]:
    if not show:
        yield lambda _n: None
        return
    # On stderr: `hub upload … > log` keeps the bar on screen and the log free of carriage returns.
    with click.progressbar(length=length, label=label, show_eta=True, show_percent=True, file=sys.stderr) as bar:

        def moved_to(position: int) -> None:
            bar.update(position - bar.pos)

        moved_to(start)
        yield moved_to


def _create_lesson(client: TusClient, course: int, title: str, node: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"title": title}
    if node is not None:
        body["node"] = node["id"]  # the same request the lesson form makes: one service attaches it
    reply = client.json_request(_("adding a lesson"), "POST", f"/api/v1/courses/{course}/lessons", body)
    if reply.status != 201:
        raise UploadError(_("cannot add lesson %(title)s: %(why)s", title=title, why=reply.message()))
    created: dict[str, Any] = reply.json()
    return created


def _attach_lesson(client: TusClient, lesson: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    reply = client.json_request(
        _("placing a lesson in its textbook"), "PATCH", f"/api/v1/lessons/{lesson['id']}", {"node": node["id"]}
    )
    if reply.status != 200:
        raise UploadError(_("cannot place lesson %(title)s in %(node)s: %(why)s", title=lesson["title"],
                            node=_node_name(node), why=reply.message()))  # fmt: skip
    changed: dict[str, Any] = reply.json()
    return changed


def _node_name(node: dict[str, Any]) -> str:
    return f"{node['key']} {node['title']}"


def course_textbook_tree(client: TusClient, course: int) -> list[dict[str, Any]] | None:
    """The chapter tree of the textbook ``course`` follows, or None when it follows none."""
    book = client.get_json(f"/api/v1/courses/{course}").get("textbook")
    if not book:
        return None
    tree: list[dict[str, Any]] = client.get_json(f"/api/v1/textbooks/{book['id']}")["tree"]
    return tree


@dataclass
class Run:
    """A folder or file upload as it goes: what it planned, what it did, what to say."""

    client: TusClient
    state: State
    dry_run: bool
    show_progress: bool
    say: Callable[[str], None]
    lessons: list[dict[str, Any]]

    def carry_out(self, plans: list[LessonPlan], course: int | None) -> None:
        for planned in plans:
            lesson = planned.lesson
            action = planned.action
            attach = planned.attach
            if lesson is None and not self.dry_run:
                assert course is not None
                lesson = _create_lesson(self.client, course, planned.title, planned.node)
                action = "created"
            elif lesson is not None and attach and not self.dry_run:
                lesson = _attach_lesson(self.client, lesson, planned.node)  # type: ignore[arg-type]
            lesson_id = lesson["id"] if lesson is not None else None
            self.say(_lesson_line(planned.title, lesson_id, action))
            if attach:
                assert planned.node is not None
                self.say("  " + _("textbook: %(node)s", node=_node_name(planned.node)))
            files: list[dict[str, Any]] = []
            node = {k: planned.node[k] for k in ("id", "key", "title")} if planned.node else None
            self.lessons.append(
                {
                    "id": lesson_id,
                    "title": planned.title,
                    "action": action,
                    # The textbook node the lesson is on (or will be, with --dry-run), and
                    # whether this run put it there.
                    "node": node if attach else (lesson or {}).get("node"),
                    "node_set": attach,
                    "files": files,
                }
            )
            for item in planned.files:
                file_action, material = item.action, item.material
                if item.action == "upload" and not self.dry_run:
                    assert lesson_id is not None
                    material = upload_file(
                        self.client, self.state, item.path, lesson_id, item.title, item.sha256, self.show_progress
                    )
                    file_action = "uploaded"
                elif item.action == "skip" and not self.dry_run:
                    file_action = "skipped"
                self.say(_file_line(item, file_action, material))
                files.append(
                    {
                        "path": str(item.path),
                        "title": item.title,
                        "sha256": item.sha256,
                        "bytes": item.size,
                        "action": file_action,
                        "reason": item.reason,
                        "material": _material_summary(material) if material else None,
                    }
                )

    def counts(self) -> dict[str, int]:
        files = [f for lesson in self.lessons for f in lesson["files"]]
        return {
            "lessons_created": sum(lesson["action"] in ("create", "created") for lesson in self.lessons),
            "lessons_existing": sum(lesson["action"] == "exists" for lesson in self.lessons),
            "files_uploaded": sum(f["action"] in ("upload", "uploaded") for f in files),
            "files_skipped": sum(f["action"] in ("skip", "skipped") and f["reason"] != "empty" for f in files),
            "files_empty": sum(f["reason"] == "empty" for f in files),
            "bytes_uploaded": sum(f["bytes"] for f in files if f["action"] in ("upload", "uploaded")),
        }

    def material_ids(self) -> list[int]:
        """Every material the run made or found: --wait watches the ones it skipped too."""
        return [f["material"]["id"] for lesson in self.lessons for f in lesson["files"] if f["material"]]


def _material_summary(material: dict[str, Any]) -> dict[str, Any]:
    return {k: material.get(k) for k in ("id", "title", "kind", "status", "progress", "error")}


def human_size(size: int) -> str:
    """Bytes as people count them, the same in both languages: 800 B, 12.3 KB, 4.5 MB."""
    value, unit = float(size), "B"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _lesson_line(title: str, lesson_id: int | None, action: str) -> str:
    if action == "create":
        return _("Lesson “%(title)s”: will be created", title=title)
    if action == "created":
        return _("Lesson “%(title)s”: created (lesson %(id)s)", title=title, id=lesson_id)
    return _("Lesson “%(title)s”: already there (lesson %(id)s)", title=title, id=lesson_id)


def _file_line(item: FilePlan, action: str, material: dict[str, Any] | None) -> str:
    name = item.path.name
    if action == "upload":
        return "  " + _("%(name)s: will be uploaded (%(size)s)", name=name, size=human_size(item.size))
    if action == "uploaded":
        assert material is not None
        return "  " + _("%(name)s: uploaded (material %(id)s)", name=name, id=material["id"])
    if item.reason == "empty":
        return "  " + _("%(name)s: skipped, the file is empty", name=name)
    if material is None:
        return "  " + _("%(name)s: skipped, the same file is already in this upload", name=name)
    return "  " + _(
        "%(name)s: skipped, already material %(id)s (%(status)s)",
        name=name,
        id=material["id"],
        status=status_label(material.get("status", "")),
    )


def summary_line(target: str, counts: dict[str, int], dry_run: bool) -> str:
    line = _summary(target, counts, dry_run)
    if counts["files_empty"]:
        line += " " + _("%(n)s empty files left out.", n=counts["files_empty"])
    return line


def _summary(target: str, counts: dict[str, int], dry_run: bool) -> str:
    if dry_run:
        return _(
            "%(target)s: dry run, nothing changed. Would create %(created)s lessons and upload %(uploaded)s files "
            "(%(size)s); %(existing)s lessons and %(skipped)s files are already there.",
            target=target,
            created=counts["lessons_created"],
            uploaded=counts["files_uploaded"],
            size=human_size(counts["bytes_uploaded"]),
            existing=counts["lessons_existing"],
            skipped=counts["files_skipped"],
        )
    if not counts["lessons_created"] and not counts["files_uploaded"]:
        return _(
            "%(target)s: nothing to do, all %(skipped)s files are already there.",
            target=target,
            skipped=counts["files_skipped"],
        )
    return _(
        "%(target)s: %(created)s lessons created, %(existing)s already there; %(uploaded)s files uploaded "
        "(%(size)s), %(skipped)s skipped.",
        target=target,
        created=counts["lessons_created"],
        existing=counts["lessons_existing"],
        uploaded=counts["files_uploaded"],
        size=human_size(counts["bytes_uploaded"]),
        skipped=counts["files_skipped"],
    )


def connection_options(required_token: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--url and --token, the same on every command that talks to a hub."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--token",
            envvar="HUB_TOKEN",
            required=required_token,
            default=None if required_token else "",
            help=_("API token from `hub token create` (or HUB_TOKEN)."),
        )(command)
        return click.option(
            "--url",
            envvar="HUB_PUBLIC_URL",
            default="http://127.0.0.1:8000",
            show_default=True,
            help=_("The hub's address (or HUB_PUBLIC_URL)."),
        )(command)

    return decorate


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.command(
    "upload",
    cls=HubCommand,  # its line in `hub --help` is the help's first sentence in Chinese too
    help=_(
        "Upload FILE to a lesson (--lesson), or a course folder (--course): resumable, retried, checked.\n\n"
        "A folder: each sub-folder is a lesson of its files, each loose file a lesson of its own. Lessons are "
        "matched by title and files by content (sha256) against what the hub already has, so running the same "
        "command again (after an interruption, from another computer) uploads only what is missing. When the "
        "course follows a textbook, a lesson named as a chapter, section or 课时 of it (秒的认识, or 1.1 秒的认识) "
        "is placed there.\n\n"
        "Exit status: 0 done; 1 an error, or with --wait a material failed; 3 --timeout ran out."
    ),
)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--lesson", type=int, help=_("Lesson to add FILE to."))
@click.option("--course", type=int, help=_("With a folder: course to add its lessons to."))
@click.option("--title", default="", help=_("Material title (default: the file name)."))
@connection_options(required_token=True)
@click.option("--chunk-size", default=32, show_default=True, type=click.IntRange(1, 512), help=_("MiB per request."))
@click.option("--retries", default=10, show_default=True, type=click.IntRange(0, 1000), help=_("Retries per request."))
@click.option("--dry-run", is_flag=True, help=_("Print what would be created and uploaded; change nothing."))
@click.option("--wait", is_flag=True, help=_("Then wait until every material's renditions are ready or failed."))
@click.option(
    "--timeout",
    default=7200,
    show_default=True,
    type=click.IntRange(1),
    help=_("With --wait: seconds to wait at most (exit status 3 when they run out)."),
)
@click.option("--json", "as_json", is_flag=True, help=_("Print one JSON document: the plan, what was done, the wait."))
@click.option("--quiet", is_flag=True, help=_("No progress bar."))
def upload(
    path: Path,
    lesson: int | None,
    course: int | None,
    title: str,
    url: str,
    token: str,
    chunk_size: int,
    retries: int,
    dry_run: bool,
    wait: bool,
    timeout: int,
    as_json: bool,
    quiet: bool,
) -> None:
    if path.is_dir() and course is None:
        raise click.UsageError(_("a folder needs --course ID (each sub-folder becomes a lesson)"))
    if not path.is_dir() and lesson is None:
        raise click.UsageError(_("a file needs --lesson ID"))
    if not path.is_dir() and path.stat().st_size == 0:
        raise UploadError(_("%(path)s is empty", path=path))
    client = TusClient(url, token, chunk_size=chunk_size * MiB, retries=retries)
    state = State.default()
    talk = stdout_is_terminal() and not as_json
    run = Run(
        client,
        state,
        dry_run,
        show_progress=stderr_is_terminal() and not quiet and not as_json,
        say=click.echo if talk else lambda _line: None,
        lessons=[],
    )
    try:
        if path.is_dir():
            assert course is not None
            existing = client.get_json(f"/api/v1/courses/{course}/lessons")["items"]
            tree = course_textbook_tree(client, course)
            plans = plan_folder(path, existing, lambda p: file_sha256(state, p), tree)
            target = _("Course %(id)s", id=course)
        else:
            assert lesson is not None
            found = client.get_json(f"/api/v1/lessons/{lesson}")
            plans = [
                plan_lesson(
                    found["title"],
                    [path],
                    found,
                    found.get("materials", []),
                    lambda p: file_sha256(state, p),
                )
            ]
            if title:
                for item in plans[0].files:
                    item.title = title
            target = _("Lesson %(id)s", id=lesson)
        run.carry_out(plans, course)
        counts = run.counts()
        line = summary_line(target, counts, dry_run)
        document: dict[str, Any] = {
            "course": course,
            "lesson": lesson,
            "dry_run": dry_run,
            "lessons": run.lessons,
            "counts": counts,
        }
        exit_code = 0
        if wait and not dry_run:
            if talk:
                click.echo(line)
            waited = wait_for_materials(
                client,
                run.material_ids(),
                timeout,
                show_progress=stderr_is_terminal() and not quiet and not as_json,
                say=run.say,
            )
            document["wait"] = waited.as_json()
            line = waited.line() if talk else f"{line} {waited.line()}"
            exit_code = waited.exit_code()
        if as_json:
            print_json(document)
        else:
            click.echo(line)
        if exit_code:
            sys.exit(exit_code)
    finally:
        client.close()

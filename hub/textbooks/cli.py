"""``hub textbook import|list|show|delete``: the operator's textbook commands, on this hub's database.

Messages follow the terminal's language like the upload commands' (hub.uploads.terminal):
``LANG=zh_CN.UTF-8`` gives Chinese, anything else English; ``--json`` prints one JSON
document for scripts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hub.clitext import HubGroup
from hub.errors import HubError
from hub.uploads.terminal import _, print_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from hub.textbooks.services import TreeNode

DATA = Path(__file__).parent / "data"


def shipped_files() -> list[Path]:
    """The textbook files shipped with the hub (real tables of contents, typed in): the demo's books."""
    return sorted(p for p in DATA.iterdir() if p.suffix in (".json", ".csv"))


@contextmanager
def _session() -> Iterator[Session]:
    from hub.cli import command_app
    from hub.db import get_database

    with get_database(command_app()).session() as session:
        try:
            yield session
        except HubError as exc:
            raise click.ClickException(_(exc.template, **exc.params)) from None


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.group(
    "textbook",
    cls=HubGroup,
    help=_("Textbooks (教材) and their chapter trees: import from a file, list, show, delete."),
)
def textbook_cli() -> None:
    pass


@textbook_cli.command(
    "import",
    help=_(
        "Create or update textbooks from files (.json or .csv); run it again after editing a file.\n\n"
        "A node's key keeps its lessons: titles and weeks change in place. A node left out of the file is deleted, "
        "unless lessons are aligned to it: then nothing is imported."
    ),
)
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--shipped", is_flag=True, help=_("Import the textbook files shipped with the hub (the demo's books)."))
@click.option("--json", "as_json", is_flag=True, help=_("Print what each import did as one JSON document."))
def textbook_import(files: tuple[Path, ...], shipped: bool, as_json: bool) -> None:
    from hub.textbooks import services

    paths = [*files, *(shipped_files() if shipped else [])]
    if not paths:
        raise click.UsageError(_("Name a textbook file to import, or --shipped."))
    report = []
    with _session() as session:
        for path in paths:
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise click.ClickException(
                    _("cannot read %(path)s: %(reason)s", path=path, reason=exc.strerror)
                ) from None
            try:
                result = services.import_file(session, path.name, content)
            except HubError as exc:
                raise click.ClickException(
                    _("%(path)s: %(error)s", path=path, error=_(exc.template, **exc.params))
                ) from None
            book = result.textbook
            report.append(
                {
                    "file": str(path),
                    "key": book.key,
                    "id": book.id,
                    "title": book.title,
                    "created": result.created,
                    "added": result.added,
                    "changed": result.changed,
                    "removed": result.removed,
                    "unchanged": result.unchanged,
                }
            )
        session.commit()
    if as_json:
        print_json({"items": report})
        return
    for row in report:
        click.echo(
            _(
                "%(key)s (%(title)s): %(added)s added, %(changed)s changed, %(removed)s removed, "
                "%(unchanged)s unchanged",
                **row,
            )
        )


@textbook_cli.command("list", help=_("Every textbook: id, key, edition, subject, grade, volume, nodes and title."))
@click.option("--json", "as_json", is_flag=True, help=_("Print the textbooks as one JSON document."))
def textbook_list(as_json: bool) -> None:
    from hub.textbooks import services

    with _session() as session:
        books = services.list_textbooks(session)
        counts = services.node_counts(session, [b.id for b in books])
        rows = [
            {
                "id": b.id,
                "key": b.key,
                "subject": b.subject,
                "edition": b.edition,
                "grade": b.grade,
                "volume": b.volume,
                "school_system": b.school_system,
                "title": b.title,
                "nodes": counts.get(b.id, 0),
            }
            for b in books
        ]
    if as_json:
        print_json({"items": rows})
        return
    if not rows:
        click.echo(_("no textbooks yet: hub textbook import FILE (or --shipped)"))
        return
    click.echo("\t".join((_("id"), _("key"), _("edition"), _("grade"), _("volume"), _("nodes"), _("title"))))
    for row in rows:
        click.echo("\t".join(str(row[name]) for name in ("id", "key", "edition", "grade", "volume", "nodes", "title")))


@textbook_cli.command("show", help=_("A textbook's tree: each node's key, week and title, indented by level."))
@click.argument("key")
def textbook_show(key: str) -> None:
    from hub.textbooks import services

    with _session() as session:
        book = services.get_by_key(session, key.strip())
        if book is None:
            raise click.ClickException(_("There is no textbook %(key)s; see hub textbook list.", key=key))
        click.echo(f"{book.key}\t{book.edition} {book.title}")

        def show(items: list[TreeNode], depth: int) -> None:
            for item in items:
                node = item.node
                week = _("week %(week)s", week=node.week) if node.week else ""
                click.echo(f"{'  ' * depth}{node.key}\t{week}\t{node.title}")
                show(item.children, depth + 1)

        show(services.tree(book), 0)


@textbook_cli.command("delete", help=_("Delete a textbook that no course follows and no lesson is aligned to."))
@click.argument("key")
def textbook_delete(key: str) -> None:
    from hub.textbooks import services

    with _session() as session:
        book = services.get_by_key(session, key.strip())
        if book is None:
            raise click.ClickException(_("There is no textbook %(key)s; see hub textbook list.", key=key))
        services.delete_textbook(session, book.id)
        session.commit()
    click.echo(_("deleted textbook %(key)s", key=key.strip()))

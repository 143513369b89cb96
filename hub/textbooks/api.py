"""JSON API for textbooks under /api/v1/textbooks: parse, call one service, serialise.

Reading is public (a table of contents is a public fact, and school servers and
browsing pages need it without an account); importing and deleting are for admins,
the same use cases as ``hub textbook import`` and the admin page.
"""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint, Response, request
from pydantic import BaseModel, Field

from hub.accounts.auth import require_user
from hub.api import PREFIX, no_content, operation
from hub.db import request_session
from hub.errors import HubError, Invalid
from hub.i18n import N_
from hub.textbooks import services
from hub.textbooks.models import Textbook
from hub.vocab import SubjectCode, VolumeName

blueprint = Blueprint("textbooks_api", __name__, url_prefix=PREFIX)


class TextbookQuery(BaseModel):
    subject: SubjectCode | None = Field(default=None, description="A subject code, e.g. math")
    edition: str | None = Field(default=None, description="An edition's name as GET /api/v1/editions lists it")
    grade: Annotated[int, Field(ge=1, le=9)] | None = None
    volume: VolumeName | None = Field(default=None, description="上册, 下册 or 全一册")


class TextbookOut(BaseModel):
    id: int
    key: str = Field(description="The same on every hub, e.g. renjiao-math-3-1")
    subject: str
    edition: str
    grade: int
    volume: str
    school_system: str = Field(description='"" when the book is the same in both; 六三 or 五四 where it differs')
    title: str
    nodes: int = Field(description="How many chapters, sections and lessons its tree has")


class TextbookList(BaseModel):
    items: list[TextbookOut]


class NodeOut(BaseModel):
    id: int
    key: str = Field(description="Stable within the book on every hub: dotted, e.g. 21.2.1 (inside 21.2, inside 21)")
    kind: str = Field(description="chapter (单元/章), section (节) or lesson (课时)")
    title: str
    week: int | None = Field(description="The teaching week it starts in (1 = the term's first), if the book says")
    children: list[NodeOut]


class TextbookTree(TextbookOut):
    tree: list[NodeOut] = Field(description="The chapters in book order, each with its sections and lessons nested")
    courses: int = Field(description="Courses that follow this textbook")
    lessons: int = Field(description="Lessons aligned to one of its nodes")


class TextbookImportForm(BaseModel):
    """The multipart/form-data field of a textbook import."""

    file: bytes = Field(description="A textbook file, .json or .csv (README.md, Textbooks)")


class TextbookImportOut(BaseModel):
    textbook: TextbookOut
    created: bool
    added: int
    changed: int
    removed: int
    unchanged: int


def textbook_out(book: Textbook, nodes: int) -> TextbookOut:
    return TextbookOut(
        id=book.id,
        key=book.key,
        subject=book.subject,
        edition=book.edition,
        grade=book.grade,
        volume=book.volume,
        school_system=book.school_system,
        title=book.title,
        nodes=nodes,
    )


def _node_out(item: services.TreeNode) -> NodeOut:
    node = item.node
    return NodeOut(
        id=node.id,
        key=node.key,
        kind=node.kind,
        title=node.title,
        week=node.week,
        children=[_node_out(child) for child in item.children],
    )


@operation(
    blueprint,
    "/textbooks",
    "GET",
    summary="Textbooks (教材): subject + edition + grade + volume, each with a chapter tree",
    query=TextbookQuery,
    response=TextbookList,
)
def list_textbooks(query: TextbookQuery) -> TextbookList:
    session = request_session()
    books = services.list_textbooks(
        session, subject=query.subject, edition=query.edition, grade=query.grade, volume=query.volume
    )
    counts = services.node_counts(session, [b.id for b in books])
    return TextbookList(items=[textbook_out(b, counts.get(b.id, 0)) for b in books])


@operation(
    blueprint,
    "/textbooks/<int:textbook_id>",
    "GET",
    summary="A textbook with its chapter tree, nested",
    response=TextbookTree,
)
def get_textbook(textbook_id: int) -> TextbookTree:
    session = request_session()
    book = services.get_textbook(session, textbook_id)
    used = services.usage(session, book.id)
    return TextbookTree(
        **textbook_out(book, len(book.nodes)).model_dump(),
        tree=[_node_out(item) for item in services.tree(book)],
        courses=used.courses,
        lessons=used.lessons,
    )


@operation(
    blueprint,
    "/textbooks",
    "POST",
    summary="Import a textbook file (admins): creates the book, or updates it in place by its key",
    form=TextbookImportForm,
    response=TextbookImportOut,
    auth=True,
)
def import_textbook() -> TextbookImportOut:
    services.require_admin(require_user())
    if request.mimetype != "multipart/form-data":
        raise HubError(N_("Send the textbook file as multipart/form-data in the field 'file'."))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid(N_("Choose a textbook file to import."), {"file": N_("This field is required")})
    session = request_session()
    result = services.import_file(session, upload.filename, upload.read(services.MAX_FILE_BYTES + 1))
    session.commit()
    return TextbookImportOut(
        textbook=textbook_out(result.textbook, len(result.textbook.nodes)),
        created=result.created,
        added=result.added,
        changed=result.changed,
        removed=result.removed,
        unchanged=result.unchanged,
    )


@operation(
    blueprint,
    "/textbooks/<int:textbook_id>",
    "DELETE",
    summary="Delete a textbook no course follows and no lesson is aligned to (admins)",
    status=204,
    auth=True,
)
def delete_textbook(textbook_id: int) -> Response:
    services.require_admin(require_user())
    session = request_session()
    services.delete_textbook(session, textbook_id)
    session.commit()
    return no_content()

"""The admins' textbook pages: the list with an import form, a book's tree, deletion when unused.

Adapters over hub.textbooks.services, like ``hub textbook`` and /api/v1/textbooks.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from hub.accounts import auth
from hub.db import request_session
from hub.errors import HubError, localize
from hub.i18n import N_
from hub.textbooks import services
from hub.vocab import GRADE_NAMES, SUBJECTS

blueprint = Blueprint("textbooks_admin", __name__, url_prefix="/admin/textbooks")


def _admin() -> Response | None:
    """A redirect to sign-in for anonymous readers; PermissionDenied for non-admins; None for admins."""
    user = auth.current_user()
    if user is None:
        return redirect(url_for("accounts.login", next=request.path))
    services.require_admin(user)
    return None


def _list_page(error: str = "", status: int = 200) -> ResponseReturnValue:
    session = request_session()
    books = services.list_textbooks(session)
    counts = services.node_counts(session, [b.id for b in books])
    page = render_template(
        "textbooks/list.html",
        books=books,
        counts=counts,
        SUBJECTS=SUBJECTS,
        GRADE_NAMES=GRADE_NAMES,
        error=error,
        done=request.args.get("done", ""),
    )
    return page, status


@blueprint.get("/")
def list_page() -> ResponseReturnValue:
    if (login := _admin()) is not None:
        return login
    return _list_page()


@blueprint.post("/")
def import_file() -> ResponseReturnValue:
    if (login := _admin()) is not None:
        return login
    upload = request.files.get("file")
    session = request_session()
    if upload is None or not upload.filename:
        return _list_page(localize(N_("Choose a textbook file to import.")), 422)
    try:
        result = services.import_file(session, upload.filename, upload.read(services.MAX_FILE_BYTES + 1))
    except HubError as exc:
        session.rollback()
        return _list_page(exc.localized(), exc.status)
    session.commit()
    return redirect(
        url_for(
            "textbooks_admin.tree_page",
            textbook_id=result.textbook.id,
            done="created" if result.created else "updated",
            added=result.added,
            changed=result.changed,
            removed=result.removed,
        ),
        code=303,
    )


@blueprint.get("/<int:textbook_id>")
def tree_page(textbook_id: int) -> ResponseReturnValue:
    if (login := _admin()) is not None:
        return login
    session = request_session()
    book = services.get_textbook(session, textbook_id)
    return render_template(
        "textbooks/tree.html",
        book=book,
        tree=services.tree(book),
        usage=services.usage(session, book.id),
        SUBJECTS=SUBJECTS,
        GRADE_NAMES=GRADE_NAMES,
        done=request.args.get("done", ""),
        counts={name: request.args.get(name, "0") for name in ("added", "changed", "removed")},
    )


@blueprint.post("/<int:textbook_id>/delete")
def delete(textbook_id: int) -> Response:
    if (login := _admin()) is not None:
        return login
    session = request_session()
    services.delete_textbook(session, textbook_id)
    session.commit()
    return redirect(url_for("textbooks_admin.list_page", done="deleted"), code=303)

"""The browse-by-my-textbook page: parse the choice, remember it in a cookie, render the chapter tree.

Works without JavaScript: the picker is a GET form (so a chosen book is also a link a
teacher can share), and the tree is plain nested lists.
"""

from __future__ import annotations

from flask import Blueprint, Response, make_response, render_template, request
from pydantic import ValidationError

from hub.db import request_session
from hub.errors import invalid_from_pydantic
from hub.textbooks import browse
from hub.textbooks.models import Textbook
from hub.vocab import SUBJECTS, VOLUMES

blueprint = Blueprint("textbooks", __name__)

# The cookie holds the textbook's key, not its id: keys are the same on every hub, so the
# choice survives a re-import and means the same book on a school server.
COOKIE = "hub_textbook"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the most browsers keep a cookie: one choice per school year or two


def remembered_textbook() -> Textbook | None:
    """The book this browser picked, if any (and still on this hub)."""
    return browse.by_key(request_session(), request.cookies.get(COOKIE))


@blueprint.get("/textbook")
def browse_page() -> Response | tuple[Response, int]:
    # Empty form fields mean "any", as a browser sends them.
    args = {k: v for k, v in request.args.items() if v != "" and k != "change"}
    try:
        choice = browse.BookChoice.model_validate(args)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None
    session = request_session()
    changing = "change" in request.args
    if choice.book or choice.narrows():
        found = browse.matching(session, choice)
        if len(found) == 1:
            return _book(found[0].key, remember=True)
        # None or several: the picker again, with what fits (or, for none, a clear answer and 404).
        return _picker(choice, found, status=404 if not found else 200)
    current = remembered_textbook()
    if current is not None and not changing:
        return _book(current.key, remember=False)
    return _picker(choice, [], current=current)


def _book(key: str, remember: bool) -> Response:
    page = browse.book_page(request_session(), key)
    response = make_response(render_template("textbooks/browse.html", page=page, label=browse.label))
    if remember:
        response.set_cookie(
            COOKIE, key, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax", secure=request.is_secure
        )
    return response


def _picker(
    choice: browse.BookChoice, found: list[Textbook], current: Textbook | None = None, status: int = 200
) -> tuple[Response, int]:
    books = browse.all_textbooks(request_session())
    asked = choice.book is not None or choice.narrows()  # what the reader sent, not the preselection below
    if current is not None and not choice.narrows():  # changing the book: start from the one on the desk
        choice = browse.BookChoice(
            subject=current.subject, edition=current.edition, grade=current.grade, volume=current.volume
        )
    html = render_template(
        "textbooks/browse_pick.html",
        books=books,
        # Only what the hub has: a teacher cannot pick a book nobody has loaded.
        subjects=sorted({b.subject for b in books}, key=list(SUBJECTS).index),
        editions=sorted({b.edition for b in books}),
        grades=sorted({b.grade for b in books}),
        volumes=[v for v in VOLUMES if any(b.volume == v for b in books)],
        choice=choice,
        found=found,
        asked=asked,
        current=current,
        label=browse.label,
    )
    return make_response(html), status

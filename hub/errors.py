"""Domain errors raised by services, and the one place that turns them into HTTP.

Every error a user can cause answers with the same JSON shape::

    {"error": {"code": "...", "message": "...", "fields": {...}}}

HTML pages render the same message in a page instead. Messages are templates
marked with hub.i18n.N_ and their parameters, translated where they are shown:
a page in the reader's language, the API's ``message`` and ``fields`` in the
language of ``Accept-Language`` (English when it names neither; the ``code`` is
the same in every language, for programs).

pydantic's own messages ("List should have at least 1 item after validation")
never reach a reader: :func:`invalid_from_pydantic` maps each error type to a
catalog message that names the field by its label (hub.i18n.field_label), so a
Chinese uploader reads "请至少选择 1 个年级", not a field name in English.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# Every service and the CLI import the error classes; Flask, Babel, pydantic and
# the storage backends load only where an error is translated for the web.
if TYPE_CHECKING:
    from flask import Flask, Response
    from pydantic import ValidationError


class Text(str):
    """A message template with its parameters: reads as the formatted text, translated where shown.

    A ``str``, so code that treats a field's message as text keeps working; pages
    and the API call :meth:`localized`. Parameters may be lazy strings (a field's
    label), which format in the language of the moment.
    """

    template: str
    params: dict[str, object]

    def __new__(cls, template: str, **params: object) -> Text:
        text = super().__new__(cls, template % params if params else template)
        text.template = template
        text.params = params
        return text

    def localized(self) -> str:
        from flask_babel import gettext

        return str(gettext(self.template, **localized_values(self.params)))


def localized_values(params: dict[str, object]) -> dict[str, object]:
    """``params`` with each :class:`Text` among them (a reason inside a sentence) in the language of the moment."""
    return {name: value.localized() if isinstance(value, Text) else value for name, value in params.items()}


def details(message: object) -> list[str]:
    """The operator's detail kept beside a reader's sentence (a socket's own words), however deep it sits.

    A reason such as :func:`hub.sync.network.reason` keeps the exception's text as the value
    ``detail``, which its template does not show: the reader gets a sentence in their
    language, the log and the English column of a run get the words to look up.
    """
    if not isinstance(message, Text):
        return []
    found = [str(message.params["detail"])] if message.params.get("detail") else []
    for value in message.params.values():
        found += details(value)
    return found


def english(message: str) -> str:
    """A message as an operator reads it: its English text with any details behind it in brackets."""
    return str(message) + "".join(f" [{detail}]" for detail in details(message))


def localize(message: str) -> str:
    """A message (a :class:`Text`, or a template marked with N_) in the language of the moment."""
    if isinstance(message, Text):
        return message.localized()
    if not message:
        return ""  # gettext("") is the catalog's header
    from flask_babel import gettext

    return str(gettext(message))


def kept_text(message: str) -> Any:
    """What a JSON column stores for a sentence: {"template", "values"} for a Text, the text itself otherwise."""
    if not isinstance(message, Text):
        return str(message)
    return {"template": message.template, "values": {name: _value(v) for name, v in message.params.items()}}


def _value(value: object) -> Any:
    if isinstance(value, Text):
        return kept_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)  # a lazy string, a path: JSON has no place for them


def render_text(stored: Any, gettext: Callable[[str], str]) -> str:
    """A stored sentence (or a Text, or plain text) in the language of `gettext`.

    A translation that does not fit its values (a wrong placeholder in the .po) falls
    back to the English template: the reader gets the sentence, never an error page.
    """
    if isinstance(stored, Text):
        stored = kept_text(stored)
    if not isinstance(stored, dict) or not isinstance(stored.get("template"), str):
        return "" if stored is None else str(stored)
    template: str = stored["template"]
    given = stored.get("values") or {}
    values = {name: render_text(v, gettext) if isinstance(v, dict) else v for name, v in given.items()}
    if not values:
        return gettext(template)
    try:
        return gettext(template) % values
    except (KeyError, TypeError, ValueError):
        return template % values


class HubError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict[str, str] | None = None, **params: object) -> None:
        # ``message`` may be a template ("There is no course %(id)s.") marked with
        # hub.i18n.N_: the API answers in English, pages translate the template.
        self.template = message
        self.params = params
        self.message = message % params if params else message
        super().__init__(self.message)
        self.fields = fields or {}

    def localized(self) -> str:
        """The message in the reader's language, for pages."""
        from flask_babel import gettext

        return str(gettext(self.template, **localized_values(self.params)))

    def localized_fields(self) -> dict[str, str]:
        """Each field's message in the reader's language, as a sentence that names the field by its label."""
        return localized_fields(self.fields)


def localized_fields(fields: dict[str, Any]) -> dict[str, str]:
    from flask_babel import gettext

    from hub.i18n import field_label

    out = {}
    for name, message in fields.items():
        if isinstance(message, Text):  # made with its label already (invalid_from_pydantic, field_error)
            out[name] = message.localized()
        else:
            out[name] = str(gettext("%(label)s: %(message)s", label=field_label(name), message=gettext(str(message))))
    return out


def field_error(name: str, template: str, **params: object) -> Text:
    """A field's message naming it by its label: ``template`` has ``%(label)s``."""
    from hub.i18n import field_label

    return Text(template, label=field_label(name), **params)


class Invalid(HubError):
    status = 422
    code = "invalid"


class Unauthorized(HubError):
    status = 401
    code = "unauthorized"


class PermissionDenied(HubError):
    status = 403
    code = "forbidden"


class NotFound(HubError):
    status = 404
    code = "not_found"


class Busy(HubError):
    """The server is at its limit for this kind of work; the client should retry later."""

    status = 503
    code = "busy"
    retry_after = 60  # seconds, sent as Retry-After


class Conflict(HubError):
    status = 409
    code = "conflict"


class TooManyRequests(HubError):
    """Too many attempts at something limited per period (sign-ins); sent with Retry-After."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, **params: object) -> None:
        super().__init__(message, None, **params)
        self.retry_after = retry_after


def _pydantic_messages() -> dict[str, str]:
    """pydantic's error types → catalog messages; ``%(label)s`` is the field's label, the rest its ``ctx``."""
    from hub.i18n import N_

    whole_number = N_("%(label)s must be a whole number.")
    return {
        "missing": N_("%(label)s is required."),
        "extra_forbidden": N_("%(label)s is not a field of this form."),
        "string_too_short": N_("%(label)s needs at least %(min_length)s characters."),
        "string_too_long": N_("%(label)s can have at most %(max_length)s characters."),
        "too_short": N_("%(label)s: choose at least %(min_length)s."),
        "too_long": N_("%(label)s: choose at most %(max_length)s."),
        "int_parsing": whole_number,
        "int_type": whole_number,
        "int_from_float": whole_number,
        "float_parsing": N_("%(label)s must be a number."),
        "float_type": N_("%(label)s must be a number."),
        "bool_parsing": N_("%(label)s must be true or false."),
        "bool_type": N_("%(label)s must be true or false."),
        "greater_than": N_("%(label)s must be greater than %(gt)s."),
        "greater_than_equal": N_("%(label)s must be at least %(ge)s."),
        "less_than": N_("%(label)s must be less than %(lt)s."),
        "less_than_equal": N_("%(label)s must be at most %(le)s."),
        # Not the list of codes: a reader picks from a list on the page; a program reads the OpenAPI enum.
        "literal_error": N_("%(label)s: %(value)s is not one of the choices."),
        "enum": N_("%(label)s: %(value)s is not one of the choices."),
        "string_type": N_("%(label)s must be text."),
        "string_pattern_mismatch": N_("%(label)s is not in the expected form."),
        "list_type": N_("%(label)s must be a list."),
        "dict_type": N_("%(label)s must be an object."),
        "model_type": N_("%(label)s must be an object."),
        "date_from_datetime_parsing": N_("%(label)s must be a date like 2026-12-01."),
        "date_parsing": N_("%(label)s must be a date like 2026-12-01."),
        "datetime_parsing": N_("%(label)s must be a date and time like 2026-12-01T08:00:00Z."),
        "bytes_type": N_("%(label)s must be a file."),
    }


def _pydantic_message(err: Any, name: str) -> Text:

    from flask_babel import lazy_gettext

    from hub.i18n import N_, field_label

    # The label of the field the error is about: "grades.0" is an item of grades.
    named = [str(p) for p in err["loc"] if isinstance(p, str)]
    label = field_label(named[-1]) if named else lazy_gettext("The body")
    ctx = dict(err.get("ctx") or {})
    kind = err["type"]
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return Text(N_("%(label)s cannot be empty."), label=label)
    if kind in ("literal_error", "enum"):
        sent = str(err.get("input", ""))
        ctx["value"] = f"“{sent[:40]}…”" if len(sent) > 40 else f"“{sent}”"
    if kind == "value_error":
        # Our own validators raise ValueError with a message marked N_ (hub.catalog.schemas).
        reason = str(ctx.get("error", "")) or str(err["msg"]).removeprefix("Value error, ")
        if not named:  # a check across fields: its message is a sentence of its own
            return Text(reason)
        return Text(N_("%(label)s: %(reason)s"), label=label, reason=lazy_gettext(reason))
    template = _pydantic_messages().get(kind, N_("%(label)s is not valid."))
    params = {key: value for key, value in ctx.items() if f"%({key})s" in template}
    return Text(template, label=label, **params)


def invalid_from_pydantic(exc: ValidationError) -> Invalid:
    """One message per field, naming it by its label, in the reader's language."""
    from flask_babel import gettext

    from hub.i18n import N_, field_label

    fields: dict[str, str] = {}
    labels: list[str] = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "body"
        if name not in fields:
            fields[name] = _pydantic_message(err, name)
            top = next((str(p) for p in err["loc"] if isinstance(p, str)), "body")
            if (label := str(field_label(top))) not in labels:
                labels.append(label)
    return Invalid(N_("Some fields are not valid: %(names)s"), fields, names=str(gettext(", ")).join(labels))


def _wants_json() -> bool:
    from flask import request

    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None, **params: object
) -> tuple[Response | str, int]:
    """The error as JSON or as a page, in the reader's language (``code`` the same in every language)."""
    from flask import jsonify, render_template
    from flask_babel import gettext

    text = str(gettext(message, **localized_values(params)))
    localized = localized_fields(fields or {})
    if _wants_json():
        return jsonify({"error": {"code": code, "message": text, "fields": localized}}), status
    return render_template("error.html", status=status, message=text, fields=localized), status


def init_app(app: Flask) -> None:
    from flask import request
    from flask_wtf.csrf import CSRFError
    from pydantic import ValidationError
    from werkzeug.exceptions import HTTPException

    from hub.i18n import N_
    from hub.media.storage import BlobNotFound

    @app.errorhandler(HubError)
    def _hub_error(exc: HubError) -> tuple[Response | str, int, dict[str, str]]:
        body, status = error_response(exc.status, exc.code, exc.template, exc.fields, **exc.params)
        headers: dict[str, str] = {}
        if isinstance(exc, Unauthorized) and _wants_json():
            headers["WWW-Authenticate"] = 'Bearer realm="hub"'
        if isinstance(exc, Busy | TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        return body, status, headers

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> tuple[Response | str, int]:
        err = invalid_from_pydantic(exc)
        return error_response(err.status, err.code, err.template, err.fields, **err.params)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> tuple[Response | str, int]:
        return error_response(
            400,
            "csrf_failed",
            N_("The form has expired or was not sent by this site (%(reason)s). Reload the page and try again."),
            reason=exc.description,
        )

    @app.errorhandler(BlobNotFound)
    def _blob_missing(exc: BlobNotFound) -> tuple[Response | str, int]:
        # The database knows the blob but storage does not: worth an operator's look.
        app.logger.error("blob %s is recorded but missing from storage", exc.sha256)
        return error_response(404, "not_found", N_("This file is missing from storage."))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int] | HTTPException:
        if exc.code is None or exc.code < 400:
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        messages = {
            400: N_("The request could not be understood. Reload the page and try again."),
            404: N_("Nothing is here. Check the address."),
            405: N_("%(method)s is not allowed here."),
            413: N_("The file is too large for this upload form. Use a resumable upload for large files."),
            415: N_("This kind of content is not accepted here."),
            500: N_("Something went wrong on the server. Try again later."),
        }
        # werkzeug's own descriptions are English: a reader gets one of ours, or this.
        fallback = N_("The request could not be handled (HTTP %(number)s).")
        return error_response(exc.code, code, messages.get(exc.code, fallback), method=request.method, number=exc.code)

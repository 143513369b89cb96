"""Domain errors raised by services, and the one place that turns them into HTTP.

Every error a user can cause answers with the same JSON shape::

    {"error": {"code": "...", "message": "...", "fields": {...}}}

HTML pages render the same message in a page instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Every service and the CLI import the error classes; Flask, Babel, pydantic and
# the storage backends load only where an error is translated for the web.
if TYPE_CHECKING:
    from flask import Flask, Response
    from pydantic import ValidationError


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

        return str(gettext(self.template, **self.params))

    def localized_fields(self) -> dict[str, str]:
        from flask_babel import gettext

        return {name: str(gettext(message)) for name, message in self.fields.items()}


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


def invalid_from_pydantic(exc: ValidationError) -> Invalid:
    """One message per field, in words a person can act on."""
    from hub.i18n import N_

    fields: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = N_("Unknown field")
        elif err["type"] == "missing":
            message = N_("This field is required")
        fields.setdefault(name, message)
    return Invalid(N_("Some fields are not valid: %(names)s"), fields, names=", ".join(fields))


def _wants_json() -> bool:
    from flask import request

    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None, **params: object
) -> tuple[Response | str, int]:
    """The error as JSON (English, ``message % params``) or as a page in the reader's language."""
    from flask import jsonify, render_template
    from flask_babel import gettext

    if _wants_json():
        text = message % params if params else message
        body = {"error": {"code": code, "message": text, "fields": fields or {}}}
        return jsonify(body), status
    page_fields = {name: gettext(str(msg)) for name, msg in (fields or {}).items()}
    return render_template("error.html", status=status, message=gettext(message, **params), fields=page_fields), status


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
            404: N_("Nothing is here. Check the address."),
            405: N_("%(method)s is not allowed here."),
            413: N_("The file is too large for this upload form. Use a resumable upload for large files."),
        }
        if exc.code in messages:
            return error_response(exc.code, code, messages[exc.code], method=request.method)
        return error_response(exc.code, code, exc.description or exc.name)

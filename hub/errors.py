"""Domain errors raised by services, and the one place that turns them into HTTP.

Every error a user can cause answers with the same JSON shape::

    {"error": {"code": "...", "message": "...", "fields": {...}}}

HTML pages render the same message in a page instead.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from hub.media.storage import BlobNotFound


class HubError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


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


class Conflict(HubError):
    status = 409
    code = "conflict"


def invalid_from_pydantic(exc: ValidationError) -> Invalid:
    """One message per field, in words a person can act on."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "Unknown field"
        elif err["type"] == "missing":
            message = "This field is required"
        fields.setdefault(name, message)
    names = ", ".join(fields)
    return Invalid(f"Some fields are not valid: {names}", fields)


def _wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> tuple[Response | str, int]:
    if _wants_json():
        body = {"error": {"code": code, "message": message, "fields": fields or {}}}
        return jsonify(body), status
    return render_template("error.html", status=status, message=message, fields=fields or {}), status


def init_app(app: Flask) -> None:
    @app.errorhandler(HubError)
    def _hub_error(exc: HubError) -> tuple[Response | str, int]:
        response = error_response(exc.status, exc.code, exc.message, exc.fields)
        if isinstance(exc, Unauthorized) and _wants_json():
            response[0].headers["WWW-Authenticate"] = 'Bearer realm="hub"'  # type: ignore[union-attr]
        return response

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> tuple[Response | str, int]:
        err = invalid_from_pydantic(exc)
        return error_response(err.status, err.code, err.message, err.fields)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> tuple[Response | str, int]:
        return error_response(
            400,
            "csrf_failed",
            f"The form has expired or was not sent by this site ({exc.description}). Reload the page and try again.",
        )

    @app.errorhandler(BlobNotFound)
    def _blob_missing(exc: BlobNotFound) -> tuple[Response | str, int]:
        # The database knows the blob but storage does not: worth an operator's look.
        app.logger.error("blob %s is recorded but missing from storage", exc.sha256)
        return error_response(404, "not_found", "This file is missing from storage.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int] | HTTPException:
        if exc.code is None or exc.code < 400:
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        messages = {
            404: "Nothing is here. Check the address.",
            405: f"{request.method} is not allowed here.",
            413: "The file is too large for this upload form. Use a resumable upload for large files.",
        }
        return error_response(exc.code, code, messages.get(exc.code, exc.description or exc.name))

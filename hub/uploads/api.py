"""tus 1.0 over HTTP at /api/v1/uploads/: parse headers, call one service, answer with headers.

Core (HEAD, PATCH) plus the creation, creation-with-upload, expiration, checksum
(sha1, sha256) and termination extensions. Status codes are the protocol's: 201 on
creation, 204 after a PATCH, 409 offset mismatch, 412 unsupported Tus-Resumable,
413 over the size limit, 415 wrong Content-Type, 460 checksum mismatch, 404/410
after termination or expiry; plus 400 for malformed headers, 403 for a PATCH to a
finished upload and 423 while another PATCH writes to the same upload.
Errors carry the hub's JSON error body as well.

Upload-Metadata keys the hub reads: ``filename``, ``filetype`` and ``sha256`` (the whole
file's SHA-256 as 64 hex digits). With ``sha256`` declared, per-chunk Upload-Checksum is
optional: the server checks the file against it when the last byte arrives, and a file
that hashes otherwise is discarded (422 ``sha256_mismatch`` on that PATCH, 410 after).

A non-tus ``GET`` on an upload answers JSON, for scripts and the pages.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, Field
from werkzeug.http import http_date

from hub.accounts.auth import require_user
from hub.api import OPERATIONS, PREFIX, Operation, Strict
from hub.catalog.schemas import MaterialOut
from hub.db import request_session
from hub.errors import HubError, Unauthorized
from hub.i18n import N_
from hub.media.api import material_out
from hub.media.storage import Storage
from hub.uploads import Uploads, get_uploads, services
from hub.uploads.models import Upload

blueprint = Blueprint("uploads_api", __name__, url_prefix=PREFIX)

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
EXTENSIONS = "creation,creation-with-upload,expiration,checksum,termination"
_WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")


class UploadOut(BaseModel):
    id: str
    status: str
    offset: int
    length: int
    filename: str
    filetype: str
    sha256: str | None
    material: int | None
    expires_at: str
    url: str


class MaterialFromUpload(Strict):
    """``POST /lessons/{id}/materials`` with a finished tus upload instead of a multipart file."""

    upload: Annotated[str, Field(min_length=1, max_length=2000, description="The tus upload URL (Location)")]
    title: Annotated[str, Field(max_length=200)] = ""


def _document(rule: str, method: str, summary: str, status: int, auth: bool = True, response: Any = None) -> None:
    # The tus endpoints speak headers, not JSON bodies, so they are not declared with
    # hub.api.operation; they are still listed in the OpenAPI document.
    OPERATIONS.append(Operation(PREFIX + rule, method, summary, blueprint.name, None, None, response, status, auth))


_document("/uploads/", "OPTIONS", "tus: server capabilities (Tus-Version, Tus-Extension, Tus-Max-Size)", 204, False)
_document(
    "/uploads/",
    "POST",
    "tus creation: Upload-Length, Upload-Metadata (filename, filetype, optional sha256 of the whole file,"
    " checked when the last byte arrives) and an optional first chunk",
    201,
)
_document("/uploads/<upload_id>", "HEAD", "tus: the upload's offset (Upload-Offset)", 200)
_document("/uploads/<upload_id>", "GET", "The upload's state as JSON", 200, response=UploadOut)
_document(
    "/uploads/<upload_id>",
    "PATCH",
    "tus: append bytes at Upload-Offset (optional Upload-Checksum; 422 sha256_mismatch when the last byte"
    " completes a file other than the declared sha256, which discards the upload)",
    204,
)
_document("/uploads/<upload_id>", "DELETE", "tus termination: forget the upload and its bytes", 204)


def _uploads() -> Uploads:
    return get_uploads(current_app)


def _storage() -> Storage:
    storage: Storage = current_app.extensions["hub.storage"]
    return storage


@blueprint.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = services.TUS_VERSION
    # Offsets change with every PATCH: no cache (a proxy's, a browser's) may answer for us.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(HubError)
def _error(exc: HubError) -> Response:
    # In the language of Accept-Language, as every API error (hub.errors): the page's script shows it.
    error = {"code": exc.code, "message": exc.localized(), "fields": exc.localized_fields()}
    response = jsonify({"error": error})
    # 460 has no reason phrase in HTTP's registry; say what it means.
    response.status = f"{exc.status} Checksum Mismatch" if exc.status == 460 else exc.status
    if isinstance(exc, services.TusError):
        response.headers.update(exc.headers)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="hub"'
    return response


def _require_tus() -> None:
    version = request.headers.get("Tus-Resumable")
    if version != services.TUS_VERSION:
        raise services.UnsupportedVersion(
            N_("This server speaks tus %(version)s; send Tus-Resumable: %(version)s."),
            {"Tus-Version": services.TUS_VERSION},
            version=services.TUS_VERSION,
        )


def _whole_number(name: str) -> int:
    value = request.headers.get(name)
    if value is None:
        raise services.BadUploadRequest(N_("Send the %(name)s header."), name=name)
    if not _WHOLE_NUMBER.fullmatch(value.strip()):
        raise services.BadUploadRequest(
            N_("%(name)s must be a whole number of bytes, not %(value)r."), name=name, value=value[:40]
        )
    return int(value)


def _expiry_headers(upload: Upload) -> dict[str, str]:
    return {"Upload-Expires": http_date(services.expires_at(upload))}


def _body_length() -> int | None:
    """Content-Length, or None for a chunked body (its end is found by reading)."""
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        return None
    return request.content_length or 0


def _no_size_limit() -> None:
    # MAX_CONTENT_LENGTH guards the small multipart form; a tus body is limited by the
    # upload's declared length instead, which append() enforces. Raised first thing:
    # the CSRF check of a cookie session already opens the body stream. (None would
    # mean "the app's default", not "no limit".)
    request.max_content_length = _uploads().settings.max_bytes


def _capabilities() -> Response:
    response = Response(status=204)
    response.headers.update(
        {
            "Tus-Version": services.TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(_uploads().settings.max_bytes),
            "Tus-Checksum-Algorithm": ",".join(services.CHECKSUM_ALGORITHMS),
        }
    )
    return response


@blueprint.route("/uploads/", methods=["OPTIONS", "POST"])
def uploads_endpoint() -> Response:
    if request.method == "OPTIONS":
        return _capabilities()
    _no_size_limit()
    _require_tus()
    actor = require_user()
    if "Upload-Defer-Length" in request.headers:
        raise services.BadUploadRequest(N_("Upload-Defer-Length is not supported: send Upload-Length."))
    length = _whole_number("Upload-Length")
    metadata = services.parse_metadata(request.headers.get("Upload-Metadata", ""))
    content_length = _body_length()
    with_body = content_length != 0
    if with_body and request.mimetype != OFFSET_CONTENT_TYPE:
        raise services.WrongContentType(
            N_("A first chunk sent along needs Content-Type: %(type)s."), type=OFFSET_CONTENT_TYPE
        )
    checksum = services.parse_checksum(request.headers.get("Upload-Checksum"))
    session = request_session()
    uploads = _uploads()
    upload = services.create_upload(session, uploads, actor, length, metadata)
    session.commit()
    response = Response(status=201)
    if with_body:
        try:
            upload = services.append(
                session,
                uploads,
                _storage(),
                actor,
                upload.id,
                offset=0,
                body=request.stream,
                content_length=content_length,
                checksum=checksum,
            )
        except HubError as exc:
            # All or nothing: a creation whose first chunk is refused leaves no upload behind
            # (a whole file refused for its sha256 leaves only the tombstone that says so).
            if not isinstance(exc, services.Sha256Mismatch):
                services.terminate(session, uploads, actor, upload.id)
            raise
        response.headers["Upload-Offset"] = str(upload.offset)
    response.headers["Location"] = services.upload_url(uploads, upload.id)
    response.headers.update(_expiry_headers(upload))
    return response


@blueprint.route("/uploads/<upload_id>", methods=["OPTIONS", "HEAD", "GET", "PATCH", "DELETE"])
def upload_endpoint(upload_id: str) -> Response:
    if request.method == "OPTIONS":
        return _capabilities()
    if request.method == "GET":
        return _describe(upload_id)
    _no_size_limit()
    _require_tus()
    actor = require_user()
    session = request_session()
    uploads = _uploads()
    if request.method == "HEAD":
        upload, offset = services.inspect_upload(session, uploads, _storage(), actor, upload_id)
        response = Response(status=200)
        response.headers["Upload-Offset"] = str(offset)
        response.headers["Upload-Length"] = str(upload.length)
        metadata = services.UploadMetadata(pairs=upload.upload_metadata).header()
        if metadata:
            response.headers["Upload-Metadata"] = metadata
        response.headers.update(_expiry_headers(upload))
        return response
    if request.method == "DELETE":
        services.terminate(session, uploads, actor, upload_id)
        return Response(status=204)
    if request.mimetype != OFFSET_CONTENT_TYPE:
        raise services.WrongContentType(N_("A PATCH needs Content-Type: %(type)s."), type=OFFSET_CONTENT_TYPE)
    offset = _whole_number("Upload-Offset")
    checksum = services.parse_checksum(request.headers.get("Upload-Checksum"))
    upload = services.append(
        session,
        uploads,
        _storage(),
        actor,
        upload_id,
        offset=offset,
        body=request.stream,
        content_length=_body_length(),
        checksum=checksum,
    )
    response = Response(status=204)
    response.headers["Upload-Offset"] = str(upload.offset)
    response.headers.update(_expiry_headers(upload))
    return response


def _describe(upload_id: str) -> Response:
    actor = require_user()
    uploads = _uploads()
    upload, offset = services.inspect_upload(request_session(), uploads, _storage(), actor, upload_id)
    described = services.describe(upload)
    described.update(offset=offset, url=services.upload_url(uploads, upload.id))
    return jsonify(UploadOut(**described).model_dump(mode="json"))


def create_material_from_upload(lesson_id: int, body: MaterialFromUpload) -> MaterialOut:
    """The JSON branch of ``POST /api/v1/lessons/{id}/materials``: a finished upload becomes a material."""
    session = request_session()
    material = services.create_material(
        session, _uploads(), _storage(), require_user(), lesson_id, body.upload, body.title
    )
    session.commit()
    return material_out(material)


def replace_material_from_upload(material_id: int, body: MaterialFromUpload) -> MaterialOut:
    """The JSON branch of ``PUT /api/v1/materials/{id}/original``: a finished upload becomes its file."""
    session = request_session()
    material = services.replace_material(
        session, _uploads(), _storage(), require_user(), material_id, body.upload, body.title
    )
    session.commit()
    return material_out(material)

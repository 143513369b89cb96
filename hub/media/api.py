"""Blob downloads by sha256 and the serialised shape of a material."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, send_file, url_for

from hub.accounts.auth import current_user
from hub.api import PREFIX
from hub.catalog.models import Material
from hub.catalog.schemas import MaterialOut, OriginalOut, RenditionOut
from hub.db import request_session
from hub.media import services
from hub.media.storage import Storage

blueprint = Blueprint("media_api", __name__, url_prefix=PREFIX)


def blob_url(sha256: str) -> str:
    return url_for("media_api.download_blob", sha256=sha256)


def material_out(material: Material) -> MaterialOut:
    return MaterialOut(
        id=material.id,
        lesson=material.lesson_id,
        kind=material.kind,
        title=material.title,
        filename=material.filename,
        status=material.status,
        progress=material.progress,
        error=material.error,
        original=OriginalOut(
            sha256=material.original.sha256,
            bytes=material.original.size,
            media_type=material.original.media_type,
            url=blob_url(material.original.sha256),
        ),
        renditions=[
            RenditionOut(
                profile=r.profile,
                status=r.status,
                progress=r.progress,
                error=r.error,
                bytes=r.bytes,
                kbps=r.kbps,
                width=r.width,
                height=r.height,
                duration=r.duration,
                ssim=r.ssim,
                sha256=r.blob_sha256,
                url=blob_url(r.blob_sha256) if r.blob_sha256 and r.status == "ready" else None,
            )
            for r in material.renditions
        ],
    )


@blueprint.get("/blobs/<sha256>")
def download_blob(sha256: str) -> Response:
    blob = services.get_readable_blob(request_session(), current_user(), sha256)
    storage: Storage = current_app.extensions["hub.storage"]
    presigned = storage.presigned_url(blob.sha256)
    if presigned is not None:
        return redirect(presigned, code=302)  # type: ignore[return-value]
    path = storage.local_path(blob.sha256)
    assert path is not None  # a backend without presigned URLs serves local files
    # Content-addressed: the bytes behind this URL never change, so they can be
    # cached for a year, and the ETag is the hash itself.
    response = send_file(path, mimetype=blob.media_type, conditional=True, etag=blob.sha256, max_age=31536000)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response

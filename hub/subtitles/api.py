"""JSON API for subtitles, and the .vtt file players load: parse, call one service, serialise."""

from __future__ import annotations

from datetime import datetime
from typing import IO

from flask import Blueprint, Response, current_app, request, url_for
from pydantic import BaseModel, Field

from hub.accounts.auth import current_user, require_user
from hub.api import PREFIX, no_content, operation
from hub.db import request_session
from hub.errors import HubError, Invalid
from hub.i18n import N_
from hub.media import downloads
from hub.media.storage import Storage
from hub.subtitles import services, webvtt
from hub.subtitles.models import Subtitle
from hub.vocab import LanguageCode

blueprint = Blueprint("subtitles_api", __name__, url_prefix=PREFIX)


class SubtitleUpload(BaseModel):
    """The multipart/form-data fields of a subtitle upload."""

    file: bytes = Field(description="A WebVTT (.vtt) or SubRip (.srt) file in UTF-8, UTF-16 or GB18030/GBK")
    language: LanguageCode
    label: str = Field(default="", max_length=services.MAX_LABEL, description="Empty: 中文 or English")


class SubtitleOut(BaseModel):
    material: int
    language: str
    label: str
    cues: int
    sha256: str
    bytes: int
    url: str = Field(description="The normalised WebVTT file (text/vtt), served by this hub")
    created_at: datetime
    updated_at: datetime


class SubtitleList(BaseModel):
    items: list[SubtitleOut]


def track_url(subtitle: Subtitle) -> str:
    return url_for("subtitles_api.track", sha256=subtitle.blob_sha256)


def subtitle_out(subtitle: Subtitle) -> SubtitleOut:
    return SubtitleOut(
        material=subtitle.material_id,
        language=subtitle.language,
        label=subtitle.label,
        cues=subtitle.cues,
        sha256=subtitle.blob_sha256,
        bytes=subtitle.blob.size,
        url=track_url(subtitle),
        created_at=subtitle.created_at,
        updated_at=subtitle.updated_at,
    )


def read_upload(stream: IO[bytes]) -> bytes:
    """At most one byte more than a subtitle may have: enough to refuse a larger one."""
    return stream.read(webvtt.MAX_BYTES + 1)


@operation(
    blueprint,
    "/materials/<int:material_id>/subtitles",
    "POST",
    summary="Attach a subtitle track (WebVTT or SRT, converted to WebVTT) to a video or audio material; "
    "replaces the track in that language",
    form=SubtitleUpload,
    response=SubtitleOut,
    status=201,
    auth=True,
)
def attach_subtitle(material_id: int) -> SubtitleOut:
    actor = require_user()
    if request.mimetype != "multipart/form-data":
        raise HubError(N_("Send the subtitle as multipart/form-data with fields 'file' and 'language'."))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid(N_("Choose a subtitle file to upload."), {"file": N_("This field is required")})
    storage: Storage = current_app.extensions["hub.storage"]
    session = request_session()
    subtitle = services.attach_subtitle(
        session,
        storage,
        actor,
        material_id,
        read_upload(upload.stream),
        language=request.form.get("language", ""),
        label=request.form.get("label", ""),
    )
    session.commit()
    return subtitle_out(subtitle)


@operation(
    blueprint,
    "/materials/<int:material_id>/subtitles",
    "GET",
    summary="A material's subtitle tracks",
    response=SubtitleList,
)
def list_subtitles(material_id: int) -> SubtitleList:
    subtitles = services.list_subtitles(request_session(), current_user(), material_id)
    return SubtitleList(items=[subtitle_out(s) for s in subtitles])


@operation(
    blueprint,
    "/materials/<int:material_id>/subtitles/<language>",
    "DELETE",
    summary="Remove a material's subtitle track in a language (zh or en)",
    status=204,
    auth=True,
)
def delete_subtitle(material_id: int, language: str) -> Response:
    session = request_session()
    services.delete_subtitle(session, require_user(), material_id, language)
    session.commit()
    return no_content()


@blueprint.get("/subtitles/<sha256>.vtt")
def track(sha256: str) -> Response:
    """The .vtt a <track> loads: always from this origin (never an S3 redirect, which <track> would
    need CORS for), with the blob's caching rules. Small (2 MB at most), so read whole."""
    session = request_session()
    actor = current_user()
    blob = services.get_readable_track(session, actor, sha256)
    # Readable by an anonymous reader means readable by anyone: only then may shared caches keep it.
    public = actor is None or bool(services.readable_subtitle_blobs(session, None, [sha256]))
    storage: Storage = current_app.extensions["hub.storage"]
    etag = downloads.etag_for(blob.sha256)
    headers = {"ETag": etag, **downloads.blob_cache_headers(public)}
    if etag in request.headers.get("If-None-Match", ""):
        return Response(status=304, headers=headers)
    body = b"".join(storage.open_range(blob.sha256, 0, None))
    return Response(body, headers=headers, content_type="text/vtt; charset=utf-8")

"""Blob downloads by sha256 and the serialised shape of a material."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from flask import Blueprint, Response, current_app, redirect, request, url_for

from hub.accounts.auth import current_user
from hub.api import PREFIX
from hub.catalog.models import Material
from hub.catalog.schemas import ChapterOut, MaterialOut, OriginalOut, RenditionOut, RenditionQualityOut, TrackOut
from hub.db import Database, get_database, request_session
from hub.i18n import quality_note
from hub.media import downloads, services
from hub.media.chapters import chapter_list
from hub.media.storage import BlobNotFound, Storage, content_disposition, key_for
from hub.reach import services as reach

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
                quality=RenditionQualityOut(**r.quality, note=quality_note(r.quality, r.ssim)) if r.quality else None,
                sha256=r.blob_sha256,
                url=blob_url(r.blob_sha256) if r.blob_sha256 and r.status == "ready" else None,
            )
            for r in material.renditions
        ],
        subtitles=[
            TrackOut(
                language=t.language,
                label=t.label,
                cues=t.cues,
                sha256=t.blob_sha256,
                url=url_for("subtitles_api.track", sha256=t.blob_sha256),
            )
            for t in material.subtitles
        ],
        chapters=[ChapterOut.model_validate(chapter) for chapter in chapter_list(material.chapters)],
    )


@blueprint.get("/blobs/<sha256>")
def download_blob(sha256: str) -> Response:
    """A blob by sha256, with ranges and conditional requests (see hub.media.downloads)."""
    session = request_session()
    actor = current_user()
    blob = services.get_readable_blob(session, actor, sha256)
    # Readable by an anonymous reader means readable by anyone.
    public = actor is None or services.blob_is_public(session, blob.sha256)
    storage: Storage = current_app.extensions["hub.storage"]
    database = get_database()
    school_id = actor.school_id if actor is not None else None
    headers = request.headers
    # A school server mirroring a blob is not a teacher downloading it: its LAN
    # downloads arrive later as aggregated counts (hub.sync), so none is counted twice.
    counted = downloads.MIRROR_HEADER not in headers
    decision = downloads.decide_request(headers, size=blob.size, sha256=blob.sha256)
    count_download = _download_counter(database, blob.sha256, school_id)
    if counted and request.method == "GET" and decision.status in (200, 206) and _no_script_play():
        counting = reach.Counting.for_app(current_app, school_id)
        device = f"{request.remote_addr}\n{request.user_agent.string}"
        reach.safely("play", reach.record_media_request, counting, blob.sha256, _material_hint(), device)
    cache = downloads.blob_cache_headers(public)
    base_headers = {"ETag": downloads.etag_for(blob.sha256), **cache, "Accept-Ranges": "bytes"}
    # Answered here for S3 too: some S3 servers send 416 without Content-Range.
    if (bodiless := downloads.bodiless_answer(decision, base_headers)) is not None:
        return bodiless

    # A public answer may be kept by a shared cache and served to anyone: its file name
    # is the one an anonymous reader gets, never the title of a draft using the same bytes.
    name_for = None if public else actor
    filename = downloads.download_filename(session, name_for, blob, request.args.get("name"))
    # Redirected whatever the If-Range: the bytes behind a blob URL never change, so
    # any validator the client holds for it (our sha256, or the MD5 ETag S3 sent it
    # the first time) names these very bytes, and S3 checks its own.
    presigned = storage.presigned_url(blob.sha256, filename=filename, cache_control=cache["Cache-Control"])
    starts_the_file = decision.status == 200 or (decision.status == 206 and decision.start == 0)
    if presigned is not None:
        # S3 serves the bytes (and honours Range) itself, so the hub never sees the end
        # of the transfer. Approximation: count at redirect time a request that starts
        # the file (no usable Range, or a range from byte 0); resumptions do not count.
        if request.method == "GET" and starts_the_file and counted:
            count_download()
        response = redirect(presigned, code=302)
        # The presigned URL expires, and a draft's one is a key to its bytes: keep neither.
        response.headers["Cache-Control"] = "no-store" if public else downloads.PRIVATE
        if not public:
            response.headers["Vary"] = downloads.CREDENTIALS
        return response  # type: ignore[return-value]

    disposition = {"Content-Disposition": content_disposition(filename)}
    offload = current_app.extensions["hub.settings"].download_offload
    local = storage.local_path(blob.sha256)
    if offload != "none" and local is not None and request.method == "GET":
        # The reverse proxy sends the file and answers Range itself from the original
        # request; the hub's thread is free at once. Counted like S3 redirects.
        if starts_the_file and counted:
            count_download()
        # No Accept-Ranges here: the proxy adds its own.
        handed = {k: v for k, v in base_headers.items() if k != "Accept-Ranges"}
        return Response(
            status=200,
            headers={**handed, **disposition, **_offload_header(offload, blob.sha256, local)},
            mimetype=blob.media_type,
        )

    response_headers = {**base_headers, **disposition, "Content-Length": str(decision.length)}
    if decision.content_range is not None:
        response_headers["Content-Range"] = decision.content_range
    completes = counted and downloads.counts_as_completed(decision, blob.size)
    body: Iterable[bytes]
    file_wrapper = request.environ.get("wsgi.file_wrapper")
    if request.method == "HEAD" or not decision.length:
        body = ()
    elif local is not None and file_wrapper is not None:
        # Handed to the server as a file (waitress: its event loop sends it as the
        # socket drains), so a slow client holds no worker thread (benchmarks/downloads).
        on_done = _count_later(count_download) if completes else None
        body = file_wrapper(_RangeFile(local, decision.start, decision.end + 1, on_done), 65536)
    else:
        # open_range raises (BlobNotFound) here, before the response starts.
        chunks = storage.open_range(blob.sha256, decision.start, decision.end)
        body = _stream(chunks, count_download if completes else None)
    response = Response(
        body, status=decision.status, headers=response_headers, mimetype=blob.media_type, direct_passthrough=True
    )
    return response


def _offload_header(offload: str, sha256: str, local: Path) -> dict[str, str]:
    if offload == "x-accel-redirect":
        prefix = current_app.extensions["hub.settings"].download_offload_prefix
        return {"X-Accel-Redirect": prefix.rstrip("/") + "/" + key_for(sha256)}
    return {"X-Sendfile": str(local)}


def _material_hint() -> int | None:
    """`?m=`: the material the page that linked this file was showing (one video in two lessons)."""
    value = request.args.get("m", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None


def _no_script_play() -> bool:
    """A player's request (`?use=play`) from a page without player.js: the fallback counts its play.

    With player.js the beacon counts the play (at 10 s or a quarter), and player.js
    marks this browser's blob requests with a cookie of theirs (hub.reach.services.PLAYER_COOKIE).
    """
    return request.args.get("use") == "play" and reach.PLAYER_COOKIE not in request.cookies


def _download_counter(database: Database, sha256: str, school_id: int | None) -> Callable[[], None]:
    """What counts this request as a completed download, to run when it is one (maybe in another thread).

    Per blob as ever (hub.media.downloads, which the school servers report), and per
    material (hub.reach) unless the page fetched it to play or to show (`?use=`).
    """
    counting = reach.Counting.for_app(current_app, school_id)
    hint, use = _material_hint(), request.args.get("use")

    def count() -> None:
        downloads.safe_record_download(database, sha256, school_id)
        if use not in ("play", "view"):
            reach.safely("download", reach.record_download, counting, sha256, hint)

    return count


def _count_later(count: Callable[[], None]) -> Callable[[], None]:
    def later() -> None:
        # Called from the server's I/O loop: the database writes go to their own thread.
        threading.Thread(target=count, daemon=True).start()

    return later


class _RangeFile:
    """A window [start, stop) of a file that looks like a whole file to a file_wrapper.

    The end of the window is the end of the file (seek(0, 2), read), so a server
    that sends "the rest of the file" sends exactly the range. `on_done` runs at
    close when the server has moved past the last byte, i.e. it was all sent.
    """

    def __init__(self, path: Path, start: int, stop: int, on_done: Callable[[], None] | None) -> None:
        # Opened now: a missing file is BlobNotFound before the response starts.
        try:
            self._file = path.open("rb")
        except FileNotFoundError:
            raise BlobNotFound(path.name) from None
        self._file.seek(start)
        self._stop = stop
        self._on_done = on_done

    def read(self, size: int = -1) -> bytes:
        left = self._stop - self._file.tell()
        if left <= 0:
            return b""
        return self._file.read(left if size is None or size < 0 else min(size, left))

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2:
            return self._file.seek(self._stop + offset)
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        if self._file.closed:
            return
        done = self._file.tell() >= self._stop
        self._file.close()
        if done and self._on_done is not None:
            self._on_done()


def _stream(chunks: Iterator[bytes], on_done: Callable[[], None] | None) -> Iterator[bytes]:
    """Yield the chunks; count the download once the last one has been handed over.

    The code after the loop only runs when the server asks for more after the last
    chunk, i.e. the whole body has been written out; a client that drops the link
    makes the server close the iterator at a `yield` instead, and nothing is counted.
    """
    try:
        yield from chunks
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if on_done is not None:
        on_done()

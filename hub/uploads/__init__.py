"""Resumable uploads: a tus 1.0 server, its partial stores, the upload pages and ``hub upload``.

A famous school's multi-GB lesson video crosses links that drop. The tus protocol
(tus.io) lets a client ask how much arrived (HEAD) and send the rest (PATCH), so an
upload survives a dropped connection, a closed laptop and a server restart. When
the last byte arrives the file becomes a blob under its sha256, and
``POST /api/v1/lessons/{id}/materials {"upload": URL}`` turns it into a material.

Layout: ``storage`` (bytes of unfinished uploads), ``services`` (the use cases),
``api`` (tus over HTTP), ``views`` (pages), ``cli`` (``hub upload``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kept out of imports: `hub upload` on a laptop needs neither Flask, boto3 nor the models
    from flask import Flask

    from hub.config import Settings
    from hub.uploads.storage import PartialStore

MiB = 1024 * 1024


@dataclass(frozen=True)
class UploadSettings:
    """What the upload server needs from the configuration."""

    public_url: str
    """Base URL clients reach this hub at; "" makes upload URLs host-relative."""
    max_bytes: int
    """Largest upload accepted (Tus-Max-Size)."""
    expires_seconds: int
    """An upload untouched this long expires; a finished one is kept this long to become a material."""
    directory: Path
    """Bytes of unfinished uploads (local files, or S3 parts not yet full)."""
    part_bytes: int
    """S3 part size (at least 5 MiB)."""
    max_unfinished: int
    """Unfinished uploads one user may have at once."""
    school_max_bytes: int
    """Bytes a school's unfinished uploads may declare together."""
    disk_reserve: int
    """Bytes uploads leave free on the disks they write to."""
    storage_dir: Path | None
    """Local blob storage's directory, where finished uploads go (None with S3 storage)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadSettings:
        return cls(
            public_url=settings.public_url.rstrip("/"),
            max_bytes=settings.upload_max_bytes,
            expires_seconds=settings.upload_expires,
            directory=settings.upload_dir,
            part_bytes=settings.upload_part_bytes,
            max_unfinished=settings.upload_max_unfinished,
            school_max_bytes=settings.upload_school_max_bytes,
            disk_reserve=settings.upload_disk_reserve,
            storage_dir=settings.storage_dir if settings.storage == "local" else None,
        )


@dataclass(frozen=True)
class Uploads:
    """The upload server's parts, kept on ``app.extensions["hub.uploads"]``."""

    settings: UploadSettings
    partials: PartialStore


def make_uploads(settings: Settings, storage: Any) -> Uploads:
    from hub.uploads.storage import make_partial_store

    upload_settings = UploadSettings.from_settings(settings)
    return Uploads(
        settings=upload_settings,
        partials=make_partial_store(storage, upload_settings.directory, upload_settings.part_bytes),
    )


def init_app(app: Flask) -> Uploads:
    """Attach the upload server: its settings, partial store, API and pages."""
    from hub.uploads.api import blueprint as api_blueprint
    from hub.uploads.views import blueprint as views_blueprint
    from hub.web import csrf

    uploads = get_uploads(app)
    app.register_blueprint(api_blueprint)
    # Like every API blueprint: CSRF is checked by hub.accounts.auth, for cookie sessions only.
    csrf.exempt(api_blueprint)
    app.register_blueprint(views_blueprint)
    return uploads


def get_uploads(app: Flask | None = None) -> Uploads:
    """The app's upload server parts, made on first use (workers need no blueprints)."""
    from flask import current_app

    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    uploads = app.extensions.get("hub.uploads")
    if uploads is None:
        uploads = make_uploads(app.extensions["hub.settings"], app.extensions["hub.storage"])
        app.extensions["hub.uploads"] = uploads
    assert isinstance(uploads, Uploads)
    return uploads

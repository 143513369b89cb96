"""``hub sync init``: one command turns a fresh data directory into a school server.

In this order, so that a refusal leaves nothing behind and a second run
changes nothing that the first one did right:

1. check the upstream before anything is written: it answers, it takes the
   token, and the manifest it signs for this school verifies with the public key
   given (a wrong key, an unreachable host or a refused token stop here);
2. migrate the database (idempotent);
3. report this server's state upstream, which answers the school the token
   belongs to (name, county, pairings);
4. create that school here and a local admin with a generated password, unless
   an admin exists already (then its password is left alone);
5. write the upstream's URL, key and token and the LAN name into
   ``HUB_DATA_DIR/hub.conf`` (hub.config reads it below the environment), last
   and atomically.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from hub.config import Settings, write_settings_file
from hub.db import get_database, utcnow
from hub.errors import HubError
from hub.i18n import N_
from hub.sync import manifest as mf
from hub.sync import wording
from hub.sync.client import SyncError, Upstream

CHECK_TIMEOUT = 30.0
"""Seconds each check may wait on the upstream: a slow rural link, but a technician waiting at the prompt."""

SETTINGS_HEADER = (
    "# Written by `hub sync init`. Environment variables override these lines; "
    "run `hub sync init` again to change them."
)


class InitRefused(HubError):
    """The upstream, the key or the token is not right: nothing was written."""

    code = "init_refused"


@dataclass(frozen=True)
class UpstreamSettings:
    url: str
    public_key: str
    token: str


@dataclass(frozen=True)
class InitDone:
    school: str
    county: str
    paired_with: list[str]
    admin_email: str
    admin_password: str | None  # None: the admin existed already
    host_name: str
    manifest_version: int
    settings_path: Path


def check_upstream(url: str, public_key: str, token: str) -> int:
    """Fetch the manifest the upstream signs for this token's school and verify it with `public_key`.

    Returns its version; InitRefused with a message that says what to fix.
    """
    try:
        key = mf.load_public_key(public_key)
    except ValueError:
        raise InitRefused(
            N_("--public-key is not the base64 key `hub keys generate` printed on the upstream.")
        ) from None
    try:
        upstream = Upstream(url, token, timeout=CHECK_TIMEOUT)
    except SyncError:
        raise InitRefused(N_("--upstream must be an http(s) URL, not %(url)s."), url=repr(url)) from None
    status, raw = _get(upstream, url)
    if status in (401, 403):
        raise InitRefused(
            N_(
                "The upstream at %(url)s refused the token (HTTP %(status)s): give --token a sync token of this "
                "school's user there (hub token create EMAIL --kind sync)."
            ),
            url=url,
            status=status,
        )
    if status == 404:
        raise InitRefused(N_("%(url)s answered 404 to the sync API: is it the upstream hub's address?"), url=url)
    if status == 503:
        raise InitRefused(
            N_("The upstream at %(url)s cannot sign manifests yet: run `hub keys generate` there."), url=url
        )
    if status != 200:
        raise InitRefused(
            N_("The upstream at %(url)s answered HTTP %(status)s to the manifest request; try again later."),
            url=url,
            status=status,
        )
    try:
        index = mf.verify(raw, key, not_older_than=None, now=utcnow())
    except mf.ManifestRefused as exc:
        if "signature" not in exc.template:  # expired, malformed: the key may be right
            raise InitRefused(
                N_("The upstream's manifest is refused: %(reason)s Nothing was written."),
                reason=wording.from_error(exc),
            ) from None
        raise InitRefused(
            N_(
                "The upstream's manifest is not signed by the key given (--public-key): check it; it is the last "
                "line `hub keys generate` printed on the upstream. Nothing was written."
            )
        ) from None
    return index.version


def _get(upstream: Upstream, url: str) -> tuple[int, bytes]:
    try:
        return upstream.fetch("GET", "/api/v1/sync/manifest", None, {"Accept-Encoding": "gzip"}, mf.MAX_ENVELOPE_BYTES)
    except SyncError as exc:
        raise InitRefused(
            N_("Cannot reach the upstream at %(url)s: %(reason)s Nothing was written."),
            url=url,
            reason=wording.from_error(exc),
        ) from None


def host_name_for(school_name: str) -> str:
    """An ASCII host name from a school's name: 山村小学 → shancunxiaoxue (pinyin), stable for the same name."""
    from pypinyin import lazy_pinyin

    text = "".join(lazy_pinyin(school_name)).lower()
    name = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:63].strip("-")
    return name or "oer-hub"


def init_school_server(
    app: Flask, upstream: UpstreamSettings, *, admin_email: str | None, manifest_version: int
) -> InitDone:
    """Steps 2 to 5 of the module docstring; `app` is built with the upstream settings given."""
    from hub.accounts import services as accounts
    from hub.accounts.models import School, User
    from hub.migrate import upgrade
    from hub.sync.servers import send_report

    settings: Settings = app.extensions["hub.settings"]
    upgrade(settings.database_url)
    answer = send_report(app, Upstream(upstream.url, upstream.token, timeout=CHECK_TIMEOUT), "init")
    if answer is None or not isinstance(answer.get("school"), dict):
        raise InitRefused(
            N_("The upstream at %(url)s is older than this hub (no /api/v1/sync/status): update it."), url=upstream.url
        )
    identity: dict[str, Any] = answer["school"]
    name = str(identity.get("name", "")).strip()
    host = settings.mdns_name or host_name_for(name)
    password: str | None = None
    with get_database(app).session() as session:
        school = session.scalar(select(School).where(School.name == name))
        if school is None:
            school = accounts.create_school(
                session,
                name,
                str(identity.get("kind") or "rural"),
                str(identity.get("region") or ""),
                str(identity.get("county") or ""),
            )
        if admin_email:
            admin = session.scalar(select(User).where(User.email == admin_email.strip().lower()))
        else:
            admin = session.scalar(select(User).where(User.role == "admin").order_by(User.id).limit(1))
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = accounts.create_user(session, admin_email or f"admin@{host}.local", school, "admin", password)
        email = admin.email
        session.commit()
    path = write_settings_file(
        settings.data_dir,
        {
            "HUB_UPSTREAM_URL": upstream.url,
            "HUB_UPSTREAM_PUBLIC_KEY": upstream.public_key,
            "HUB_UPSTREAM_TOKEN": upstream.token,
            "HUB_MDNS_NAME": host,
        },
        header=SETTINGS_HEADER,
    )
    return InitDone(
        school=name,
        county=str(identity.get("county") or ""),
        paired_with=[str(n) for n in answer.get("paired_with") or []],
        admin_email=email,
        admin_password=password,
        host_name=host,
        manifest_version=manifest_version,
        settings_path=path,
    )

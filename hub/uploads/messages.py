"""What the upload page's script (hub/static/tus-upload.js) says, in the reader's language.

The script carries no words of its own: the page renders these into the upload
form's ``data-messages`` attribute as JSON (an attribute, not an inline script, so
the Content-Security-Policy stays ``script-src 'self'``), and the script looks
each up by key. So the script speaks the page's language, its words are in the
gettext catalog with everything else, and tests/unit/test_i18n.py can check that
every key the script uses is here and translated.

``%(name)s`` placeholders stay in the text; the script fills them in.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext, lazy_gettext

from hub.i18n import CODE_LABELS, filesize

SCRIPT_MESSAGES = {
    "starting": lazy_gettext("Starting…"),
    "connecting": lazy_gettext("Connecting…"),
    "uploading": lazy_gettext("Uploading…"),
    "resuming": lazy_gettext("Resuming…"),
    "pause": lazy_gettext("Pause"),
    "resume": lazy_gettext("Resume"),
    "retry": lazy_gettext("Retry"),
    "paused": lazy_gettext("Paused"),
    "retrying_in": lazy_gettext("Connection lost; retrying in %(seconds)s s"),
    "retrying": lazy_gettext("Connection lost; retrying"),
    "gave_up": lazy_gettext("The connection keeps dropping. Press Retry to go on from where it stopped."),
    "could_not_start": lazy_gettext("Could not start the upload"),
    "could_not_resume": lazy_gettext("Could not resume"),
    "upload_failed": lazy_gettext("Upload failed"),
    "adding": lazy_gettext("Uploaded; adding the material…"),
    "could_not_add": lazy_gettext("Could not add the material"),
    "added": lazy_gettext("Added; waiting to be processed"),
    "http_error": lazy_gettext("%(message)s (HTTP %(status)s)"),
    "pausing": lazy_gettext("Pausing after this piece…"),
    "rate": lazy_gettext("%(speed)s/s · %(left)s left"),
    "h_m": lazy_gettext("%(h)s h %(m)s min"),
    "m_s": lazy_gettext("%(m)s min %(s)s s"),
    "m": lazy_gettext("%(m)s min"),
    "s": lazy_gettext("%(s)s s"),
}
"""Key → message; the script calls ``t('key', {name: value})``."""


def script_messages(max_upload: int) -> dict[str, Any]:
    """Every message of the upload script in the request's language, plus the status and kind labels."""
    messages: dict[str, Any] = {key: str(text) for key, text in SCRIPT_MESSAGES.items()}
    messages["too_large"] = gettext("The file is larger than %(size)s.", size=filesize(max_upload))
    messages["status"] = {code: str(text) for code, text in CODE_LABELS["material"].items()}
    messages["kind"] = {code: str(text) for code, text in CODE_LABELS["kind"].items()}
    return messages

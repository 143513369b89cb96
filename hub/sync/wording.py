"""The pull's own sentences, kept so that each reader gets them in their own language.

A pull or a USB import ends with a summary ("Up to date with manifest version 3: ...")
and skip lines ("course 7 '...' (1.2 MB more than the 0 B left)"). They are written
to the run's row when the run ends, and read later by people who do not share a
language: the school's admin on the web page (the request's language) and the
technician at ``hub sync status`` (the terminal's). So the row keeps each sentence
as its message id and values (``SyncRun.wording``) beside the English text
(``message``, ``skipped``: logs, ``--json``, and rows written before the column),
and the reader's gettext renders it at display time.

Sentences are :class:`hub.errors.Text` (a ``str`` that keeps its template): code that
only logs or compares the text is unchanged. A value may itself be a Text (a reason
inside a sentence), kept and rendered the same way; any other value is shown as it is
(course titles, sizes). A network failure is one of hub.sync.network's few reasons: the
socket's own words ride along as its ``detail`` value, which no template shows, for the
English column and the log (hub.errors.english).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hub.errors import HubError, Text, render_text
from hub.errors import kept_text as keep

Gettext = Callable[[str], str]
render = render_text


def from_error(exc: HubError) -> Text:
    """A HubError's message with its template, so a translated template reads translated."""
    return Text(exc.template, **exc.params)


def kept(message: str, skipped: Sequence[str] | None) -> dict[str, Any]:
    """The ``SyncRun.wording`` of a finished run (skipped None: its lines are not known here)."""
    return {"message": keep(message), "skipped": None if skipped is None else [keep(line) for line in skipped]}


def message_of(wording: dict[str, Any] | None, message: str, gettext: Gettext) -> str:
    """A run's summary for a reader: from its wording, or its English text for a row without one."""
    if wording and wording.get("message") is not None:
        return render(wording["message"], gettext)
    return message


def skipped_of(wording: dict[str, Any] | None, skipped: str, gettext: Gettext) -> list[str]:
    """A run's skip lines for a reader, likewise (one line each)."""
    if wording and isinstance(wording.get("skipped"), list):
        return [render(line, gettext) for line in wording["skipped"]]
    return [line for line in skipped.split("\n") if line]

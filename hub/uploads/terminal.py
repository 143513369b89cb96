"""What the uploader's own terminal shows: their language, progress only where a person watches.

The upload commands run on an uploader's machine, away from any request, so the
language cannot come from ``Accept-Language``: it comes from the environment like
any Unix program's (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``, in
gettext's order). ``zh_CN.UTF-8`` (or any ``zh*``) gives Chinese; anything else,
``C`` and unset included, gives English: an unset locale is a cron job or a
container far more often than a Chinese teacher's terminal, which says ``zh_CN``.
The same language goes to the hub as ``Accept-Language``, so its error messages
match.

Output follows where stdout goes: on a terminal, a line per lesson and file and
progress bars (on stderr, so ``> log`` keeps them on screen); into a pipe or a
file, one summary line and no carriage returns; with ``--json``, one JSON
document and nothing else on stdout.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Mapping
from gettext import GNUTranslations, NullTranslations
from typing import Any

import click

LANGUAGE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def language(environ: Mapping[str, str] = os.environ) -> str:
    """``zh`` or ``en`` from the first locale variable that is set, as gettext reads them."""
    for name in LANGUAGE_VARIABLES:
        value = environ.get(name, "")
        if not value:
            continue
        first = value.split(":")[0]  # LANGUAGE may list several: zh_CN:en
        return "zh" if first.lower().startswith("zh") else "en"
    return "en"


@functools.cache
def _translations(lang: str) -> NullTranslations:
    if lang == "en":
        return NullTranslations()  # the message ids are English
    # The .mo read with the standard library: no Flask, no Babel (hub.catalogs) for `hub --help`.
    from hub.catalogs import command_catalog_dir

    try:
        with (command_catalog_dir() / lang / "LC_MESSAGES" / "messages.mo").open("rb") as f:
            return GNUTranslations(f)
    except FileNotFoundError:  # a language without a catalog: the message ids
        return NullTranslations()


def _(message: str, **values: Any) -> str:
    """``message`` in the user's language, with ``%(name)s`` values filled in."""
    text = _translations(language()).gettext(message)
    return text % values if values else text


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def print_json(document: Any) -> None:
    """One JSON document on one line: ``| jq`` and ``json.loads`` read it alike."""
    click.echo(json.dumps(document, ensure_ascii=False, sort_keys=True))


def in_brackets(parts: list[str]) -> str:
    """ " (a, b)" in English, "（a、b）" in Chinese: the punctuation is the language's too."""
    return _(" (%(list)s)", list=_(", ").join(parts)) if parts else ""


def status_label(status: str) -> str:
    """A material's, rendition's or course's status in the user's language."""
    labels = {
        "pending": _("waiting"),
        "processing": _("processing"),
        "ready": _("ready"),
        "failed": _("processing failed"),
        "draft": _("draft"),
        "published": _("published"),
        "withdrawn": _("withdrawn"),
    }
    return labels.get(status, status)

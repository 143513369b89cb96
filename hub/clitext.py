"""The ``hub`` command in the terminal's language: our messages, Click's own words, short help.

Our strings go through :func:`hub.uploads.terminal._` (``LANG=zh_CN.UTF-8`` gives
Chinese, anything else English), help texts included: each command passes
``help=_(...)`` instead of a docstring, which Click would show untranslated.

Click's own words ("Usage:", "Options", "Show this message and exit.", "Error: Missing
argument ...") go through the standard library's ``gettext.gettext``, which reads the
process's default text domain, ``messages``: the name of our catalog too. So when the
terminal speaks Chinese, :func:`speak_the_terminal_language` binds that domain to our
compiled catalogs, and Click's strings listed in :data:`CLICK_WORDS` (so that ``make
messages`` keeps them in the ``.po``) come out in Chinese. Nothing is bound otherwise:
English is Click's own text.
"""

from __future__ import annotations

import gettext
from pathlib import Path
from typing import Any

import click

from hub.uploads.terminal import language


def N_(message: str) -> str:  # marks a string for `make messages`; Click translates it where shown
    return message


# Click's strings that a `hub` user meets (click/core.py, exceptions.py, formatting.py,
# parser.py, types.py); the rest (programming errors, Windows consoles) stay English.
CLICK_WORDS = (
    N_("Usage:"),
    N_("Options"),
    N_("Commands"),
    N_("Show this message and exit."),
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Choose from:\n\t{choices}"),
    N_("Missing parameter"),
    N_("Missing command."),
    N_("Missing {param_type}"),
    N_("No such command {name!r}."),
    N_("No such option {name!r}."),
    N_("Did you mean {possibility}?"),
    N_("(Did you mean one of: {possibilities}?)"),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Invalid value: {message}"),
    N_("Option {name!r} requires an argument."),
    N_("Option {name!r} does not take a value."),
    N_("Got unexpected extra argument ({args})"),
    N_("Got unexpected extra arguments ({args})"),
    N_("{value!r} is not one of {choices}."),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value} is not in the range {range}."),
    N_("{name} {filename!r} does not exist."),
    N_("{name} {filename!r} is a directory."),
    N_("Aborted!"),
    N_("Repeat for confirmation"),
    N_("Error: The two entered values do not match."),
    N_("default: {default}"),
    N_("env var: {var}"),
    N_("required"),
    N_("file"),
    N_("directory"),
    N_("path"),
)


def _catalog_directory() -> Path:
    """Where the compiled catalogs are: the same place hub.uploads.terminal compiles them to."""
    from hub.catalogs import command_catalog_dir

    return command_catalog_dir()  # compiled beside the .po, or into the user's cache when the package is read-only


def speak_the_terminal_language() -> None:
    """Click's own words in the terminal's language (see the module's doc)."""
    if language() == "zh":
        gettext.bindtextdomain("messages", str(_catalog_directory()))


def _short_help(text: str, limit: int) -> str:
    """The first sentence of a Chinese help text: Click cuts at ". " and at spaces, which Chinese has not."""
    first = text.partition("\n\n")[0].replace("\n", " ").strip()
    sentence, stop, _rest = first.partition("。")
    return sentence + stop if len(sentence) <= limit else sentence[: limit - 1] + "…"


class HubCommand(click.Command):
    def get_short_help_str(self, limit: int = 45) -> str:
        if not self.short_help and self.help and language() == "zh":
            return _short_help(self.help, limit)
        return super().get_short_help_str(limit)


class HubGroup(click.Group):
    """Every ``hub`` group: its commands and subgroups make short help of Chinese help texts too."""

    command_class = HubCommand
    group_class = type  # subgroups are HubGroups as well

    def get_short_help_str(self, limit: int = 45) -> str:
        if not self.short_help and self.help and language() == "zh":
            return _short_help(self.help, limit)
        return super().get_short_help_str(limit)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        speak_the_terminal_language()  # before Click parses: --help and usage errors come first
        return super().main(*args, **kwargs)

"""Textbook editions (教材版本) a curriculum course names, from the data file ``data/editions.json``.

Teachers look lessons up by the book on their desk, so the edition must be spelt one
way: free text gave "人教版", "人教", "PEP" and "部编" for the same books, and a facet
per spelling. The list is data (an edition is added there, not in code); each entry
says which subjects it publishes, so a form offers 外研版 for English only. A book
that is not listed can still be named as free text, as "other" — and courses saved
before the list existed keep whatever they say: the rules apply when an edition is
chosen or the subject changes, never to what is merely read back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hub.i18n import N_

DATA = Path(__file__).parent / "data" / "editions.json"
OTHER = "other"  # the form's and the API's choice for "a book that is not listed"


@dataclass(frozen=True)
class Edition:
    name: str  # in Chinese, as courses store it and teachers say it
    en: str
    subjects: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def label(self, locale: str) -> str:
        return self.name if locale == "zh" else f"{self.en} ({self.name})"


@cache
def editions() -> tuple[Edition, ...]:
    raw = json.loads(DATA.read_text(encoding="utf-8"))
    return tuple(
        Edition(e["name"], e["en"], tuple(e["subjects"]), tuple(e.get("aliases", ()))) for e in raw["editions"]
    )


@cache
def _by_name() -> dict[str, Edition]:
    found: dict[str, Edition] = {}
    for edition in editions():
        for name in (edition.name, *edition.aliases):
            found[name.casefold()] = edition
    return found


def find(name: str) -> Edition | None:
    """The listed edition called ``name`` (its name or an alias, any case), or None."""
    return _by_name().get(name.strip().casefold())


def for_subject(subject: str | None) -> list[Edition]:
    """The editions that publish ``subject``'s books; every edition when no subject is given."""
    return [e for e in editions() if not subject or subject in e.subjects]


class EditionError(ValueError):
    """An edition that does not fit; ``template`` is a catalog message, ``params`` its values."""

    def __init__(self, template: str, **params: str) -> None:
        super().__init__(template % params)
        self.template = template
        self.params = params


def resolve(edition: str, other: str, subject: str) -> str:
    """What a course stores for the edition chosen in a form or an API body.

    ``edition`` is a listed name (or alias), ``"other"`` with the book's name in
    ``other``, or empty for none. Raises EditionError with a message for the reader.
    """
    edition, other = edition.strip(), other.strip()
    if edition == OTHER:
        if not other:
            raise EditionError(N_("Type the edition's name when you choose “other”."))
        listed = find(other)  # typed a listed edition after all: store its one spelling
        edition = listed.name if listed else other
    elif other:
        raise EditionError(N_("Type an edition's name only after choosing “other” in the list."))
    elif edition and find(edition) is None:
        raise EditionError(
            N_("%(edition)s is not in the list of editions; choose “other” to type a name that is not listed."),
            edition=edition,
        )
    listed = find(edition) if edition else None
    if listed is None:
        return edition
    check_subject(listed.name, subject)
    return listed.name


def check_subject(edition: str, subject: str) -> None:
    """A listed edition must publish the subject.

    Editions typed as "other" (or saved before the list) may say anything.
    """
    listed = find(edition)
    if listed is not None and subject not in listed.subjects:
        raise EditionError(N_("%(edition)s publishes no textbooks for this subject."), edition=listed.name)

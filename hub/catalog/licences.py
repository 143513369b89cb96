"""The Creative Commons licences a course may carry, explained, and the attribution line the hub prints.

An uploader chose from raw SPDX ids (CC-BY-NC-SA-4.0) without knowing what each lets
a rural teacher do. Each licence here says it in a sentence, and the course page
prints the attribution line a re-user should copy — the TASL of Creative Commons'
"best practices for attribution": Title, Author, Source, Licence.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import LazyString, gettext, lazy_gettext

from hub.vocab import LICENSES


@dataclass(frozen=True)
class Licence:
    id: str  # SPDX, as courses store it
    short: str  # the name Creative Commons prints: CC BY-SA 4.0
    name: LazyString  # the full name in the reader's language
    explanation: LazyString  # what a re-user may do, in a sentence
    url: str  # the legal code's summary (the deed)


def _deed(path: str) -> str:
    return f"https://creativecommons.org/{path}/"


LICENCES: dict[str, Licence] = {
    licence.id: licence
    for licence in (
        Licence(
            "CC-BY-4.0",
            "CC BY 4.0",
            lazy_gettext("Attribution 4.0 International"),
            lazy_gettext(
                "Anyone may copy, share and adapt the course, also commercially, as long as they credit the "
                "author and the source."
            ),
            _deed("licenses/by/4.0"),
        ),
        Licence(
            "CC-BY-SA-4.0",
            "CC BY-SA 4.0",
            lazy_gettext("Attribution-ShareAlike 4.0 International"),
            lazy_gettext(
                "Anyone may copy, share and adapt the course, also commercially, as long as they credit the "
                "author and the source and share their adaptations under this same licence."
            ),
            _deed("licenses/by-sa/4.0"),
        ),
        Licence(
            "CC-BY-NC-4.0",
            "CC BY-NC 4.0",
            lazy_gettext("Attribution-NonCommercial 4.0 International"),
            lazy_gettext(
                "Anyone may copy, share and adapt the course for non-commercial purposes only, as long as they "
                "credit the author and the source."
            ),
            _deed("licenses/by-nc/4.0"),
        ),
        Licence(
            "CC-BY-NC-SA-4.0",
            "CC BY-NC-SA 4.0",
            lazy_gettext("Attribution-NonCommercial-ShareAlike 4.0 International"),
            lazy_gettext(
                "Anyone may copy, share and adapt the course for non-commercial purposes only, as long as they "
                "credit the author and the source and share their adaptations under this same licence."
            ),
            _deed("licenses/by-nc-sa/4.0"),
        ),
        Licence(
            "CC-BY-ND-4.0",
            "CC BY-ND 4.0",
            lazy_gettext("Attribution-NoDerivatives 4.0 International"),
            lazy_gettext(
                "Anyone may copy and share the course unchanged, also commercially, as long as they credit the "
                "author and the source; changed versions may not be shared."
            ),
            _deed("licenses/by-nd/4.0"),
        ),
        Licence(
            "CC-BY-NC-ND-4.0",
            "CC BY-NC-ND 4.0",
            lazy_gettext("Attribution-NonCommercial-NoDerivatives 4.0 International"),
            lazy_gettext(
                "Anyone may copy and share the course unchanged for non-commercial purposes only, as long as "
                "they credit the author and the source; changed versions may not be shared."
            ),
            _deed("licenses/by-nc-nd/4.0"),
        ),
        Licence(
            "CC0-1.0",
            "CC0 1.0",
            lazy_gettext("CC0 1.0 Universal (public domain dedication)"),
            lazy_gettext(
                "You give up your rights: anyone may use the course in any way without asking or crediting you "
                "(crediting is still good practice)."
            ),
            _deed("publicdomain/zero/1.0"),
        ),
    )
}
assert tuple(LICENCES) == LICENSES, "LICENCES must explain every licence of the vocabulary, in its order"


def licence(code: str) -> Licence | None:
    return LICENCES.get(code)


def attribution(title: str, teacher: str, school: str, source: str, code: str) -> str:
    """The course's TASL line in the reader's language: what a re-user copies beside what they reuse.

    Author: the teacher with the school, or the school alone. Source: the course page's
    address. Licence: its short name, which links the deed where the line is shown.
    """
    author = gettext("%(teacher)s, %(school)s", teacher=teacher, school=school) if teacher else school
    found = LICENCES.get(code)
    short = found.short if found else code
    if code == "CC0-1.0":
        return str(
            gettext(
                "“%(title)s” by %(author)s, from %(source)s, dedicated to the public domain (%(licence)s).",
                title=title,
                author=author,
                source=source,
                licence=short,
            )
        )
    return str(
        gettext(
            "“%(title)s” by %(author)s, from %(source)s, licensed under %(licence)s.",
            title=title,
            author=author,
            source=source,
            licence=short,
        )
    )

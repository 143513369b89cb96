"""The metadata formats OAI-PMH disseminates: ``oai_dc`` (required by the protocol) and IEEE LOM.

Both describe one course from the same facts (:class:`~hub.harvest.services.CourseMetadata`).
LOM is what learning-object repositories (national and regional education platforms,
ARIADNE-style federations) harvest: it has places for the grade (as a typical age
range and a classification), the educational context and the licence that Dublin
Core can only put in free text. The LOM XML binding is IEEE 1484.12.3 (LOMv1.0).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from hub.harvest.metadata import LICENSE_URLS
from hub.harvest.services import CourseMetadata
from hub.vocab import GRADE_NAMES, SUBJECTS

XSI = "http://www.w3.org/2001/XMLSchema-instance"
OAI_DC = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC = "http://purl.org/dc/elements/1.1/"
LOM = "http://ltsc.ieee.org/xsd/LOM"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
for _prefix, _uri in (("xsi", XSI), ("oai_dc", OAI_DC), ("dc", DC), ("lom", LOM)):
    ET.register_namespace(_prefix, _uri)


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def write_oai_dc(parent: ET.Element, item: CourseMetadata, url: str) -> None:
    course = item.course
    dc = sub(parent, f"{{{OAI_DC}}}dc", **{f"{{{XSI}}}schemaLocation": f"{OAI_DC} {FORMATS['oai_dc'].schema}"})
    lang = {XML_LANG: course.language}
    sub(dc, f"{{{DC}}}title", course.title, **lang)
    if course.teacher:
        sub(dc, f"{{{DC}}}creator", course.teacher)
    sub(dc, f"{{{DC}}}publisher", course.school.name)
    zh, en = SUBJECTS[course.subject]
    sub(dc, f"{{{DC}}}subject", zh, **{XML_LANG: "zh"})
    sub(dc, f"{{{DC}}}subject", en, **{XML_LANG: "en"})
    for grade in course.grades:
        sub(dc, f"{{{DC}}}subject", GRADE_NAMES[grade], **{XML_LANG: "zh"})
    if course.edition:
        sub(dc, f"{{{DC}}}subject", f"{course.edition} {course.volume}".strip(), **{XML_LANG: "zh"})
    if course.summary:
        sub(dc, f"{{{DC}}}description", course.summary, **lang)
    if course.published_at is not None:
        sub(dc, f"{{{DC}}}date", course.published_at.astimezone(UTC).date().isoformat())
    sub(dc, f"{{{DC}}}type", "Collection")  # DCMI Type: a course is a collection of lessons
    for media_type in item.formats:
        sub(dc, f"{{{DC}}}format", media_type)
    sub(dc, f"{{{DC}}}identifier", url)
    sub(dc, f"{{{DC}}}language", course.language)
    sub(dc, f"{{{DC}}}rights", LICENSE_URLS[course.license])
    sub(dc, f"{{{DC}}}rights", course.license)


def _vcard_text(value: str) -> str:
    # RFC 6350 §3.4: backslash, comma, semicolon and newlines are escaped in a value.
    for raw, escaped in (("\\", "\\\\"), (",", "\\,"), (";", "\\;"), ("\n", "\\n")):
        value = value.replace(raw, escaped)
    return value


def _vocabulary(parent: ET.Element, tag: str, value: str) -> None:
    element = sub(parent, f"{{{LOM}}}{tag}")
    sub(element, f"{{{LOM}}}source", "LOMv1.0")
    sub(element, f"{{{LOM}}}value", value)


def _langstring(parent: ET.Element, tag: str, *texts: tuple[str, str]) -> ET.Element:
    element = sub(parent, f"{{{LOM}}}{tag}")
    for language, text in texts:
        sub(element, f"{{{LOM}}}string", text, language=language)
    return element


def _contribute(parent: ET.Element, role: str, name: str, organisation: bool, date: str | None) -> None:
    contribute = sub(parent, f"{{{LOM}}}contribute")
    _vocabulary(contribute, "role", role)
    card = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{_vcard_text(name)}"]
    if organisation:
        card.append(f"ORG:{_vcard_text(name)}")
    card.append("END:VCARD")
    sub(contribute, f"{{{LOM}}}entity", "\n".join(card))
    if date:
        sub(sub(contribute, f"{{{LOM}}}date"), f"{{{LOM}}}dateTime", date)


def write_lom(parent: ET.Element, item: CourseMetadata, url: str) -> None:
    course = item.course
    lang = course.language
    lom = sub(parent, f"{{{LOM}}}lom", **{f"{{{XSI}}}schemaLocation": f"{LOM} {FORMATS['lom'].schema}"})
    general = sub(lom, f"{{{LOM}}}general")
    identifier = sub(general, f"{{{LOM}}}identifier")
    sub(identifier, f"{{{LOM}}}catalog", "URI")
    sub(identifier, f"{{{LOM}}}entry", url)
    _langstring(general, "title", (lang, course.title))
    sub(general, f"{{{LOM}}}language", lang)
    if course.summary:
        _langstring(general, "description", (lang, course.summary))
    zh, en = SUBJECTS[course.subject]
    _langstring(general, "keyword", ("zh", zh), ("en", en))
    if course.edition:
        _langstring(general, "keyword", ("zh", f"{course.edition} {course.volume}".strip()))
    _vocabulary(general, "aggregationLevel", "3")  # LOM: 3 = a course, a collection of lessons

    life = sub(lom, f"{{{LOM}}}lifeCycle")
    published = course.published_at.astimezone(UTC).date().isoformat() if course.published_at else None
    _contribute(life, "publisher", course.school.name, True, published)
    if course.teacher:
        _contribute(life, "author", course.teacher, False, None)

    technical = sub(lom, f"{{{LOM}}}technical")
    for media_type in item.formats:
        sub(technical, f"{{{LOM}}}format", media_type)
    sub(technical, f"{{{LOM}}}location", url)

    educational = sub(lom, f"{{{LOM}}}educational")
    _vocabulary(educational, "intendedEndUserRole", "learner")
    _vocabulary(educational, "intendedEndUserRole", "teacher")
    _vocabulary(educational, "context", "school")
    if course.grades:
        # Chinese pupils start grade 1 the September after they turn 6.
        low, high = min(course.grades) + 5, max(course.grades) + 6
        _langstring(educational, "typicalAgeRange", ("en", f"{low}-{high}"))
    sub(educational, f"{{{LOM}}}language", lang)

    rights = sub(lom, f"{{{LOM}}}rights")
    _vocabulary(rights, "cost", "no")
    _vocabulary(rights, "copyrightAndOtherRestrictions", "yes")
    _langstring(rights, "description", ("en", f"{course.license} {LICENSE_URLS[course.license]}"))

    # A taxonPath runs from the root to one leaf: one path per grade.
    paths = [
        ("discipline", "义务教育课程方案（2022年版） 2022 compulsory-education curriculum", course.subject, zh, en)
    ]
    paths += [("educational level", "年级 Grades", str(g), GRADE_NAMES[g], f"Grade {g}") for g in course.grades]
    for purpose, source, taxon_id, name_zh, name_en in paths:
        classification = sub(lom, f"{{{LOM}}}classification")
        _vocabulary(classification, "purpose", purpose)
        path = sub(classification, f"{{{LOM}}}taxonPath")
        _langstring(path, "source", ("zh", source))
        taxon = sub(path, f"{{{LOM}}}taxon")
        sub(taxon, f"{{{LOM}}}id", taxon_id)
        _langstring(taxon, "entry", ("zh", name_zh), ("en", name_en))


@dataclass(frozen=True)
class Format:
    schema: str
    namespace: str
    write: Callable[[ET.Element, CourseMetadata, str], None]


# metadataPrefix → format, in the order ListMetadataFormats lists them.
FORMATS = {
    "oai_dc": Format("http://www.openarchives.org/OAI/2.0/oai_dc.xsd", OAI_DC, write_oai_dc),
    "lom": Format("http://ltsc.ieee.org/xsd/lomv1.0/lom.xsd", LOM, write_lom),
}

"""The dashboard's tables as JSON models (the API) and as CSV rows (the pages' downloads).

One conversion per table, from the service's result: the API's JSON and the CSV carry the
same rows, scoped and masked the same way. A masked count is ``null`` in JSON (its kind
listed in ``masked``) and "< 5" in the CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from hub.i18n import N_, gettext, grades_label, subject_label
from hub.reach import dashboard as reach
from hub.vocab import CURRICULUM_GRADES

# The BOM makes Excel read the file as UTF-8: without it, Chinese names come out garbled.
BOM = "\ufeff"


class CountsOut(BaseModel):
    plays: int | None = Field(description="Plays (null: fewer than mask_below, masked)")
    downloads: int | None = Field(description="Completed downloads of a material's file (null: masked)")
    zips: int | None = Field(description="Course ZIP downloads (null: masked)")
    masked: list[str] = Field(description="The kinds (play, download, zip) whose count is masked")


def counts_out(counts: reach.Counts) -> CountsOut:
    return CountsOut(
        plays=counts.shown("play", 0),
        downloads=counts.shown("download", 0),
        zips=counts.shown("zip", 0),
        masked=sorted(counts.masked),
    )


class ReachRowOut(CountsOut):
    key: str = Field(description="The county's name, or the id of the school, course or lesson, or the week")
    label: str = Field(description="What the key names")
    detail: str = Field(description="Where it belongs: a school's region and county, a course's school")


class WeekOut(CountsOut):
    week: date = Field(description="The Monday of the ISO week")


class ReachOut(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)  # "from", a Python keyword

    from_: date = Field(serialization_alias="from")
    to: date
    group_by: str
    mask_below: int = Field(description="Counts from 1 to mask_below - 1 are masked outside a school's own rows")
    total: CountsOut
    rows: list[ReachRowOut]
    trend: list[WeekOut]


def row_label(text: str) -> str:
    if text == reach.NO_SCHOOL:
        return str(gettext("Visitors not signed in"))
    if text == reach.COURSE_ZIP:
        return str(gettext("Whole-course ZIP"))
    return text


def reach_out(table: reach.ReachTable) -> ReachOut:
    return ReachOut(
        from_=table.period.start,
        to=table.period.end,
        group_by=table.group_by,
        mask_below=table.mask_below,
        total=counts_out(table.total),
        rows=[
            ReachRowOut(key=str(r.key), label=row_label(r.label), detail=r.detail, **counts_out(r.counts).model_dump())
            for r in table.rows
        ],
        trend=[WeekOut(week=week, **counts_out(c).model_dump()) for week, c in table.trend],
    )


class SchoolOut(BaseModel):
    id: int
    name: str
    region: str
    county: str


def school_out(school: Any) -> SchoolOut:
    return SchoolOut(id=school.id, name=school.name, region=school.region, county=school.county)


class CellOut(BaseModel):
    subject: str
    grade: int
    courses: int = Field(description="Published courses with lessons the school's subscriptions select")


class CoverageRowOut(BaseModel):
    school: SchoolOut
    covered: int = Field(description="Curriculum cells (subject × grade) with at least one course")
    cells: int = Field(description="Curriculum cells in all")
    available: list[CellOut]
    gaps: list[CellOut] = Field(description="Curriculum cells with nothing")


class CoverageOut(BaseModel):
    total: int = Field(description="Rural schools in the area (under the filters)")
    page: int
    pages: int
    items: list[CoverageRowOut]


def coverage_row(row: reach.SchoolCoverage) -> CoverageRowOut:
    return CoverageRowOut(
        school=school_out(row.school),
        covered=row.covered,
        cells=reach.CURRICULUM_CELLS,
        available=[CellOut(subject=s, grade=g, courses=n) for (s, g), n in sorted(row.courses.items())],
        gaps=[CellOut(subject=s, grade=g, courses=0) for s, g in row.gaps],
    )


def coverage_out(page: reach.CoveragePage) -> CoverageOut:
    return CoverageOut(
        total=page.total, page=page.page, pages=page.pages, items=[coverage_row(r) for r in page.schools]
    )


class ContributionOut(BaseModel):
    school: SchoolOut
    courses: int = Field(description="Published courses")
    lessons: int = Field(description="Lessons of its published courses")
    schools_reached: int = Field(description="Rural schools (of the area) that used them in the period")
    rural: CountsOut = Field(description="Uses in rural schools of the area in the period")


class ContributionList(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)  # "from", a Python keyword

    from_: date = Field(serialization_alias="from")
    to: date
    items: list[ContributionOut]


class PairingOut(BaseModel):
    famous: SchoolOut
    rural: SchoolOut
    subscribed: bool = Field(description="The rural school subscribes to everything the famous one publishes")
    courses_used: int = Field(description="The famous school's courses used at the rural school in the period")
    counts: CountsOut


class PairingList(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)  # "from", a Python keyword

    from_: date = Field(serialization_alias="from")
    to: date
    items: list[PairingOut]


def contribution_list(
    session: Session, scope: reach.Scope, query: reach.ReachQuery, *, mask_below: int
) -> ContributionList:
    period = reach.period_of(query)
    found = reach.contribution(session, scope, query, mask_below=mask_below)
    return ContributionList(
        from_=period.start,
        to=period.end,
        items=[
            ContributionOut(
                school=school_out(c.school),
                courses=c.courses,
                lessons=c.lessons,
                schools_reached=c.schools_reached,
                rural=counts_out(c.rural),
            )
            for c in found
        ],
    )


def pairing_list(session: Session, scope: reach.Scope, query: reach.ReachQuery, *, mask_below: int) -> PairingList:
    period = reach.period_of(query)
    found = reach.pairings(session, scope, query, mask_below=mask_below)
    return PairingList(
        from_=period.start,
        to=period.end,
        items=[
            PairingOut(
                famous=school_out(p.famous),
                rural=school_out(p.rural),
                subscribed=p.subscribed,
                courses_used=p.courses_used,
                counts=counts_out(p.counts),
            )
            for p in found
        ],
    )


class ServerOut(BaseModel):
    school: SchoolOut
    alert: str = Field(description="ok, silent or never (no contact yet)")
    last_contact: datetime | None
    manifest_issued: int | None = Field(description="The manifest version this hub last signed for the school")
    manifest_applied: int | None = Field(description="The manifest version whose courses it reported applied")
    behind: bool = Field(description="It has not applied the last manifest issued to it")
    courses: int | None
    storage_used: int | None
    storage_free: int | None
    storage_budget: int | None


class ServerList(BaseModel):
    silent_days: int
    items: list[ServerOut]


def server_out(row: reach.ServerFreshness) -> ServerOut:
    s, report = row.server, row.server.report
    return ServerOut(
        school=school_out(s.school),
        alert=s.alert,
        last_contact=s.last_contact,
        manifest_issued=s.manifest_issued,
        manifest_applied=report.applied_version if report else None,
        behind=row.behind,
        courses=report.courses if report else None,
        storage_used=report.storage_used if report else None,
        storage_free=report.storage_free if report else None,
        storage_budget=report.storage_budget if report else None,
    )


def server_list(session: Session, scope: reach.Scope, query: reach.ReachQuery, *, silent_days: int) -> ServerList:
    found = reach.school_servers(session, scope, query, silent_days=silent_days)
    return ServerList(silent_days=silent_days, items=[server_out(s) for s in found])


# -- CSV -------------------------------------------------------------------------------------


def _count(value: int | None, below: int) -> str:
    return f"< {below}" if value is None else str(value)


def _header(*names: str) -> list[str]:
    return [gettext(n) for n in names]


COUNT_HEADERS = (N_("Plays"), N_("Downloads"), N_("Course ZIPs"))


def csv_bytes(rows: Iterable[list[str]]) -> bytes:
    """The rows as a CSV file: UTF-8 after a BOM, CRLF line ends (what Excel expects)."""
    buffer = io.StringIO()
    buffer.write(BOM)
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def reach_csv(out: ReachOut) -> Iterator[list[str]]:
    below = out.mask_below
    names = {
        "county": N_("County"),
        "school": N_("School"),
        "course": N_("Course"),
        "lesson": N_("Lesson"),
        "week": N_("Week"),
    }
    yield _header(N_("From"), N_("To"), names[out.group_by], N_("Belongs to"), *COUNT_HEADERS)
    for r in out.rows:
        yield [
            out.from_.isoformat(),
            out.to.isoformat(),
            r.label,
            r.detail,
            _count(r.plays, below),
            _count(r.downloads, below),
            _count(r.zips, below),
        ]


def _cells(cells: Iterable[tuple[str, int]]) -> str:
    """(subject, grade) cells as 数学 七至九年级; 语文 一年级 (one group per subject, in curriculum order)."""
    by_subject: dict[str, list[int]] = {}
    for subject, grade in cells:
        by_subject.setdefault(subject, []).append(grade)
    return "; ".join(f"{subject_label(s)} {grades_label(by_subject[s])}" for s in CURRICULUM_GRADES if s in by_subject)


def coverage_csv(rows: Iterable[CoverageRowOut]) -> Iterator[list[str]]:
    """One line per rural school: a province's 10,000 schools make a file Excel opens at once."""
    yield _header(
        N_("School"), N_("Region"), N_("County"), N_("Curriculum cells covered"), N_("Curriculum cells"),
        N_("Lessons available for"), N_("Nothing for"),
    )  # fmt: skip
    for row in rows:
        yield [
            row.school.name,
            row.school.region,
            row.school.county,
            str(row.covered),
            str(row.cells),
            _cells((c.subject, c.grade) for c in row.available),
            _cells((c.subject, c.grade) for c in row.gaps),
        ]


def contribution_csv(out: ContributionList, below: int) -> Iterator[list[str]]:
    yield _header(
        N_("From"), N_("To"), N_("Famous school"), N_("Courses shared"), N_("Lessons shared"),
        N_("Rural schools reached"), *COUNT_HEADERS,
    )  # fmt: skip
    for c in out.items:
        yield [
            out.from_.isoformat(),
            out.to.isoformat(),
            c.school.name,
            str(c.courses),
            str(c.lessons),
            str(c.schools_reached),
            _count(c.rural.plays, below),
            _count(c.rural.downloads, below),
            _count(c.rural.zips, below),
        ]


def pairings_csv(out: PairingList, below: int) -> Iterator[list[str]]:
    yield _header(
        N_("From"), N_("To"), N_("Famous school"), N_("Rural school"), N_("County"), N_("Subscribes to everything"),
        N_("Courses used"), *COUNT_HEADERS,
    )  # fmt: skip
    for p in out.items:
        yield [
            out.from_.isoformat(),
            out.to.isoformat(),
            p.famous.name,
            p.rural.name,
            p.rural.county,
            gettext("yes") if p.subscribed else gettext("no"),
            str(p.courses_used),
            _count(p.counts.plays, below),
            _count(p.counts.downloads, below),
            _count(p.counts.zips, below),
        ]


def servers_csv(out: ServerList) -> Iterator[list[str]]:
    yield _header(
        N_("School"), N_("County"), N_("State"), N_("Last contact"), N_("Manifest issued"), N_("Manifest applied"),
        N_("Behind"), N_("Courses"), N_("Storage used (bytes)"), N_("Storage free (bytes)"),
    )  # fmt: skip
    states = {"ok": N_("In touch"), "silent": N_("Silent"), "never": N_("Never in touch")}
    for s in out.items:
        yield [
            s.school.name,
            s.school.county,
            gettext(states.get(s.alert, s.alert)),
            s.last_contact.isoformat() if s.last_contact else "",
            "" if s.manifest_issued is None else str(s.manifest_issued),
            "" if s.manifest_applied is None else str(s.manifest_applied),
            gettext("yes") if s.behind else gettext("no"),
            "" if s.courses is None else str(s.courses),
            "" if s.storage_used is None else str(s.storage_used),
            "" if s.storage_free is None else str(s.storage_free),
        ]

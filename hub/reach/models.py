"""What the lessons reach: plays, downloads and course ZIP downloads per lesson, material, school and day.

One raw row per (day, school, course, lesson, material, kind), counted on the upstream for
its own visitors and on school servers for their LAN (reported upstream in aggregate on each
pull and in the USB state file, with ``source`` saying where a row was counted). Never per
person: no user, IP or device leaves a school server; play de-duplication per device and day
happens where the play happens, and only the count is kept here.

Ids are plain integers, not foreign keys: a count is a fact about the past and stays when
the lesson or course is deleted or withdrawn. 0 stands for "none" (an anonymous visitor's
school, a course ZIP's lesson and material) so the unique key holds on every database
(PostgreSQL's unique constraints treat NULLs as distinct).

The dashboard never scans these rows per request: a worker task rolls them up
(hub.reach roll-up tables) and the pages read the roll-ups.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Enum, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow
from hub.vocab import USAGE_KINDS, USAGE_SOURCES


class UsageCount(Base):
    __tablename__ = "usage_count"
    __table_args__ = (
        UniqueConstraint("day", "school_id", "course_id", "lesson_id", "material_id", "kind", "source"),
        Index("ix_usage_count_course_id_day", "course_id", "day"),
        Index("ix_usage_count_school_id_day", "school_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)  # UTC day on the upstream, local day on a school server
    school_id: Mapped[int] = mapped_column(Integer, default=0)  # the school whose people used it; 0: anonymous
    course_id: Mapped[int] = mapped_column(Integer)  # the upstream's course id
    lesson_id: Mapped[int] = mapped_column(Integer, default=0)  # 0 for a course ZIP
    material_id: Mapped[int] = mapped_column(Integer, default=0)  # 0 for a course ZIP
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="usage_kind", native_enum=False, create_constraint=True, length=16)
    )
    # Where it was counted: "hub" (this hub's own visitors), "lan" (a school server's LAN, reported
    # on a pull) or "usb" (reported through a USB state file).
    source: Mapped[str] = mapped_column(
        Enum(*USAGE_SOURCES, name="usage_source", native_enum=False, create_constraint=True, length=16),
        default="hub",
    )
    count: Mapped[int] = mapped_column(Integer, default=0)


class PlaySeen(Base):
    """A device that already played a material today: the next play of it today does not count.

    Kept where the play was counted and pruned after a day (hub.reach.services): it is
    the only trace of a device, and it never crosses to the upstream. `device` is an
    HMAC of the device's random id (or, without JavaScript, of its address and browser)
    under this hub's secret and the day, so rows of two days cannot be linked to one
    device even by someone holding the table.
    """

    __tablename__ = "reach_play_seen"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    device: Mapped[str] = mapped_column(String(32), primary_key=True)
    material_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # this hub's own material id


# -- roll-ups: what the dashboard reads (hub.reach.rollup fills them) ----------------------

# COVERING: the weekly tables are written a week at a time, so one school's rows of a year lie
# on as many heap pages as it has rows, and a county's ~84 schools with a subject filter over a
# year would read ~44,000 of them: PostgreSQL read all of reach_week instead (0.4-1.3 s at
# 10,000 schools, benchmarks/reach). Their school index therefore holds every column a
# county's question reads (school, week, course, kind, count), so it is answered by an
# index-only scan of the few pages where one school's entries sit together. That needs the
# pages marked all-visible by VACUUM: migration 0023 has autovacuum visit these tables after
# every 10,000 rows changed (about every roll-up) instead of after a fifth of the table. The
# daily tables keep a plain index: a period reads at most 12 edge days of them, a few rows per
# school and day, and a covering index there would be nearly as large as the table.
# Plain key columns, not INCLUDE, so SQLite uses the same index as a covering one.


class ReachDay(Base):
    """Raw counts of one day summed over materials and sources: per school, course, lesson and kind.

    Read for a period's edge days (the whole weeks come from :class:`ReachWeek`) and for
    one course's lessons.
    """

    __tablename__ = "reach_day"
    __table_args__ = (
        Index("ix_reach_day_course_id_day", "course_id", "day"),
        Index("ix_reach_day_school_id_day", "school_id", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    school_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    course_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    lesson_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_day_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class ReachWeek(Base):
    """One ISO week (Monday's date) per school, course and kind: the grain of every period and trend."""

    __tablename__ = "reach_week"
    __table_args__ = (
        Index("ix_reach_week_course_id_week", "course_id", "week"),
        # Covering (COVERING above): a county's schools with a subject or grade filter.
        Index("ix_reach_week_school_id_week_covering", "school_id", "week", "course_id", "kind", "count"),
    )

    week: Mapped[date] = mapped_column(Date, primary_key=True)
    school_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    course_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_week_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class ReachSchoolDay(Base):
    """One day per school and kind, over every course: what the views without a course filter read.

    The course-grain tables grow with the courses each school uses (a rural school follows
    one course per subject and grade: dozens); this one has at most three rows per school
    and day, whatever the raw volume, so a province's counties or a county's schools over a
    period never read a course-grain row.
    """

    __tablename__ = "reach_school_day"
    __table_args__ = (Index("ix_reach_school_day_school_id_day", "school_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    school_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_school_day_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class ReachSchoolWeek(Base):
    """One ISO week per school and kind, over every course: at most 10,000 × 52 × 3 rows a year in a province."""

    __tablename__ = "reach_school_week"
    # Covering (COVERING above): a county's schools.
    __table_args__ = (Index("ix_reach_school_week_school_id_week_covering", "school_id", "week", "kind", "count"),)

    week: Mapped[date] = mapped_column(Date, primary_key=True)
    school_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_school_week_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class ReachCountyDay(Base):
    """One day per area (the school's region and county) and kind: a province's counties and trend.

    Keyed by region and county, not county alone: a county's name repeats across regions, and a
    supervisor's area is a region (and county). Counts of a school are rolled under the area it
    had at roll-up time (:class:`RolledArea`); when a school moves, the roll-up moves its counts
    from the old area to the new. At most counties × 3 rows a day, whatever the number of schools.
    """

    __tablename__ = "reach_county_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region: Mapped[str] = mapped_column(String(100), primary_key=True)
    county: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_county_day_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class ReachCountyWeek(Base):
    """One ISO week per area and kind: 120 counties × 52 weeks × 3 kinds a year in a province."""

    __tablename__ = "reach_county_week"

    week: Mapped[date] = mapped_column(Date, primary_key=True)
    region: Mapped[str] = mapped_column(String(100), primary_key=True)
    county: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_county_week_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class ReachSubjectDay(Base):
    """One day per course subject, grade, area and kind: the area questions with a subject or grade filter.

    ``grade`` 0 is the subject over all its courses; 1–9 the courses that teach that grade
    (a course for grades 7–9 is in three grade rows and once in the 0 row, so each filter
    reads one grade and sums no course twice). Only courses that exist are rolled (the
    dashboard's subject and grade filters select existing courses), under the subject and
    grades they had at roll-up time (:class:`RolledCourse`). The roll-up writes a day at a
    time (the key starts with it); a question reads a subject and grade, or a grade, over a
    period through the indexes that start with them.
    """

    __tablename__ = "reach_subject_day"
    __table_args__ = (
        Index("ix_reach_subject_day_subject_grade_day", "subject", "grade", "day"),
        Index("ix_reach_subject_day_grade_day", "grade", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    subject: Mapped[str] = mapped_column(String(32), primary_key=True)
    grade: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    region: Mapped[str] = mapped_column(String(100), primary_key=True)
    county: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_subject_day_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class ReachSubjectWeek(Base):
    """One ISO week per course subject, grade (0: all), area and kind."""

    __tablename__ = "reach_subject_week"
    __table_args__ = (
        Index("ix_reach_subject_week_subject_grade_week", "subject", "grade", "week"),
        Index("ix_reach_subject_week_grade_week", "grade", "week"),
    )

    week: Mapped[date] = mapped_column(Date, primary_key=True)
    subject: Mapped[str] = mapped_column(String(32), primary_key=True)
    grade: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    region: Mapped[str] = mapped_column(String(100), primary_key=True)
    county: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(
        Enum(*USAGE_KINDS, name="reach_subject_week_kind", native_enum=False, create_constraint=True, length=16),
        primary_key=True,
    )
    count: Mapped[int] = mapped_column(Integer)


class RolledArea(Base):
    """The area a school's counts are rolled under in the county tables (a school not here: none, "" and "")."""

    __tablename__ = "reach_rolled_area"

    school_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    region: Mapped[str] = mapped_column(String(100))
    county: Mapped[str] = mapped_column(String(100))


class RolledCourse(Base):
    """The subject and grades a course's counts are rolled under in the subject tables (not here: none)."""

    __tablename__ = "reach_rolled_course"

    course_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    subject: Mapped[str] = mapped_column(String(32))
    grades_mask: Mapped[int] = mapped_column(Integer)


class RolledDay(Base):
    """A day rolled up, with the raw rows' number and total at that time.

    The safety run compares them with the raw rows now: counts only ever grow (reports
    add, nothing subtracts), so a day whose number of rows and total are unchanged needs
    no re-roll.
    """

    __tablename__ = "reach_rolled_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    raw_rows: Mapped[int] = mapped_column(Integer)
    raw_total: Mapped[int] = mapped_column(BigInteger)
    rolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingDay(Base):
    """A day whose raw counts changed since its roll-up, marked in the transaction that changed them."""

    __tablename__ = "reach_pending_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

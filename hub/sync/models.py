"""Sync state on both sides.

Upstream: the change feed (:class:`Change`), what each school subscribes to
(:class:`Subscription`), the manifest version issued to each school
(:class:`ManifestState`) and the download-count reports already received
(:class:`CountReport`).

School server (mirror mode): which upstream course each mirrored course is
(:class:`MirrorCourse`), the one row of mirror state (:class:`MirrorState`),
the run log (:class:`SyncRun`) and what was already reported upstream
(:class:`ReportedCount`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class Change(Base):
    __tablename__ = "change"

    # The feed's cursor: a school server asks for everything after the last seq it saw.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course_id: Mapped[int] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(20))  # published | updated | withdrawn
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


SUBSCRIPTION_KINDS = ("course", "subject", "paired", "textbook")


class Subscription(Base):
    """What a school server mirrors: one course, a subject over a grade range, a paired school's courses,
    or every course that follows a textbook (or has lessons on its chapters), named by its key."""

    __tablename__ = "sync_subscription"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(
        Enum(*SUBSCRIPTION_KINDS, name="subscription_kind", native_enum=False, create_constraint=True, length=16)
    )
    course_id: Mapped[int | None] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    subject: Mapped[str | None] = mapped_column(String(32))
    grade_min: Mapped[int | None] = mapped_column(Integer)
    grade_max: Mapped[int | None] = mapped_column(Integer)
    paired_school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"))
    # A key, not an id: the subscription outlives a re-import of the book under a new id.
    textbook_key: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ManifestState(Base):
    """The last manifest issued to a school: its version goes up only when its content changes."""

    __tablename__ = "sync_manifest_state"

    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CountReport(Base):
    """A download-count report already added in: a school server resending it changes nothing."""

    __tablename__ = "sync_count_report"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    downloads: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MirrorCourse(Base):
    """A course mirrored from the upstream: which local course it is, at which revision."""

    __tablename__ = "mirror_course"

    upstream_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), unique=True)
    version: Mapped[int] = mapped_column(Integer)
    revision: Mapped[str] = mapped_column(String(64))  # sha256 of `entry`
    # The entry as applied (canonical JSON, hub.sync.manifest): merged with the lessons
    # an incremental pull fetches, and re-exported in bundles by this school server.
    entry: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The upstream's issued_at of the manifest the entry came with: a later pull asks only
    # for the lessons changed since.
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MirrorState(Base):
    """The school server's one row of sync state (id 1)."""

    __tablename__ = "mirror_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    # The highest manifest version verified: anything older is a replay.
    manifest_version: Mapped[int] = mapped_column(Integer, default=0)
    # The manifest version whose every course is applied; 0 until one is complete.
    applied_version: Mapped[int] = mapped_column(Integer, default=0)
    # The last verified signed manifest, kept so this server can export bundles.
    envelope: Mapped[str] = mapped_column(Text, default="")
    # A download-count report sent but not yet acknowledged: resent as is, same id.
    pending_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


RUN_STATUSES = ("running", "ok", "partial", "refused", "failed")


class SyncRun(Base):
    """One `hub sync pull` or `hub bundle import`: the run log and the progress the admin page shows."""

    __tablename__ = "sync_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # pull | bundle
    status: Mapped[str] = mapped_column(
        Enum(*RUN_STATUSES, name="sync_run_status", native_enum=False, create_constraint=True, length=16)
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    manifest_version: Mapped[int | None] = mapped_column(Integer)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bytes really received this run (resumed parts not counted twice).
    bytes_transferred: Mapped[int] = mapped_column(BigInteger, default=0)
    courses_applied: Mapped[int] = mapped_column(Integer, default=0)
    courses_removed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    # Course titles by what the run did with them ("planned", "applied", "removed",
    # "skipped"), written as it goes: the admin page names courses, not counts.
    courses: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)
    # `message` and `skipped` as message ids and values (hub.sync.wording), rendered in the
    # reader's language at display time; None on rows written before it (shown as English).
    wording: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ReportedCount(Base):
    """Downloads of a mirrored blob on one day already reported upstream."""

    __tablename__ = "mirror_reported_count"
    __table_args__ = (UniqueConstraint("blob_sha256", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ReportedUsage(Base):
    """Plays, downloads and course ZIPs per lesson and day already reported upstream (hub.reach).

    Keyed like :class:`hub.reach.models.UsageCount` without school and source: a school
    server's rows are all its own school's, counted on its LAN, and their ids are the
    upstream's already.
    """

    __tablename__ = "mirror_reported_usage"
    __table_args__ = (UniqueConstraint("day", "course_id", "lesson_id", "material_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    course_id: Mapped[int] = mapped_column(Integer)
    lesson_id: Mapped[int] = mapped_column(Integer)
    material_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer, default=0)


class ServerReport(Base):
    """Upstream: what a school's server last said about itself (one row per school), for the admins' list.

    Sent by `hub sync pull` and `hub sync init` over the link, or carried in the state
    file of a USB trip (`hub sync status --state-out`, read by `hub bundle export --state`).
    """

    __tablename__ = "sync_server_report"

    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), primary_key=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    via: Mapped[str] = mapped_column(String(16))  # init | pull | usb
    # The newest manifest version the server verified, and the one whose courses are all applied.
    manifest_version: Mapped[int] = mapped_column(Integer, default=0)
    applied_version: Mapped[int] = mapped_column(Integer, default=0)
    courses: Mapped[int] = mapped_column(Integer, default=0)
    storage_used: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_free: Mapped[int | None] = mapped_column(BigInteger)  # None: not known (S3 storage)
    storage_budget: Mapped[int] = mapped_column(BigInteger, default=0)  # 0: no budget but the disk
    host_name: Mapped[str] = mapped_column(String(63), default="")  # NAME of http://NAME.local/ on its LAN


class TeachingCalendar(Base):
    """School server: when this school teaches a textbook (the term's first day), for the pull's order.

    Named by the textbook's key, like the manifests' alignments: the book need not be on this
    server yet when the calendar is set (the first pull brings it).
    """

    __tablename__ = "sync_calendar"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    textbook_key: Mapped[str] = mapped_column(String(100), unique=True)
    term_start: Mapped[date] = mapped_column(Date)  # the Monday (or first day) of teaching week 1
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CalendarWeek(Base):
    """School server: this school's own week for one chapter node, over the textbook file's suggestion.

    ``week`` NULL says "not scheduled here" (the node goes with the undated rest), which is
    not the same as having no row (the file's week holds).
    """

    __tablename__ = "sync_calendar_week"
    __table_args__ = (UniqueConstraint("calendar_id", "node_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("sync_calendar.id", ondelete="CASCADE"), index=True)
    node_key: Mapped[str] = mapped_column(String(50))
    week: Mapped[int | None] = mapped_column(Integer)

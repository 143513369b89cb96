"""Schools, users, API tokens, sign-in failures and famous ↔ rural school pairings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, UTCDateTime, utcnow
from hub.vocab import ROLES, SCHOOL_KINDS, TOKEN_KINDS


class School(Base):
    __tablename__ = "school"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(
        Enum(*SCHOOL_KINDS, name="school_kind", native_enum=False, create_constraint=True)
    )
    region: Mapped[str] = mapped_column(String(100), default="")
    county: Mapped[str] = mapped_column(String(100), default="")
    rural: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Pairing(Base):
    """A famous school that shares its courses with a rural school."""

    __tablename__ = "pairing"
    __table_args__ = (UniqueConstraint("famous_school_id", "rural_school_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    famous_school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"))
    rural_school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "user_account"  # "user" is reserved in PostgreSQL

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    role: Mapped[str] = mapped_column(Enum(*ROLES, name="user_role", native_enum=False, create_constraint=True))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # A reviewer's region: the courses of schools there (or in a place inside it: "四川省" covers
    # "四川省 成都市") are theirs to approve. Empty: their own school's region.
    region: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # A supervisor's county inside their region (their area: region and county); empty: the whole region.
    county: Mapped[str] = mapped_column(String(100), default="", server_default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Stamped into every session cookie at sign-in and compared on each request: bumping it
    # (sign-out, a new password, deactivation) ends every session signed in before, copies
    # of the cookie included, without a server-side session store.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    school: Mapped[School] = relationship(lazy="joined")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def review_region(self) -> str:
        return (self.region or self.school.region).strip() if self.role == "reviewer" else ""

    @property
    def supervised_area(self) -> tuple[str, str]:
        """A supervisor's (region, county): their own, else their school's; ("", "") for everyone else."""
        if self.role != "supervisor":
            return "", ""
        if self.region:
            return self.region.strip(), self.county.strip()
        return self.school.region.strip(), (self.county or self.school.county).strip()


class ApiToken(Base):
    """A bearer token; only its sha256 is stored, the plain token is shown once."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, so a person can tell their tokens apart when revoking.
    prefix: Mapped[str] = mapped_column(String(12))
    # "user": the API as that user; "sync": a school server's token, accepted only by the
    # sync API (hub.accounts.auth), the only kind that may send it download counts.
    kind: Mapped[str] = mapped_column(
        Enum(*TOKEN_KINDS, name="token_kind", native_enum=False, create_constraint=True),
        default="user",
        server_default="user",
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(Base):
    """One failed sign-in, under the sha256 of what it counts against (an email, an address).

    Hashed because people type passwords into the email field. One row per failure
    (inserts only) keeps concurrent failures from racing on a counter, and the window
    slides; rows older than the window are deleted as new failures arrive.
    """

    __tablename__ = "login_failure"
    __table_args__ = (Index("ix_login_failure_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

"""Use cases for schools, users and API tokens (shared by the CLI, pages and API)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from hub.accounts.models import ApiToken, Pairing, School, User
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound, Unauthorized
from hub.i18n import N_
from hub.vocab import ROLES, SCHOOL_KINDS

TOKEN_PREFIX = "hub_"  # noqa: S105  (a marker that makes leaked tokens greppable, not a secret)


def create_school(session: Session, name: str, kind: str, region: str = "", county: str = "") -> School:
    name = name.strip()
    if not name:
        raise Invalid("A school needs a name.", {"name": "This field is required"})
    if kind not in SCHOOL_KINDS:
        raise Invalid(f"Unknown school kind {kind!r}.", {"kind": f"One of {', '.join(SCHOOL_KINDS)}"})
    if session.scalar(select(School.id).where(School.name == name)) is not None:
        raise Conflict(f"A school named {name!r} already exists.", {"name": "Already taken"})
    school = School(name=name, kind=kind, region=region, county=county, rural=kind == "rural")
    session.add(school)
    session.flush()
    return school


def get_school_by_name(session: Session, name: str) -> School:
    school = session.scalar(select(School).where(School.name == name.strip()))
    if school is None:
        raise NotFound(f"No school named {name!r}.")
    return school


def pair_schools(session: Session, famous: School, rural: School) -> Pairing:
    if famous.kind != "famous" or rural.kind != "rural":
        raise Invalid("A pairing joins a famous school to a rural school.")
    pairing = session.scalar(
        select(Pairing).where(Pairing.famous_school_id == famous.id, Pairing.rural_school_id == rural.id)
    )
    if pairing is None:
        pairing = Pairing(famous_school_id=famous.id, rural_school_id=rural.id)
        session.add(pairing)
        session.flush()
    return pairing


def create_user(session: Session, email: str, school: School, role: str, password: str | None = None) -> User:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise Invalid(f"{email!r} is not an email address.", {"email": "Not an email address"})
    if role not in ROLES:
        raise Invalid(f"Unknown role {role!r}.", {"role": f"One of {', '.join(ROLES)}"})
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"A user {email} already exists.", {"email": "Already taken"})
    user = User(email=email, school=school, role=role)
    if password:
        set_password(user, password)
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    if len(password) < 8:
        raise Invalid("Passwords need at least 8 characters.", {"password": "Too short"})
    user.password_hash = generate_password_hash(password)


def get_user_by_email(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"No user {email!r}.")
    return user


def authenticate_password(session: Session, email: str, password: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active or not user.password_hash:
        # Same message either way: do not reveal which emails exist.
        raise Unauthorized(N_("Wrong email or password."))
    if not check_password_hash(user.password_hash, password):
        raise Unauthorized(N_("Wrong email or password."))
    return user


def _hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain sha256 is enough (no slow KDF needed).
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User) -> str:
    """Return a new bearer token; only its hash is stored, so it is shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user=user, token_hash=_hash_token(token), prefix=token[:12]))
    session.flush()
    return token


def revoke_token(session: Session, token: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token)))
    if row is None:
        raise NotFound("No such token.")
    row.revoked_at = utcnow()


def authenticate_token(session: Session, token: str) -> User:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        raise Unauthorized("The bearer token is unknown or revoked.")
    return row.user

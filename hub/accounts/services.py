"""Use cases for schools, users and API tokens (shared by the CLI, pages and API)."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from hub.accounts.models import ApiToken, LoginFailure, Pairing, School, User
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound, PermissionDenied, Text, TooManyRequests, Unauthorized
from hub.i18n import N_
from hub.vocab import ROLES, SCHOOL_KINDS, TOKEN_KINDS

TOKEN_PREFIX = "hub_"  # noqa: S105  (a marker that makes leaked tokens greppable, not a secret)
TOKEN_USE_INTERVAL = timedelta(minutes=1)
"""last_used_at is written at most this often per token: a busy school server would
otherwise turn every read into a write."""
MIN_REVOKE_PREFIX = 8
"""Fewest characters `hub token revoke` takes: "hub_" alone would name every token."""


def create_school(session: Session, name: str, kind: str, region: str = "", county: str = "") -> School:
    name = name.strip()
    if not name:
        raise Invalid(N_("A school needs a name."), {"name": "This field is required"})
    if kind not in SCHOOL_KINDS:
        raise Invalid(
            N_("Unknown school kind %(kind)r."),
            {"kind": Text(N_("one of: %(codes)s"), codes=", ".join(SCHOOL_KINDS))},
            kind=kind,
        )
    if session.scalar(select(School.id).where(School.name == name)) is not None:
        raise Conflict(N_("A school named %(name)r already exists."), {"name": N_("already taken")}, name=name)
    school = School(name=name, kind=kind, region=region, county=county, rural=kind == "rural")
    session.add(school)
    session.flush()
    return school


def get_school_by_name(session: Session, name: str) -> School:
    school = session.scalar(select(School).where(School.name == name.strip()))
    if school is None:
        raise NotFound(N_("No school named %(name)r."), name=name)
    return school


def pair_schools(session: Session, famous: School, rural: School) -> Pairing:
    """Let `rural` mirror everything `famous` publishes (`hub sync subscribe --paired-with`); idempotent."""
    if famous.kind != "famous" or rural.kind != "rural":
        raise Invalid(
            N_(
                "A pairing joins a famous school to a rural school: "
                "%(famous)s is %(famous_kind)s, %(rural)s is %(rural_kind)s."
            ),
            famous=famous.name,
            famous_kind=famous.kind,
            rural=rural.name,
            rural_kind=rural.kind,
        )
    pairing = session.scalar(
        select(Pairing).where(Pairing.famous_school_id == famous.id, Pairing.rural_school_id == rural.id)
    )
    if pairing is None:
        pairing = Pairing(famous_school_id=famous.id, rural_school_id=rural.id)
        session.add(pairing)
        session.flush()
    return pairing


def unpair_schools(session: Session, famous: School, rural: School) -> int:
    """End a pairing and the rural school's subscriptions to the famous school's courses.

    A paired subscription exists only through the pairing: left behind, the school
    server would keep mirroring a school the bureau took away from it. Returns how
    many subscriptions ended; unpairing schools that are not paired is NotFound.
    """
    from hub.sync.models import Subscription  # models only: accounts stays below sync

    pairing = session.scalar(
        select(Pairing).where(Pairing.famous_school_id == famous.id, Pairing.rural_school_id == rural.id)
    )
    if pairing is None:
        raise NotFound(N_("%(rural)s is not paired with %(famous)s."), rural=rural.name, famous=famous.name)
    session.delete(pairing)
    ended = session.execute(
        delete(Subscription).where(
            Subscription.school_id == rural.id,
            Subscription.kind == "paired",
            Subscription.paired_school_id == famous.id,
        )
    )
    session.flush()
    return int(getattr(ended, "rowcount", 0) or 0)


@dataclass(frozen=True)
class SchoolListing:
    school: School
    paired: list[School]  # a famous school's rural partners, or a rural school's famous ones


def list_schools(session: Session) -> list[SchoolListing]:
    """Every school with its pairings, by name: what `hub school list` and the API show."""
    schools = list(session.scalars(select(School).order_by(School.name)))
    by_id = {school.id: school for school in schools}
    partners: dict[int, list[School]] = {school.id: [] for school in schools}
    for famous_id, rural_id in session.execute(select(Pairing.famous_school_id, Pairing.rural_school_id)):
        partners[famous_id].append(by_id[rural_id])
        partners[rural_id].append(by_id[famous_id])
    return [SchoolListing(school, sorted(partners[school.id], key=lambda s: s.name)) for school in schools]


def get_school(session: Session, school_id: int) -> School:
    school = session.get(School, school_id)
    if school is None:
        raise NotFound(N_("There is no school %(id)s."), id=school_id)
    return school


def famous_and_rural(one: School, other: School) -> tuple[School, School]:
    """The two schools of a pairing named in either order (the API's path and body)."""
    return (other, one) if one.kind == "rural" else (one, other)


def require_admin(actor: User) -> None:
    """Schools and their pairings are the bureau's: its admins manage them."""
    if not actor.is_admin:
        raise PermissionDenied(N_("Only an admin may manage schools and their pairings."))


def create_user(
    session: Session,
    email: str,
    school: School,
    role: str,
    password: str | None = None,
    region: str = "",
    county: str = "",
) -> User:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise Invalid(N_("%(email)r is not an email address."), {"email": N_("not an email address")}, email=email)
    if role not in ROLES:
        raise Invalid(
            N_("Unknown role %(role)r."), {"role": Text(N_("one of: %(codes)s"), codes=", ".join(ROLES))}, role=role
        )
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(N_("A user %(email)s already exists."), {"email": N_("already taken")}, email=email)
    region, county = region.strip(), county.strip()
    if region and role not in ("reviewer", "supervisor"):
        raise Invalid(
            N_("Only reviewers and supervisors have a region of their own."),
            {"region": N_("for reviewers and supervisors only")},
        )
    if county and role != "supervisor":
        raise Invalid(N_("Only supervisors have a county of their own."), {"county": N_("for supervisors only")})
    if len(region) > 100 or len(county) > 100:
        raise Invalid(N_("A region or county has at most 100 characters."), {"region": N_("at most 100 characters")})
    if role == "supervisor" and not (region or school.region):
        # An empty area would be no area at all: say which one rather than show an empty dashboard.
        raise Invalid(
            N_("A supervisor needs a region: give one, or make them a user of a school that has one."),
            {"region": N_("needed for a supervisor")},
        )
    user = User(email=email, school=school, role=role, region=region, county=county)
    if password:
        set_password(user, password)
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    if len(password) < 8:
        raise Invalid(N_("Passwords need at least 8 characters."), {"password": N_("Too short")})
    user.password_hash = generate_password_hash(password)


def change_password(session: Session, user: User, password: str) -> None:
    """A new password ends every session signed in with the old one (a web page signs its own in again)."""
    set_password(user, password)
    end_sessions(user)
    session.flush()


def end_sessions(user: User) -> None:
    """End every session of ``user``: each cookie carries the generation it was signed in at."""
    user.session_generation += 1


def deactivate_user(session: Session, user: User) -> int:
    """Refuse the user's sign-in, sessions and tokens; their tokens are revoked for good. Returns how many."""
    user.active = False
    end_sessions(user)
    now = utcnow()
    tokens = list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))))
    for row in tokens:
        row.revoked_at = now
    session.flush()
    return len(tokens)


def activate_user(session: Session, user: User) -> None:
    """Let the user sign in again; tokens revoked at deactivation stay revoked (make new ones)."""
    user.active = True
    session.flush()


def get_user_by_email(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(N_("No user %(email)r."), email=email)
    return user


# -- signing in ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoginLimits:
    """Failed sign-ins allowed within ``window`` seconds, per account and per client address."""

    per_account: int
    per_address: int
    window: int


@functools.cache
def _dummy_hash() -> str:
    # Verified against when there is no password to check, so an unknown email costs the
    # same hash computation as a wrong password and answers just as slowly.
    return generate_password_hash(secrets.token_urlsafe(16))


def _failure_key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def address_key(address: str) -> str:
    """What a client address counts as: an IPv6 client holds a whole /64, so that is one address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def _limited_keys(email: str, address: str | None, limits: LoginLimits) -> list[tuple[str, int]]:
    keys = [(_failure_key("account", email), limits.per_account)]
    if address:
        keys.append((_failure_key("address", address_key(address)), limits.per_address))
    return keys


def _seconds_blocked(session: Session, keys: list[tuple[str, int]], window: timedelta, now: datetime) -> int:
    """Seconds until every key is under its limit again; 0 when none is at it."""
    wait = 0.0
    for key, limit in keys:
        recent = session.scalars(
            select(LoginFailure.at)
            .where(LoginFailure.key == key, LoginFailure.at > now - window)
            .order_by(LoginFailure.at.desc())
            .limit(limit)
        ).all()
        if len(recent) >= limit:
            # Under the limit again once the oldest of the last `limit` failures leaves the window.
            wait = max(wait, (recent[-1] + window - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else 0


def sign_in(
    session: Session,
    email: str,
    password: str,
    *,
    address: str | None,
    limits: LoginLimits,
    now: datetime | None = None,
) -> User:
    """The user with this email and password, for a session; the caller commits.

    Failures count against the account and the client address, in the database (not the
    session cookie a client can drop); at the limit every attempt is refused unchecked
    with TooManyRequests until the window has moved on. A failure is committed here,
    since the caller answers with an error. A success clears the account's failures
    (not the address's: one good account must not unlock guessing at the others).
    """
    now = now or utcnow()
    email = email.strip().lower()
    window = timedelta(seconds=limits.window)
    keys = _limited_keys(email, address, limits)
    if wait := _seconds_blocked(session, keys, window, now):
        raise TooManyRequests(
            N_("Too many failed sign-ins. Try again in %(minutes)s min."),
            retry_after=wait,
            minutes=math.ceil(wait / 60),
        )
    user = session.scalar(select(User).where(User.email == email))
    hashed = user.password_hash if user is not None else None
    matches = check_password_hash(hashed or _dummy_hash(), password)
    if user is None or not hashed or not matches:
        for key, _limit in keys:
            session.add(LoginFailure(key=key, at=now))
        # Old failures go as new ones come: the table holds about one window's worth.
        session.execute(delete(LoginFailure).where(LoginFailure.at <= now - window))
        session.commit()
        # Same message either way: do not reveal which emails exist.
        raise Unauthorized(N_("Wrong email or password."))
    if not user.active:
        # Only someone who knows the password learns this.
        raise Unauthorized(N_("This account is deactivated. Ask the hub's administrator."))
    session.execute(delete(LoginFailure).where(LoginFailure.key == keys[0][0]))
    user.last_login_at = now
    return user


def authenticate_password(session: Session, email: str, password: str) -> User:
    """The user with this email and password, unthrottled: for scripts and tests, not for the web."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    hashed = user.password_hash if user is not None else None
    matches = check_password_hash(hashed or _dummy_hash(), password)
    if user is None or not hashed or not matches or not user.active:
        raise Unauthorized(N_("Wrong email or password."))
    return user


# -- API tokens ---------------------------------------------------------------------


def _hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain sha256 is enough (no slow KDF needed).
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, kind: str = "user") -> str:
    """Return a new bearer token; only its hash is stored, so it is shown once.

    ``kind`` "sync" makes a school server's token: accepted only by the sync API, and the
    only kind that may send it download counts or change the school's subscriptions.
    """
    if kind not in TOKEN_KINDS:
        raise Invalid(N_("Unknown token kind %(kind)s."), {"kind": ", ".join(TOKEN_KINDS)}, kind=kind)
    if not user.active:
        raise Invalid(N_("%(email)s is deactivated: activate the account first."), email=user.email)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user=user, token_hash=_hash_token(token), prefix=token[:12], kind=kind))
    session.flush()
    return token


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's tokens, revoked ones too, oldest first (only prefixes: the tokens are not kept)."""
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def revoke_token(session: Session, token_or_prefix: str) -> tuple[ApiToken, bool]:
    """Revoke one token, named by the prefix `hub token list` shows (or its start) or by the whole token.

    Returns the token and whether it was live. An ambiguous prefix revokes nothing
    (Conflict): revoking the wrong school server's token would cut that school off.
    """
    given = token_or_prefix.strip()
    whole = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(given)))
    if whole is not None:
        candidates = [whole]
    elif len(given) < MIN_REVOKE_PREFIX:
        raise Invalid(
            N_("Give at least %(count)s characters of the token's prefix."),
            {"prefix": N_("Too short")},
            count=MIN_REVOKE_PREFIX,
        )
    else:
        candidates = list(
            session.scalars(
                select(ApiToken).where(ApiToken.prefix.startswith(given, autoescape=True)).order_by(ApiToken.id)
            )
        )
    if not candidates:
        raise NotFound(N_("No token starts with %(prefix)s."), prefix=given)
    # Revoked tokens that share the prefix are no reason to refuse: they are what is meant only
    # when nothing live matches (then revoking again changes nothing).
    live = [row for row in candidates if row.revoked_at is None]
    if len(live) > 1:
        raise Conflict(
            N_("%(count)s tokens start with %(prefix)s: give more of the prefix."), count=len(live), prefix=given
        )
    if not live:
        return candidates[0], False
    live[0].revoked_at = utcnow()
    session.flush()
    return live[0], True


def live_token(session: Session, token: str) -> ApiToken:
    """The token row of a bearer token that may be used now (its user is ``.user``)."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        raise Unauthorized(N_("The bearer token is unknown or revoked."))
    return row


def authenticate_token(session: Session, token: str) -> User:
    return live_token(session, token).user


def record_token_use(row: ApiToken, now: datetime | None = None) -> bool:
    """Stamp last_used_at, at most once per TOKEN_USE_INTERVAL; True when the caller should commit."""
    now = now or utcnow()
    if row.last_used_at is not None and now - row.last_used_at < TOKEN_USE_INTERVAL:
        return False
    row.last_used_at = now
    return True

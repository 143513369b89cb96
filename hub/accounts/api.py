"""Schools and their pairings under /api/v1/schools, for the bureau's admins.

A pairing lets a rural school's server mirror everything a famous school
publishes (``paired_with`` in /api/v1/sync/subscriptions). The same use cases
as ``hub school list|pair|unpair``, in hub.accounts.services.
"""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from hub.accounts import services
from hub.accounts.auth import require_user
from hub.accounts.models import School
from hub.api import PREFIX, Strict, no_content, operation
from hub.db import request_session
from hub.inputs import Id

blueprint = Blueprint("accounts_api", __name__, url_prefix=PREFIX)


class SchoolRef(BaseModel):
    id: int
    name: str
    kind: str


class SchoolOut(SchoolRef):
    region: str
    county: str
    paired: list[SchoolRef] = Field(description="A famous school's rural partners, or a rural school's famous ones")


class SchoolList(BaseModel):
    items: list[SchoolOut]


class PairingIn(Strict):
    school: Id = Field(description="The other school's id: a rural school for a famous one, or the reverse")


def _ref(school: School) -> SchoolRef:
    return SchoolRef(id=school.id, name=school.name, kind=school.kind)


def _out(listing: services.SchoolListing) -> SchoolOut:
    school = listing.school
    return SchoolOut(
        id=school.id,
        name=school.name,
        kind=school.kind,
        region=school.region,
        county=school.county,
        paired=[_ref(other) for other in listing.paired],
    )


def _listing(school_id: int) -> services.SchoolListing:
    session = request_session()
    services.get_school(session, school_id)  # 404 for an unknown id
    return next(item for item in services.list_schools(session) if item.school.id == school_id)


@operation(blueprint, "/schools", "GET", summary="Schools and their pairings (admins)", response=SchoolList, auth=True)
def list_schools() -> SchoolList:
    services.require_admin(require_user())
    return SchoolList(items=[_out(item) for item in services.list_schools(request_session())])


@operation(
    blueprint,
    "/schools/<int:school_id>/pairings",
    "GET",
    summary="A school with the schools it is paired with (admins)",
    response=SchoolOut,
    auth=True,
)
def get_pairings(school_id: int) -> SchoolOut:
    services.require_admin(require_user())
    return _out(_listing(school_id))


@operation(
    blueprint,
    "/schools/<int:school_id>/pairings",
    "POST",
    summary="Pair a famous school with a rural school, in either order (admins; idempotent)",
    body=PairingIn,
    response=SchoolOut,
    status=201,
    auth=True,
)
def create_pairing(school_id: int, body: PairingIn) -> SchoolOut:
    services.require_admin(require_user())
    session = request_session()
    famous, rural = services.famous_and_rural(
        services.get_school(session, school_id), services.get_school(session, body.school)
    )
    services.pair_schools(session, famous, rural)
    session.commit()
    return _out(_listing(school_id))


@operation(
    blueprint,
    "/schools/<int:school_id>/pairings/<int:other_id>",
    "DELETE",
    summary="End a pairing and the rural school's subscriptions through it (admins)",
    auth=True,
)
def delete_pairing(school_id: int, other_id: int) -> Response:
    services.require_admin(require_user())
    session = request_session()
    famous, rural = services.famous_and_rural(
        services.get_school(session, school_id), services.get_school(session, other_id)
    )
    services.unpair_schools(session, famous, rural)
    session.commit()
    return no_content()

"""``GET /api/v1/reach`` and its tables: the dashboard's numbers as JSON, scoped and masked as the pages are."""

from __future__ import annotations

from flask import Blueprint, current_app

from hub.accounts.auth import require_user
from hub.api import PREFIX, operation
from hub.db import request_session
from hub.reach import dashboard as reach
from hub.reach import export
from hub.reach.dashboard import ReachQuery

blueprint = Blueprint("reach_api", __name__, url_prefix=PREFIX)


def _mask_below() -> int:
    return int(current_app.extensions["hub.settings"].reach_mask_below)


@operation(
    blueprint,
    "/reach",
    "GET",
    summary="Plays, downloads and course ZIPs over a period, grouped by county, school, course, lesson or week "
    "(admins; supervisors: their area; uploaders: their school's courses)",
    query=ReachQuery,
    response=export.ReachOut,
    auth=True,
)
def get_reach(query: ReachQuery) -> export.ReachOut:
    scope = reach.scope_for(require_user())
    return export.reach_out(reach.reach(request_session(), scope, query, mask_below=_mask_below()))


@operation(
    blueprint,
    "/reach/coverage",
    "GET",
    summary="Each rural school of the area: the curriculum's subjects × grades it has lessons for, and its gaps",
    query=ReachQuery,
    response=export.CoverageOut,
    auth=True,
)
def get_coverage(query: ReachQuery) -> export.CoverageOut:
    scope = reach.scope_for(require_user())
    return export.coverage_out(reach.coverage(request_session(), scope, query))


@operation(
    blueprint,
    "/reach/contribution",
    "GET",
    summary="Famous schools' contribution: courses and lessons shared, rural schools reached, uses there",
    query=ReachQuery,
    response=export.ContributionList,
    auth=True,
)
def get_contribution(query: ReachQuery) -> export.ContributionList:
    scope = reach.scope_for(require_user())
    return export.contribution_list(request_session(), scope, query, mask_below=_mask_below())


@operation(
    blueprint,
    "/reach/pairings",
    "GET",
    summary="Each famous–rural pairing of the area with what flowed across it in the period",
    query=ReachQuery,
    response=export.PairingList,
    auth=True,
)
def get_pairings(query: ReachQuery) -> export.PairingList:
    scope = reach.scope_for(require_user())
    return export.pairing_list(request_session(), scope, query, mask_below=_mask_below())


@operation(
    blueprint,
    "/reach/servers",
    "GET",
    summary="The area's school servers: last contact, sync freshness, storage, silence",
    query=ReachQuery,
    response=export.ServerList,
    auth=True,
)
def get_servers(query: ReachQuery) -> export.ServerList:
    scope = reach.scope_for(require_user())
    days = current_app.extensions["hub.settings"].silent_days
    return export.server_list(request_session(), scope, query, silent_days=days)

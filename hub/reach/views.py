"""``/reach/``: the dashboard's pages and their CSV downloads (same services and scope as the API).

Server-rendered, charts drawn as inline SVG by hub.reach.charts: no script, no chart
library, a page of a few KB that works on a phone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hub.accounts.auth import current_user
from hub.db import request_session
from hub.reach import charts, export
from hub.reach import dashboard as reach
from hub.reach.dashboard import ReachQuery
from hub.vocab import CURRICULUM_GRADES, GRADES, SUBJECTS

blueprint = Blueprint("reach", __name__, url_prefix="/reach")

TABLES = ("reach", "coverage", "contribution", "servers", "pairings")


def _settings() -> tuple[int, int]:
    settings = current_app.extensions["hub.settings"]
    return int(settings.reach_mask_below), int(settings.silent_days)


def _query() -> ReachQuery:
    """The filters from the query string; a field left empty in the form is no filter."""
    return ReachQuery.model_validate({k: v for k, v in request.args.items() if v.strip()})


@blueprint.before_request
def _signed_in() -> Response | None:
    """Every page and export here is for a signed-in reader: anyone else signs in first."""
    if current_user() is None:
        return redirect(url_for("accounts.login", next=request.full_path))
    return None


def _scope() -> reach.Scope:
    """What the signed-in reader may see (hub.reach.dashboard.scope_for)."""
    user = current_user()
    assert user is not None  # _signed_in ran first
    return reach.scope_for(user)


def _args(query: ReachQuery, **changes: object) -> dict[str, object]:
    """The query string of ``query`` with ``changes``: links keep the other filters."""
    values = query.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True, mode="json")
    values.update(changes)
    return {k: v for k, v in values.items() if v not in (None, "")}


def _render(table: str, scope: reach.Scope, query: ReachQuery, **context: object) -> str:
    tables = [t for t in TABLES if scope.course_school_id is None or t in ("reach", "contribution", "pairings")]
    return render_template(
        f"reach/{table}.html",
        table=table,
        tables=tables,
        query=query,
        scope=scope,
        args=lambda **changes: _args(query, **changes),
        counties=reach.counties(request_session(), scope) if scope.course_school_id is None else [],
        subjects=SUBJECTS,
        grades=GRADES,
        **context,
    )


@blueprint.get("/")
def reach_page() -> str:
    scope = _scope()
    query = _query()
    mask_below, _ = _settings()
    table = reach.reach(request_session(), scope, query, mask_below=mask_below)
    return _render(
        "reach",
        scope,
        query,
        result=table,
        trend_svg=charts.trend(table.trend, mask_below),
        bars_svg=charts.bars(table.rows[:12], mask_below) if table.group_by != "week" else "",
        drill=_drill(table.group_by),
    )


@blueprint.app_template_filter("reach_label")
def reach_label(label: str) -> str:
    """A row's name; the two the service leaves to the page's language are translated here."""
    return export.row_label(label)


def _drill(group_by: str) -> str | None:
    """The next level down: county → school → course → lesson."""
    return {"county": "school", "school": "course", "course": "lesson"}.get(group_by)


@blueprint.get("/coverage")
def coverage_page() -> str:
    scope = _scope()
    query = _query()
    page = reach.coverage(request_session(), scope, query)
    # How many of the page's schools have lessons for each subject and grade.
    grid: dict[tuple[str, int], int] = {}
    for row in page.schools:
        for cell, courses in row.courses.items():
            if courses:
                grid[cell] = grid.get(cell, 0) + 1
    return _render(
        "coverage", scope, query, page=page, grid=grid, curriculum=CURRICULUM_GRADES, cells=reach.CURRICULUM_CELLS
    )


@blueprint.get("/contribution")
def contribution_page() -> str:
    scope = _scope()
    query = _query()
    mask_below, _ = _settings()
    out = export.contribution_list(request_session(), scope, query, mask_below=mask_below)
    return _render("contribution", scope, query, result=out, mask_below=mask_below)


@blueprint.get("/pairings")
def pairings_page() -> str:
    scope = _scope()
    query = _query()
    mask_below, _ = _settings()
    out = export.pairing_list(request_session(), scope, query, mask_below=mask_below)
    return _render("pairings", scope, query, result=out, mask_below=mask_below)


@blueprint.get("/servers")
def servers_page() -> str:
    scope = _scope()
    query = _query()
    _, silent_days = _settings()
    found = reach.school_servers(request_session(), scope, query, silent_days=silent_days)
    return _render(
        "servers",
        scope,
        query,
        servers=found,
        silent_days=silent_days,
        silent_count=sum(1 for s in found if s.server.alert != "ok"),
        behind_count=sum(1 for s in found if s.behind),
    )


@blueprint.get("/<any(reach, coverage, contribution, servers, pairings):table>.csv")
def table_csv(table: str) -> Response:
    scope = _scope()
    query = _query()
    session = request_session()
    mask_below, silent_days = _settings()
    rows: Iterator[list[str]]
    if table == "reach":
        rows = export.reach_csv(export.reach_out(reach.reach(session, scope, query, mask_below=mask_below)))
    elif table == "coverage":
        rows = export.coverage_csv(export.coverage_row(r) for r in reach.all_coverage(session, scope, query))
    elif table == "contribution":
        rows = export.contribution_csv(
            export.contribution_list(session, scope, query, mask_below=mask_below), mask_below
        )
    elif table == "pairings":
        rows = export.pairings_csv(export.pairing_list(session, scope, query, mask_below=mask_below), mask_below)
    else:
        rows = export.servers_csv(export.server_list(session, scope, query, silent_days=silent_days))
    # Built whole rather than streamed: the request's session closes with the request, and
    # the largest table (a province's coverage, one line per school) is a few MB.
    name = f"reach-{table}-{date.today().isoformat()}.csv"
    return Response(
        export.csv_bytes(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, no-store"},
    )

"""Benchmark: the reach dashboard at province scale, against a plain GROUP BY over the raw rows.

    HUB_BENCH_DATABASE_URL=postgresql+psycopg://... .venv/bin/python -m benchmarks.reach \
        [--schools 10000] [--rows 3000000] [--days 364] [--repeat 20] [--reuse]

Generates a province in an empty PostgreSQL database (the schema by `alembic upgrade
head`): ``--schools`` schools in 14 cities and 120 counties (2 % famous, 85 % rural),
each famous school with 10 published courses of 10 lessons, and ``--rows`` raw
usage_count rows over ``--days`` days ending today, drawn in SQL (generate_series: a
random school, one of the 8 courses it uses, a random lesson, material, kind and source;
duplicates of the unique key merged as the recording's upsert would). Then:

- rolls everything up (hub.reach.rollup.roll_up, everything=True) and times it, then
  VACUUM (ANALYZE)s the roll-ups, as autovacuum does after a roll-up (migration 0023);
- times each dashboard question ``--repeat`` times through hub.reach.dashboard (what the
  pages and the API call), and the same answer computed by a plain GROUP BY over the
  raw rows in the same run: p50 and p95 of each, and their ratio;
- what the upkeep costs, and a county's questions right after a week of days re-rolled,
  before VACUUM has visited the pages it wrote.

The database is dropped and re-made: point it at a scratch database only. ``--reuse``
keeps a database this benchmark generated before (raw rows and all): it upgrades the
schema, drops the roll-ups and rolls everything up again; with ``--rolled`` it keeps the
roll-ups as well and only times the questions (the roll-up line then says so).

To time the questions alone on a quiet machine, the slow part can run before: ``--prepare``
stops after the roll-up and its VACUUM (generating, or with ``--reuse`` re-rolling, as
above); ``--questions-only`` then asks only the questions (and their raw GROUP BY) of the
database a ``--prepare`` run left, with no roll-up, VACUUM, safety run or upkeep before or
after them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from hub.db import make_engine
from hub.migrate import upgrade
from hub.reach import dashboard, rollup
from hub.reach.dashboard import ReachQuery, Scope
from hub.reach.models import (
    PendingDay,
    ReachCountyDay,
    ReachCountyWeek,
    ReachDay,
    ReachSchoolDay,
    ReachSchoolWeek,
    ReachSubjectDay,
    ReachSubjectWeek,
    ReachWeek,
)

CITIES = 14
COUNTIES = 120
MASK = 5
ROLLUPS = (
    ReachDay,
    ReachWeek,
    ReachSchoolDay,
    ReachSchoolWeek,
    ReachCountyDay,
    ReachCountyWeek,
    ReachSubjectDay,
    ReachSubjectWeek,
)


def _reset(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)


def _generate(session: Session, schools: int, rows: int, days: int, today: date) -> dict[str, Any]:
    famous = max(1, schools // 50)
    started = time.perf_counter()
    # Schools: the first `famous` are famous, 85 % of the rest rural, the others urban.
    session.execute(
        text(
            """
            INSERT INTO school (id, name, kind, region, county, rural, created_at)
            SELECT g, '学校' || g,
                   CASE WHEN g <= :famous THEN 'famous' WHEN g % 20 < 17 THEN 'rural' ELSE 'urban' END,
                   -- A county lies in one city (its number mod the cities), as in a real province.
                   '甘肃省 市' || ((g % :counties) % :cities), '县' || (g % :counties),
                   g > :famous AND g % 20 < 17, now()
            FROM generate_series(1, :schools) g
            """
        ),
        {"famous": famous, "schools": schools, "cities": CITIES, "counties": COUNTIES},
    )
    subjects = ["chinese", "math", "english", "science", "physics", "history", "art", "music", "pe", "it"]
    session.execute(
        text(
            """
            INSERT INTO course (id, school_id, title, summary, category, subject, grades_mask, edition, volume,
                                language, license, teacher, status, version, created_at, updated_at)
            SELECT c, (c - 1) / 10 + 1, '课程' || c, '', 'curriculum', (CAST(:subjects AS text[]))[1 + c % 10],
                   1 << (1 + c % 9), '', '', 'zh', 'CC-BY-4.0', '', 'published', 1, now(), now()
            FROM generate_series(1, :courses) c
            """
        ),
        {"courses": famous * 10, "subjects": subjects},
    )
    session.execute(
        text(
            """
            INSERT INTO lesson (id, course_id, position, title, summary, unit, created_at, updated_at, changed_at)
            SELECT l, (l - 1) / 10 + 1, (l - 1) % 10 + 1, '课时' || l, '', '', now(), now(), now()
            FROM generate_series(1, :lessons) l
            """
        ),
        {"lessons": famous * 100},
    )
    session.execute(text("SELECT setval('school_id_seq', :n)"), {"n": schools})
    # Raw rows: a random (day, school, course, lesson, material, kind, source) each; the
    # duplicates of the unique key are merged by ON CONFLICT as the recording's upsert does.
    batch = 500_000
    done = 0
    while done < rows:
        n = min(batch, rows - done)
        session.execute(
            text(
                """
                INSERT INTO usage_count (day, school_id, course_id, lesson_id, material_id, kind, source, count)
                SELECT day, school_id, course_id, lesson_id, material_id, kind, source, sum(count) FROM (
                  SELECT CAST(:today AS date) - (random() * (:days - 1))::int AS day,
                         school_id, c AS course_id,
                         (c - 1) * 10 + 1 + (random() * 9)::int AS lesson_id, (random() * 3)::int + 1 AS material_id,
                         (ARRAY['play', 'play', 'download'])[1 + (random() * 2)::int] AS kind,
                         (ARRAY['hub', 'lan', 'usb'])[1 + (random() * 2)::int] AS source,
                         1 + (random() * 9)::int AS count
                  FROM (
                    -- A school uses the 8 courses it subscribes to, not any of the province's: what
                    -- makes the roll-ups smaller than the raw rows (a school-course-week sums its
                    -- days, lessons, materials and sources).
                    SELECT school_id, 1 + (school_id * 7 + (random() * 7)::int * 131) % :courses AS c
                    FROM (SELECT 1 + (random() * (:schools - 1))::int AS school_id FROM generate_series(1, :n)) s
                  ) picked
                ) drawn GROUP BY 1, 2, 3, 4, 5, 6, 7
                ON CONFLICT (day, school_id, course_id, lesson_id, material_id, kind, source)
                DO UPDATE SET count = usage_count.count + excluded.count
                """
            ),
            {"today": today, "days": days, "schools": schools, "courses": famous * 10, "n": n},
        )
        session.commit()
        done += n
    raw = session.execute(text("SELECT count(*) FROM usage_count")).scalar_one()
    session.execute(text("ANALYZE"))
    session.commit()
    return {"famous": famous, "raw_rows": raw, "generate_s": time.perf_counter() - started}


def _vacuum(engine: Engine) -> float:
    """VACUUM (ANALYZE) the roll-ups, timed: what autovacuum does after a roll-up (migration 0023).

    The covering school indexes answer without the heap only from pages VACUUM marked
    all-visible; a machine whose autovacuum is off (this benchmark's) would never get there.
    """
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) " + ", ".join(t.__tablename__ for t in ROLLUPS)))
    return time.perf_counter() - started


def _time(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95, result


def _raw_by_county(session: Session, start: date, end: date) -> dict[str, int]:
    found = session.execute(
        text(
            """
            SELECT s.county, sum(u.count) FROM usage_count u JOIN school s ON s.id = u.school_id
            WHERE u.day BETWEEN :start AND :end AND u.kind = 'play' GROUP BY s.county
            """
        ),
        {"start": start, "end": end},
    )
    return {c: int(n) for c, n in found}


def _raw_by_school(session: Session, start: date, end: date, county: str) -> dict[int, int]:
    found = session.execute(
        text(
            """
            SELECT u.school_id, sum(u.count) FROM usage_count u JOIN school s ON s.id = u.school_id
            WHERE u.day BETWEEN :start AND :end AND u.kind = 'play' AND s.county = :county GROUP BY u.school_id
            """
        ),
        {"start": start, "end": end, "county": county},
    )
    return {s: int(n) for s, n in found}


def _raw_by_school_subject(session: Session, start: date, end: date, county: str, subject: str) -> dict[int, int]:
    found = session.execute(
        text(
            """
            SELECT u.school_id, sum(u.count) FROM usage_count u JOIN school s ON s.id = u.school_id
            JOIN course c ON c.id = u.course_id
            WHERE u.day BETWEEN :start AND :end AND u.kind = 'play' AND s.county = :county AND c.subject = :subject
            GROUP BY u.school_id
            """
        ),
        {"start": start, "end": end, "county": county, "subject": subject},
    )
    return {s: int(n) for s, n in found}


def _raw_by_county_course(
    session: Session, start: date, end: date, subject: str | None, grade: int | None
) -> dict[str, int]:
    found = session.execute(
        text(
            """
            SELECT s.county, sum(u.count) FROM usage_count u JOIN school s ON s.id = u.school_id
            JOIN course c ON c.id = u.course_id
            WHERE u.day BETWEEN :start AND :end AND u.kind = 'play'
              AND (CAST(:subject AS text) IS NULL OR c.subject = :subject)
              AND (CAST(:grade AS integer) IS NULL OR c.grades_mask & (1 << CAST(:grade AS integer)) != 0)
            GROUP BY s.county
            """
        ),
        {"start": start, "end": end, "subject": subject, "grade": grade},
    )
    return {c: int(n) for c, n in found}


def _raw_trend(session: Session, start: date, end: date) -> dict[date, int]:
    found = session.execute(
        text(
            """
            SELECT date_trunc('week', day)::date, sum(count) FROM usage_count
            WHERE day BETWEEN :start AND :end AND kind = 'play' GROUP BY 1
            """
        ),
        {"start": start, "end": end},
    )
    return {w: int(n) for w, n in found}


def _upkeep(session: Session, today: date, after_reroll: Callable[[], None]) -> None:
    """What keeping the roll-ups costs: a week of days re-rolled, a school moved, a course's subject changed.

    Each change is undone and rolled again, so the data stay as generated. ``after_reroll``
    runs after the week of days is re-rolled (the questions asked before VACUUM visits it).
    """

    def timed(what: str) -> None:
        started = time.perf_counter()
        done = rollup.roll_up(session, check_days=None, today=today)
        print(f"{what}: {time.perf_counter() - started:.1f} s ({len(done.days)} days, "
              f"{done.moved_schools} schools moved, {done.changed_courses} courses changed)")  # fmt: skip

    session.add_all(PendingDay(day=today - timedelta(days=n)) for n in range(7))
    session.commit()
    timed("7 marked days re-rolled")
    after_reroll()
    school, region, county = session.execute(
        text("SELECT id, region, county FROM school WHERE id = (SELECT max(id) / 2 + 1 FROM school)")
    ).one()
    for to_region, to_county, what in (("甘肃省 市0", "县0", "a school moved county"), (region, county, "and back")):
        session.execute(
            text("UPDATE school SET region = :r, county = :c WHERE id = :id"),
            {"r": to_region, "c": to_county, "id": school},
        )
        session.commit()
        timed(what)
    course, subject, mask = session.execute(text("SELECT id, subject, grades_mask FROM course WHERE id = 7")).one()
    for to_subject, to_mask, what in (("art", 2, "a course's subject and grade changed"), (subject, mask, "and back")):
        session.execute(
            text("UPDATE course SET subject = :s, grades_mask = :m WHERE id = :id"),
            {"s": to_subject, "m": to_mask, "id": course},
        )
        session.commit()
        timed(what)


def _roll_up(engine: Engine, session: Session, made: dict[str, Any], today: date, rolled_before: bool) -> None:
    """Roll everything up, VACUUM (ANALYZE) the roll-ups and run the safety run, each timed."""
    started = time.perf_counter()
    rolled = rollup.roll_up(session, check_days=None, everything=True, today=today)
    roll_s = time.perf_counter() - started
    session.commit()
    print(f"VACUUM (ANALYZE) of the roll-ups: {_vacuum(engine):.1f} s (autovacuum here: "
          f"{session.execute(text('SHOW autovacuum')).scalar_one()})")  # fmt: skip
    sizes = ", ".join(f"{t.__tablename__} {session.scalar(select(func.count()).select_from(t)):,}" for t in ROLLUPS)
    # With --rolled, the roll-ups were made before: a run over every day re-rolls none that match.
    print(f"roll-up{' (kept; days that differed from the raw rows re-rolled)' if rolled_before else ''}: "
          f"{len(rolled.days)} days in {roll_s:.1f} s ({made['raw_rows'] / roll_s:,.0f} raw rows/s); "
          f"rows: {sizes}")  # fmt: skip
    started = time.perf_counter()
    again = rollup.roll_up(session, check_days=30, today=today)
    print(f"safety run over 30 days with nothing changed: {time.perf_counter() - started:.2f} s, "
          f"{len(again.days)} days re-rolled")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schools", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--days", type=int, default=364)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep the raw rows of an earlier run; re-roll only")
    parser.add_argument(
        "--rolled",
        action="store_true",
        help="with --reuse: keep the roll-ups made before, re-rolling only the days that differ from the raw rows",
    )
    parser.add_argument(
        "--prepare", action="store_true", help="stop after the roll-up and its VACUUM: nothing is timed"
    )
    parser.add_argument(
        "--questions-only",
        action="store_true",
        help="only ask the questions of a database a --prepare run left (no roll-up, VACUUM or upkeep)",
    )
    args = parser.parse_args()
    if args.prepare and args.questions_only:
        parser.error("--prepare and --questions-only exclude each other")
    if args.questions_only:
        args.reuse = args.rolled = True
    url = os.environ.get("HUB_BENCH_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        raise SystemExit("set HUB_BENCH_DATABASE_URL to a scratch PostgreSQL database (it is wiped)")
    today = date.today()
    if args.questions_only:
        pass  # The schema as the --prepare run left it: a migration here would change what is timed.
    elif args.reuse:
        upgrade(url)
    else:
        _reset(url)
    engine = make_engine(url)
    with Session(engine) as session:
        if args.reuse and not args.rolled:
            session.execute(
                text(
                    "TRUNCATE reach_day, reach_week, reach_school_day, reach_school_week, reach_county_day,"
                    " reach_county_week, reach_subject_day, reach_subject_week, reach_rolled_area,"
                    " reach_rolled_course, reach_rolled_day, reach_pending_day"
                )
            )
            session.commit()
        # The marker of a finished --prepare run: days rolled (the roll-up's own bookkeeping).
        if args.questions_only and not (
            session.scalar(text("SELECT to_regclass('reach_rolled_day')"))
            and session.scalar(text("SELECT count(*) FROM reach_rolled_day"))
        ):
            raise SystemExit("--questions-only: nothing is rolled up in this database; run with --prepare first")
        if args.reuse:
            made = {
                "raw_rows": session.execute(text("SELECT count(*) FROM usage_count")).scalar_one(),
                "famous": session.execute(text("SELECT count(*) FROM school WHERE kind = 'famous'")).scalar_one(),
            }
            args.schools = session.execute(text("SELECT count(*) FROM school")).scalar_one()
            print(f"reused: {args.schools} schools, {made['raw_rows']:,} raw rows")
        else:
            made = _generate(session, args.schools, args.rows, args.days, today)
            print(f"generated: {args.schools} schools, {made['famous'] * 10} courses, {made['raw_rows']:,} raw rows "
                  f"in {made['generate_s']:.0f} s")  # fmt: skip
        if not args.questions_only:
            _roll_up(engine, session, made, today, args.rolled)
        if args.prepare:
            print("prepared: run again with --questions-only to time the questions")
            engine.dispose()
            return

        end = today
        start = end - timedelta(days=27)
        year_start = end - timedelta(days=args.days - 1)
        admin = Scope(everything=True)
        county = "县7"
        supervisor = Scope(region="甘肃省", county=county)
        cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            (
                "province by county, 4 weeks (admin)",
                lambda: dashboard.reach(session, admin, ReachQuery(to=end), mask_below=MASK),
                lambda: _raw_by_county(session, start, end),
            ),
            (
                "one county by school, 4 weeks (supervisor)",
                lambda: dashboard.reach(session, supervisor, ReachQuery(to=end, group_by="school"), mask_below=MASK),
                lambda: _raw_by_school(session, start, end, county),
            ),
            (
                "province trend per week, 4 weeks",
                lambda: dashboard.reach(session, admin, ReachQuery(to=end, group_by="week"), mask_below=MASK),
                lambda: _raw_trend(session, start, end),
            ),
            (
                f"province by county, {args.days} days (admin)",
                lambda: dashboard.reach(session, admin, ReachQuery(**{"from": year_start, "to": end}), mask_below=MASK),
                lambda: _raw_by_county(session, year_start, end),
            ),
            (
                f"one county by school, {args.days} days",
                lambda: dashboard.reach(
                    session,
                    supervisor,
                    ReachQuery(**{"from": year_start, "to": end, "group_by": "school"}),
                    mask_below=MASK,
                ),
                lambda: _raw_by_school(session, year_start, end, county),
            ),
            (
                "one county by school, math only, 4 weeks (supervisor)",
                lambda: dashboard.reach(
                    session, supervisor, ReachQuery(to=end, group_by="school", subject="math"), mask_below=MASK
                ),
                lambda: _raw_by_school_subject(session, start, end, county, "math"),
            ),
            (
                f"one county by school, math only, {args.days} days",
                lambda: dashboard.reach(
                    session,
                    supervisor,
                    ReachQuery(**{"from": year_start, "to": end, "group_by": "school", "subject": "math"}),
                    mask_below=MASK,
                ),
                lambda: _raw_by_school_subject(session, year_start, end, county, "math"),
            ),
            (
                "province by county, math only, 4 weeks (admin)",
                lambda: dashboard.reach(session, admin, ReachQuery(to=end, subject="math"), mask_below=MASK),
                lambda: _raw_by_county_course(session, start, end, "math", None),
            ),
            (
                f"province by county, math only, {args.days} days (admin)",
                lambda: dashboard.reach(
                    session, admin, ReachQuery(**{"from": year_start, "to": end, "subject": "math"}), mask_below=MASK
                ),
                lambda: _raw_by_county_course(session, year_start, end, "math", None),
            ),
            (
                "province by county, grade 8, 4 weeks (admin)",
                lambda: dashboard.reach(session, admin, ReachQuery(to=end, grade=8), mask_below=MASK),
                lambda: _raw_by_county_course(session, start, end, None, 8),
            ),
            (
                f"province trend per week, {args.days} days",
                lambda: dashboard.reach(
                    session, admin, ReachQuery(**{"from": year_start, "to": end, "group_by": "week"}), mask_below=MASK
                ),
                lambda: _raw_trend(session, year_start, end),
            ),
        ]
        print(f"\n{platform.node()}, load average {os.getloadavg()[0]:.1f}, {args.repeat} runs each")
        print("| question | dashboard p50 | dashboard p95 | raw GROUP BY p50 | raw GROUP BY p95 | ratio (p95) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, ours, reference in cases:
            d50, d95, table = _time(ours, args.repeat)
            r50, r95, raw = _time(reference, max(3, args.repeat // 4))
            # The same answer both ways (masked rows included in the sum of values), the trend too.
            plays = sum(r.counts.values["play"] for r in table.rows)
            trend = sum(c.values["play"] for _, c in table.trend)
            assert plays == trend == sum(raw.values()), (name, plays, trend, sum(raw.values()))
            print(f"| {name} | {d50:.0f} ms | {d95:.0f} ms | {r50:.0f} ms | {r95:.0f} ms | {r95 / d95:.1f}× |")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        if args.questions_only:
            engine.dispose()
            return

        def county_again() -> None:
            # The pages those days' roll-up wrote are not all-visible until VACUUM: their
            # rows are read from the heap, as between a roll-up and autovacuum's next visit.
            print(f"a county's questions after that re-roll, before VACUUM (load {os.getloadavg()[0]:.1f}):")
            for name, ours, _ in cases:
                if name.startswith("one county"):
                    d50, d95, _ = _time(ours, args.repeat)
                    print(f"| {name} | {d50:.0f} ms | {d95:.0f} ms |")
            print(f"VACUUM (ANALYZE) of the roll-ups after it: {_vacuum(engine):.1f} s")

        _upkeep(session, today, county_again)
    engine.dispose()


if __name__ == "__main__":
    main()

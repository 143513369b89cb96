"""Shared fixtures.

The suite runs twice in CI. By default everything is embedded (SQLite, local
storage, the SQLite broker). The service run is chosen by environment
variables, never guessed:

- ``HUB_TEST_DATABASE_URL`` — e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test
- ``HUB_TEST_BROKER_URL``   — e.g. redis://127.0.0.1:6379/15
- ``HUB_TEST_STORAGE=s3``   — blobs go to a moto S3 server the tests start on loopback

The suite runs in parallel processes (pytest-xdist, ``-n``). Each process gets
services of its own, so one process emptying its database between tests never
touches another's: PostgreSQL database ``<name>_gw1`` (created on first use) and
Redis database number ``<n> - 1`` for process ``gw1``; process ``gw0`` uses the
configured ones as they are.

Each test gets its own HUB_DATA_DIR. SQLite databases are copied from one
migrated template; a PostgreSQL database is migrated once and emptied after
every test.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

import hub.models  # noqa: F401
from hub import create_app
from hub.accounts import services as accounts
from hub.accounts.models import School, User
from hub.db import Base, get_database, make_engine
from hub.migrate import upgrade
from tests.support.moto_server import TEST_AWS_ENV, create_bucket, moto_endpoint

# pytest-xdist names its processes gw0, gw1, ...; a run without -n is process 0.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def _worker_database(url: str) -> str:
    """This process's own PostgreSQL database: the configured one, suffixed for processes after the first."""
    if not url or WORKER == 0:
        return url
    base = make_url(url)
    name = f"{base.database}_gw{WORKER}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE runs outside a transaction
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _worker_broker(url: str) -> str:
    """This process's own Redis database number: counted down from the configured one."""
    if not url.startswith("redis") or WORKER == 0:
        return url
    parts = make_url(url)  # redis://host:port/N parses like a database URL
    number = int(parts.database or 0) - WORKER
    if number < 0:
        raise pytest.UsageError(
            f"HUB_TEST_BROKER_URL {url}: too few Redis databases below it for {WORKER + 1} processes"
        )
    return parts.set(database=str(number)).render_as_string(hide_password=False)


# -- the order modules start in (pytest-xdist, ``--dist loadfile --no-loadscope-reorder``) -------
#
# Whole files go to one process (tests/functional/conftest.py starts a hub and a worker once per
# module), in the collection's order. xdist's own order puts the files with most tests first,
# whatever their length: a long file with few tests could start last and run alone while the other
# processes sat idle. So the longest start first: as the last run on this checkout timed them
# (pytest's cache, written below), else as timed when this was written, else the files marked slow.

_MODULE_SECONDS = "hub/module-seconds"
"""Cache key: {module path: seconds its tests took (setup, call and teardown)}."""
_FRESH_CHECKOUT_SECONDS = {
    "tests/functional/test_playback_browser.py": 130,
    "tests/functional/test_uploads_phone.py": 130,
    "tests/functional/test_outbox.py": 90,
}
"""The longest files as the service run timed them (2026-12, one process, load 5-12): the order
where pytest's cache has none (CI's fresh checkout). The cache's times replace them once there."""
_measured: dict[str, float] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return  # one process runs everything anyway: keep the files' order
    cache = getattr(config, "cache", None)
    seconds: dict[str, float] = {**_FRESH_CHECKOUT_SECONDS, **(cache.get(_MODULE_SECONDS, {}) if cache else {})}
    slow: dict[str, bool] = {}
    count: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        slow[module] = slow.get(module, False) or item.get_closest_marker("slow") is not None
        count[module] = count.get(module, 0) + 1
    # Every process computes the same order from the same cache file: xdist checks that they collected alike.
    first = {m: i for i, m in enumerate(sorted(count, key=lambda m: (-seconds.get(m, 0), not slow[m], -count[m], m)))}
    items.sort(key=lambda item: first[item.nodeid.split("::", 1)[0]])  # stable: a module's own order stays


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::", 1)[0]
    _measured[module] = _measured.get(module, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    cache = getattr(session.config, "cache", None)
    if "PYTEST_XDIST_WORKER" in os.environ or cache is None or not _measured:
        return  # the controlling process sees every report (xdist forwards them): it writes alone
    cache.set(_MODULE_SECONDS, {**cache.get(_MODULE_SECONDS, {}), **{m: round(s, 1) for m, s in _measured.items()}})


DATABASE_URL = _worker_database(os.environ.get("HUB_TEST_DATABASE_URL", ""))
BROKER_URL = _worker_broker(os.environ.get("HUB_TEST_BROKER_URL", ""))
STORAGE = os.environ.get("HUB_TEST_STORAGE", "local")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    yield from moto_endpoint()


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: str) -> str:
    return create_bucket(s3_endpoint)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "hub.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    engine = make_engine(DATABASE_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(DATABASE_URL)
    yield DATABASE_URL


def _empty_postgres(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


def instance_env(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[dict[str, str]]:
    """The environment of one test hub instance in ``data_dir``, on this run's backends.

    A generator for fixtures to ``yield from``: after the test, the shared services
    (a PostgreSQL database, a Redis broker) are emptied for the next one.
    """
    data_dir.mkdir()
    env = {"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"}
    if DATABASE_URL:
        env["HUB_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    else:
        shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "hub.db")
    if BROKER_URL:
        env["HUB_BROKER_URL"] = BROKER_URL
    if STORAGE == "s3":
        env.update(
            HUB_STORAGE="s3",
            HUB_S3_ENDPOINT_URL=request.getfixturevalue("s3_endpoint"),
            HUB_S3_BUCKET=request.getfixturevalue("s3_bucket"),
            HUB_S3_PREFIX=f"{uuid.uuid4().hex}/",
        )
        env.update(TEST_AWS_ENV)
    yield env
    if DATABASE_URL:
        _empty_postgres(DATABASE_URL)
    if BROKER_URL.startswith("redis"):
        import redis

        redis.Redis.from_url(BROKER_URL).flushdb()


@pytest.fixture
def hub_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The ``HUB_*`` settings of this test's hub instance (also for subprocesses)."""
    yield from instance_env(request, tmp_path / "var")


def hub_settings(env: dict[str, str]) -> dict[str, str]:
    """The ``HUB_*`` part of a test hub's environment: what ``create_app`` takes as overrides.

    ``hub_env`` also carries the S3 credentials that subprocesses need (AWS_*), which
    ``create_app`` would refuse as unknown settings.
    """
    return {k: v for k, v in env.items() if k.startswith("HUB_")}


@pytest.fixture
def app(hub_env: dict[str, str]) -> Iterator[Flask]:
    app = create_app(hub_settings(hub_env))
    app.config["TESTING"] = True
    yield app
    get_database(app).engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Iterator[Session]:
    with get_database(app).session() as session:
        yield session


class Accounts:
    """Schools, users and tokens made through the services, as the CLI makes them."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def school(self, name: str = "海淀实验小学", kind: str = "famous") -> School:
        school = accounts.create_school(self.session, name, kind, "北京市", "海淀区")
        self.session.commit()
        return school

    def user(self, email: str, school: School, role: str = "uploader", password: str | None = None) -> User:
        user = accounts.create_user(self.session, email, school, role, password)
        self.session.commit()
        return user

    def token(self, user: User, kind: str = "user") -> str:
        token = accounts.create_token(self.session, user, kind)
        self.session.commit()
        return token

    def bearer(self, user: User, kind: str = "user") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, kind)}"}


@pytest.fixture
def make(db: Session) -> Accounts:
    return Accounts(db)


COURSE: dict[str, Any] = {
    "title": "一元二次方程",
    "summary": "配方法、公式法与因式分解法",
    "subject": "math",
    "grades": [9],
    "edition": "人教版",
    "volume": "上册",
    "language": "zh",
    "license": "CC-BY-SA-4.0",
    "teacher": "王老师",
}


@pytest.fixture
def course_body() -> dict[str, Any]:
    return dict(COURSE)

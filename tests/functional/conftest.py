"""Real processes on loopback: the web app under waitress and a Celery worker."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hub import create_app
from hub.db import get_database
from tests.conftest import Accounts, hub_settings, instance_env
from tests.support.browser import chromium

HUB = [sys.executable, "-m", "hub.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def module_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``hub_env`` for a whole module: one hub (and its worker) serves every test of the file."""
    yield from instance_env(request, tmp_path_factory.mktemp("module") / "var")


def uploader_bearer(env: dict[str, str]) -> dict[str, str]:
    """A school and an uploader in the hub of ``env``, and the uploader's bearer header."""
    app = create_app(hub_settings(env))
    try:
        with get_database(app).session() as db:
            make = Accounts(db)
            return make.bearer(make.user("up@haidian.cn", make.school(), "uploader"))
    finally:
        get_database(app).engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for a module's pages; media plays without a click (tests check playback, not the autoplay policy)."""
    with chromium("--autoplay-policy=no-user-gesture-required") as launched:
        yield launched


@pytest.fixture
def no_csp_violations(browser: Any) -> Iterator[None]:
    """Every page the test visits runs under the hub's Content-Security-Policy, refused nothing.

    A module opts in with ``pytest.mark.usefixtures("no_csp_violations")``.
    """
    browser.assert_no_csp_violations()  # a test starts with a clean slate
    yield
    browser.assert_no_csp_violations()


def wait_processed(fetch: Callable[[], dict[str, Any]], what: str, timeout: float = 300) -> dict[str, Any]:
    """Poll a material's JSON (``fetch``) until it is ready or failed; returns the last answer."""
    state: dict[str, Any] = {}

    def processed() -> bool:
        state.update(fetch())
        return state["status"] in ("ready", "failed")

    # A quarter of a second: a test waits on several of these, and a transcode of a short clip takes a few.
    wait_until(processed, timeout, what, interval=0.25)
    return state


def upload_material(server: LiveServer, auth: dict[str, str], lesson: int, path: Path, title: str) -> dict[str, Any]:
    """POST a file as a new material of ``lesson``, as an uploader's script does."""
    with path.open("rb") as f:
        response = requests.post(
            server.api(f"/lessons/{lesson}/materials"),
            headers=auth,
            data={"title": title},
            files={"file": (path.name, f)},
            timeout=60,
        )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def get_material(server: LiveServer, auth: dict[str, str], material_id: int) -> dict[str, Any]:
    return requests.get(server.api(f"/materials/{material_id}"), headers=auth, timeout=10).json()  # type: ignore[no-any-return]


class Process:
    """A child process in its own process group, with its output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    @contextlib.contextmanager
    def stopped_on_failure(self) -> Iterator[None]:
        """Stop the process if the block fails (a start-up that timed out): nobody else will."""
        try:
            yield
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
                self.popen.wait(timeout=5)
        self._out.close()


class LiveServer:
    """``hub serve`` on a free port; up when built, or, with ``wait=False``, once :meth:`wait` returns.

    ``wait=False`` lets a fixture start the server and a worker at once (each takes seconds to
    import the hub and Celery) and then wait for both.
    """

    def __init__(self, env: dict[str, str], tmp_path: Path, wait: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process([*HUB, "serve", "--port", str(self.port)], env, tmp_path / "serve.log")
        if wait:
            self.wait()

    def wait(self) -> None:
        def up() -> bool:
            if self.process.popen.poll() is not None:
                pytest.fail(f"the server exited:\n{self.process.output()}")
            try:
                return requests.get(f"{self.url}/api/v1/openapi.json", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        # The fixture never yields when start-up fails, so no teardown would stop the server:
        # stop it here (a loaded machine once left four of them running after the suite).
        # 60 s: at load average 20 on two cores a start took over 30.
        with self.process.stopped_on_failure():
            wait_until(up, 60, "the web server")

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"


@pytest.fixture
def live_server(hub_env: dict[str, str], tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(hub_env, tmp_path)
    yield server
    server.process.stop()


class Worker:
    """``hub worker``: ready when built, or, with ``wait=False``, once :meth:`wait` returns."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        beat: bool = False,
        queues: str = "",
        concurrency: int = 1,
        wait: bool = True,
    ) -> None:
        args = [*HUB, "worker", "--concurrency", str(concurrency), "--beat" if beat else "--no-beat"]
        if queues:
            args += ["--queues", queues]
        self.process = Process(args, env, log)
        if wait:
            self.wait()

    def wait(self) -> None:
        with self.process.stopped_on_failure():
            wait_until(
                lambda: "ready." in self.process.output() or self.process.popen.poll() is not None,
                60,
                "the worker to start",
            )
        if self.process.popen.poll() is not None:
            pytest.fail(f"the worker exited:\n{self.process.output()}")


@pytest.fixture
def start_worker(hub_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(beat: bool = False, queues: str = "", **env: str) -> Worker:
        worker = Worker({**hub_env, **env}, tmp_path / f"worker-{len(started)}.log", beat, queues)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.process.stop()

"""Resumable uploads over real HTTP: the tuspy client against the app served by `hub serve`.

Each test that takes the ``server`` fixture runs twice: against plain `hub serve` (waitress,
which spools each body before the app runs), and against the deployment of README's "Uploads
without the spool": nginx in front, /api/v1/uploads/ going with proxy_request_buffering off to
`hub serve --upload-port` (cheroot, the body streamed into the upload as it arrives).

On local storage by default; on S3 (a moto server over HTTP) when HUB_TEST_STORAGE=s3,
with files big enough for real multipart parts.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from benchmarks.downloads.nginx import nginx_binary, start_nginx, write_config
from hub.db import utcnow
from hub.media.models import Blob
from hub.uploads.models import Upload
from tests.conftest import COURSE, STORAGE, Accounts
from tests.functional.conftest import HUB, Process, free_port, wait_until
from tests.support.browser import chromium, needs_chromium

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
# S3 parts are at least 5 MiB (8 MiB by default): 12 MiB in 3 MiB chunks makes one full
# part sent mid-upload, a short last part, and local part files in between.
SIZE = 12 * MiB if STORAGE == "s3" else 4 * MiB
CHUNK = 3 * MiB if STORAGE == "s3" else MiB
TUS = {"Tus-Resumable": "1.0.0"}


class TusServer:
    """The hub on a loopback port that stays the same across restarts.

    ``streaming``: the hub also listens for uploads on a port of their own, and clients
    reach both through nginx (``port`` and ``url`` are nginx's).
    """

    def __init__(self, env: dict[str, str], tmp_path: Path, streaming: bool = False) -> None:
        self.env = {**env, "PYTHONPATH": str(ROOT)}
        self.tmp_path = tmp_path
        self.streaming = streaming
        self.hub_port = free_port()
        self.upload_port = free_port() if streaming else 0
        self.nginx = None
        self.port = self.hub_port
        if streaming:
            self.port = free_port()
            config = write_config(
                tmp_path / "nginx",
                f"127.0.0.1:{self.port}",
                f"127.0.0.1:{self.hub_port}",
                tmp_path / "no-offload",
                uploads=f"127.0.0.1:{self.upload_port}",
            )
            self.nginx = start_nginx(config, tmp_path / "nginx.log")
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        try:
            self.process = self._start()
        except BaseException:
            self._stop_nginx()  # a server that never came up must not leave nginx behind
            raise

    def _start(self) -> Process:
        self.starts += 1
        argv = [*HUB, "serve", "--port", str(self.hub_port)]
        if self.streaming:
            argv += ["--upload-port", str(self.upload_port)]
        process = Process(argv, self.env, self.tmp_path / f"serve-{self.starts}.log")

        def up() -> bool:
            if process.popen.poll() is not None:
                pytest.fail(f"the server exited:\n{process.output()}")
            try:
                ready = requests.options(f"{self.url}/api/v1/uploads/", timeout=2).status_code == 204
                return ready and requests.get(f"{self.url}/api/v1/openapi.json", timeout=2).ok
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or still starting
                return False

        try:
            wait_until(up, 90, "the web server")  # three processes to start on a loaded machine
        except BaseException:
            process.stop()  # the fixture never yields, so no teardown would stop it
            raise
        return process

    def close(self) -> None:
        self.process.stop()
        self._stop_nginx()

    def _stop_nginx(self) -> None:
        if self.nginx is not None:
            self.nginx.terminate()
            self.nginx.wait(timeout=10)

    def restart(self) -> None:
        self.process.kill()  # SIGKILL: no goodbye, as in a power cut
        self.process.popen.wait(timeout=10)
        self.process.stop()
        self.process = self._start()

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"


@pytest.fixture(params=["waitress", "streaming"])
def server(request: pytest.FixtureRequest, hub_env: dict[str, str], tmp_path: Path) -> Iterator[TusServer]:
    if request.param == "streaming" and nginx_binary() is None:
        pytest.skip("nginx is not installed (make install)")
    served = TusServer(hub_env, tmp_path, streaming=request.param == "streaming")
    yield served
    served.close()


@pytest.fixture
def accounts(make: Accounts) -> dict[str, Any]:
    haidian = make.school("海淀实验小学", "famous")
    uploader = make.user("up@haidian.cn", haidian, "uploader", password="correct horse")
    return {
        "uploader": uploader,
        "auth": make.bearer(uploader),
        "other": make.bearer(make.user("up@shyz.cn", make.school("上海第一中学", "famous"), "uploader")),
    }


def _lesson(server: TusServer, auth: dict[str, str]) -> int:
    course = requests.post(server.api("/courses"), json=COURSE, headers=auth, timeout=10).json()
    lesson = requests.post(
        server.api(f"/courses/{course['id']}/lessons"), json={"title": "配方法"}, headers=auth, timeout=10
    )
    return int(lesson.json()["id"])


def _video(size: int = SIZE, seed: int = 0) -> bytes:
    """Bytes that sniff as MP4 (an ftyp box), then filler that differs per seed."""
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return (head + hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def _uploader(server: TusServer, auth: dict[str, str], data: bytes, **options: Any) -> Any:
    client = tus_client.TusClient(server.api("/uploads/"), headers=auth)
    return client.uploader(
        file_stream=io.BytesIO(data),
        chunk_size=options.pop("chunk_size", CHUNK),
        retries=options.pop("retries", 3),
        retry_delay=options.pop("retry_delay", 0),
        metadata=options.pop("metadata", {"filename": "第一课.mp4", "filetype": "video/mp4"}),
        **options,
    )


def _state(server: TusServer, url: str, auth: dict[str, str]) -> dict[str, Any]:
    response = requests.get(url, headers=auth, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_complete_upload_duplicate_and_material(server: TusServer, accounts: dict[str, Any], db: Session) -> None:
    auth = accounts["auth"]
    data = _video()
    sha256 = hashlib.sha256(data).hexdigest()
    uploader = _uploader(server, auth, data, upload_checksum=True)
    uploader.upload()
    state = _state(server, uploader.url, auth)
    assert (state["status"], state["offset"], state["sha256"]) == ("complete", len(data), sha256)
    assert urlsplit(uploader.url).path == f"/api/v1/uploads/{state['id']}"

    # The same bytes again, in other chunks: one blob.
    again = _uploader(server, auth, data, chunk_size=CHUNK + 12345)
    again.upload()
    assert again.url != uploader.url and _state(server, again.url, auth)["sha256"] == sha256
    assert db.scalar(select(func.count()).select_from(Blob)) == 1

    lesson = _lesson(server, auth)
    made = requests.post(
        server.api(f"/lessons/{lesson}/materials"),
        json={"upload": uploader.url, "title": "第一课"},
        headers=auth,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    material = made.json()
    assert material["status"] == "pending" and material["original"]["sha256"] == sha256
    download = requests.get(server.url + material["original"]["url"], headers=auth, timeout=30)
    assert hashlib.sha256(download.content).hexdigest() == sha256


def _cut_patch(server: TusServer, url: str, auth: dict[str, str], offset: int, body: bytes) -> None:
    """Send a PATCH announcing ``len(body)`` bytes, send half of them, and drop the connection."""
    path = urlsplit(url).path
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: {auth['Authorization']}\r\nUpload-Offset: {offset}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 2])
        sock.shutdown(socket.SHUT_RDWR)


def _offset(server: TusServer, url: str, auth: dict[str, str]) -> int | None:
    response = requests.head(url, headers={**TUS, **auth}, timeout=10)
    return int(response.headers["Upload-Offset"]) if response.status_code == 200 else None


def test_the_upload_listener_serves_uploads_only(server: TusServer) -> None:
    if not server.streaming:
        pytest.skip("plain `hub serve` has no upload listener")
    direct = f"http://127.0.0.1:{server.upload_port}"
    assert requests.options(f"{direct}/api/v1/uploads/", timeout=10).status_code == 204
    # Pages and downloads stay on waitress, whose I/O loop waits on slow readers instead of a thread.
    assert requests.get(f"{direct}/api/v1/openapi.json", timeout=10).status_code == 404
    assert requests.get(f"{direct}/api/v1/uploadsX", timeout=10).status_code == 404
    assert requests.get(f"{server.url}/api/v1/openapi.json", timeout=10).status_code == 200


@pytest.mark.parametrize("declared", [False, True], ids=["no-sha256", "declared-sha256"])
def test_interrupted_upload_resumes_from_the_server_offset(
    server: TusServer, accounts: dict[str, Any], declared: bool
) -> None:
    # Neither way sends per-chunk checksums; with the file's sha256 declared, the server also
    # checks the resumed file as a whole when its last byte arrives.
    auth = accounts["auth"]
    data = _video(seed=1)
    metadata = {"filename": "第一课.mp4", "filetype": "video/mp4"}
    if declared:
        metadata["sha256"] = hashlib.sha256(data).hexdigest()
    first = _uploader(server, auth, data, metadata=metadata)
    first.upload(stop_at=2 * CHUNK)
    assert first.get_offset() == 2 * CHUNK

    _cut_patch(server, first.url, auth, 2 * CHUNK, data[2 * CHUNK : 3 * CHUNK])
    if server.streaming:
        # Streamed, the PATCH reached the app as it arrived: the bytes that got through before
        # the cut are kept (no checksum was sent to hold them back). nginx may still have held
        # a few KiB of the half sent when the client left.
        wait_until(lambda: (_offset(server, first.url, auth) or 0) > 2 * CHUNK, 30, "the bytes before the cut")
        kept = _offset(server, first.url, auth)
        assert kept is not None and kept <= 2 * CHUNK + CHUNK // 2
    else:
        # waitress runs the app only once a body is complete: a cut request adds nothing.
        time.sleep(0.3)
        assert first.get_offset() == 2 * CHUNK  # and loses nothing

    # A new client (a new process, a reopened laptop) that only knows the URL.
    resumed = _uploader(server, auth, data, url=first.url)
    assert resumed.offset == (kept if server.streaming else 2 * CHUNK)
    resumed.upload()
    assert _state(server, first.url, auth)["sha256"] == hashlib.sha256(data).hexdigest()


def test_the_declared_sha256_is_checked_when_the_last_byte_arrives(
    server: TusServer, accounts: dict[str, Any], db: Session
) -> None:
    auth = accounts["auth"]
    data = _video(seed=7)
    sha256 = hashlib.sha256(data).hexdigest()
    meta = {"filename": "第一课.mp4", "filetype": "video/mp4"}
    right = _uploader(server, auth, data, metadata={**meta, "sha256": sha256})
    right.upload()
    assert _state(server, right.url, auth)["sha256"] == sha256

    # Another file under a sha256 that is not its own (say, the file changed on the client's
    # disk): every chunk is taken, the last one answers 422, and nothing of it is stored.
    other = _video(seed=8)
    wrong = _uploader(server, auth, other, metadata={**meta, "sha256": sha256}, retries=0)
    with pytest.raises(TusCommunicationError) as refused:
        wrong.upload()
    assert refused.value.status_code == 422
    assert b"sha256_mismatch" in refused.value.response_content
    assert wrong.offset == len(other) - (len(other) % CHUNK or CHUNK)  # up to the last chunk
    gone = requests.get(wrong.url, headers=auth, timeout=10)
    assert gone.status_code == 410 and "did not match the sha256" in gone.json()["error"]["message"]
    assert db.scalar(select(func.count()).select_from(Blob)) == 1  # the right file's, untouched
    assert db.get(Blob, hashlib.sha256(other).hexdigest()) is None


class _Slow(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.2)
        return super().read(size)


def test_upload_survives_a_server_restart(server: TusServer, accounts: dict[str, Any], db: Session) -> None:
    auth = accounts["auth"]
    data = _video(seed=2)
    uploader = _uploader(server, auth, data, chunk_size=MiB, retries=60, retry_delay=0.5)
    # A slow sender (0.2 s per chunk), so the restart surely lands mid-upload.
    uploader.file_stream = _Slow(data)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            uploader.upload()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: uploader.url is not None and uploader.offset >= 2 * MiB, 30, "two chunks to arrive", 0.02)
    assert uploader.offset < len(data)  # the restart below lands mid-upload
    server.restart()
    thread.join(timeout=90)
    assert not thread.is_alive() and not failure, failure
    assert server.starts == 2
    assert _state(server, uploader.url, auth)["sha256"] == hashlib.sha256(data).hexdigest()
    assert db.scalar(select(func.count()).select_from(Upload)) == 1  # resumed, never started over


def test_protocol_errors_over_http(server: TusServer, accounts: dict[str, Any], db: Session) -> None:
    auth, other = accounts["auth"], accounts["other"]
    http = requests.Session()
    created = http.post(
        server.api("/uploads/"),
        headers={**TUS, **auth, "Upload-Length": "10000", "Upload-Metadata": "filename YS5tcDQ="},
        timeout=10,
    )
    assert created.status_code == 201
    url = server.url + created.headers["Location"]
    patch = {**TUS, **auth, "Content-Type": "application/offset+octet-stream"}
    body = _video(4096, seed=3)

    def send(headers: dict[str, str], data: bytes = body, target: str = url) -> requests.Response:
        return http.patch(target, headers=headers, data=data, timeout=10)

    assert send({**patch, "Upload-Offset": "0"}).status_code == 204
    statuses = {
        "offset mismatch": send({**patch, "Upload-Offset": "0"}).status_code,
        "version": send({**patch, "Upload-Offset": "4096", "Tus-Resumable": "0.2.0"}).status_code,
        "past the length": send({**patch, "Upload-Offset": "4096"}, body * 2).status_code,
        "content type": send({**patch, "Upload-Offset": "4096", "Content-Type": "text/plain"}).status_code,
        "bad offset": send({**patch, "Upload-Offset": "-1"}).status_code,
        "other school": send({**patch, **other, "Upload-Offset": "4096"}).status_code,
        "too large": http.post(
            server.api("/uploads/"), headers={**TUS, **auth, "Upload-Length": str(10**15)}
        ).status_code,
    }
    mismatch = send({**patch, "Upload-Offset": "4096", "Upload-Checksum": "sha1 " + "A" * 27 + "="})
    assert mismatch.status_code == 460 and mismatch.reason == "Checksum Mismatch"
    assert mismatch.headers["Tus-Resumable"] == "1.0.0" and mismatch.json()["error"]["code"] == "checksum_mismatch"
    assert statuses == {
        "offset mismatch": 409,
        "version": 412,
        "past the length": 413,
        "content type": 415,
        "bad offset": 400,
        "other school": 404,
        "too large": 413,
    }
    head = http.head(url, headers={**TUS, **auth}, timeout=10)
    assert head.headers["Upload-Offset"] == "4096" and head.headers["Cache-Control"] == "no-store"

    db.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert http.head(url, headers={**TUS, **auth}, timeout=10).status_code == 410
    db.execute(update(Upload).values(expires_at=utcnow() + timedelta(days=1)))
    db.commit()
    assert http.delete(url, headers={**TUS, **auth}, timeout=10).status_code == 204
    assert http.head(url, headers={**TUS, **auth}, timeout=10).status_code == 404
    assert send({**patch, "Upload-Offset": "4096"}).status_code == 404


@needs_chromium
def test_browser_upload_pauses_retries_and_reaches_100_percent(
    server: TusServer, accounts: dict[str, Any], tmp_path: Path
) -> None:
    lesson = _lesson(server, accounts["auth"])
    video = tmp_path / "第一课 配方法.mp4"
    data = _video(12 * MiB, seed=4)  # three 5 MiB chunks from the page
    video.write_bytes(data)
    with chromium() as browser:
        page = browser.new_page(locale="zh-CN")  # the script's words come from the page, in its language
        page.goto(f"{server.url}/login?next=/upload/lessons/{lesson}")
        page.fill("input[name=email]", "up@haidian.cn")
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/upload/lessons/{lesson}")
        # A slow link (4 MB/s up), so there is time to pause and to drop the connection.
        cdp = page.context.new_cdp_session(page)
        link = {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 4_000_000}
        cdp.send("Network.emulateNetworkConditions", link)
        page.fill("#upload-form input[name=title]", "第一课")
        page.set_input_files("#upload-form input[type=file]", str(video))
        page.click("#upload-form button[type=submit]")
        progress = "(document.querySelector('#transfers progress') || {value: 0}).value"
        # Predicates as functions: Playwright evals a bare expression inside the page,
        # which the hub's Content-Security-Policy (no 'unsafe-eval') refuses.
        page.wait_for_function(f"() => {progress} >= 5", timeout=30_000)

        page.click("#transfers button.pause")
        # A pause lets the piece in flight finish (bytes a cut-off request carried would go again).
        page.locator("#transfers .state", has_text="已暂停").wait_for(timeout=30_000)
        paused_at = page.evaluate(progress)
        page.wait_for_timeout(1000)
        assert page.evaluate(progress) == paused_at  # nothing moves while paused
        page.click("#transfers button.resume")
        page.wait_for_function(f"() => {progress} >= 50", timeout=30_000)

        # The link drops: the page retries on its own and goes on from the server's offset.
        cdp.send("Network.emulateNetworkConditions", {**link, "offline": True})
        page.wait_for_function(
            "() => document.querySelector('#transfers .state').textContent.includes('秒后重试')", timeout=30_000
        )
        cdp.send("Network.emulateNetworkConditions", link)
        page.wait_for_function(f"() => {progress} === 100", timeout=60_000)
        assert page.inner_text("#transfers .pct") == "100 %"
        page.wait_for_selector("#materials li[data-material]", timeout=30_000)
        assert "第一课" in page.inner_text("#materials")
        assert "已添加" in page.inner_text("#transfers .state")
    materials = requests.get(server.api(f"/lessons/{lesson}"), headers=accounts["auth"], timeout=10).json()["materials"]
    assert len(materials) == 1
    material = materials[0]
    assert material["original"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert material["title"] == "第一课"


def test_tuspy_gives_up_cleanly_when_the_upload_is_gone(server: TusServer, accounts: dict[str, Any]) -> None:
    auth = accounts["auth"]
    data = _video(2 * MiB, seed=5)
    uploader = _uploader(server, auth, data, chunk_size=MiB)
    uploader.upload(stop_at=MiB)
    requests.delete(uploader.url, headers={**TUS, **auth}, timeout=10)
    with pytest.raises(TusCommunicationError):
        uploader.get_offset()


def test_a_stalled_connection_never_blocks_the_client_that_takes_over(
    server: TusServer, accounts: dict[str, Any]
) -> None:
    """A laptop closed mid-PATCH: its connection stays open, silent. A new client goes on (at once
    under waitress, which never ran the silent request; streamed, once the listener's idle timeout
    has ended it, keeping its bytes), and when the old request's bytes finally arrive, they change
    nothing."""
    auth = accounts["auth"]
    data = _video(seed=6)
    first = _uploader(server, auth, data)
    first.upload(stop_at=CHUNK)
    path = urlsplit(first.url).path
    late = data[CHUNK : 2 * CHUNK]
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: {auth['Authorization']}\r\nUpload-Offset: {CHUNK}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(late)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as stalled:
        stalled.sendall(head + late[: len(late) // 2])
        # The new client: same URL, the server's offset, every remaining chunk accepted.
        resumed = _uploader(server, auth, data, url=first.url)
        assert resumed.offset == CHUNK
        resumed.upload()
        sha256 = hashlib.sha256(data).hexdigest()
        assert _state(server, first.url, auth)["sha256"] == sha256
        # The old request completes at last: refused, the finished upload untouched.
        try:
            stalled.sendall(late[len(late) // 2 :])
            reply = stalled.recv(4096).decode(errors="replace")
        except ConnectionError:
            reply = ""
    if server.streaming:
        # Usually nginx's client_body_timeout ended the silent request long ago: closed, or 408.
        # On a loaded machine the new client can also finish before the old request reached the
        # listener at all; then its bytes arrive after the upload is complete and are refused.
        assert reply == "" or reply.startswith(("HTTP/1.1 408", "HTTP/1.1 403", "HTTP/1.1 409")), reply[:200]
    else:
        assert reply.startswith("HTTP/1.1 403") or reply.startswith("HTTP/1.1 409"), reply[:200]
    state = _state(server, first.url, auth)
    assert (state["status"], state["offset"], state["sha256"]) == ("complete", len(data), sha256)


def test_chunked_bodies_are_bounded_by_the_declared_length(server: TusServer, accounts: dict[str, Any]) -> None:
    auth = accounts["auth"]
    data = _video(2 * MiB, seed=7)
    created = requests.post(
        server.api("/uploads/"),
        headers={**TUS, **auth, "Upload-Length": str(len(data)), "Upload-Metadata": "filename YS5tcDQ="},
        timeout=10,
    )
    url = server.url + created.headers["Location"]
    patch = {**TUS, **auth, "Content-Type": "application/offset+octet-stream"}

    def chunked(body: bytes) -> Iterator[bytes]:  # a generator: requests sends Transfer-Encoding: chunked
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    first = requests.patch(url, headers={**patch, "Upload-Offset": "0"}, data=chunked(data[:MiB]), timeout=30)
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(MiB)
    past = requests.patch(
        url, headers={**patch, "Upload-Offset": str(MiB)}, data=chunked(data[MiB:] + b"!"), timeout=30
    )
    assert past.status_code == 413, past.text
    assert requests.head(url, headers={**TUS, **auth}, timeout=10).headers["Upload-Offset"] == str(MiB)
    done = requests.patch(url, headers={**patch, "Upload-Offset": str(MiB)}, data=chunked(data[MiB:]), timeout=30)
    assert done.status_code == 204
    assert _state(server, url, auth)["sha256"] == hashlib.sha256(data).hexdigest()


def test_only_the_owner_touches_an_upload_over_http(
    server: TusServer, accounts: dict[str, Any], make: Accounts
) -> None:
    """A colleague of the same school who learns the URL gets what a stranger gets: 404, and changes nothing."""
    auth = accounts["auth"]
    colleague = make.bearer(make.user("up2@haidian.cn", accounts["uploader"].school, "uploader"))
    data = _video(2 * MiB, seed=8)
    owners = _uploader(server, auth, data, chunk_size=MiB)
    owners.upload(stop_at=MiB)
    with pytest.raises(TusCommunicationError) as refused:
        _uploader(server, colleague, data, url=owners.url)  # a tus client resuming: HEAD first
    assert refused.value.status_code == 404
    patch = {**TUS, **colleague, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(MiB)}
    assert requests.patch(owners.url, headers=patch, data=data[MiB:], timeout=10).status_code == 404
    assert requests.delete(owners.url, headers={**TUS, **colleague}, timeout=10).status_code == 404
    assert requests.get(owners.url, headers=colleague, timeout=10).status_code == 404
    assert owners.get_offset() == MiB
    owners.upload()
    assert _state(server, owners.url, auth)["sha256"] == hashlib.sha256(data).hexdigest()


def test_quotas_and_the_disk_reserve_over_http(
    hub_env: dict[str, str], tmp_path: Path, accounts: dict[str, Any]
) -> None:
    """What a tus client meets at a quota: a final refusal with a message it can show, and nothing half made."""
    import shutil

    data_dir = Path(hub_env["HUB_DATA_DIR"])
    # 5 GiB under what the disk has free: small uploads fit, one declaring 10 GiB does not.
    reserve = shutil.disk_usage(data_dir).free - 5 * 1024**3
    env = {**hub_env, "HUB_UPLOAD_MAX_UNFINISHED": "2", "HUB_UPLOAD_DISK_RESERVE": str(reserve)}
    (tmp_path / "quotas").mkdir()
    served = TusServer(env, tmp_path / "quotas")
    try:
        auth = accounts["auth"]
        started = [_uploader(served, auth, _video(2 * MiB, seed=n), chunk_size=MiB) for n in (10, 11)]
        for uploader in started:
            uploader.upload(stop_at=MiB)
        third = _uploader(served, auth, _video(2 * MiB, seed=12), chunk_size=MiB)
        with pytest.raises(TusCommunicationError) as refused:
            third.upload()
        assert refused.value.status_code == 403
        assert "unfinished uploads" in (refused.value.response_content or b"").decode()
        started[0].upload()  # finishing one makes room for the next
        third.upload()
        assert _state(served, third.url, auth)["status"] == "complete"

        if STORAGE != "s3":  # with S3 only a part at a time waits on local disk (tests/unit/uploads)
            huge = requests.post(
                served.api("/uploads/"),
                headers={**TUS, **auth, "Upload-Length": str(10 * 1024**3), "Upload-Metadata": "filename YS5tcDQ="},
                timeout=10,
            )
            assert huge.status_code == 507, huge.text
            assert "too full" in huge.json()["error"]["message"]
    finally:
        served.process.stop()

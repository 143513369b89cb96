"""A failed transfer reads as one of a few translated reasons; the socket's own words stay for the technician."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from gettext import NullTranslations

import pytest

from hub.errors import HubError, Text, details, english
from hub.sync import network, wording
from hub.sync.client import SyncError, Upstream
from hub.uploads.terminal import _translations

ZH = _translations("zh").gettext
EN = NullTranslations().gettext
CJK = re.compile(r"[\u4e00-\u9fff]")


def english_words(text: str) -> list[str]:
    """Words of three letters or more left in a Chinese sentence, names and codes aside (TLS, DNS, HTTP, URLs)."""
    text = re.sub(r"\S*[/_.:\d]\S*", " ", text)  # URLs, paths, HUB_SETTINGS, numbers
    return [w for w in re.findall(r"[A-Za-z]{3,}", text) if not w.isupper()]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (an upstream hung mid-request)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    yield int(server.getsockname()[1])
    server.close()


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    """A port that answers anything with a plain HTTP line: what an https:// upstream that is not TLS gives."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _addr = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


def _failure(url: str, timeout: float = 60.0) -> SyncError:
    with pytest.raises(SyncError) as caught:
        Upstream(url, "token", timeout=timeout).json("GET", "/api/v1/sync/feed?since=0&limit=1")
    return caught.value


def _reads_in_chinese(exc: HubError, expected: str) -> None:
    zh = wording.render(wording.from_error(exc), ZH)
    assert expected in zh and zh.startswith("无法连接上级平台：") and not english_words(zh), zh
    en = wording.render(wording.from_error(exc), EN)
    assert not CJK.search(en) and en == exc.message, en


def test_a_closed_port_reads_as_refused_with_the_sockets_words_kept(tmp_path: object) -> None:
    exc = _failure(f"http://127.0.0.1:{_closed_port()}")
    _reads_in_chinese(exc, "上级平台拒绝连接")
    assert exc.message == "The upstream could not be reached: the upstream refused the connection (is it running?)."
    # The technician's detail: not in any reader's sentence, but in the run's English column.
    [detail] = details(wording.from_error(exc))
    assert "ConnectionRefusedError" in detail and "GET /api/v1/sync/feed" in detail, detail
    assert english(wording.from_error(exc)).endswith(f" [{detail}]")
    kept = json.loads(json.dumps(wording.kept(wording.from_error(exc), [])))
    assert detail in json.dumps(kept) and wording.message_of(kept, "", ZH) == wording.render(
        wording.from_error(exc), ZH
    )


def test_an_upstream_that_never_answers_reads_as_a_timeout(silent_port: int) -> None:
    _reads_in_chinese(_failure(f"http://127.0.0.1:{silent_port}", timeout=0.2), "上级平台没有及时响应")


def test_an_https_upstream_that_speaks_plain_http_reads_as_a_tls_failure(plain_http_port: int) -> None:
    _reads_in_chinese(_failure(f"https://127.0.0.1:{plain_http_port}"), "安全连接（TLS）失败")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "找不到上级平台的域名（DNS）"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "无法验证上级平台的证书（TLS）"),
        (ConnectionResetError(104, "Connection reset by peer"), "连接中断"),
        (http.client.RemoteDisconnected("Remote end closed connection"), "连接中断"),
        (http.client.IncompleteRead(b"", 10), "连接中断"),
        (OSError(101, "Network is unreachable"), "没有通往上级平台的网络路由"),
        (http.client.HTTPException("unexpected Content-Range 'bytes 0-9/10'"), "无法理解上级平台的回答"),
        (OSError(5, "Input/output error"), "网络错误"),
    ],
)
def test_each_low_level_failure_has_a_short_translated_reason(exc: Exception, expected: str) -> None:
    reason = network.reason(exc, "GET /api/v1/blobs/abc")
    assert wording.render(reason, ZH) == expected
    assert not CJK.search(str(reason)) and str(reason) == wording.render(reason, EN)
    assert details(reason) == [f"GET /api/v1/blobs/abc: {type(exc).__name__}: {exc}"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "拒绝了本服务器的令牌"),
        (404, "上级平台上没有"),
        (503, "上级平台正忙"),
        (500, "上级平台出错"),
        (422, "拒绝了请求"),
    ],
)
def test_an_error_status_reads_as_what_it_means_with_the_upstreams_words_kept(status: int, expected: str) -> None:
    said = "There is no such file (0123456789ab…)."
    message = Text("The upstream refused the manifest: %(reason)s.", reason=network.answered(status, said))
    zh = wording.render(message, ZH)
    assert expected in zh and f"HTTP {status}" in zh and not english_words(zh), zh
    assert details(message) == [f"HTTP {status}: {said}"]

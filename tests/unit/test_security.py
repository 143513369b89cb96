"""Security headers on every route, Secure cookies over https, and no shared caching of what is personal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from hub import create_app
from hub.db import get_database
from tests.conftest import Accounts, hub_settings
from tests.support.courses import SeededCourse, seed_course

SAFE = ("GET", "HEAD")


def _directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def _vary(response: Any) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()}


def _cookies(response: Any) -> list[str]:
    return response.headers.getlist("Set-Cookie")  # type: ignore[no-any-return]


def _urls(app: Flask, values: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, url, endpoint) for every route and method of the app, with `values` in its variables."""
    adapter = app.url_map.bind("localhost")
    values = {"table": "reach", **values}  # the reach CSV's table is one of a few names, not a number
    for rule in app.url_map.iter_rules():
        args = {name: values.get(name, "1") for name in rule.arguments}
        for method in sorted((rule.methods or set()) - {"OPTIONS"}):
            yield method, adapter.build(rule.endpoint, args, method=method), rule.endpoint


@pytest.fixture
def seeded(app: Flask, make: Accounts) -> tuple[SeededCourse, SeededCourse, Any]:
    school = make.school()
    uploader = make.user("up@haidian.cn", school, "uploader", password="correct horse")
    with get_database(app).session() as db:
        storage = app.extensions["hub.storage"]
        published = seed_course(storage, db, school.id, status="published")
        draft = seed_course(storage, db, school.id, status="draft", title="草稿课程")
    return published, draft, uploader


def _values(course: SeededCourse) -> dict[str, Any]:
    return {
        "course_id": course.course_id,
        "lesson_id": course.lesson_ids[0],
        "material_id": course.material_ids["video"],
        "sha256": course.by_role["video-240p"],
        "filename": "hub.css",
        "code": "en",
    }


def _assert_security_headers(response: Any, what: str) -> None:
    headers = response.headers
    assert headers.get("X-Frame-Options") == "DENY", what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "same-origin", what
    policy = _directives(headers.get("Content-Security-Policy", ""))
    assert policy.get("frame-ancestors") == ["'none'"], what
    if response.mimetype == "text/html":
        assert policy["default-src"] == ["'self'"], what
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"], what
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"], what
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"], what
        assert "'unsafe-eval'" not in headers["Content-Security-Policy"], what
    else:
        # JSON, blobs, static files: not documents to run anything in.
        assert policy["default-src"] == ["'none'"] and "sandbox" in policy, what


def test_every_route_sends_the_security_headers(
    app: Flask, client: FlaskClient, seeded: tuple[SeededCourse, SeededCourse, Any]
) -> None:
    published, _draft, _user = seeded
    seen = set()
    for method, url, endpoint in _urls(app, _values(published)):
        response = client.open(url, method=method)
        _assert_security_headers(response, f"{method} {url} → {response.status_code}")
        assert "Strict-Transport-Security" not in response.headers  # plain http: no HSTS
        response.close()
        seen.add(endpoint)
    assert {"catalog.home", "media_api.download_blob", "media.course_download", "static", "uploads.lesson_page"} <= seen


def test_what_a_signed_in_user_gets_is_never_kept_by_a_shared_cache(
    app: Flask, client: FlaskClient, seeded: tuple[SeededCourse, SeededCourse, Any], make: Accounts
) -> None:
    """Every GET route, with a token and then with a session, on the user's draft: private."""
    _published, draft, uploader = seeded
    bearer = make.bearer(uploader)
    login = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    signed_in = client.post("/login", data={"csrf_token": token, "email": "up@haidian.cn", "password": "correct horse"})
    assert signed_in.status_code in (302, 303)
    for credentials in ("token", "session"):
        other = app.test_client()  # the token alone, without the session's cookie
        browser, headers = (other, bearer) if credentials == "token" else (client, {})
        for method, url, endpoint in _urls(app, _values(draft)):
            if method not in SAFE or endpoint == "static":
                continue
            response = browser.open(url, method=method, headers=headers)
            what = f"{credentials}: {method} {url} → {response.status_code}"
            cache = response.headers.get("Cache-Control", "")
            assert "public" not in cache, what
            assert "private" in cache or "no-store" in cache, what
            if "no-store" not in cache:
                assert {"authorization", "cookie"} <= _vary(response), what
            _assert_security_headers(response, what)
            response.close()
        assert browser.get("/", headers=headers).text.count("up@haidian.cn") >= 1  # it was personal


def test_anonymous_pages_stay_cacheable_and_vary_on_credentials(
    client: FlaskClient, seeded: tuple[SeededCourse, SeededCourse, Any]
) -> None:
    published = seeded[0]
    for url in ("/", f"/courses/{published.course_id}", f"/lessons/{published.lesson_ids[0]}"):
        page = client.get(url)
        assert page.headers["Cache-Control"] == "public, max-age=60", url
        assert {"authorization", "cookie", "accept-language"} <= _vary(page), url


def _app(hub_env: dict[str, str], **settings: str) -> Flask:
    app = create_app({**hub_settings(hub_env), **settings})
    app.config["TESTING"] = True

    @app.get("/_test/whoami")
    def whoami() -> dict[str, Any]:
        return {"scheme": request.scheme, "host": request.host, "addr": request.remote_addr}

    return app


def _cookie_setting_responses(app: Flask, **headers: str) -> list[Any]:
    """The session cookie (a login form), the language and the data-saver cookies."""
    client = app.test_client()
    return [
        client.get("/login", headers=headers),
        client.get("/language/en", headers=headers),
        client.post("/preferences/data-saver", data={"data_saver": "0"}, headers=headers),
    ]


def _assert_cookies(responses: list[Any], secure: bool) -> None:
    names = set()
    for response in responses:
        cookies = _cookies(response)
        assert cookies, response.request.path
        for cookie in cookies:
            names.add(cookie.split("=", 1)[0])
            attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
            assert ("secure" in attributes) is secure, cookie
            assert "httponly" in attributes, cookie
        hsts = response.headers.get("Strict-Transport-Security")
        assert (hsts == "max-age=31536000") is secure, hsts
    assert {"session", "data_saver"} <= names and len(names) >= 3, names


def test_cookies_are_secure_when_the_public_url_is_https(hub_env: dict[str, str]) -> None:
    app = _app(hub_env, HUB_PUBLIC_URL="https://hub.example.cn")
    _assert_cookies(_cookie_setting_responses(app), secure=True)


def test_cookies_are_secure_behind_a_trusted_https_proxy(hub_env: dict[str, str]) -> None:
    app = _app(hub_env, HUB_TRUSTED_PROXIES="1")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3", "X-Forwarded-Host": "hub.example.cn"}
    _assert_cookies(_cookie_setting_responses(app, **forwarded), secure=True)
    seen = app.test_client().get("/_test/whoami", headers=forwarded).json
    assert seen == {"scheme": "https", "host": "hub.example.cn", "addr": "10.1.2.3"}
    # The proxy appends to what the client sent: only the last (its own) value counts.
    spoofed = {"X-Forwarded-Proto": "https, http", "X-Forwarded-For": "6.6.6.6, 10.1.2.3"}
    _assert_cookies(_cookie_setting_responses(app, **spoofed), secure=False)
    assert app.test_client().get("/_test/whoami", headers=spoofed).json["addr"] == "10.1.2.3"


def test_two_trusted_proxies(hub_env: dict[str, str]) -> None:
    app = _app(hub_env, HUB_TRUSTED_PROXIES="2")
    two_hops = {"X-Forwarded-Proto": "https, http", "X-Forwarded-For": "10.1.2.3, 192.168.0.5"}
    seen = app.test_client().get("/_test/whoami", headers=two_hops).json
    assert (seen["scheme"], seen["addr"]) == ("https", "10.1.2.3")


def test_forwarded_headers_are_ignored_unless_a_proxy_is_trusted(hub_env: dict[str, str]) -> None:
    app = _app(hub_env)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3", "X-Forwarded-Host": "evil.example"}
    _assert_cookies(_cookie_setting_responses(app, **forwarded), secure=False)
    seen = app.test_client().get("/_test/whoami", headers=forwarded).json
    assert seen == {"scheme": "http", "host": "localhost", "addr": "127.0.0.1"}


def test_cookies_are_plain_over_http(hub_env: dict[str, str]) -> None:
    _assert_cookies(_cookie_setting_responses(_app(hub_env)), secure=False)


def test_hsts_can_be_turned_off(hub_env: dict[str, str]) -> None:
    app = _app(hub_env, HUB_PUBLIC_URL="https://hub.example.cn", HUB_HSTS_MAX_AGE="0")
    response = app.test_client().get("/")
    assert "Strict-Transport-Security" not in response.headers
    assert all("secure" in c.lower() for c in _cookies(app.test_client().get("/login")))


def test_the_page_policy_lets_media_come_from_the_s3_endpoint(
    hub_env: dict[str, str], s3_endpoint: str, s3_bucket: str
) -> None:
    app = _app(
        hub_env,
        HUB_STORAGE="s3",
        HUB_S3_ENDPOINT_URL=s3_endpoint,
        HUB_S3_BUCKET=s3_bucket,
        HUB_PUBLIC_URL="https://hub.example.cn/hub",
    )
    policy = _directives(app.test_client().get("/").headers["Content-Security-Policy"])
    # blob: the MediaSource object URL of the lesson page's stream.js (never another origin's blob).
    assert policy["media-src"] == ["'self'", s3_endpoint, "blob:"] and policy["img-src"] == ["'self'", s3_endpoint]
    assert policy["script-src"] == ["'self'"]  # media only: never scripts from the bucket
    # The lesson page's stream.js fetches the media's byte ranges from the bucket (MSE); forms never go there.
    assert policy["connect-src"] == ["'self'", "https://hub.example.cn", s3_endpoint]
    assert policy["form-action"] == ["'self'", "https://hub.example.cn"]
    api = _directives(app.test_client().get("/api/v1/courses").headers["Content-Security-Policy"])
    assert api["default-src"] == ["'none'"]


def test_the_s3_origin_is_where_presigned_urls_point() -> None:
    from hub.config import Settings
    from hub.media.storage.s3 import S3Storage
    from hub.security import origin_of, storage_origin

    settings = Settings.load({"HUB_STORAGE": "s3", "HUB_S3_BUCKET": "oer-media", "HUB_S3_REGION": "cn-north-1"})
    aws = S3Storage("oer-media", region="cn-north-1")
    origin = storage_origin(aws, settings)
    assert (
        origin is not None
        and origin.startswith("https://")
        and origin.endswith((".amazonaws.com", ".amazonaws.com.cn"))
    )
    assert origin == origin_of(aws.presigned_url("a" * 64) or "")


def test_a_storage_that_cannot_presign_yet_is_asked_again(hub_env: dict[str, str]) -> None:
    app = _app(hub_env)

    class Flaky:
        calls = 0

        def presigned_url(self, sha256: str, **_: Any) -> str:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("no credentials yet")
            return "https://media.example.cn:9000/bucket/ab/cd/x?X-Amz-Signature=1"

    policies = app.extensions["hub.security_policies"]
    policies.storage = Flaky()
    first = _directives(app.test_client().get("/").headers["Content-Security-Policy"])
    assert first["media-src"] == ["'self'", "blob:"]
    # The page cache keeps the anonymous home page's first answer: ask the policy again, not the cache.
    app.extensions["hub.page_cache"].clear()
    second = _directives(app.test_client().get("/").headers["Content-Security-Policy"])
    assert second["media-src"] == ["'self'", "https://media.example.cn:9000", "blob:"]
    app.extensions["hub.page_cache"].clear()
    app.test_client().get("/")
    assert Flaky.calls == 2  # kept once known


def test_origins() -> None:
    from hub.security import origin_of, page_policy

    assert origin_of("https://user:pw@S3.Example.cn:9000/bucket/key?x=1") == "https://s3.example.cn:9000"
    assert origin_of("") is None and origin_of("file:///etc/passwd") is None
    # img-src, media-src and connect-src (stream.js's range requests), once each
    assert page_policy(["https://a", "https://a"], []).count("https://a") == 3

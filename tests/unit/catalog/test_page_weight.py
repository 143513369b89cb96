"""Page weight on a realistic catalog: home and search, HTML + CSS gzipped, each ≤ 30 KB.

30 KB is about one second at 256 kbit/s: the budget of the issue for a rural teacher's
2G link. Posters and media are not counted (they load lazily, or on demand).
"""

from __future__ import annotations

import gzip
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.demo import seed_demo
from hub.search import services as search

BUDGET = 30 * 1024
GZIP = {"Accept-Encoding": "gzip"}


@pytest.fixture
def catalog(app: Flask, db: Session) -> None:
    with app.app_context():
        report = seed_demo(db, app.extensions["hub.storage"], media=False)
        assert report.courses > 20
        search.rebuild(db, app.extensions["hub.search"])


def _weight(client: FlaskClient, url: str, language: str) -> tuple[int, str]:
    """Bytes on the wire for the page and its stylesheets, and the page's text."""
    headers = {**GZIP, "Accept-Language": language}
    page = client.get(url, headers=headers)
    assert page.status_code == 200 and page.headers["Content-Encoding"] == "gzip"
    html = gzip.decompress(page.data).decode()
    total = len(page.data)
    for href in re.findall(r'<link rel="stylesheet" href="([^"]+)"', html):
        css = client.get(href, headers=headers)
        assert css.status_code == 200
        total += len(css.data)
    return total, html


@pytest.mark.slow
def test_home_and_search_pages_weigh_at_most_30_kb(catalog: None, client: FlaskClient) -> None:
    for language in ("zh-CN", "en"):
        home, home_html = _weight(client, "/", language)
        assert home_html.count("<tr>") >= 15 and re.search(r'grade=\d"[^>]*>\d+</a>', home_html)  # a full grid
        results, results_html = _weight(client, "/search?q=数学", language)
        hits = results_html.count('<a class="title"')
        assert hits >= 15, f"the search page should be full for a fair measure, got {hits} hits"
        assert "<details" in results_html  # the facets are part of the page
        measured = f"{language}: home {home / 1024:.1f} KB, search {results / 1024:.1f} KB ({hits} hits), gzip"
        print(measured)
        assert home <= BUDGET and results <= BUDGET, measured

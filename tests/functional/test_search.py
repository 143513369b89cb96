"""Search over real HTTP: a catalog made through the API, indexed by a real worker process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from hub.search.index import SearchIndex
from hub.search.query import QueryEngine, SearchParams
from tests.conftest import COURSE, Accounts
from tests.functional.conftest import LiveServer, Worker, wait_until


def _raw_index(hub_env: dict[str, str]) -> QueryEngine:
    """The index as the worker left it, read directly (no hydration hiding anything)."""
    return QueryEngine(SearchIndex(Path(hub_env["HUB_DATA_DIR"]) / "index"))


@pytest.mark.slow
def test_search_follows_the_catalog(
    live_server: LiveServer, start_worker: Callable[[], Worker], make: Accounts, hub_env: dict[str, str]
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    http = requests.Session()
    http.headers.update(auth)

    def api(method: str, path: str, **kwargs: Any) -> Any:
        response = http.request(method, live_server.api(path), timeout=10, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def search(**params: Any) -> dict[str, Any]:
        response = requests.get(live_server.api("/search"), params=params, timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    course = api("POST", "/courses", json=COURSE)
    api("POST", f"/courses/{course['id']}/lessons", json={"title": "一元二次方程的配方法", "unit": "第二十一章"})
    api("POST", f"/courses/{course['id']}/publish")
    other = api("POST", "/courses", json={**COURSE, "title": "统编版语文三年级", "subject": "chinese", "grades": [3]})
    api("POST", f"/courses/{other['id']}/lessons", json={"title": "古诗三首"})
    api("POST", f"/courses/{other['id']}/publish")

    start_worker()
    wait_until(lambda: search(q="二次方程")["total"] == 2, 60, "the worker to index the first course", interval=0.5)
    assert {h["title"] for h in search(q="二次方程")["hits"]} == {"一元二次方程", "一元二次方程的配方法"}
    wait_until(lambda: search(q="古詩")["total"] == 2, 30, "the second course in the index", interval=0.5)
    assert "古诗三首" in {h["title"] for h in search(q="gushi")["hits"]}

    # An edit, and a lesson added to a published course.
    api("PATCH", f"/courses/{course['id']}", json={"title": "人教版九年级数学 方程"})
    api("POST", f"/courses/{course['id']}/lessons", json={"title": "Quadratic equations in English"})
    wait_until(
        lambda: "人教版九年级数学 方程" in {h["title"] for h in search(q="方程", type="course")["hits"]},
        30,
        "the edit to reach the index",
        interval=0.5,
    )
    wait_until(lambda: search(q="quadratic")["total"] >= 1, 30, "the new lesson in the index", interval=0.5)
    page = requests.get(f"{live_server.url}/search", params={"q": "方程"}, timeout=10)
    assert page.status_code == 200 and "<mark>方程</mark>" in page.text

    # Withdrawal: gone from search at once (hydration), and from the index once the worker ran.
    api("POST", f"/courses/{other['id']}/withdraw")
    assert search(q="古诗")["total"] == 0 or search(q="古诗")["hits"] == []
    wait_until(
        lambda: _raw_index(hub_env).run(SearchParams(q="古诗")).total == 0,
        30,
        "the withdrawal in the index",
        interval=0.5,
    )
    assert search(q="古诗")["total"] == 0
    # Deletion of the withdrawn course changes nothing visible and keeps the index clean.
    http.delete(live_server.api(f"/courses/{other['id']}"), timeout=10).raise_for_status()
    assert _raw_index(hub_env).run(SearchParams(q="", filters=(("subject", "chinese"),))).total == 0

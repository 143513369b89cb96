"""A school server runs no worker: what a pull applies is searchable when the pull ends.

A real upstream (a `hub serve` process behind the counting proxy of test_sync) and a
school server whose `hub sync pull` runs as its own process, as cron runs it; no
`hub worker` anywhere on the school side.
"""

from __future__ import annotations

from urllib.parse import quote

from tests.functional import test_sync
from tests.functional.test_sync import FAMOUS, School, Upstream

# The upstream, its counting proxy and the school server of test_sync, as fixtures here too.
upstream = test_sync.upstream
proxy = test_sync.proxy
school = test_sync.school


def _found(school: School, words: str) -> list[str]:
    answer = school.app.test_client().get(f"/api/v1/search?q={quote(words)}")
    assert answer.status_code == 200, answer.data
    assert answer.json is not None
    return [hit["title"] for hit in answer.json["hits"]]


def test_after_a_pull_with_no_worker_search_check_finds_nothing_missing(upstream: Upstream, school: School) -> None:
    assert school.hub("sync", "subscribe", "--paired-with", FAMOUS).exit_code == 0
    pulled = school.process("sync", "pull")
    assert pulled.returncode == 0, pulled.stderr
    assert "search index updated: 1 courses" in pulled.stderr

    checked = school.hub("search", "check")
    assert checked.exit_code == 0, checked.output
    assert "missing: 0" in checked.output and "stale: 0" in checked.output
    assert "公式法" in _found(school, "公式法")  # a lesson of the mirrored course

    upstream.retitle("一元二次方程（修订版）")  # an edit upstream: the next pull reindexes it
    again = school.process("sync", "pull")
    assert again.returncode == 0, again.stderr
    assert school.hub("search", "check").exit_code == 0
    assert "一元二次方程（修订版）" in _found(school, "修订版")

"""Search on two web nodes behind nginx: each keeps its own index replica, following the change log.

Two ``hub serve`` nodes (each with its own ``HUB_INDEX_DIR`` and ``HUB_SEARCH_REPLICA=on``)
and two workers share one database, broker and storage (PostgreSQL, Redis and S3 in the
service run; SQLite and local storage in the embedded run, where the nodes share one
machine's database file). nginx balances requests between the nodes. A change written
through nginx must become findable on *both* nodes; how long that takes is the
freshness the README reports (target p95 ≤ 5 s; measured here and printed).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from benchmarks.downloads.nginx import nginx_binary, start_nginx
from tests.functional.conftest import HUB, LiveServer, Worker, free_port, uploader_bearer, wait_until

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make install)")
CHANGES = 20


def _nginx_config(workdir: Path, listen: int, nodes: list[int]) -> Path:
    """Round-robin over the nodes; a node that refuses connections is skipped (max_fails)."""
    workdir.mkdir(parents=True, exist_ok=True)
    servers = "".join(f"server 127.0.0.1:{port} max_fails=1 fail_timeout=2s; " for port in nodes)
    temp = "".join(
        f"{name}_temp_path {workdir}/{name}; " for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = workdir / "nginx.conf"
    config.write_text(
        f"worker_processes 1; daemon off; pid {workdir}/nginx.pid; error_log {workdir}/error.log warn;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{ access_log off; {temp}\n"
        f"  upstream hub_nodes {{ {servers}}}\n"
        f"  server {{ listen 127.0.0.1:{listen};\n"
        f'    location / {{ proxy_pass http://hub_nodes; proxy_http_version 1.1; proxy_set_header Connection "";\n'
        f"      proxy_set_header Host $http_host; proxy_next_upstream error timeout; }} }}\n"
        f"}}\n"
    )
    return config


class Cluster:
    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.tmp = tmp
        self.envs = [
            {**env, "HUB_SEARCH_REPLICA": "on", "HUB_INDEX_DIR": str(tmp / f"node-{name}" / "index")}
            for name in ("a", "b")
        ]
        self.nodes = [LiveServer(node_env, _own_dir(tmp / f"node-{i}")) for i, node_env in enumerate(self.envs)]
        # Two workers (media and everything else); with HUB_SEARCH_REPLICA they keep no index.
        self.workers = [Worker(self.envs[i], tmp / f"worker-{i}.log") for i in range(2)]
        self.port = free_port()
        self.nginx = start_nginx(
            _nginx_config(tmp / "nginx", self.port, [n.port for n in self.nodes]), tmp / "nginx.log"
        )
        self.url = f"http://127.0.0.1:{self.port}/api/v1"

        def up() -> bool:
            try:
                return requests.get(f"{self.url}/openapi.json", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, 20, "nginx in front of the two nodes")

    def restart(self, index: int) -> None:
        self.nodes[index].process.stop()
        self.nodes[index] = LiveServer(self.envs[index], _own_dir(self.tmp / f"node-{index}-again"))

    def stop(self) -> None:
        self.nginx.terminate()
        self.nginx.wait(timeout=10)
        for process in [*(n.process for n in self.nodes), *(w.process for w in self.workers)]:
            process.stop()


def _own_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def cluster(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(module_env, tmp_path_factory.mktemp("cluster"))
    yield made
    made.stop()


def _found(node: LiveServer, word: str) -> bool:
    response = requests.get(node.api("/search"), params={"q": word}, timeout=10)
    return response.status_code == 200 and response.json()["total"] > 0


def _word(i: int) -> str:
    return "quokka" + "".join(
        chr(ord("a") + int(d)) for d in f"{i:03d}"
    )  # quokkaaab: one word, never a stem of another


def test_a_change_through_one_node_is_found_on_both(cluster: Cluster, module_env: dict[str, str]) -> None:
    auth = uploader_bearer(module_env)
    created = requests.post(
        f"{cluster.url}/courses",
        headers=auth,
        json={"title": "勾股定理", "subject": "math", "grades": [8], "language": "zh", "license": "CC-BY-4.0"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    course = created.json()["id"]
    assert requests.post(
        f"{cluster.url}/courses/{course}/lessons", headers=auth, json={"title": "勾股定理的证明"}, timeout=10
    ).ok
    assert requests.post(f"{cluster.url}/courses/{course}/publish", headers=auth, timeout=10).ok
    wait_until(lambda: all(_found(node, "勾股定理") for node in cluster.nodes), 120, "both nodes to index the course")

    seconds: list[float] = []
    for i in range(CHANGES):
        word = _word(i)
        changed = requests.patch(
            f"{cluster.url}/courses/{course}", headers=auth, json={"title": f"勾股定理 {word}"}, timeout=10
        )
        assert changed.status_code == 200, changed.text
        started = time.monotonic()
        pending = set(range(len(cluster.nodes)))
        while pending and time.monotonic() - started < 60:
            pending = {n for n in pending if not _found(cluster.nodes[n], word)}
            if pending:
                time.sleep(0.05)
        assert not pending, f"{word} not found on node(s) {sorted(pending)} after 60 s"
        seconds.append(time.monotonic() - started)
    seconds.sort()
    p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
    print(f"\nfreshness over {CHANGES} changes, both nodes: p50 {statistics.median(seconds):.2f} s, p95 {p95:.2f} s")

    # A node that was down catches up from its cursor when it comes back.
    cluster.nodes[1].process.stop()
    word = _word(CHANGES)
    assert requests.patch(f"{cluster.url}/courses/{course}", headers=auth, json={"title": word}, timeout=10).ok
    cluster.restart(1)
    wait_until(lambda: _found(cluster.nodes[1], word), 60, "the restarted node to catch up")
    assert not _found(cluster.nodes[1], _word(CHANGES - 1))  # the old title is gone from its replica too

    # The replicas agree: each node's check matches the database, with the same digest.
    wait_until(lambda: _found(cluster.nodes[0], word), 30, "node a")
    digests = []
    for env in cluster.envs:
        checked = subprocess.run(
            [*HUB, "search", "check"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        digests.append(next(line for line in checked.stdout.splitlines() if line.startswith("digest: ")))
        assert "missing: 0" in checked.stdout and "stale: 0" in checked.stdout
    assert digests[0] == digests[1]
    assert "replicas" in checked.stdout and "disagrees" not in checked.stdout

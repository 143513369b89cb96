"""The teachers and uploaders of the mixed load test (benchmarks/load), as locust users.

Read by locust (``locust -f benchmarks/load/locustfile.py``), configured by the JSON
file named in ``HUB_LOAD_CONFIG`` that ``python -m benchmarks.load`` writes: the
catalog's id ranges, the search queries, the public blobs to download and the
uploader's bearer token and course. Every request is named by its action, so the
statistics come out per action.
"""

from __future__ import annotations

import base64
import json
import os
import random
from typing import Any

from locust import HttpUser, between, task

CONFIG: dict[str, Any] = json.loads(open(os.environ["HUB_LOAD_CONFIG"], encoding="utf-8").read())  # noqa: SIM115
# What a browser sends: the page cache keys on the language, and pages compress.
HEADERS = {"Accept-Language": "zh-CN,zh;q=0.9", "Accept-Encoding": "gzip"}
UPLOAD_BYTES = int(CONFIG["upload_bytes"])


class BrowsingTeacher(HttpUser):
    """Opens the home page, the course list, a course and its lessons, as a teacher looking for a lesson."""

    weight = 5
    wait_time = between(0.5, 2)

    @task(1)
    def home(self) -> None:
        self.client.get("/", headers=HEADERS, name="browse: home")

    @task(1)
    def course_list(self) -> None:
        page = random.randint(1, 20)
        self.client.get(f"/courses?page={page}", headers=HEADERS, name="browse: course list")

    @task(3)
    def course(self) -> None:
        self.client.get(f"/courses/{random.randint(1, CONFIG['courses'])}", headers=HEADERS, name="browse: a course")

    @task(4)
    def lesson(self) -> None:
        self.client.get(f"/lessons/{random.randint(1, CONFIG['lessons'])}", headers=HEADERS, name="browse: a lesson")


class SearchingTeacher(HttpUser):
    """Searches the catalog by page and by API with the search benchmark's queries."""

    weight = 3
    wait_time = between(0.5, 2)

    @task(2)
    def search_page(self) -> None:
        q = random.choice(CONFIG["queries"])
        self.client.get("/search", params={"q": q}, headers=HEADERS, name="search: page")

    @task(1)
    def search_api(self) -> None:
        q = random.choice(CONFIG["queries"])
        self.client.get("/api/v1/search", params={"q": q}, headers=HEADERS, name="search: API")


class DownloadingTeacher(HttpUser):
    """Downloads a lesson's file whole, as a teacher preparing a class offline."""

    weight = 2
    wait_time = between(1, 3)

    @task
    def download(self) -> None:
        sha = random.choice(CONFIG["blobs"])
        with self.client.get(f"/api/v1/blobs/{sha}", name="download: a file", stream=True) as response:
            for _chunk in response.iter_content(64 * 1024):
                pass


class Uploader(HttpUser):
    """An uploader: a file over tus (create + one PATCH), then an edit of a course that search must index."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {CONFIG['token']}"}
        self.body = os.urandom(UPLOAD_BYTES)
        self.edits = 0

    @task(1)
    def upload(self) -> None:
        name = base64.b64encode("第一课.pdf".encode()).decode()
        created = self.client.post(
            "/api/v1/uploads/",
            headers={
                **self.auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(self.body)),
                "Upload-Metadata": f"filename {name}",
            },
            name="upload: tus create",
        )
        if created.status_code != 201:
            return
        self.client.patch(
            created.headers["Location"],
            data=self.body,
            headers={
                **self.auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
            name=f"upload: tus PATCH {UPLOAD_BYTES // 1024} KiB",
        )

    @task(1)
    def index_update(self) -> None:
        self.edits += 1
        course = random.choice(CONFIG["own_courses"])
        self.client.patch(
            f"/api/v1/courses/{course}",
            json={"summary": f"负载测试 第{self.edits}次修改 {random.random()}"},
            headers=self.auth,
            name="index update: edit a course",
        )

"""``hub upload --wait``: follow materials until the workers have settled every rendition.

A material is settled when it is ``ready`` (every rendition made) or ``failed`` (the
pipeline gave up on one, with a reason): the hub sets that once all its renditions
are done, so polling the material is enough. The wait is bounded by ``--timeout``
because a script that uploads at night must end by morning even when no worker
runs; the exit status then says which of the three happened.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from hub.uploads.terminal import _, in_brackets, status_label

if TYPE_CHECKING:
    from hub.uploads.client import TusClient

POLL_SECONDS = 2.0  # a worker reports progress every few seconds; a 45-minute lesson takes minutes
SETTLED = ("ready", "failed")
EXIT_FAILED = 1
EXIT_TIMEOUT = 3


@dataclass
class Waited:
    materials: dict[int, dict[str, Any]] = field(default_factory=dict)
    timed_out: bool = False
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(m.get("status") == status for m in self.materials.values())

    def unsettled(self) -> int:
        return sum(m.get("status") not in SETTLED for m in self.materials.values())

    def renditions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for material in self.materials.values():
            for rendition in material.get("renditions", []):
                counts[rendition["status"]] = counts.get(rendition["status"], 0) + 1
        return counts

    def exit_code(self) -> int:
        if self.count("failed"):
            return EXIT_FAILED
        return EXIT_TIMEOUT if self.timed_out else 0

    def line(self) -> str:
        renditions = self.renditions()
        done = _(
            "Processing: %(ready)s materials ready, %(failed)s failed (%(renditions)s renditions ready) "
            "in %(seconds)s s.",
            ready=self.count("ready"),
            failed=self.count("failed"),
            renditions=renditions.get("ready", 0),
            seconds=round(self.seconds),
        )
        if self.timed_out:
            done += " " + _("Stopped waiting: %(left)s still processing.", left=self.unsettled())
        return done

    def as_json(self) -> dict[str, Any]:
        return {
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 1),
            "ready": self.count("ready"),
            "failed": self.count("failed"),
            "unsettled": self.unsettled(),
            "renditions": self.renditions(),
            "materials": [
                {
                    "id": m["id"],
                    "title": m.get("title", ""),
                    "status": m.get("status"),
                    "progress": m.get("progress", 0),
                    "error": m.get("error", ""),
                    "renditions": [
                        {k: r.get(k) for k in ("profile", "status", "bytes", "kbps", "error")}
                        for r in m.get("renditions", [])
                    ],
                }
                for m in self.materials.values()
            ],
        }


def wait_for_materials(
    client: TusClient,
    material_ids: list[int],
    timeout: float,
    *,
    show_progress: bool,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited:
    """Poll each unsettled material until all are settled or ``timeout`` seconds pass."""
    waited = Waited()
    start = clock()
    pending = list(dict.fromkeys(material_ids))
    while True:
        for material_id in pending:
            waited.materials[material_id] = client.get_json(f"/api/v1/materials/{material_id}")
        pending = [i for i in pending if waited.materials[i].get("status") not in SETTLED]
        waited.seconds = clock() - start
        if show_progress:
            _show(waited)
        if not pending:
            break
        if waited.seconds >= timeout:
            waited.timed_out = True
            break
        sleep(min(POLL_SECONDS, max(0.0, timeout - waited.seconds)))
    if show_progress:
        click.echo(err=True)  # end the progress line
    for material in waited.materials.values():
        say(_material_line(material))
    return waited


def _show(waited: Waited) -> None:
    materials = list(waited.materials.values())
    progress = sum(100 if m.get("status") in SETTLED else m.get("progress", 0) for m in materials)
    percent = round(progress / len(materials)) if materials else 100
    text = _(
        "Processing: %(settled)s of %(total)s materials done, %(failed)s failed · %(percent)s%% · %(seconds)s s",
        settled=len(materials) - waited.unsettled(),
        total=len(materials),
        failed=waited.count("failed"),
        percent=percent,
        seconds=round(waited.seconds),
    )
    sys.stderr.write("\r" + text + "\x1b[K")  # carriage return, then erase what a longer line left
    sys.stderr.flush()


def _material_line(material: dict[str, Any]) -> str:
    renditions = in_brackets([f"{r['profile']} {status_label(r['status'])}" for r in material.get("renditions", [])])
    line = _(
        "Material %(id)s “%(title)s”: %(status)s",
        id=material["id"],
        title=material.get("title", ""),
        status=status_label(material.get("status", "")),
    )
    line += renditions
    if material.get("status") == "failed" and material.get("error"):
        line += "\n    " + str(material["error"])
    return "  " + line

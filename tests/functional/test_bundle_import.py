"""Hostile USB bundles through the real `hub bundle import PATH`, on a school server that already mirrors a course.

Each hostile bundle is built from a genuine, validly signed update exported by the
upstream, so the manifest would be accepted and its course applied if the archive check
under test were missing: a refusal here is the check's doing, not a bad signature's.
The import runs as its own process, in a working directory of its own under the test's
tmp_path, so a relative name like ``../evil`` could only land inside the tree the test
watches. After every refusal the whole tree outside the two hubs' data directories is
unchanged, no sentinel path an entry names exists, the school's storage holds the same
blobs, and its catalog (courses, versions, lessons, renditions, mirror links) is the same.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app
from hub.catalog.models import Course
from hub.db import get_database
from hub.media.storage import Storage
from hub.sync import bundles
from hub.sync.models import MirrorCourse, MirrorState
from tests.conftest import COURSE
from tests.functional.conftest import HUB
from tests.functional.test_sync import (
    FAMOUS,
    RURAL,
    VIDEO,
    Upstream,
    blob_bytes,
    run_hub,
    upstream,  # noqa: F401 -- the fixture, found by its name
)

pytestmark = pytest.mark.slow

UPDATE_TITLE = "U盘版"
# Zeros deflate about a thousandfold: a ZIP of well under a megabyte that inflates to far
# more than the whole manifest accounts for (two videos and two posters, under 1 MB).
BOMB = 64 * 1024 * 1024


@dataclass
class School:
    env: dict[str, str]
    app: Flask
    data_dir: Path
    cwd: Path

    @property
    def storage(self) -> Storage:
        storage: Storage = self.app.extensions["hub.storage"]
        return storage

    def session(self) -> Session:
        return get_database(self.app).sessionmaker()

    def import_(self, path: Path) -> subprocess.CompletedProcess[str]:
        """`hub bundle import PATH` as its own process, as a school's admin would run it."""
        return subprocess.run(
            [*HUB, "bundle", "import", str(path)],
            env={**os.environ, **self.env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def catalog(self) -> list[tuple[Any, ...]]:
        """Every mirrored course with its version, lessons, renditions' blobs and mirror link."""
        with self.session() as session:
            links = {m.course_id: (m.upstream_id, m.revision) for m in session.scalars(select(MirrorCourse))}
            rows: list[tuple[Any, ...]] = []
            for course in session.scalars(select(Course).order_by(Course.id)):
                lessons = [
                    (
                        lesson.title,
                        sorted(
                            (r.profile, r.blob_sha256 or "")
                            for material in lesson.materials
                            for r in material.renditions
                        ),
                    )
                    for lesson in sorted(course.lessons, key=lambda lesson: lesson.position)
                ]
                rows.append((course.id, course.title, course.version, links.get(course.id), lessons))
            return rows

    def mirror_versions(self) -> tuple[int, int]:
        with self.session() as session:
            state = session.get(MirrorState, 1)
            assert state is not None
            return state.manifest_version, state.applied_version

    def blobs(self) -> list[str]:
        return sorted(self.storage.iter_hashes())


@pytest.fixture
def origin(upstream: Upstream) -> Upstream:  # noqa: F811 -- test_sync's hub with its course, under a name of our own
    return upstream


@pytest.fixture
def school(tmp_path: Path, sqlite_template: Path, origin: Upstream, hub_env: dict[str, str]) -> Iterator[School]:
    """A school server with no link at all, which has imported the upstream's course from a first bundle."""
    data_dir = tmp_path / "school"
    data_dir.mkdir()
    # A school server runs the embedded defaults (SQLite, local storage) whatever the upstream uses.
    shutil.copy(sqlite_template, data_dir / "hub.db")
    env = {
        "HUB_DATA_DIR": str(data_dir),
        "HUB_LOG_LEVEL": "WARNING",
        "HUB_UPSTREAM_PUBLIC_KEY": origin.public_key,
        "HUB_SYNC_DISK_RESERVE": "0",
    }
    cwd = tmp_path / "admin" / "home"
    cwd.mkdir(parents=True)
    app = create_app(env)
    school = School(env, app, data_dir, cwd)
    assert run_hub(hub_env, "sync", "subscribe", "--school", RURAL, "--paired-with", FAMOUS).exit_code == 0
    first = tmp_path / "first"
    exported = run_hub(hub_env, "bundle", "export", "--to", str(first), "--school", RURAL)
    assert exported.exit_code == 0, exported.output
    imported = run_hub(env, "bundle", "import", str(first))
    assert imported.exit_code == 0, imported.output
    shutil.rmtree(first)
    [course] = school.catalog()
    assert course[1] == COURSE["title"]
    yield school
    get_database(app).engine.dispose()


@dataclass
class Update:
    """A genuine incremental update: the upstream's course retitled and one video replaced."""

    manifest: bytes
    sha: str  # the new video's blob, the only one the school lacks
    data: bytes

    @property
    def blob(self) -> str:
        return bundles.blob_name(self.sha)


def export_update(origin: Upstream, school: School, hub_env: dict[str, str], to: Path) -> Update:
    state = to.parent / "state.json"
    assert run_hub(school.env, "sync", "status", "--state-out", str(state)).exit_code == 0
    origin.retitle(UPDATE_TITLE)
    data = os.urandom(VIDEO)
    sha = origin.set_rendition(origin.material(origin.lesson_ids[1]), "video-360p", data)
    exported = run_hub(hub_env, "bundle", "export", "--to", str(to), "--school", RURAL, "--state", str(state))
    assert exported.exit_code == 0, exported.output
    state.unlink()
    manifest = b"".join(_members(to)[bundles.MANIFEST_NAME])
    return Update(manifest, sha, data)


def _members(path: Path) -> dict[str, list[bytes]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return {name: [zf.read(name)] for name in zf.namelist()}
    with tarfile.open(path) as tar:
        out: dict[str, list[bytes]] = {}
        for member in tar.getmembers():
            stream = tar.extractfile(member)
            assert stream is not None
            out[member.name] = [stream.read()]
        return out


def _tree(root: Path, skip: set[Path]) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` (links not followed) with its mode, size and mtime, except under `skip`."""
    seen: dict[str, tuple[int, int, int]] = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        info = path.lstat()
        seen[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return seen


# -- hostile archives ---------------------------------------------------------------


def _zip_with(path: Path, update: Update, *extra: tuple[zipfile.ZipInfo, bytes], blob: bool = True) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(bundles.MANIFEST_NAME, update.manifest)
        if blob:
            zf.writestr(update.blob, update.data)
        for info, data in extra:
            zf.writestr(info, data)
    with zipfile.ZipFile(path) as zf:  # zipfile keeps the raw names we gave it
        assert [i.filename for i in zf.infolist()][-len(extra) :] == [info.filename for info, _ in extra]


def _tar_with(path: Path, update: Update, *extra: tarfile.TarInfo, blob: bool = True, mode: str = "w") -> None:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for name, data in [(bundles.MANIFEST_NAME, update.manifest), *([(update.blob, update.data)] if blob else [])]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@dataclass
class Hostile:
    what: str
    build: Callable[[Path], None]
    expect: str  # in the refusal's message: the check that caught it, not any other
    sentinels: list[Path]  # paths the archive names outside its target: none may appear
    suffix: str = ".zip"


def hostile_bundles(update: Update, tmp_path: Path, usb: Path) -> list[Hostile]:
    depth = len(usb.relative_to(tmp_path).parts)
    outside = tmp_path / "outside-sentinel"  # what links point at, and what `../` entries reach
    absolute = tmp_path / "absolute-sentinel"
    symlink = zipfile.ZipInfo(update.blob)  # named as the listed blob, so only the link check can refuse it
    symlink.create_system = 3  # unix, so the mode in external_attr is read
    symlink.external_attr = (stat.S_IFLNK | 0o777) << 16
    bomb = zipfile.ZipInfo(update.blob)  # listed, and its declared sizes are the true ones
    bomb.compress_type = zipfile.ZIP_DEFLATED

    def zip_bomb(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(bundles.MANIFEST_NAME, update.manifest)
            with zf.open(bomb, "w") as out:
                chunk = bytes(1024 * 1024)
                for _ in range(BOMB // len(chunk)):
                    out.write(chunk)
        assert path.stat().st_size < BOMB // 100

    def tar_bomb(path: Path) -> None:
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo(bundles.MANIFEST_NAME)
            info.size = len(update.manifest)
            tar.addfile(info, io.BytesIO(update.manifest))
            info = tarfile.TarInfo(update.blob)
            info.size = BOMB
            tar.addfile(info, io.BytesIO(bytes(BOMB)))

    return [
        Hostile(
            "a ZIP entry ../outside-sentinel",
            # As many ../ as lead from the drive's directory (and from the admin's cwd) to tmp_path.
            lambda p: _zip_with(p, update, (zipfile.ZipInfo("../" * depth + outside.name), b"x")),
            "'..' path component",
            [outside],
        ),
        Hostile(
            "a ZIP entry ../ inside the blobs directory",
            lambda p: _zip_with(p, update, (zipfile.ZipInfo(f"blobs/../../{outside.name}"), b"x")),
            "'..' path component",
            [outside, usb.parent / outside.name],
        ),
        Hostile(
            "a ZIP entry with an absolute path",
            lambda p: _zip_with(p, update, (zipfile.ZipInfo(str(absolute)), b"x")),
            "absolute path",
            [absolute],
        ),
        Hostile(
            "a ZIP symlink entry pointing outside",
            lambda p: _zip_with(p, update, (symlink, str(outside).encode()), blob=False),
            "symbolic link",
            [outside],
        ),
        Hostile(
            "a tar symlink pointing outside",
            lambda p: _tar_with(p, update, _link(update.blob, str(outside), tarfile.SYMTYPE), blob=False),
            "is a link",
            [outside],
            ".tar",
        ),
        Hostile(
            "a tar hard link to a file outside",
            lambda p: _tar_with(p, update, _link(update.blob, f"../../{outside.name}", tarfile.LNKTYPE), blob=False),
            "is a link",
            [outside],
            ".tar",
        ),
        Hostile(
            "a tar hard link to another entry of the bundle",
            lambda p: _tar_with(
                p, update, _link(update.blob, bundles.MANIFEST_NAME, tarfile.LNKTYPE), blob=False, mode="w:gz"
            ),
            "is a link",
            [],
            ".tar.gz",
        ),
        Hostile(
            "an entry the signed manifest does not list",
            lambda p: _zip_with(p, update, (zipfile.ZipInfo(f"blobs/{update.sha[:2]}/{'0' * 64}"), b"x")),
            "its manifest does not list",
            [],
        ),
        Hostile("a ZIP entry inflating past the budget", zip_bomb, "goes over the limit", []),
        Hostile("a tar.gz inflating past the budget", tar_bomb, "tar stream is longer than its limit", [], ".tar.gz"),
    ]


def test_hostile_bundles_are_refused_with_nothing_written_and_the_catalog_unchanged(
    origin: Upstream, school: School, hub_env: dict[str, str], tmp_path: Path
) -> None:
    usb = tmp_path / "usb" / "drive"
    usb.mkdir(parents=True)
    genuine = usb / "update.zip"
    update = export_update(origin, school, hub_env, genuine)
    assert not school.storage.exists(update.sha)
    catalog, blobs = school.catalog(), school.blobs()
    manifest_version, applied_version = school.mirror_versions()
    watched = {school.data_dir, Path(hub_env["HUB_DATA_DIR"])}

    for number, case in enumerate(hostile_bundles(update, tmp_path, usb)):
        bundle = usb / f"hostile-{number}{case.suffix}"
        case.build(bundle)
        before = _tree(tmp_path, watched)
        done = school.import_(bundle)
        assert done.returncode == 1, (case.what, done.stdout, done.stderr)
        assert "bundle refused" in done.stderr and case.expect in done.stderr, (case.what, done.stderr)
        assert "Traceback" not in done.stderr, (case.what, done.stderr)
        assert _tree(tmp_path, watched) == before, case.what
        for sentinel in case.sentinels:
            assert not os.path.lexists(sentinel), (case.what, sentinel)
        assert school.blobs() == blobs, case.what
        assert school.catalog() == catalog, case.what
        if "budget" not in case.what:
            # Refused before the manifest was accepted: the mirror's state is as it was.
            assert school.mirror_versions() == (manifest_version, applied_version), case.what
        bundle.unlink()

    # The same update, untouched, is accepted: what refused the others was their hostile part.
    done = school.import_(genuine)
    assert done.returncode == 0, done.stderr
    [(_id, title, _version, _mirror, lessons)] = school.catalog()
    assert title == UPDATE_TITLE
    assert update.sha in {sha for _title, renditions in lessons for _profile, sha in renditions}
    assert blob_bytes(school.storage, update.sha) == update.data


def test_an_over_budget_bundle_leaves_the_mirror_state_as_it_was(
    origin: Upstream, school: School, hub_env: dict[str, str], tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    update = export_update(origin, school, hub_env, usb / "update.zip")
    [bomb] = [c for c in hostile_bundles(update, tmp_path, usb) if c.what == "a ZIP entry inflating past the budget"]
    before = school.mirror_versions()
    with school.session() as session:
        envelope = session.get(MirrorState, 1).envelope  # type: ignore[union-attr]
    bomb.build(usb / "bomb.zip")
    done = school.import_(usb / "bomb.zip")
    assert done.returncode == 1 and bomb.expect in done.stderr, done.stderr
    with school.session() as session:
        assert session.get(MirrorState, 1).envelope == envelope  # type: ignore[union-attr]
    assert school.mirror_versions() == before


def test_a_bundle_round_trips_through_a_tar_gz(
    origin: Upstream, school: School, hub_env: dict[str, str], tmp_path: Path
) -> None:
    packed = tmp_path / "usb" / "update.tar.gz"
    packed.parent.mkdir()
    update = export_update(origin, school, hub_env, packed)
    with tarfile.open(packed, "r:gz") as tar:
        members = tar.getmembers()
    assert sorted(m.name for m in members) == sorted([bundles.MANIFEST_NAME, update.blob])
    assert all(m.isreg() and (m.uid, m.uname) == (0, "") for m in members)
    [(course_id, _title, version, _mirror, _lessons)] = school.catalog()

    done = school.import_(packed)
    assert done.returncode == 0, done.stderr
    [(same_id, title, new_version, _mirror, lessons)] = school.catalog()
    assert (same_id, title, new_version) == (course_id, UPDATE_TITLE, version + 1)
    assert update.sha in {sha for _title, renditions in lessons for _profile, sha in renditions}
    assert hashlib.sha256(blob_bytes(school.storage, update.sha)).hexdigest() == update.sha
    assert school.mirror_versions()[0] == school.mirror_versions()[1]  # applied whole

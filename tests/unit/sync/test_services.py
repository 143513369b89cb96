"""Sync services on one database: subscriptions, manifest versions, planning, applying, counts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hub import create_app
from hub.accounts import services as accounts
from hub.accounts.models import School, User
from hub.catalog import services as catalog
from hub.catalog.models import Course, Lesson, Material
from hub.catalog.schemas import CourseCreate, CourseUpdate, LessonCreate
from hub.db import get_database
from hub.errors import Conflict, Invalid, NotFound
from hub.jobs import INDEX_COURSE, Outbox
from hub.media import services as media_services
from hub.media.models import Blob, DownloadCount, Rendition
from hub.media.storage import Storage
from hub.media.storage.local import LocalStorage
from hub.sync import manifest as mf
from hub.sync import services
from hub.sync.models import MirrorCourse
from tests.conftest import COURSE, Accounts


@dataclass
class Catalog:
    db: Session
    storage: Storage
    famous: School
    rural: School
    uploader: User

    def course(self, *, subject: str = "math", grades: list[int] | None = None, lessons: int = 1) -> Course:
        body = {**COURSE, "subject": subject, "grades": grades or [9]}
        course = catalog.create_course(self.db, self.uploader, CourseCreate(**body))
        for n in range(lessons):
            lesson = catalog.create_lesson(self.db, self.uploader, course.id, LessonCreate(title=f"第{n + 1}课"))
            material = catalog.add_material(
                self.db,
                self.storage,
                self.uploader,
                lesson.id,
                io.BytesIO(os.urandom(500)),
                filename="a.mp4",
                title="v",
            )
            self.rendition(material, "video-360p", 4000)
            self.rendition(material, "video-240p", 2000)
            self.rendition(material, "poster", 300)
        catalog.publish_course(self.db, self.uploader, course.id)
        self.db.commit()
        return course

    def rendition(self, material: Material, profile: str, size: int, status: str = "ready") -> Rendition:
        stored = self.storage.store(io.BytesIO(os.urandom(size)))
        if self.db.get(Blob, stored.sha256) is None:
            self.db.add(Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4"))
        existing = next((r for r in material.renditions if r.profile == profile), None)
        if existing is None:
            existing = Rendition(material=material, profile=profile, status=status, blob_sha256=stored.sha256)
            self.db.add(existing)
        else:
            existing.blob_sha256, existing.status = stored.sha256, status
        self.db.flush()
        return existing


@pytest.fixture
def cat(app: Flask, db: Session, make: Accounts) -> Catalog:
    famous = make.school("海淀实验小学", "famous")
    rural = make.school("山村小学", "rural")
    uploader = make.user("up@famous.example", famous, "uploader")
    return Catalog(db, app.extensions["hub.storage"], famous, rural, uploader)


def verified(cat: Catalog, envelope: bytes, key: mf.Ed25519PrivateKey) -> mf.Manifest:
    """The index in `envelope` with every entry it lists, fetched as a school server would, checked."""
    index = mf.verify(envelope, key.public_key(), not_older_than=None, now=services.utcnow())
    bodies = {}
    for line in services.course_entries(cat.db, cat.rural, [c.id for c in index.courses]):
        data = json.loads(line)
        bodies[data["id"]] = mf.canonical_json(data["entry"])
    courses = [mf.entry_from_bytes(bodies[c.id], c) for c in index.courses]
    return mf.Manifest(index=index, courses=courses, bodies=bodies)


@pytest.fixture
def key() -> mf.Ed25519PrivateKey:
    return mf.generate_private_key()


# -- subscriptions -------------------------------------------------------------------


def test_subscriptions_select_courses_by_course_subject_and_pairing(cat: Catalog) -> None:
    math9 = cat.course(grades=[9])
    math3 = cat.course(grades=[3, 4])
    physics = cat.course(subject="physics", grades=[8])
    draft = catalog.create_course(cat.db, cat.uploader, CourseCreate(**COURSE))
    cat.db.commit()

    by_course = services.subscribe(cat.db, cat.rural, course_id=physics.id)
    assert mf.select_course_ids(cat.db, [by_course]) == [physics.id]
    by_subject = services.subscribe(cat.db, cat.rural, subject="math", grades=(1, 4))
    assert mf.select_course_ids(cat.db, [by_subject]) == [math3.id]
    with pytest.raises(Conflict, match="not paired"):
        services.subscribe(cat.db, cat.rural, paired_with=cat.famous.name)
    accounts.pair_schools(cat.db, cat.famous, cat.rural)
    paired = services.subscribe(cat.db, cat.rural, paired_with=cat.famous.name)
    # Everything published from the paired school; never a draft.
    assert mf.select_course_ids(cat.db, [paired]) == [math9.id, math3.id, physics.id]
    assert draft.id not in mf.select_course_ids(cat.db, services.list_subscriptions(cat.db, cat.rural.id))
    assert services.subscribe(cat.db, cat.rural, subject="math", grades=(1, 4)).id == by_subject.id  # no duplicate
    assert len(services.list_subscriptions(cat.db, cat.rural.id)) == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"course_id": 999}, NotFound),
        ({"subject": "alchemy"}, Invalid),
        ({"subject": "math", "grades": (6, 3)}, Invalid),
        ({"paired_with": "无此学校"}, NotFound),
        ({}, Invalid),
        ({"course_id": 1, "subject": "math"}, Invalid),
    ],
)
def test_bad_subscriptions_say_why(cat: Catalog, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        services.subscribe(cat.db, cat.rural, **kwargs)


def test_an_unpublished_course_cannot_be_subscribed(cat: Catalog) -> None:
    draft = catalog.create_course(cat.db, cat.uploader, CourseCreate(**COURSE))
    with pytest.raises(NotFound):
        services.subscribe(cat.db, cat.rural, course_id=draft.id)


# -- manifests -----------------------------------------------------------------------


def test_manifest_version_goes_up_exactly_when_content_changes(cat: Catalog, key: mf.Ed25519PrivateKey) -> None:
    course = cat.course()
    services.subscribe(cat.db, cat.rural, course_id=course.id)

    def issue() -> mf.Manifest:
        envelope = services.issue_manifest(cat.db, cat.rural, private_key=key, lifetime=3600)
        cat.db.commit()
        return verified(cat, envelope, key)

    first = issue()
    assert first.version == 1 and [c.id for c in first.courses] == [course.id]
    assert issue().version == 1  # fetched again, nothing changed
    # A re-transcode changes no course version, but it changes what the school must fetch.
    material = cat.db.scalars(select(Material).join(Lesson).where(Lesson.course_id == course.id)).first()
    assert material is not None
    cat.rendition(material, "video-360p", 4100)
    cat.db.commit()
    second = issue()
    assert second.version == 2
    assert second.courses[0].version == first.courses[0].version
    assert second.courses[0].revision != first.courses[0].revision
    catalog.update_course(cat.db, cat.uploader, course.id, CourseUpdate(title="新标题"))
    cat.db.commit()
    third = issue()
    assert (third.version, third.courses[0].version, third.courses[0].title) == (3, 2, "新标题")
    assert third.cursor == services.current_cursor(cat.db) > 0


def test_one_video_resolution_per_material_is_chosen(cat: Catalog) -> None:
    course = cat.course()
    material = cat.db.scalars(select(Material).join(Lesson).where(Lesson.course_id == course.id)).one()
    by_profile = {r.profile: r.blob_sha256 for r in material.renditions}
    [entry] = mf.build_courses(cat.db, [course.id])
    chosen = entry["lessons"][0]["materials"][0]["renditions"]
    assert [r["profile"] for r in chosen] == ["video-360p", "poster"]
    [entry] = mf.build_courses(cat.db, [course.id], video_profiles=("video-240p",))
    assert entry["lessons"][0]["materials"][0]["renditions"][0]["sha256"] == by_profile["video-240p"]
    # The preferred one not ready: the next one that is.
    cat.rendition(material, "video-360p", 10, status="failed")
    [entry] = mf.build_courses(cat.db, [course.id])
    assert [r["profile"] for r in entry["lessons"][0]["materials"][0]["renditions"]] == ["video-240p", "poster"]


def test_build_courses_leaves_out_unpublished_courses(cat: Catalog) -> None:
    course = cat.course()
    catalog.withdraw_course(cat.db, cat.uploader, course.id)
    assert mf.build_courses(cat.db, [course.id]) == []


# -- the school server side (same database, playing the mirror) ----------------------


def _manifest(cat: Catalog, key: mf.Ed25519PrivateKey) -> mf.Manifest:
    envelope = services.issue_manifest(cat.db, cat.rural, private_key=key, lifetime=3600)
    cat.db.commit()
    return verified(cat, envelope, key)


def test_plan_is_a_set_difference_and_the_budget_keeps_whole_courses(
    cat: Catalog, key: mf.Ed25519PrivateKey, tmp_path: Path
) -> None:
    first, second = cat.course(lessons=2), cat.course(lessons=1)
    services.subscribe(cat.db, cat.rural, course_id=first.id)
    services.subscribe(cat.db, cat.rural, course_id=second.id)
    manifest = _manifest(cat, key)
    mirror = LocalStorage(tmp_path / "mirror")
    work = services.plan(cat.db, mirror, manifest)
    assert set(work.missing) == set(manifest.files())
    first_bytes = sum(f.size for f in manifest.courses[0].files().values())
    # Room for the first course only: the second is skipped whole and said so.
    fitted = services.fit_budget(cat.db, mirror, work, first_bytes + 10)
    assert [c.id for c in fitted.apply] == [first.id]
    assert set(fitted.missing) == set(manifest.courses[0].files())
    assert len(fitted.skipped) == 1 and f"course {second.id}" in fitted.skipped[0]
    # What is already stored is not fetched again.
    some = next(iter(manifest.courses[1].files()))
    mirror.store(io.BytesIO(b"".join(cat.storage.open_range(some, 0, None))))
    assert some not in services.plan(cat.db, mirror, manifest).missing


def test_store_verified_keeps_nothing_that_does_not_match(tmp_path: Path) -> None:
    mirror = LocalStorage(tmp_path / "mirror")
    data = os.urandom(1000)
    expected = mf.ManifestFile(sha256=hashlib.sha256(data).hexdigest(), size=1000, media_type="video/mp4")
    with pytest.raises(services.BlobMismatch):
        services.store_verified(mirror, io.BytesIO(os.urandom(1000)), expected)
    assert list(mirror.iter_hashes()) == []
    # Bytes that happen to be a blob already stored are not deleted by a mismatch.
    other = os.urandom(10)
    kept = mirror.store(io.BytesIO(other)).sha256
    with pytest.raises(services.BlobMismatch):
        services.store_verified(mirror, io.BytesIO(other), expected)
    assert list(mirror.iter_hashes()) == [kept]
    services.store_verified(mirror, io.BytesIO(data), expected)
    assert mirror.exists(expected.sha256)


def test_applying_replaces_a_course_whole_or_not_at_all(
    cat: Catalog, key: mf.Ed25519PrivateKey, sqlite_template: Path, tmp_path: Path
) -> None:
    # The mirror is a second app with its own (empty) database and storage.
    course = cat.course(lessons=2)
    services.subscribe(cat.db, cat.rural, course_id=course.id)
    manifest = _manifest(cat, key)
    data_dir = tmp_path / "mirror"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "hub.db")
    mirror_app = create_app({"HUB_DATA_DIR": str(data_dir)})
    mirror_storage: Storage = mirror_app.extensions["hub.storage"]
    with get_database(mirror_app).session() as session:
        entry = manifest.courses[0]
        with pytest.raises(Conflict, match="lacks"):
            services.apply_course(session, mirror_storage, entry, body=b"", issued_at=manifest.issued_at)
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Course)) == 0
        for sha in entry.files():
            mirror_storage.store(io.BytesIO(b"".join(cat.storage.open_range(sha, 0, None))))
        local = services.apply_course(
            session, mirror_storage, entry, body=manifest.bodies[entry.id], issued_at=manifest.issued_at
        )
        session.commit()
        assert [lesson.title for lesson in local.lessons] == ["第1课", "第2课"]
        assert session.scalars(select(Outbox.args).where(Outbox.task == INDEX_COURSE)).all()[-1] == [local.id]
        first_id = local.id

        # A new revision with one lesson fewer replaces the old one in place.
        catalog.update_course(cat.db, cat.uploader, course.id, CourseUpdate(title="第二版"))
        lesson = cat.db.scalars(select(Lesson).where(Lesson.course_id == course.id).order_by(Lesson.position)).all()[1]
        cat.db.delete(lesson)
        cat.db.commit()
        again = _manifest(cat, key)
        newer = again.courses[0]
        local = services.apply_course(
            session, mirror_storage, newer, body=again.bodies[newer.id], issued_at=again.issued_at
        )
        session.commit()
        session.expire_all()
        assert local.id == first_id and local.title == "第二版" and len(local.lessons) == 1
        assert session.scalar(select(func.count()).select_from(Lesson)) == 1
        link = session.get(MirrorCourse, course.id)
        assert link is not None and link.revision == newer.revision
        # The entry is kept as applied, to merge the next pull's changes into.
        assert link.entry.encode() == again.bodies[newer.id] and link.issued_at == again.issued_at

        services.remove_course(session, course.id)
        session.commit()
        assert session.scalar(select(func.count()).select_from(Course)) == 0
    get_database(mirror_app).engine.dispose()


def test_a_replayed_manifest_is_refused_by_the_mirror_state(cat: Catalog, key: mf.Ed25519PrivateKey) -> None:
    course = cat.course()
    services.subscribe(cat.db, cat.rural, course_id=course.id)
    old = services.issue_manifest(cat.db, cat.rural, private_key=key, lifetime=3600)
    catalog.update_course(cat.db, cat.uploader, course.id, CourseUpdate(title="第二版"))
    new = services.issue_manifest(cat.db, cat.rural, private_key=key, lifetime=3600)
    cat.db.commit()
    assert services.accept_manifest(cat.db, new, key.public_key()).version == 2
    cat.db.commit()
    with pytest.raises(mf.ManifestRefused, match="replay"):
        services.accept_manifest(cat.db, old, key.public_key())
    assert services.mirror_state(cat.db).manifest_version == 2
    assert services.accept_manifest(cat.db, new, key.public_key()).version == 2  # the same one again is fine


def test_cached_entries_make_the_same_bytes_and_rebuild_only_what_changed(
    cat: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    courses = [cat.course(lessons=2) for _ in range(3)]
    ids = [c.id for c in courses]
    # A catalog written an hour ago: patches below leave its lessons out (PATCH_MARGIN is seconds).
    cat.db.execute(update(Lesson).values(changed_at=services.utcnow() - timedelta(hours=1)))
    cat.db.commit()
    cache = mf.EntryCache()
    built: list[list[int]] = []
    real_build = mf._build_lessons

    def counting_build(session: Session, lesson_ids: list[int], profiles: Any) -> Any:
        built.append(sorted(lesson_ids))
        return real_build(session, lesson_ids, profiles)

    def lesson_ids(course_id: int) -> list[int]:
        return list(cat.db.scalars(select(Lesson.id).where(Lesson.course_id == course_id).order_by(Lesson.id)))

    monkeypatch.setattr(mf, "_build_lessons", counting_build)
    index = cache.index(cat.db, ids)
    bodies = cache.entries(cat.db, ids)
    # The joined bytes are exactly the canonical JSON of the entry, and the revision its sha256.
    reference = {e["id"]: e for e in mf.build_courses(cat.db, ids)}
    for line in index:
        assert bodies[line.id] == mf.canonical_json({k: v for k, v in reference[line.id].items() if k != "revision"})
        assert line.revision == reference[line.id]["revision"] == hashlib.sha256(bodies[line.id]).hexdigest()
    assert built[0] == sorted(lid for cid in ids for lid in lesson_ids(cid))
    built.clear()

    assert cache.index(cat.db, ids) == index and built == []  # nothing changed, nothing rebuilt
    # A running transcode's progress writes are not changes.
    progressing = cat.db.scalars(
        select(Rendition).join(Material).join(Lesson).where(Lesson.course_id == ids[0])
    ).first()
    assert progressing is not None
    progressing.progress = 42
    cat.db.commit()
    assert cache.index(cat.db, ids) == index and built == []

    before_edit = services.utcnow()
    lesson = cat.db.get(Lesson, lesson_ids(ids[1])[0])
    cat.db.delete(lesson)
    cat.db.commit()
    after_delete = cache.index(cat.db, ids)
    assert built == [[]]  # the course's entry changes; none of its lessons is built again
    assert after_delete[1].revision != index[1].revision and after_delete[0] == index[0]

    material = cat.db.scalars(select(Material).join(Lesson).where(Lesson.course_id == ids[2])).first()
    assert material is not None
    cat.rendition(material, "poster", 301)
    cat.db.commit()
    after_poster = cache.index(cat.db, ids)
    assert built[-1] == [material.lesson_id]
    assert after_poster[2].revision != index[2].revision

    # A school server holding the entries of before the edits gets only what changed, and
    # merging it gives the new revisions exactly.
    patches = cache.patches(cat.db, ids, before_edit)
    for old, new in ((index[1], after_poster[1]), (index[2], after_poster[2])):
        patch = json.loads(patches[new.id])
        assert [lesson["id"] for lesson in patch["changed"]] == ([material.lesson_id] if new.id == ids[2] else [])
        merged = mf.merge_patch(bodies[old.id], patch)
        assert merged is not None and hashlib.sha256(mf.canonical_json(merged)).hexdigest() == new.revision

    catalog.withdraw_course(cat.db, cat.uploader, ids[0])
    cat.db.commit()
    assert [line.id for line in cache.index(cat.db, ids)] == ids[1:]


def test_drop_unreferenced_blobs_drops_only_what_nothing_uses(cat: Catalog) -> None:
    course = cat.course(lessons=2)
    material = cat.db.scalars(select(Material).join(Lesson).where(Lesson.course_id == course.id)).first()
    assert material is not None
    used_original = material.original_sha256
    used_rendition = material.renditions[0].blob_sha256
    orphans = [hashlib.sha256(f"orphan {n}".encode()).hexdigest() for n in range(3)]
    for sha in orphans:
        cat.db.add(Blob(sha256=sha, size=1, media_type="video/mp4"))
        cat.db.add(DownloadCount(blob_sha256=sha, day=date(2026, 1, 1), count=2))
    cat.db.flush()

    dropped = media_services.drop_unreferenced_blobs(cat.db, [*orphans, used_original, used_rendition, "not-a-hash"])
    cat.db.commit()

    assert sorted(dropped) == sorted(orphans)
    left = set(cat.db.scalars(select(Blob.sha256).where(Blob.sha256.in_([*orphans, used_original, used_rendition]))))
    assert left == {used_original, used_rendition}
    assert (
        cat.db.scalar(select(func.count()).select_from(DownloadCount).where(DownloadCount.blob_sha256.in_(orphans)))
        == 0
    )


def test_reindex_courses_queues_one_task_for_many(cat: Catalog) -> None:
    from hub.jobs import INDEX_COURSES

    services.reindex_courses(cat.db, [7, 8, 9])
    services.reindex_courses(cat.db, [10])
    services.reindex_courses(cat.db, [])
    cat.db.commit()

    rows = cat.db.execute(select(Outbox.task, Outbox.args).order_by(Outbox.id.desc()).limit(2)).all()
    assert [tuple(r) for r in rows] == [(INDEX_COURSE, [10]), (INDEX_COURSES, [[7, 8, 9]])]  # one argument: the list


def test_applying_keeps_each_rendition_with_its_material(
    cat: Catalog, key: mf.Ed25519PrivateKey, sqlite_template: Path, tmp_path: Path
) -> None:
    # Rows are inserted set-wise and matched back to their ids by value; two identical
    # materials in one lesson take the one-row-at-a-time path. Either way each rendition
    # must end up under the material the manifest lists it with.
    course = cat.course(lessons=3)
    services.subscribe(cat.db, cat.rural, course_id=course.id)
    manifest = _manifest(cat, key)
    entry = manifest.courses[0]
    first, second, third = entry.lessons
    twin = first.materials[0]
    lessons = [first.model_copy(update={"materials": [twin, twin]}), second, third]
    entry = entry.model_copy(update={"lessons": lessons})
    data_dir = tmp_path / "mirror"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "hub.db")
    mirror_app = create_app({"HUB_DATA_DIR": str(data_dir)})
    mirror_storage: Storage = mirror_app.extensions["hub.storage"]
    for sha in {**entry.files(), **{m.original.sha256: m for lesson in lessons for m in lesson.materials}}:
        mirror_storage.store(io.BytesIO(b"".join(cat.storage.open_range(sha, 0, None))))
    with get_database(mirror_app).session() as session:
        local = services.apply_course(session, mirror_storage, entry, body=b"", issued_at=manifest.issued_at)
        session.commit()
        got = [
            [
                (m.original_sha256, sorted((r.profile, r.blob_sha256) for r in m.renditions))
                for m in sorted(lesson.materials, key=lambda m: m.id)
            ]
            for lesson in local.lessons
        ]
    get_database(mirror_app).engine.dispose()
    want = [
        [(m.original.sha256, sorted((r.profile, r.sha256) for r in m.renditions)) for m in lesson.materials]
        for lesson in lessons
    ]
    assert got == want
    assert len({tuple(rs) for lesson in want for _o, rs in lesson}) == 3  # a mix-up would show

"""A whole course as one ZIP: the chosen file of every material, manifest.json, index.html.

`plan_course_download` is the use case (visibility through the catalog's rules, the
choice of file per material, the manifest); `hub.media.zipstore` lays the archive out
so its size is known before the first byte and any range of it can be sent.

Paths inside the ZIP are the titles a teacher knows (`01 配方法/01 配方法讲解.mp4`), made
safe for FAT32 USB drives and Windows (:func:`portable_name`), with the ZIP's UTF-8 flag
set (hub.media.zipstore): Windows 10's Explorer, 7-Zip, macOS and Linux unpack them as
written. (The Explorer of Windows 7 ignores the flag and garbles non-ASCII names; the
manifest and index.html still name every file.) A video's poster goes beside it under
the same name (`.jpg`), which players such as VLC show as its cover.

index.html, the offline page, is written in the requester's language (the page's own
gettext), sizes as the pages show them; so the ZIP's entity tag differs by language.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import PurePosixPath
from typing import Any

from flask_babel import gettext
from sqlalchemy.orm import Session

from hub.accounts.models import User
from hub.catalog.models import Course, Lesson, Material
from hub.db import utcnow
from hub.errors import Invalid, Text
from hub.i18n import N_, clock, current_locale, filesize
from hub.media.chapters import chapter_list, clean_chapters
from hub.media.models import Blob
from hub.media.profiles import PROFILES
from hub.media.storage import BlobNotFound, Storage
from hub.media.zipstore import ZipEntry, ZipLayout

QUALITIES = ("smallest", "best", "360p", "240p", "original")
"""`?quality=`: smallest / best playable rendition, one video profile, or the originals."""

MANIFEST_FORMAT = "oer-hub-course/1"

# Which rendition profiles can stand for a material of each kind, in the ZIP.
_CANDIDATES = {
    "video": ("video-360p", "video-240p"),
    "audio": ("audio",),
    "document": ("document",),
    "image": ("image",),
}


@dataclass(frozen=True)
class ChosenFile:
    """The file a material contributes: a rendition's blob, or the original."""

    material: Material
    profile: str  # a rendition profile, or "original"
    blob: Blob


@dataclass(frozen=True)
class CourseFile:
    path: str
    sha256: str
    bytes: int
    lesson: Lesson
    chosen: ChosenFile


@dataclass
class CourseDownload:
    """Everything the view needs: the archive, its name and its entity tag."""

    course: Course
    quality: str
    files: list[CourseFile]
    skipped: list[dict[str, Any]]
    layout: ZipLayout
    etag: str
    filename: str
    media_sha256s: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.layout.size


def choose_file(material: Material, quality: str) -> ChosenFile | None:
    """The file of `material` a course ZIP of `quality` carries, or None (not ready)."""
    if quality == "original":
        return ChosenFile(material, "original", material.original)
    profiles = _CANDIDATES[material.kind]
    candidates: dict[str, tuple[int, Blob]] = {
        r.profile: (r.blob.size, r.blob)
        for r in material.renditions
        if r.status == "ready" and r.blob is not None and r.profile in profiles
    }
    skipped = {r.profile for r in material.renditions if r.status == "skipped" and r.profile in profiles}
    if material.status == "ready" and (skipped or not candidates):
        # The pipeline skips a rendition that would be bigger than the original: the
        # original stands in for it. A school server has no skipped rows, only the ready
        # renditions it mirrors, and it mirrors such an original for this very reason
        # (hub.media.profiles.original_stands_in).
        candidates["original"] = (material.original.size, material.original)
    if not candidates:
        return None
    wanted = {"360p": "video-360p", "240p": "video-240p"}.get(quality)
    if wanted in candidates:
        profile = wanted
    elif wanted in skipped:
        profile = "original"
    else:
        by_size = sorted(candidates, key=lambda name: (candidates[name][0], name))
        # "best" is the biggest; "smallest", and a profile this material lacks, the cheapest to fetch.
        profile = by_size[-1] if quality == "best" else by_size[0]
    return ChosenFile(material, profile, candidates[profile][1])


def _poster(material: Material) -> Blob | None:
    return next(
        (r.blob for r in material.renditions if r.profile == "poster" and r.status == "ready" and r.blob is not None),
        None,
    )


def _extension(chosen: ChosenFile) -> str:
    if chosen.profile != "original":
        return PROFILES[chosen.profile].extension
    suffix = PurePosixPath(chosen.material.filename or "").suffix.lower()
    if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        return suffix
    guessed = mimetypes.guess_extension(chosen.blob.media_type) or ""
    return "" if guessed == ".bin" else guessed


def _number(index: int, count: int) -> str:
    return str(index).zfill(max(2, len(str(count))))


# Characters Windows and FAT32 refuse in a name, and the ASCII control characters.
_NOT_PORTABLE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
# Names Windows reserves for devices, with any extension ("CON.mp4" is the console too).
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))})
# Characters a title keeps in a name: each part stays short because Windows' paths end at
# 260 characters (the folder a teacher unpacks into counts too), FAT32's names at 255.
NAME_CHARS = 60


def portable_name(title: str, limit: int = NAME_CHARS) -> str:
    """``title`` as a file or folder name every common file system and Windows accepts.

    Forbidden and control characters become spaces, runs of white space one space,
    trailing dots and spaces go (Windows drops them, so two names would meet), and a
    device name such as ``CON`` or ``com1.txt`` gets a ``_`` in front. Chinese stays.
    """
    name = unicodedata.normalize("NFC", title)
    name = "".join(" " if _NOT_PORTABLE.match(ch) or unicodedata.category(ch)[0] == "C" else ch for ch in name)
    name = re.sub(r"\s+", " ", name).strip()[:limit].rstrip(". ")
    if name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        name = "_" + name
    return name or "_"


class _Names:
    """Unique names per folder, as a case-insensitive file system (FAT32, NTFS) compares them."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def claim(self, folder: str, stem: str, extension: str) -> str:
        candidate, number = stem, 1
        while f"{folder}/{candidate}{extension}".casefold() in self._taken:
            number += 1
            candidate = f"{stem} ({number})"
        self._taken.add(f"{folder}/{candidate}{extension}".casefold())
        return f"{folder}/{candidate}{extension}"


def _lesson_ref(lesson: Lesson) -> dict[str, Any]:
    """A file's lesson in manifest.json, with the textbook node it teaches (by keys, as every hub names it)."""
    ref: dict[str, Any] = {"id": lesson.id, "position": lesson.position, "title": lesson.title}
    node = lesson.textbook_node
    if node is not None:
        ref["node"] = {"textbook": node.textbook.key, "key": node.key, "kind": node.kind, "title": node.title}
    return ref


def _textbook(course: Course) -> dict[str, Any]:
    """The textbook the course follows, in the textbook file's format: another hub can import it as it is."""
    from hub.textbooks.files import to_data
    from hub.textbooks.services import to_spec

    return {"textbook": to_data(to_spec(course.textbook))} if course.textbook is not None else {}


def _manifest(course: Course, quality: str, files: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> bytes:
    updated = course.updated_at.isoformat() if course.updated_at else None
    document = {
        "format": MANIFEST_FORMAT,
        "course": {
            "id": course.id,
            **course.description(),
            "school": course.school.name,
            "status": course.status,
            "version": course.version,
            "updated_at": updated,
            **_textbook(course),
        },
        "quality": quality,
        "files": files,
        "skipped": skipped,
    }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


_PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:40em;margin:0 auto;padding:0 .5em;line-height:1.5}"
    "video,img{max-width:100%;height:auto}audio{width:100%}.meta{color:#555;font-size:.9em}"
)


@dataclass(frozen=True)
class TrackFile:
    """A subtitle track beside its video or audio in the ZIP: same name, then `.<language>.vtt`."""

    path: str
    sha256: str
    bytes: int
    language: str
    label: str
    data_url: str  # the same bytes, for index.html (see _track_tags)


def _tracks(file: CourseFile, storage: Storage) -> list[TrackFile]:
    material = file.chosen.material
    if material.kind not in ("video", "audio"):
        return []
    # "01-video-240p.mp4" → "01-video-240p.zh.vtt": players (VLC, mpv) pick up a subtitle
    # file named like the video on their own.
    stem = str(PurePosixPath(file.path).with_suffix(""))
    return [
        TrackFile(
            f"{stem}.{s.language}.vtt",
            s.blob_sha256,
            s.blob.size,
            s.language,
            s.label,
            _vtt_data_url(storage, s.blob_sha256),
        )
        for s in material.subtitles
    ]


_DATA_URLS: OrderedDict[str, str] = OrderedDict()
_DATA_URLS_MAX_CHARS = 16 * 1024 * 1024
_DATA_URLS_LOCK = threading.Lock()


def _vtt_data_url(storage: Storage, sha256: str) -> str:
    """The .vtt as a data: URL, cached by sha256 (the bytes behind a hash never change).

    Every course page plans its ZIP to show the size, so without the cache each view
    would read every track from storage (an S3 GET each).
    """
    with _DATA_URLS_LOCK:
        if sha256 in _DATA_URLS:
            _DATA_URLS.move_to_end(sha256)
            return _DATA_URLS[sha256]
    try:
        data = b"".join(storage.open_range(sha256, 0, None))
    except BlobNotFound:
        return ""  # the ZIP itself will say so when it reaches the file; the page stays up
    url = "data:text/vtt;charset=utf-8;base64," + base64.b64encode(data).decode()
    with _DATA_URLS_LOCK:
        _DATA_URLS[sha256] = url
        while sum(len(u) for u in _DATA_URLS.values()) > _DATA_URLS_MAX_CHARS and len(_DATA_URLS) > 1:
            _DATA_URLS.popitem(last=False)
    return url


def _track_tags(tracks: list[TrackFile]) -> str:
    # The bytes themselves, not the .vtt beside the video: Chromium treats every file:// URL as
    # a separate origin and refuses a <track> from one ("Unsafe attempt to load URL"), so a
    # teacher opening the unzipped folder would see no subtitles. The .vtt files stay for
    # players (VLC, mpv) and for a folder served over http.
    # On by default: the track in the page's language, else the first (as on the lesson page).
    shown = next((t for t in tracks if t.language == current_locale()), tracks[0] if tracks else None)
    return "".join(
        f'<track kind="subtitles" srclang="{t.language}" label="{escape(t.label, quote=True)}"'
        f' src="{t.data_url or escape(t.path, quote=True)}"{" default" if t is shown else ""}>'
        for t in tracks
    )


def _index_html(
    course: Course,
    lessons: list[tuple[Lesson, list[CourseFile]]],
    skipped: list[dict[str, Any]],
    tracks: dict[str, list[TrackFile]] | None = None,
    posters: dict[str, str] | None = None,
) -> bytes:
    """The offline page, in the requester's language (gettext), linking every file by a relative path."""
    e = escape
    language = "zh-CN" if current_locale() == "zh" else current_locale()
    # Outside the f-string: Babel's extractor does not look inside f-string expressions.
    offline_copy = gettext("Offline copy")
    out = [
        f'<!doctype html>\n<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(course.title)}</title>\n<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{e(course.title)}</h1>\n"
        f'<p class="meta">{e(course.school.name)}{" · " + e(course.teacher) if course.teacher else ""}'
        f" · {e(course.license)} · {e(offline_copy)}</p>\n"
    ]
    if course.textbook is not None:
        book = course.textbook
        out.append(f'<p class="meta">{e(book.edition)} {e(book.title)}</p>\n')
    if course.summary:
        out.append(f"<p>{e(course.summary)}</p>\n")
    skipped_ids = {s["material"] for s in skipped}
    for lesson, files in lessons:
        out.append(f"<h2>{e(lesson.title)}</h2>\n")
        # Where the lesson sits in the book: its unit, and the chapter node it teaches.
        place = [lesson.unit] if lesson.unit else []
        if lesson.textbook_node is not None and lesson.textbook_node.title != lesson.unit:
            place.append(lesson.textbook_node.title)
        if place:
            out.append(f'<p class="meta">{" · ".join(e(p) for p in place)}</p>\n')
        for f in files:
            href = e(f.path, quote=True)
            title = e(f.chosen.material.title)
            kind = f.chosen.material.kind
            out.append(f"<h3>{title}</h3>\n")
            subtitles = _track_tags((tracks or {}).get(f.path, []))
            poster = (posters or {}).get(f.path)
            cover = f' poster="{e(poster, quote=True)}"' if poster else ""
            if kind == "video":
                out.append(f'<video controls preload="metadata"{cover} src="{href}">{subtitles}</video>\n')
            elif kind == "audio":
                out.append(f'<audio controls preload="metadata" src="{href}">{subtitles}</audio>\n')
            elif kind == "image":
                out.append(f'<img src="{href}" alt="{title}">\n')
            chapters = chapter_list(f.chosen.material.chapters) if kind in ("video", "audio") else []
            if chapters:
                # Links to the file at each chapter's time (#t=): the browser opens it there, no script.
                links = " · ".join(
                    f'<a href="{href}#t={int(c["start"])}">{e(str(c["title"]))}</a> {clock(float(c["start"]))}'
                    for c in chapters
                )
                label = gettext("Chapters")
                out.append(f'<p class="meta">{e(label)}: {links}</p>\n')
            name = e(PurePosixPath(f.path).name)
            out.append(f'<p class="meta"><a href="{href}">{name}</a> · {e(filesize(f.bytes))}</p>\n')
        for material in lesson.materials:
            if material.id in skipped_ids:
                note = gettext("%(title)s: not processed yet, not in this download", title=material.title)
                out.append(f'<p class="meta">{e(note)}</p>\n')
    checksums = e(gettext("checksums (sha256) of every file"))
    out.append(f'<p class="meta"><a href="manifest.json">manifest.json</a> · {checksums}</p>\n</body>\n</html>\n')
    return "".join(out).encode()


def _sums(files: list[tuple[str, str]]) -> bytes:
    # `sha256sum -c SHA256SUMS` in the unpacked folder checks every file.
    return "".join(f"{sha}  {path}\n" for path, sha in files).encode()


def plan_course_download(
    session: Session, actor: User | None, storage: Storage, course_id: int, quality: str
) -> CourseDownload:
    """The ZIP of course `course_id` at `quality`, laid out but not read yet.

    Visibility is the catalog's: anonymous users and other schools see published
    courses only (NotFound otherwise). Materials without a file at this quality (still
    processing, failed) are listed under `skipped` in the manifest.
    """
    from hub.catalog import services as catalog

    if quality not in QUALITIES:
        raise Invalid(
            N_("Unknown download quality."),
            fields={"quality": Text(N_("one of: %(codes)s"), codes=", ".join(QUALITIES))},
        )
    course = catalog.get_course(session, actor, course_id)
    lessons = catalog.list_lessons(session, actor, course_id)
    chosen_by_lesson: list[tuple[Lesson, list[CourseFile]]] = []
    skipped: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    entries: list[ZipEntry] = []
    files: list[CourseFile] = []
    tracks: dict[str, list[TrackFile]] = {}  # by the path of the video or audio they belong to
    posters: dict[str, str] = {}  # the poster's path, by the path of its video
    poster_files: list[tuple[str, Blob]] = []
    names = _Names()
    for lesson_no, lesson in enumerate(lessons, start=1):
        lesson_files: list[CourseFile] = []
        materials = sorted(lesson.materials, key=lambda m: m.id)
        for material_no, material in enumerate(materials, start=1):
            chosen = choose_file(material, quality)
            if chosen is None:
                skipped.append({"material": material.id, "title": material.title, "status": material.status})
                continue
            # The number first keeps the course's order in any file manager.
            folder = portable_name(f"{_number(lesson_no, len(lessons))} {lesson.title}")
            stem = portable_name(f"{_number(material_no, len(materials))} {material.title}")
            path = names.claim(folder, stem, _extension(chosen))
            file = CourseFile(path, chosen.blob.sha256, chosen.blob.size, lesson, chosen)
            lesson_files.append(file)
            files.append(file)
            listed.append(
                {
                    "path": path,
                    "sha256": file.sha256,
                    "bytes": file.bytes,
                    "media_type": chosen.blob.media_type,
                    "lesson": _lesson_ref(lesson),
                    "material": {"id": material.id, "kind": material.kind, "title": material.title},
                    "profile": chosen.profile,
                }
                # Where its slides change (hub.media.chapters), for players that can use them.
                | ({"chapters": starts} if (starts := clean_chapters(material.chapters)) else {})
            )
            poster = _poster(material) if material.kind == "video" else None
            if poster is not None:
                # Beside the video, under its name: players take it as the cover.
                poster_path = names.claim(folder, str(PurePosixPath(path).with_suffix("").name), ".jpg")
                posters[path] = poster_path
                poster_files.append((poster_path, poster))
                listed.append(
                    {
                        "path": poster_path,
                        "sha256": poster.sha256,
                        "bytes": poster.size,
                        "media_type": poster.media_type,
                        "lesson": _lesson_ref(lesson),
                        "material": {"id": material.id, "kind": material.kind, "title": material.title},
                        "profile": "poster",
                        "poster": {"for": path},
                    }
                )
            if found := _tracks(file, storage):
                tracks[path] = found
                listed.extend(
                    {
                        "path": t.path,
                        "sha256": t.sha256,
                        "bytes": t.bytes,
                        "media_type": "text/vtt",
                        "lesson": _lesson_ref(lesson),
                        "material": {"id": material.id, "kind": material.kind, "title": material.title},
                        "subtitles": {"language": t.language, "label": t.label, "for": path},
                    }
                    for t in found
                )
        chosen_by_lesson.append((lesson, lesson_files))

    index_html = _index_html(course, chosen_by_lesson, skipped, tracks, posters)
    index_sha = hashlib.sha256(index_html).hexdigest()
    listed.insert(0, {"path": "index.html", "sha256": index_sha, "bytes": len(index_html), "media_type": "text/html"})
    manifest = _manifest(course, quality, listed, skipped)
    sums = _sums([(f["path"], f["sha256"]) for f in listed])
    entries = [
        ZipEntry("index.html", 0, data=index_html),
        ZipEntry("manifest.json", 0, data=manifest),
        ZipEntry("SHA256SUMS", 0, data=sums),
    ]
    for file in files:
        entries.append(ZipEntry(file.path, file.bytes, key=file.sha256, reader=_reader(storage, file.sha256)))
        for t in tracks.get(file.path, []):
            entries.append(ZipEntry(t.path, t.bytes, key=t.sha256, reader=_reader(storage, t.sha256)))
    for poster_path, blob in poster_files:
        entries.append(ZipEntry(poster_path, blob.size, key=blob.sha256, reader=_reader(storage, blob.sha256)))
    modified = course.updated_at or course.created_at or utcnow()
    layout = ZipLayout(entries, modified if isinstance(modified, datetime) else utcnow())
    # The manifest names every byte of the archive (hashes, paths, sizes, the course's
    # version and time), so its hash is a strong entity tag of the whole ZIP.
    etag = hashlib.sha256(manifest).hexdigest()
    return CourseDownload(
        course=course,
        quality=quality,
        files=files,
        skipped=skipped,
        layout=layout,
        etag=etag,
        filename=f"{course.title}.zip",
        media_sha256s=[f.sha256 for f in files],
    )


def _reader(storage: Storage, sha256: str) -> Any:
    def read(start: int, stop: int) -> Iterator[bytes]:
        # S3 too: one ranged GET per entry, streamed in 256 KiB chunks.
        return storage.open_range(sha256, start, stop - 1, chunk_size=262144)

    return read


def course_download_size(session: Session, actor: User | None, storage: Storage, course_id: int, quality: str) -> int:
    """The exact byte size of the course ZIP, for the course page's download link."""
    return plan_course_download(session, actor, storage, course_id, quality).size

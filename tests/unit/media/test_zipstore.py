"""The stored-ZIP layout: size known before reading, any range, ZIP64 framing, CRC cache."""

from __future__ import annotations

import io
import random
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.media import zipstore
from hub.media.zipstore import ZipEntry, ZipLayout, ZipWindow

WHEN = datetime(2026, 11, 30, 8, 15, 42, tzinfo=UTC)


class Source:
    """Blob-like bytes (the same for the same seed) that count how much of them was read."""

    def __init__(self, size: int, seed: int) -> None:
        self.data = random.Random(seed).randbytes(size)
        self.size = size
        self.read_bytes = 0

    def read(self, start: int, stop: int) -> Iterator[bytes]:
        for at in range(start, stop, 7000):  # several chunks per entry
            chunk = self.data[at : min(at + 7000, stop)]
            self.read_bytes += len(chunk)
            yield chunk


def sources() -> dict[str, Source]:
    """Four media files and an empty one; each call gives the same bytes (a later request)."""
    made = {f"lesson-0{i}/01-video-240p.mp4": Source(5_000 * i + 11, seed=i) for i in range(1, 5)}
    made["lesson-05/01-empty.txt"] = Source(0, seed=0)
    return made


def build(srcs: dict[str, Source], zip64_limit: int = 0xFFFFFFFF, tag: str = "") -> ZipLayout:
    entries = [ZipEntry("index.html", 0, data="<h1>课程</h1>".encode())]
    entries += [ZipEntry(name, s.size, key=f"{tag}{name}", reader=s.read) for name, s in srcs.items()]
    return ZipLayout(entries, WHEN, zip64_limit=zip64_limit)


@pytest.fixture(autouse=True)
def _fresh_crcs() -> None:
    zipstore.crc_cache_clear()


@pytest.mark.parametrize("zip64_limit", [0xFFFFFFFF, 4096], ids=["zip", "zip64"])
def test_size_known_before_reading_and_zipfile_reads_it(zip64_limit: int) -> None:
    srcs = sources()
    layout = build(srcs, zip64_limit)
    assert all(s.read_bytes == 0 for s in srcs.values())  # laid out without a read
    body = b"".join(layout.iter_bytes())
    assert len(body) == layout.size
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    assert archive.namelist() == ["index.html", *srcs]
    for name, src in srcs.items():
        info = archive.getinfo(name)
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.date_time == (2026, 11, 30, 8, 15, 42)
        assert archive.read(name) == src.data
    assert archive.read("index.html").decode() == "<h1>课程</h1>"


def test_zip64_records_appear_only_when_needed() -> None:
    small = b"".join(build(sources()).iter_bytes())
    forced = b"".join(build(sources(), zip64_limit=4096, tag="64").iter_bytes())
    assert b"PK\x06\x06" not in small and b"PK\x06\x06" in forced  # the ZIP64 end record


def test_every_range_matches_the_whole_archive() -> None:
    whole = b"".join(build(sources()).iter_bytes())
    for start in (0, 1, 29, 31, 5_000, 12_345, len(whole) - 100, len(whole) - 22, len(whole) - 1, len(whole)):
        zipstore.crc_cache_clear()  # each resume on a fresh process: CRCs are recomputed
        assert b"".join(build(sources()).iter_bytes(start)) == whole[start:], start
        for end in (start, start + 10, start + 9_000):
            if end < len(whole):
                part = b"".join(build(sources()).iter_bytes(start, end))
                assert part == whole[start : end + 1], (start, end)


def test_resume_after_a_cached_crc_reads_only_what_it_sends() -> None:
    srcs = sources()
    whole = b"".join(build(srcs).iter_bytes())  # a first, interrupted-later download fills the cache
    again = sources()
    layout = build(again)
    start = len(whole) - 200  # inside the central directory
    assert b"".join(layout.iter_bytes(start)) == whole[start:]
    assert sum(s.read_bytes for s in again.values()) == 0  # CRCs came from the cache


def test_resume_without_a_cached_crc_reads_the_prefix_on_the_server() -> None:
    srcs = sources()
    whole = b"".join(build(srcs).iter_bytes())
    zipstore.crc_cache_clear()
    again = sources()
    layout = build(again)
    name = "lesson-04/01-video-240p.mp4"
    entry = next(e for e in layout.entries if e.name == name)
    mid = entry.offset + 30 + len(name) + 100  # 100 bytes into its data
    assert b"".join(layout.iter_bytes(mid)) == whole[mid:]
    assert again[name].read_bytes == again[name].size  # 100 hashed unsent + the rest sent


def test_unzip_tool_accepts_it(tmp_path: Path) -> None:
    unzip = "/usr/bin/unzip"
    if not Path(unzip).exists():
        pytest.skip("Info-ZIP unzip is not installed")
    path = tmp_path / "course.zip"
    path.write_bytes(b"".join(build(sources()).iter_bytes()))
    result = subprocess.run([unzip, "-t", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors detected" in result.stdout


def test_duplicate_names_and_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError):
        ZipLayout([ZipEntry("a", 0, data=b"1"), ZipEntry("a", 0, data=b"2")], WHEN)
    layout = build(sources())
    with pytest.raises(ValueError):
        list(layout.iter_bytes(layout.size + 1))


def drain_like_waitress(window: ZipWindow, length: int, seed: int) -> bytes:
    """What waitress does with a file_wrapper: read a step, send part of it, skip that part."""
    from waitress.buffers import ReadOnlyFileBasedBuffer

    buffer = ReadOnlyFileBasedBuffer(window)
    assert buffer.prepare(length) == length
    sent = []
    pace = random.Random(seed)
    while len(buffer):
        step = buffer.get(pace.choice([1, 100, 4096, 18000]))
        taken = step[: pace.randint(1, len(step))]  # the socket took only part of it
        sent.append(taken)
        buffer.skip(len(taken), True)
    buffer.close()
    return b"".join(sent)


@pytest.mark.parametrize("start", [0, 31, 9_000, 20_000, -60, -1])
def test_window_sent_by_the_io_loop_matches_the_archive(start: int) -> None:
    whole = b"".join(build(sources()).iter_bytes())
    start = start % len(whole)
    zipstore.crc_cache_clear()  # a resume on a fresh process: the CRCs are learnt again
    again = sources()
    done: list[bool] = []
    window = ZipWindow(build(again), start, len(whole), lambda: done.append(True))
    assert drain_like_waitress(window, len(whole) - start, seed=start) == whole[start:]
    assert done == [True]
    # Re-reads are not hashed twice, and nothing but the skipped prefix is read twice.
    assert sum(s.read_bytes for s in again.values()) < 3 * sum(s.size for s in again.values())


def test_window_closed_early_does_not_complete() -> None:
    layout = build(sources())
    done: list[bool] = []
    window = ZipWindow(layout, 0, layout.size, lambda: done.append(True))
    assert len(window.read(5000)) == 5000
    window.close()
    assert done == []

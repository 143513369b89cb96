"""Bundle containers: round trips, split parts, and every unsafe archive refused without a write."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.errors import Invalid
from hub.sync.archive import FAT32_LIMIT, BundleError, open_bundle, pack, write_file

MiB = 1024 * 1024
LIMITS = {"max_bytes": 10 * MiB, "max_entries": 100}


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[Path]:
    """A directory whose every file is known before and after: anything an archive writes shows."""
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path)
    yield work
    assert snapshot(tmp_path) - before <= {str(p.relative_to(tmp_path)) for p in work.rglob("*")}
    assert not (tmp_path / "escaped").exists()
    assert not Path("/tmp/escaped-by-bundle-test").exists()


def read_all(path: Path, **limits: int) -> dict[str, bytes]:
    with open_bundle(path, **(LIMITS | limits)) as source:
        return {name: source.open(name).read() for name in source.names()}


def make_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicates we make on purpose
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for info, data in entries:
                archive.writestr(info, data)
    return path


def make_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def tar_entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def make_bundle(root: Path) -> dict[str, bytes]:
    files = {
        "manifest.json": b'{"version": 3}',
        "blobs/ab/abcdef": b"x" * 1000,
        "blobs/cd/cdef01": os.urandom(2500),
        "empty": b"",
    }
    for name, data in files.items():
        write_file(root, name, [data[i : i + 333] for i in range(0, len(data), 333)], part_bytes=1024)
    return files


# -- round trips ---------------------------------------------------------------


def test_fat32_limit_is_one_byte_under_4_gib() -> None:
    assert FAT32_LIMIT == 4 * 1024**3 - 1


def test_directory_round_trip_joins_split_parts(jail: Path) -> None:
    root = jail / "bundle"
    files = make_bundle(root)

    assert sorted(p.name for p in (root / "blobs" / "cd").iterdir()) == ["cdef01.000", "cdef01.001", "cdef01.002"]
    assert (root / "blobs" / "cd" / "cdef01.000").stat().st_size == 1024
    assert read_all(root) == files


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz", ".tgz"])
def test_packed_round_trip(jail: Path, suffix: str) -> None:
    root = jail / "bundle"
    files = make_bundle(root)
    archive = jail / f"bundle{suffix}"

    pack(root, archive)

    assert read_all(archive) == files
    if suffix == ".zip":
        with zipfile.ZipFile(archive) as packed:
            assert {i.compress_type for i in packed.infolist()} == {zipfile.ZIP_STORED}


def test_names_fold_parts_into_one_logical_name(jail: Path) -> None:
    written = write_file(jail, "video.mp4", [b"a" * 25], part_bytes=10)

    assert written == ["video.mp4.000", "video.mp4.001", "video.mp4.002"]
    with open_bundle(jail, **LIMITS) as source:
        assert source.names() == ["video.mp4"]
        assert source.open("video.mp4").read() == b"a" * 25


def test_write_file_fits_exactly_in_one_part(jail: Path) -> None:
    assert write_file(jail, "a/b", [b"12345", b"67890"], part_bytes=10) == ["a/b"]
    assert (jail / "a" / "b").read_bytes() == b"1234567890"
    assert not list(jail.rglob(".tmp-*"))


def test_rewriting_a_name_removes_its_other_stored_form(jail: Path) -> None:
    write_file(jail, "blob", [b"x" * 30], part_bytes=10)
    assert write_file(jail, "blob", [b"small"], part_bytes=10) == ["blob"]
    assert sorted(p.name for p in jail.iterdir()) == ["blob"]

    write_file(jail, "blob", [b"y" * 15], part_bytes=10)
    assert sorted(p.name for p in jail.iterdir()) == ["blob.000", "blob.001"]
    assert read_all(jail) == {"blob": b"y" * 15}


def test_tar_of_split_parts_reads_joined(jail: Path) -> None:
    archive = make_tar(
        jail / "b.tar",
        [(tar_entry("x.001"), b"world"), (tar_entry("x.000"), b"hello "), (tar_entry("dir", tarfile.DIRTYPE), b"")],
    )
    assert read_all(archive) == {"x": b"hello world"}


# -- refused ---------------------------------------------------------------------


def refused(path: Path, match: str, **limits: int) -> None:
    with pytest.raises(BundleError, match=match):
        read_all(path, **limits)


def test_bundle_error_is_a_domain_error_with_a_message() -> None:
    err = BundleError("The bundle is bad.")
    assert isinstance(err, Invalid)
    assert err.message == "The bundle is bad."
    assert err.status == 422


def test_a_gap_in_parts_is_refused(jail: Path) -> None:
    (jail / "x.000").write_bytes(b"a")
    (jail / "x.002").write_bytes(b"c")
    refused(jail, r"missing x\.001")


def test_parts_must_start_at_000(jail: Path) -> None:
    refused(make_zip(jail / "b.zip", [("x.001", b"b")]), r"missing x\.000")


def test_a_file_both_whole_and_split_is_refused(jail: Path) -> None:
    refused(make_zip(jail / "b.zip", [("x", b"a"), ("x.000", b"b")]), "both whole and split")


def test_non_canonical_part_numbers_are_refused(jail: Path) -> None:
    refused(make_zip(jail / "b.zip", [("x.0000", b"a")]), "not numbered like")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../escaped", r"'\.\.'"),
        ("a/../../escaped", r"'\.\.'"),
        ("/tmp/escaped-by-bundle-test", "absolute path"),
        ("..\\escaped", "backslash"),
        ("C:escaped", "drive letters"),
        ("a//b", "empty"),
        ("./a", r"'\.'"),
        ("a. ", "ending in a dot"),
    ],
)
def test_unsafe_names_in_a_zip_are_refused(jail: Path, name: str, match: str) -> None:
    refused(make_zip(jail / "b.zip", [("ok", b"fine"), (zipfile.ZipInfo(name), b"evil")]), match)


@pytest.mark.parametrize(
    ("name", "match"),
    [("../escaped", r"'\.\.'"), ("/tmp/escaped-by-bundle-test", "absolute path"), ("a\\..\\..\\escaped", "backslash")],
)
def test_unsafe_names_in_a_tar_are_refused(jail: Path, name: str, match: str) -> None:
    refused(make_tar(jail / "b.tar", [(tar_entry(name), b"evil")]), match)


def test_a_symlink_entry_in_a_zip_is_refused(jail: Path) -> None:
    link = zipfile.ZipInfo("blobs/passwd")
    link.create_system = 3  # unix, where the high bits of external_attr are st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    refused(make_zip(jail / "b.zip", [(link, b"/etc/passwd")]), "symbolic link")


def test_a_fifo_entry_in_a_zip_is_refused(jail: Path) -> None:
    fifo = zipfile.ZipInfo("fifo")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    refused(make_zip(jail / "b.zip", [(fifo, b"")]), "device, fifo")


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        (tarfile.SYMTYPE, "is a link"),
        (tarfile.LNKTYPE, "is a link"),
        (tarfile.CHRTYPE, "device or fifo"),
        (tarfile.BLKTYPE, "device or fifo"),
        (tarfile.FIFOTYPE, "device or fifo"),
    ],
)
def test_links_and_devices_in_a_tar_are_refused(jail: Path, kind: bytes, match: str) -> None:
    archive = make_tar(jail / "b.tar", [(tar_entry("ok"), b"fine"), (tar_entry("evil", kind, "/etc/passwd"), b"")])
    refused(archive, match)


def test_a_symlink_inside_a_bundle_directory_is_refused(jail: Path, tmp_path: Path) -> None:
    root = jail / "bundle"
    make_bundle(root)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the bundle")
    (root / "blobs" / "link").symlink_to(secret)
    try:
        refused(root, "symbolic link")
    finally:
        secret.unlink()


def test_a_symlinked_directory_inside_a_bundle_is_refused(jail: Path, tmp_path: Path) -> None:
    root = jail / "bundle"
    make_bundle(root)
    (root / "more").symlink_to(tmp_path, target_is_directory=True)
    refused(root, "symbolic link")


def test_a_fifo_inside_a_bundle_directory_is_refused(jail: Path) -> None:
    os.mkfifo(jail / "fifo")
    refused(jail, "device, fifo or socket")


def test_a_file_swapped_for_a_symlink_after_listing_is_refused(jail: Path, tmp_path: Path) -> None:
    (jail / "blob").write_bytes(b"good")
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the bundle")
    with open_bundle(jail, **LIMITS) as source:
        (jail / "blob").unlink()
        (jail / "blob").symlink_to(secret)
        with pytest.raises(BundleError, match="link"):
            source.open("blob").read()
    secret.unlink()


def test_duplicate_names_in_a_zip_are_refused(jail: Path) -> None:
    refused(make_zip(jail / "b.zip", [("blob", b"one"), ("blob", b"two")]), "twice")


def test_duplicate_names_in_a_tar_are_refused(jail: Path) -> None:
    refused(make_tar(jail / "b.tar", [(tar_entry("blob"), b"one"), (tar_entry("blob"), b"two")]), "twice")


def test_names_differing_only_in_case_are_refused(jail: Path) -> None:
    refused(make_zip(jail / "b.zip", [("Blob", b"one"), ("blob", b"two")]), "twice")


def test_a_name_both_file_and_directory_is_refused(jail: Path) -> None:
    refused(make_zip(jail / "b.zip", [("a", b"file"), ("a/b", b"file below it")]), "both a file and a directory")


@pytest.mark.parametrize("container", ["zip", "tar", "dir"])
def test_too_many_entries_are_refused(jail: Path, container: str) -> None:
    names = [f"f{i}" for i in range(11)]
    if container == "zip":
        path = make_zip(jail / "b.zip", [(n, b"x") for n in names])
    elif container == "tar":
        path = make_tar(jail / "b.tar", [(tar_entry(n), b"x") for n in names])
    else:
        path = jail / "bundle"
        path.mkdir()
        for n in names:
            (path / n).write_bytes(b"x")
    refused(path, "more than 10 entries", max_entries=10)
    assert len(read_all(path, max_entries=11)) == 11


def test_a_zip_bomb_is_stopped_mid_read(jail: Path) -> None:
    archive = make_zip(jail / "bomb.zip", [("zeros", bytes(50 * MiB))])
    assert archive.stat().st_size < MiB  # highly compressible: the archive itself is small

    got = 0
    with open_bundle(archive, max_bytes=MiB, max_entries=10) as source:
        stream = source.open("zeros")
        with pytest.raises(BundleError, match="over the limit of 1,048,576 bytes"):
            while chunk := stream.read(64 * 1024):
                got += len(chunk)
    assert got <= MiB


def test_read_all_at_once_is_stopped_too(jail: Path) -> None:
    archive = make_zip(jail / "bomb.zip", [("zeros", bytes(50 * MiB))])
    refused(archive, "over the limit", max_bytes=MiB)


def test_a_zip_that_lies_about_its_size_is_not_trusted(jail: Path) -> None:
    archive = make_zip(jail / "liar.zip", [("zeros", bytes(4 * MiB))])
    with zipfile.ZipFile(archive) as packed:
        info = packed.getinfo("zeros")
        offset = info.header_offset
    data = bytearray(archive.read_bytes())
    # Declare 10 bytes in both the local header and the central directory.
    data[offset + 22 : offset + 26] = (10).to_bytes(4, "little")
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))

    refused(archive, "cannot be read", max_bytes=MiB)


def test_the_budget_is_shared_by_every_stream(jail: Path) -> None:
    archive = make_zip(jail / "b.zip", [("a", bytes(600 * 1024)), ("b", bytes(600 * 1024))])
    with open_bundle(archive, max_bytes=MiB, max_entries=10) as source:
        assert len(source.open("a").read()) == 600 * 1024
        with pytest.raises(BundleError, match="'b' goes over the limit"):
            source.open("b").read()


def test_a_compressed_tar_bomb_is_refused_before_it_is_decompressed(jail: Path) -> None:
    archive = make_tar(jail / "bomb.tar.gz", [(tar_entry("zeros"), bytes(50 * MiB))], mode="w:gz")
    assert archive.stat().st_size < MiB
    refused(archive, "longer than its limit", max_bytes=MiB)


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz"])
def test_a_small_budget_still_lists_a_big_bundle_and_reads_what_fits(jail: Path, suffix: str) -> None:
    root = jail / "bundle"
    write_file(root, "manifest.json", [b"{}"])
    write_file(root, "blobs/big", [os.urandom(2 * MiB)])  # incompressible, like media
    archive = jail / f"bundle{suffix}"
    pack(root, archive)

    with open_bundle(archive, max_bytes=MiB, max_entries=10) as source:
        assert source.names() == ["blobs/big", "manifest.json"]
        assert source.open("manifest.json").read() == b"{}"
        with pytest.raises(BundleError, match="over the limit"):
            source.open("blobs/big").read()


def test_a_damaged_zip_member_is_refused(jail: Path) -> None:
    archive = jail / "b.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as packed:
        packed.writestr("blob", b"A" * 1000)
    data = archive.read_bytes().replace(b"A" * 10, b"B" * 10, 1)
    archive.write_bytes(data)
    refused(archive, "cannot be read")


def test_not_an_archive_is_refused(jail: Path) -> None:
    (jail / "notes.txt").write_text("hello")
    refused(jail / "notes.txt", "not a bundle")
    refused(jail / "missing", "not a bundle")


def test_an_unknown_name_is_refused(jail: Path) -> None:
    (jail / "blob").write_bytes(b"x")
    with open_bundle(jail, **LIMITS) as source, pytest.raises(BundleError, match="no file 'other'"):
        source.open("other")


# -- writing stays inside root -----------------------------------------------------


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped-by-bundle-test", "a/../../escaped", "a\\b", "x.000"])
def test_write_file_refuses_unsafe_names(jail: Path, name: str) -> None:
    with pytest.raises(BundleError):
        write_file(jail, name, [b"evil"])
    assert snapshot(jail) == set()


def test_write_file_does_not_follow_a_symlinked_directory_out_of_root(jail: Path, tmp_path: Path) -> None:
    outside = tmp_path / "escaped"
    outside.mkdir()
    (jail / "blobs").symlink_to(outside, target_is_directory=True)
    try:
        with pytest.raises(BundleError, match="outside"):
            write_file(jail, "blobs/x", [b"evil"])
        assert list(outside.iterdir()) == []
    finally:
        outside.rmdir()


def test_pack_refuses_to_write_inside_the_bundle(jail: Path) -> None:
    make_bundle(jail)
    with pytest.raises(BundleError, match="inside the bundle"):
        pack(jail, jail / "self.zip")
    with pytest.raises(BundleError, match=r"\.zip, \.tar"):
        pack(jail, jail.parent / "bundle.rar")
    assert not list(jail.parent.glob(".tmp-*"))

"""The decoder sandbox: what a decoder child can reach, and the limits that stop it.

Each test runs a program the way the media pipeline runs ffmpeg, qpdf and
Ghostscript (``hub.media.ffmpeg._run`` in a job directory from
``sandbox.job_directory``), and asks it to do what a decoder exploited by a
crafted file would try.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.media import sandbox
from hub.media.ffmpeg import MediaError, MediaLimits, _failure, _run
from hub.media.sandbox import Sandbox, job_directory

SH = "/bin/sh"
PYTHON = "/usr/bin/python3"  # Debian's, under /usr: inside the sandbox like the decoders


@pytest.fixture
def limits(tmp_path: Path) -> MediaLimits:
    return MediaLimits(timeout_s=30, sandbox=Sandbox(work_dir=tmp_path / "var" / "work"))


@pytest.fixture
def job(limits: MediaLimits) -> Iterator[Path]:
    with job_directory(limits.sandbox, "test-") as path:
        (path / "original").write_bytes(b"the uploaded file")
        yield path


def shell(limits: MediaLimits, job: Path, script: str, timeout: float = 30, **kwargs: object) -> tuple[int, str]:
    result = _run([SH, "-c", script], limits, inputs=(job / "original",), timeout=timeout, **kwargs)  # type: ignore[arg-type]
    return result.returncode, result.stdout + result.stderr


def test_sees_its_input_but_not_the_data_dir_or_other_jobs(limits: MediaLimits, job: Path, tmp_path: Path) -> None:
    secret = tmp_path / "var" / "secret_key"
    secret.write_text("the hub's secret")
    blob = tmp_path / "var" / "storage" / "ab" / "cd" / "abcd"
    blob.parent.mkdir(parents=True)
    blob.write_text("another school's draft")
    with job_directory(limits.sandbox, "other-") as other:
        (other / "original").write_text("another job's original")
        _, out = shell(limits, job, f"cat {job}/original; echo; cat {secret} {blob} {other}/original")
        _, listed = shell(limits, job, f"ls -A {limits.sandbox.work_dir} {tmp_path} {tmp_path}/var")
    assert "the uploaded file" in out and "No such file or directory" in out
    for private in ("the hub's secret", "another school's draft", "another job's original"):
        assert private not in out
    assert other.name not in listed and "secret_key" not in listed and "storage" not in listed
    assert job.name in listed  # what the listing shows: the way to its own input, nothing else


def test_can_write_only_its_outputs(limits: MediaLimits, job: Path) -> None:
    out = job / "rendition.mp4"
    code, _ = shell(
        limits,
        job,
        f"echo written > {out} && echo tampered > {job}/original; touch {job}/planted; touch /usr/planted",
        outputs=(out,),
    )
    assert code != 0
    assert out.read_text() == "written\n"
    assert (job / "original").read_bytes() == b"the uploaded file"
    assert not (job / "planted").exists() and not Path("/usr/planted").exists()


def test_an_output_replaced_by_a_link_is_refused(limits: MediaLimits, job: Path) -> None:
    # A decoder cannot do this inside (the output is a bind mount), but whatever
    # lies at an output's path afterwards is checked before the worker reads it.
    out = job / "rendition.mp4"
    script = f"exec {PYTHON} -c \"import os; os.unlink('{out}')\""
    code, _ = shell(limits, job, script, outputs=(out,))
    assert code != 0  # busy: a mount point cannot be unlinked
    assert out.exists() and not out.is_symlink()


def test_no_secret_in_the_environment(limits: MediaLimits, job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SECRET_KEY", "forge-an-admin-session")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-credentials")
    code, out = shell(limits, job, "env")
    assert code == 0 and "PATH=" in out
    assert "forge-an-admin-session" not in out and "s3-credentials" not in out


def test_no_network(limits: MediaLimits, job: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    with listener:
        # ffmpeg itself, asked to read from the network (as a crafted playlist would).
        argv = ["/usr/bin/ffmpeg", "-nostdin", "-i", f"tcp://127.0.0.1:{port}", "-f", "null", "-"]
        result = _run(argv, limits, inputs=(job / "original",), timeout=30)
        assert result.returncode != 0
        with pytest.raises(TimeoutError):
            listener.accept()
        # A network namespace of its own: a loopback of its own, where nothing listens.
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}))"
        code, out = shell(limits, job, f'exec {PYTHON} -c "{connect}"')
        assert code != 0 and "Connection refused" in out
        with pytest.raises(TimeoutError):
            listener.accept()


def test_killed_at_its_memory_limit_with_a_readable_reason(tmp_path: Path) -> None:
    small = MediaLimits(timeout_s=30, sandbox=Sandbox(memory_mb=256, work_dir=tmp_path / "work"))
    with job_directory(small.sandbox) as job:
        (job / "original").write_bytes(b"x")
        result = _run([PYTHON, "-c", "bytearray(1024 * 1024 * 1024)"], small, inputs=(job / "original",), timeout=30)
    assert result.returncode != 0 and "MemoryError" in result.stderr
    assert (
        _failure(result, "unused").reason == "Processing this file needs more memory than allowed; it may be damaged."
    )


def test_killed_at_its_time_limit_and_nothing_left_running(limits: MediaLimits, job: Path) -> None:
    marker = job / "original"
    with pytest.raises(MediaError) as failed:
        _run([SH, "-c", "while :; do :; done", str(marker)], limits, inputs=(marker,), timeout=1)
    assert "took longer than" in failed.value.reason and not failed.value.transient
    assert not _running(str(marker))


def test_killed_at_its_cpu_limit(job: Path, limits: MediaLimits) -> None:
    # The kernel's limit, for a decoder that the wall clock would let run longer.
    with sandbox.confined(
        limits.sandbox, [SH, "-c", "while :; do :; done"], inputs=(job / "original",), cpu_seconds=1
    ) as p:
        code = subprocess.run(
            p.argv,
            pass_fds=p.pass_fds,
            preexec_fn=p.preexec,
            env=p.env,
            cwd=p.cwd,
            timeout=60,
            check=False,
        ).returncode
    assert sandbox.returncode(p, code) == -signal.SIGXCPU


def test_cannot_start_more_than_its_processes(tmp_path: Path) -> None:
    few = MediaLimits(timeout_s=30, sandbox=Sandbox(processes=8, work_dir=tmp_path / "work"))
    with job_directory(few.sandbox) as job:
        (job / "original").write_bytes(b"x")
        _, out = shell(few, job, "for i in $(seq 40); do sleep 3 & done; wait")
    assert "fork" in out.lower() or "resource temporarily unavailable" in out.lower()


def test_a_killed_jobs_directory_goes_at_the_next_worker_start(tmp_path: Path) -> None:
    box = Sandbox(work_dir=tmp_path / "work")
    # A job whose worker is SIGKILLed: its directory stays, its lock does not.
    code = (
        "import os, sys; from pathlib import Path; from hub.media.sandbox import Sandbox, job_directory\n"
        f"with job_directory(Sandbox(work_dir=Path({str(box.work_dir)!r}))) as job:\n"
        "    (job / 'original').write_bytes(b'draft'); print(job, flush=True); os.kill(os.getpid(), 9)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    killed = Path(run.stdout.strip())
    assert run.returncode == -signal.SIGKILL and (killed / "original").exists()
    with job_directory(box) as live:
        assert sandbox.clean_stale_jobs(box) == 1
        assert not killed.exists() and live.exists()  # a running job's directory stays


def test_a_job_directory_is_private(limits: MediaLimits) -> None:
    with job_directory(limits.sandbox) as job:
        assert job.stat().st_mode & 0o777 == 0o700
        with open(job / ".lock") as lock, pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while the job runs
    assert not job.exists()


def test_a_sandbox_that_cannot_start_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_bwrap_binary", lambda: "/bin/false")
    sandbox.check.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="HUB_DECODER_SANDBOX=none"):
            sandbox.check("bwrap")
    finally:
        sandbox.check.cache_clear()


def _running(marker: str) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the sandbox runs as that user")
def test_as_root_a_job_runs_as_nobody(limits: MediaLimits, job: Path) -> None:
    code, out = shell(limits, job, "id -u")
    assert code == 0 and out.split()[0] != "0"

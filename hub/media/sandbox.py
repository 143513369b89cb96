"""Run a decoder (ffmpeg, ffprobe, qpdf, Ghostscript) on untrusted input, sandboxed and bounded.

Every external program that parses an uploaded file goes through :func:`confined`
(called by :func:`hub.media.ffmpeg._run`, the one place decoders start). The
file is hostile until proven otherwise, and a decoder is a large C program that
has had its share of exploits, so it gets as little as possible:

- **Its own files, nothing else.** A job works in a private directory from
  :func:`job_directory` (one per task, under ``HUB_WORK_DIR``, locked while it
  runs). With bubblewrap each run sees its input files *read-only* and its
  output files writable, each bound on its own at its own path, plus a scratch
  directory for temp files: it cannot create, rename or link anything beside
  them. The rest of its file system is ``/usr`` (read-only), a few files of
  ``/etc`` that libraries need, ``/proc``, ``/dev`` and a small ``/tmp`` in
  memory. ``HUB_DATA_DIR`` (database, storage, the secret key), other jobs'
  directories and the system's ``/tmp`` do not exist in there.
- **No network, no secret.** New network, IPC, PID and UTS namespaces; no
  capabilities; an empty environment (no ``HUB_SECRET_KEY``, no credentials).
- **Limits set in the child** (``setrlimit`` before ``exec``): address space,
  CPU seconds, size of any file written, number of processes and threads, no
  core dumps. The wall-clock deadline and stall timer of ``_run`` come on top.
- **Not root.** A worker running as an ordinary user runs bubblewrap in a user
  namespace of its own. A worker running as root has bubblewrap bind the files
  as root and then become ``nobody`` for good (``setpriv``), because the kernel
  enforces the process limit only for users other than root.

``HUB_DECODER_SANDBOX=none`` keeps the limits and the clean environment but
drops the namespaces, for hosts where user namespaces are disabled;
:func:`check` says so in plain words when bubblewrap cannot run. A job killed
with its worker leaves its directory behind; the next worker to start removes
every directory whose job no longer holds its lock (:func:`clean_stale_jobs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import pwd
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hub.errors import Text
from hub.i18n import N_

log = logging.getLogger(__name__)

MODES = ("bwrap", "none")
_LOCK = ".lock"
_JOB_PREFIX = "job-"
_SCRATCH = ".scratch"
_SETPRIV = "/usr/bin/setpriv"  # util-linux, on every Debian
_SETPRIV_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
# Read-only pieces of /etc that decoders' libraries read: the dynamic linker's
# cache, Debian's alternatives (libblas for ffmpeg), fontconfig (Ghostscript).
_ETC = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/fonts", "/etc/ghostscript")
_TMPFS_BYTES = 64 * 1024**2


class SandboxUnavailable(RuntimeError):
    """The configured sandbox cannot start on this machine; the message says what to do.

    Raised with a :class:`hub.errors.Text`: ``str()`` is English (the worker's log), and
    `hub worker`'s pre-flight says it in the terminal's language.
    """

    @property
    def text(self) -> str:
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class Sandbox:
    """How decoders are confined; fed from ``HUB_DECODER_*`` settings."""

    mode: str = "bwrap"
    memory_mb: int = 3072
    """Address space of a decoder process (RLIMIT_AS)."""
    max_file_mb: int = 4096
    """Largest file a decoder may write (RLIMIT_FSIZE)."""
    processes: int = 64
    """Processes and threads a decoder may run (RLIMIT_NPROC)."""
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "oer-hub-work")
    """Where job directories are made (``HUB_WORK_DIR``)."""


@dataclass(frozen=True)
class Prepared:
    """What :func:`command` hands to ``subprocess.Popen``."""

    argv: list[str]
    preexec: Callable[[], None]
    pass_fds: tuple[int, ...]
    env: dict[str, str]
    cwd: str
    bwrap: bool


def _sandbox_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def job_directory(sandbox: Sandbox, prefix: str = "") -> Iterator[Path]:
    """A private directory for one job, locked while the job runs, removed afterwards.

    The lock (an ``flock`` on a file inside) is what :func:`clean_stale_jobs`
    tests: a job whose worker was killed no longer holds it.
    """
    root = sandbox.work_dir
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    path = Path(tempfile.mkdtemp(dir=root, prefix=f"{_JOB_PREFIX}{prefix}"))
    lock = os.open(path / _LOCK, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        identity = _identity()
        if identity is not None:
            os.chown(path, *identity)  # the decoders run as this user (see _identity)
        yield path
    finally:
        os.close(lock)
        shutil.rmtree(path, ignore_errors=True)


def clean_stale_jobs(sandbox: Sandbox) -> int:
    """Remove the directories of jobs whose process died (no lock held); returns how many."""
    root = sandbox.work_dir
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        if not entry.name.startswith(_JOB_PREFIX) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            lock = os.open(entry / _LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            lock = None  # killed between mkdtemp and the lock (a job being made just then fails and is retried)
        except OSError:
            continue
        try:
            if lock is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live job
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        finally:
            if lock is not None:
                os.close(lock)
    if removed:
        log.info("removed %d directories of interrupted jobs from %s", removed, root)
    return removed


def _identity() -> tuple[int, int] | None:
    """The user decoders run as when the worker is root (the kernel limits processes of other users only)."""
    return _sandbox_user() if os.geteuid() == 0 else None


def _limits(sandbox: Sandbox, cpu_seconds: float) -> Callable[[], None]:
    memory = sandbox.memory_mb * 1024**2
    file_size = sandbox.max_file_mb * 1024**2
    cpu = max(1, int(cpu_seconds))

    def apply() -> None:  # pragma: no cover - runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        # The soft limit sends SIGXCPU (which _run reports as such); the hard one, 5 s later, SIGKILL.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_NPROC, (sandbox.processes, sandbox.processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _bwrap_argv(program: str, binds: list[str], env: dict[str, str], identity: tuple[int, int] | None) -> list[str]:
    argv = [_bwrap_binary(), "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if identity is None:
        # Unprivileged: a user namespace of its own, in which the decoder holds no
        # capability and may not make another.
        argv += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    else:
        # Root: bubblewrap binds the job's files as root (it resolves their paths, which the
        # job's user may not be able to walk), then setpriv becomes that user for good,
        # with no capability, no way back (no_new_privs) and the kernel's process limit.
        argv += ["--cap-drop", "ALL"] + [a for cap in _SETPRIV_CAPS for a in ("--cap-add", cap)]
    # Not --new-session: bwrap is started in a session of its own (no terminal to inject
    # into) and the sandbox stays in its process group, so that the one killpg of a
    # timeout reaches every process inside at once.
    argv += ["--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]  # merged /usr (Debian 12)
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    binary_dir = os.path.dirname(os.path.realpath(program))
    if not binary_dir.startswith("/usr/"):
        argv += ["--ro-bind", binary_dir, binary_dir]  # a decoder installed elsewhere (/opt/ffmpeg/bin)
    argv += ["--perms", "0755", "--dir", "/etc"]  # bwrap would make it 0700 (see confined)
    for path in _ETC:
        argv += ["--ro-bind-try", path, path]
    # A small /tmp in memory, private to this run, for libraries that ignore TMPDIR.
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(_TMPFS_BYTES), "--tmpfs", "/tmp"]  # noqa: S108
    # The working directory is the private /tmp: bwrap changes to it before it drops to the
    # job's user, and the scratch directory (the job user's, 0700) is not root's to enter then.
    argv += [*binds, "--chdir", "/tmp", "--clearenv"]  # noqa: S108
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv.append("--")
    if identity is not None:
        uid, gid = identity
        argv += [_SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        argv += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return argv


def _environment(scratch: Path) -> dict[str, str]:
    # Nothing of the worker's environment: no HUB_SECRET_KEY, no AWS_* credentials.
    return {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch), "LC_ALL": "C.UTF-8"}


@functools.cache
def _bwrap_binary() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            Text(
                N_(
                    "bubblewrap (bwrap) is not installed, so decoders cannot be sandboxed. Install Debian's "
                    "package bubblewrap (make install does), or set HUB_DECODER_SANDBOX=none to run decoders "
                    "with resource limits only (weaker: no file-system or network isolation)."
                )
            )
        )
    return path


@contextlib.contextmanager
def confined(
    sandbox: Sandbox,
    argv: list[str],
    *,
    inputs: Sequence[Path],
    outputs: Sequence[Path] = (),
    cpu_seconds: float,
) -> Iterator[Prepared]:
    """What runs ``argv`` so that it may read only ``inputs`` and write only ``outputs``; for the run's duration.

    Each file is bound into the sandbox at its own path, inputs read-only,
    outputs (created empty beforehand: bubblewrap binds what exists) writable.
    The program's temp files go to a scratch directory beside the first input
    (``TMPDIR``), removed afterwards.
    """
    home = inputs[0].resolve().parent
    for output in outputs:
        os.close(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600))
    scratch = Path(tempfile.mkdtemp(dir=home, prefix=_SCRATCH))
    identity = _identity() if sandbox.mode == "bwrap" else None
    fds: list[int] = []
    try:
        if identity is not None:
            # What the decoder writes becomes its user's; so do the inputs of a job directory
            # (mode 0600 from storage), which stay read-only in the sandbox all the same.
            job = home.stat().st_uid == identity[0]
            for path in (scratch, *outputs, *(inputs if job else ())):
                os.chown(path, *identity, follow_symlinks=False)
        preexec = _limits(sandbox, cpu_seconds)
        env = _environment(scratch)
        if sandbox.mode == "none":
            yield Prepared(argv, preexec, (), env, str(scratch), bwrap=False)
            return
        # bwrap would make the directories above each file with the host's modes (a 0700
        # pytest or data directory the job's user could not walk): make them plain first.
        above = sorted({str(a) for p in (*inputs, scratch, *outputs) for a in p.resolve().parents if a != Path("/")})
        binds = [arg for directory in above for arg in ("--perms", "0755", "--dir", directory)]
        for option, paths in (("--ro-bind-fd", inputs), ("--bind-fd", (scratch, *outputs))):
            for path in paths:
                fds.append(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC))
                binds += [option, str(fds[-1]), str(path.resolve())]
        wrapped = [*_bwrap_argv(argv[0], binds, env, identity), *argv]
        yield Prepared(wrapped, preexec, tuple(fds), {}, "/", bwrap=True)
    finally:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(scratch, ignore_errors=True)


def returncode(prepared: Prepared, code: int) -> int:
    """The decoder's own exit status: bubblewrap reports a child killed by signal N as 128 + N."""
    if prepared.bwrap and code > 128:
        return -(code - 128)
    return code


@functools.cache
def check(mode: str) -> None:
    """Start an empty sandbox once per process; SandboxUnavailable with what to do if it cannot."""
    if mode == "none":
        log.warning(
            "HUB_DECODER_SANDBOX=none: decoders run with resource limits only, without file-system or network isolation"
        )
        return
    with (
        tempfile.TemporaryDirectory(prefix="oer-hub-sandbox-check-") as tmp,
        confined(Sandbox(mode=mode), ["/bin/true"], inputs=[Path(tmp)], cpu_seconds=10) as prepared,
    ):
        result = subprocess.run(
            prepared.argv, pass_fds=prepared.pass_fds, capture_output=True, text=True, timeout=30, check=False
        )
    if result.returncode != 0:
        raise SandboxUnavailable(
            Text(
                N_(
                    "The decoder sandbox (bubblewrap) does not start here: %(error)s. "
                    "It needs user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                    "user.max_user_namespaces > 0; inside a container, one that allows them). Otherwise set "
                    "HUB_DECODER_SANDBOX=none to run decoders with resource limits only (weaker: no file-system "
                    "or network isolation)."
                ),
                error=result.stderr.strip() or str(result.returncode),  # bwrap's own words
            )
        )


def prepare(sandbox: Sandbox) -> None:
    """At a worker's start: remove what killed jobs left, and make sure the sandbox starts at all."""
    clean_stale_jobs(sandbox)
    check(sandbox.mode)

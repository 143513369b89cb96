"""Probe and transcode untrusted media: the only module that imports ffmpeg-python.

Everything here is database-free and runs inside a Celery worker: :func:`probe`
once per original, :func:`transcode` once per rendition (a task each), and
:func:`ssim` to score a video rendition. ffmpeg-python builds the command lines;
the processes are run here (:func:`_run`) so that every one of them has a
deadline, a stall timer, a bounded stderr capture, and is killed with its whole
process group when it overruns.

Untrusted input, the rules:

- the demuxer comes from the file's first bytes (:func:`sniff`), checked against
  a whitelist, never from ffmpeg's guess or from the file's name;
- ``-protocol_whitelist file`` plus a ``file:`` URL: the input is the only thing
  opened, so playlists (HLS, ffconcat), network URLs and other local files are
  out of reach even if a demuxer wanted them;
- duration, resolution, stream count, pixels per picture and run time are bounded
  (:class:`MediaLimits`); image dimensions are read from the header before any
  decoder runs, and ``-max_pixels`` stops a decoder from allocating a picture
  bomb;
- every failure is a :class:`MediaError` with a reason an uploader can read.

Using both cores. ffmpeg 5.1 runs a multi-output command's filter graph and
muxing on one thread (x264 and the decoder thread on their own), so one pass
feeding every rendition and one process per rendition were measured on this
2-core machine: video-360p + video-240p + audio from 720p 30 fps inputs with
speech. Wall seconds are the best of 4 runs (the machine was shared with other
test runs, at load 2-6); CPU seconds, the steadier figure, are the range:

                                                2 min slides    1 min camera
                                                wall   CPU      wall   CPU
    one process, three outputs, threads auto    10.6   15-19    15.7   29-36
    a process per rendition, two at a time       8.9   17-25    21.4   34-43

Chosen: a process per rendition, run two at a time by two Celery worker
processes, with two decoder threads and a single-threaded x264 each.

- It is the Celery design: one task per rendition, so a failed or killed
  rendition is redone alone, progress is reported per rendition, a reprocess
  re-encodes one profile, and several workers or machines share one lesson.
- It costs a decode of the source per video rendition: +15-30 % CPU (slides
  stay near 10 CPU-s per media minute). Wall time is better on slides; a lone
  camera lesson takes ~35 % longer, its single-threaded 360p encode being the
  critical path, while with a queue of lessons both cores are busy either way.
- x264 gets one thread because its VBV rate control is not deterministic with
  frame or slice threads (see ``ENCODER_THREADS``); the parallelism comes from
  the two processes instead, which keeps both cores busy without that cost.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import ffmpeg  # ffmpeg-python: builds argv lists; it never runs a process here

from hub.media import fmp4, quality, sandbox
from hub.media.profiles import MediaKind, Profile, VideoEncoding
from hub.media.sandbox import Sandbox

log = logging.getLogger(__name__)

# Threads per process; see "Using both cores" above. Decoding is deterministic with
# any number of threads. x264 is not once VBV is on: with -threads 2 (frame or slice
# threads) three runs gave three different files, single-threaded they are
# byte-identical, so a redo or a reprocess of unchanged input stores the same blob.
DECODER_THREADS = 2
ENCODER_THREADS = 1


class MediaError(Exception):
    """A file could not be probed or converted.

    ``reason`` is plain English for the uploader; ``detail`` is ffmpeg's own last
    words, for the logs. ``transient`` is True only when retrying later can help
    (the disk was full, the process was killed from outside); a bad file fails the
    same way every time, so it is never transient.
    """

    def __init__(self, reason: str, *, transient: bool = False, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.detail = detail


@dataclass(frozen=True)
class MediaLimits:
    """Bounds on what an upload may be and cost; fed from ``HUB_MEDIA_*`` settings."""

    max_duration_s: float = 4 * 3600
    max_width: int = 4096
    max_height: int = 4096
    max_streams: int = 8
    max_image_pixels: int = 50_000_000
    timeout_s: float = 600.0
    """Wall-clock cap for a probe, a poster, an image or a document, and the base of a transcode's cap."""
    timeout_per_media_s: float = 3.0
    """Extra wall-clock seconds a video or audio transcode may take per second of media."""
    stall_timeout_s: float = 120.0
    """Kill ffmpeg when its progress has not advanced for this long."""
    max_job_s: float = 3 * 3600.0
    """Wall-clock cap of any one run, whatever length the file claims."""
    sandbox: Sandbox = field(default_factory=Sandbox)
    """Where and how confined the decoders run."""

    def media_timeout(self, duration: float | None) -> float:
        # The duration is the file's own claim (checked by decoding its end, but a claim):
        # the cap keeps a crafted header from buying a worker for half a day.
        return min(self.timeout_s + self.timeout_per_media_s * (duration or 0.0), self.max_job_s)


@dataclass(frozen=True)
class Probe:
    """What :func:`probe` found out about an original; sizes are as displayed."""

    kind: MediaKind
    format: str
    """The sniffed format (see :func:`sniff`)."""
    bytes: int
    duration: float | None
    width: int | None
    height: int | None
    has_video: bool
    has_audio: bool
    video_streams: int
    audio_streams: int
    streams: int
    bitrate_kbps: float | None
    frame_rate: Fraction | None
    slides: bool
    """Slides-like picture (long still stretches), detected on a sample of the video."""
    animated: bool = False
    has_alpha: bool = False
    pages: int | None = None
    video_index: int | None = None
    audio_index: int | None = None
    orientation: int = 1
    """EXIF orientation of a JPEG (1 = upright); ffmpeg 5.1 does not apply it itself."""

    @property
    def fps(self) -> float | None:
        return float(self.frame_rate) if self.frame_rate else None


@dataclass(frozen=True)
class RenditionInfo:
    """What :func:`transcode` wrote."""

    bytes: int
    kbps: float | None
    width: int | None
    height: int | None
    duration: float | None
    mime_type: str
    plan: quality.Plan | None = None
    """A video rendition's per-title choices (:mod:`hub.media.quality`)."""
    full_plan: quality.Plan | None = None
    """What the profile's own settings would have been: the size its SSIM is measured at."""


# ---------------------------------------------------------------------------
# Sniffing: the first bytes choose the demuxer.

_HEAD_BYTES = 4096
# Sniffed format -> the ffmpeg demuxer forced with -f. The *_pipe image demuxers
# read exactly one picture from one file; "image2" would expand %d patterns and
# globs in the name, so it is never used.
_DEMUXERS = {
    "mov": "mov",
    "matroska": "matroska",
    "avi": "avi",
    "mp3": "mp3",
    "aac": "aac",
    "wav": "wav",
    "ogg": "ogg",
    "flac": "flac",
    "png": "png_pipe",
    "jpeg": "jpeg_pipe",
    "webp": "webp_pipe",
    "gif": "gif",
}
_IMAGES = frozenset({"png", "jpeg", "webp", "gif"})
# Formats whose header states the duration: a truncated file is caught by
# decoding its last seconds. MP3 and ADTS durations are estimates from the size,
# so for them the first seconds are decoded instead.
_INDEXED = frozenset({"mov", "matroska", "avi", "wav", "ogg", "flac"})
# ISO-BMFF brands that are still images or raw photos, which the mov demuxer cannot decode.
_NOT_MOVIE_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"jp2 ", b"jpx ", b"crx "}
)
_MOV_ATOMS = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"})


def sniff_bytes(head: bytes) -> str | None:
    """The format named by a file's first bytes (ideally 4 KB), or None if not one we accept."""
    if head[4:8] in _MOV_ATOMS:
        return None if head[4:8] == b"ftyp" and head[8:12] in _NOT_MOVIE_BRANDS else "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"  # EBML header: Matroska and WebM
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WAVE": "wav", b"AVI ": "avi", b"WEBP": "webp"}.get(head[8:12])
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if _pdf_header(head):
        return "pdf"
    if head.startswith(b"ID3") and len(head) >= 10:
        after = head[_id3_end(head) :]
        # A tag longer than the head hides what follows; MP3 is what ID3 tags.
        return _sniff_audio_frame(after) if after else "mp3"
    return _sniff_audio_frame(head)


def _pdf_header(head: bytes) -> bool:
    """A PDF starts with ``%PDF-``, after at most a UTF-8 BOM and white space.

    Readers that take ``%PDF-`` anywhere in the first kilobyte let a PostScript
    program (``%!PS`` first, ``%PDF-`` in a comment) pass for a PDF and reach
    an interpreter: such a file is not a document here.
    """
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\f")[:5] == b"%PDF-"


def sniff(path: Path) -> str | None:
    """The format of the file at ``path`` from its content alone (see :func:`sniff_bytes`)."""
    with open(path, "rb") as file:
        head = file.read(_HEAD_BYTES)
        if head.startswith(b"ID3") and len(head) >= 10 and _id3_end(head) >= len(head):
            file.seek(_id3_end(head))  # a big tag (cover art): look at what follows it
            return _sniff_audio_frame(file.read(4))
    return sniff_bytes(head)


def _id3_end(head: bytes) -> int:
    # ID3v2: 10-byte header, a "syncsafe" size (7 bits a byte), 10 more bytes if a footer is flagged.
    size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _sniff_audio_frame(head: bytes) -> str | None:
    """MPEG audio (MP1/2/3) or AAC ADTS frame sync, with the header's reserved values excluded."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    if head[1] & 0xF6 == 0xF0:  # ADTS: 12-bit sync, layer 00
        return "aac" if (head[2] >> 2) & 0x0F < 13 else None  # sampling-frequency index 13-15 is reserved
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    if version == 1 or layer == 0 or bitrate in (0, 15) or rate == 3:
        return None
    return "mp3"


# ---------------------------------------------------------------------------
# Running processes.

# -nostdin: a worker has no terminal, and ffmpeg must never wait on one.
# -progress pipe:1: machine-readable key=value blocks on stdout, twice a second.
_GLOBAL_ARGS = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-progress", "pipe:1"]
_NOT_MEDIA = "This file is not a video, audio, image or PDF we can read."
_DAMAGED = "The file is truncated or damaged."
_NOT_CONVERTED = "We could not convert this file; it may be damaged."
# What decoders say when the sandbox's address-space limit refuses them memory.
_OUT_OF_MEMORY = re.compile(
    r"Cannot allocate memory|[Oo]ut of memory|bad_alloc|VMerror|MemoryError|failed to map segment from shared object"
)
# What a decoder says when -max_pixels stops it.
_PIXEL_BOMB = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")


@dataclass(frozen=True)
class _Finished:
    returncode: int
    stdout: str
    stderr: str
    """The last lines only: a broken file can make ffmpeg warn without end."""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MediaError(f"The server cannot process media right now ({name} is not installed).", transient=True)
    return path


_PR_SET_PDEATHSIG = 1
_preexec: Callable[[], None] | None = None
if sys.platform == "linux":
    # Loaded before any fork: in the child, between fork and exec, it is only called.
    _libc = ctypes.CDLL(None, use_errno=True)

    def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
        # A worker SIGKILLed mid-transcode must not leave its ffmpeg running as an
        # orphan for hours: the kernel kills the child when the parent dies.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    _preexec = _die_with_parent


def _run(
    argv: list[str],
    limits: MediaLimits,
    *,
    inputs: tuple[Path, ...],
    outputs: tuple[Path, ...] = (),
    timeout: float,
    stall_timeout: float | None = None,
    on_progress: Callable[[dict[str, str]], None] | None = None,
) -> _Finished:
    """Run ``argv`` in the decoder sandbox to its end or kill it; ``on_progress`` gets each ``-progress`` block.

    The program may read only ``inputs`` and write only ``outputs`` (see
    :mod:`hub.media.sandbox`). The callback runs in the calling thread (the
    task's), never in a reader thread, so it may use the caller's database
    session. ``stall_timeout`` kills a process whose progress stops advancing.
    """
    # CPU seconds: the decoder threads of two cores for the whole wall-clock allowance,
    # so the kernel's limit only fires on a runaway the deadline has not caught yet.
    with sandbox.confined(
        limits.sandbox, argv, inputs=inputs, outputs=outputs, cpu_seconds=2 * timeout + 10
    ) as prepared:
        result = _supervise(prepared, argv[0], timeout, stall_timeout, on_progress)
    for output in outputs:
        _check_output(output)
    return result


def _supervise(
    prepared: sandbox.Prepared,
    program: str,
    timeout: float,
    stall_timeout: float | None,
    on_progress: Callable[[dict[str, str]], None] | None,
) -> _Finished:
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: deque[str] = deque(maxlen=80)
    stdout: list[str] = []
    proc = subprocess.Popen(
        prepared.argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",  # file names and tags in ffmpeg's messages may be in any encoding
        start_new_session=True,  # its own process group: a kill reaches whatever it spawned too
        preexec_fn=_child_setup(prepared.preexec),
        pass_fds=prepared.pass_fds,
        env=prepared.env,
        cwd=prepared.cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, lines.put, lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, stderr.append, None), daemon=True),
    ]
    for reader in readers:
        reader.start()
    started = last_advance = time.monotonic()
    block: dict[str, str] = {}
    position: tuple[str, ...] = ()
    try:
        while (line := _next_line(lines, started, timeout, last_advance, stall_timeout, program)) is not None:
            if on_progress is None:
                if len(stdout) < 100_000:  # ffprobe's JSON for a few streams is a few KB
                    stdout.append(line)
                continue
            key, _, value = line.strip().partition("=")
            block[key] = value
            if key == "progress":
                advance = (block.get("out_time_us", ""), block.get("frame", ""), block.get("total_size", ""))
                if advance != position:
                    position, last_advance = advance, time.monotonic()
                on_progress(block)
                block = {}
        # stdout is closed; the process is exiting (or hung past its output).
        returncode = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise MediaError("Processing took too long; the file may be damaged.", detail=f"{program} hung") from None
    except BaseException:
        # A timeout, the caller's callback raising, or the task being revoked: never leave ffmpeg behind.
        _kill(proc)
        raise
    for reader in readers:
        reader.join(timeout=5)
    return _Finished(sandbox.returncode(prepared, returncode), "".join(stdout), "".join(stderr))


def _child_setup(limits: Callable[[], None]) -> Callable[[], None]:
    def setup() -> None:  # pragma: no cover - runs in the child between fork and exec
        if _preexec is not None:
            _preexec()
        limits()

    return setup


def _check_output(path: Path) -> None:
    """An output is the regular file the sandbox bound writable; anything else is not the decoder's to leave."""
    status = path.lstat()
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        path.unlink()
        raise MediaError(_NOT_CONVERTED, detail=f"{path.name} is not a regular file")


def _pump(stream: Any, sink: Callable[[str], None], done: queue.Queue[str | None] | None) -> None:
    with stream:
        for line in stream:
            sink(line)
    if done is not None:
        done.put(None)


def _next_line(
    lines: queue.Queue[str | None],
    started: float,
    timeout: float,
    last_advance: float,
    stall_timeout: float | None,
    program: str,
) -> str | None:
    """The next stdout line, None at its end; MediaError when the process overran."""
    while True:
        now = time.monotonic()
        overran = now - started > timeout
        stalled = stall_timeout is not None and now - last_advance > stall_timeout
        if overran or stalled:
            minutes = math.ceil((stall_timeout if stalled and stall_timeout else timeout) / 60)
            what = f"made no progress for {minutes} min" if stalled else f"took longer than the {minutes} min allowed"
            raise MediaError(
                f"Processing this file {what}; it may be damaged.",
                detail=f"{Path(program).name} killed after {now - started:.0f}s",
            )
        try:
            return lines.get(timeout=1.0)
        except queue.Empty:
            continue


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited on its own meanwhile
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # The sandbox's processes die with it, but the kernel tears a PID namespace down
    # after bwrap is reaped: wait (briefly, boundedly) until the group is really gone,
    # so that a freed worker never overlaps the decoder it gave up on.
    for _ in range(500):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def _failure(result: _Finished, reason: str) -> MediaError:
    """The error an uploader should see for a failed run."""
    detail = result.stderr.strip()[-2000:]
    if "No space left on device" in result.stderr:
        return MediaError("The server ran out of disk space; it will try again.", transient=True, detail=detail)
    too_big = re.search(_PIXEL_BOMB, result.stderr)
    if too_big is not None:
        return MediaError(f"The picture is {too_big[1]}x{too_big[2]} pixels, more than we accept.", detail=detail)
    if result.returncode == -signal.SIGXCPU:
        return MediaError("Processing this file used more processor time than allowed.", detail=detail)
    if result.returncode == -signal.SIGXFSZ:
        return MediaError("Converting this file would write more data than allowed.", detail=detail)
    if _OUT_OF_MEMORY.search(result.stderr):
        return MediaError("Processing this file needs more memory than allowed; it may be damaged.", detail=detail)
    if result.returncode in (-signal.SIGKILL, -signal.SIGTERM):
        # Killed from outside (the OOM killer, a shutdown): another try may well succeed.
        return MediaError("Processing was interrupted; it will try again.", transient=True, detail=detail)
    return MediaError(reason, detail=detail)


def _ffmpeg_argv(stream: Any, *, overwrite: bool = False, loglevel: str = "error") -> list[str]:
    global_args = [*_GLOBAL_ARGS, "-y"] if overwrite else list(_GLOBAL_ARGS)
    global_args[global_args.index("-loglevel") + 1] = loglevel
    return [_binary("ffmpeg"), *global_args, *ffmpeg.get_args(stream)]


def _input_options(fmt: str, limits: MediaLimits) -> dict[str, Any]:
    options: dict[str, Any] = {
        "f": _DEMUXERS[fmt],  # the sniffed demuxer, never ffmpeg's guess
        "protocol_whitelist": "file",  # no playlists, network or other files, whatever the content says
        # Decoders refuse pictures above this before allocating them.
        "max_pixels": limits.max_image_pixels if fmt in _IMAGES else limits.max_width * limits.max_height,
    }
    if fmt == "mov":
        options["enable_drefs"] = 0  # the default, pinned: QuickTime data references name other files
    return options


def _input(path: Path, fmt: str, limits: MediaLimits, **options: Any) -> Any:
    # "file:" so that a name with a colon or a leading dash is never read as a protocol or an option.
    return ffmpeg.input(f"file:{path.resolve()}", **_input_options(fmt, limits), **options)


def _ffprobe(path: Path, fmt: str, limits: MediaLimits, entries: str, timeout: float) -> dict[str, Any]:
    """ffprobe's JSON for ``entries``; MediaError when it cannot read the file."""
    argv = [_binary("ffprobe"), "-hide_banner", "-loglevel", "error"]
    for key, value in _input_options(fmt, limits).items():
        argv += [f"-{key}", str(value)]
    argv += ["-show_entries", entries, "-of", "json", f"file:{path.resolve()}"]
    result = _run(argv, limits, inputs=(path,), timeout=timeout)
    too_big = re.search(_PIXEL_BOMB, result.stderr)
    if too_big is not None:  # the decoder refused; ffprobe itself may still exit 0
        _check_size("image" if fmt in _IMAGES else "video", int(too_big[1]), int(too_big[2]), limits)
    if result.returncode != 0:
        raise _failure(result, _DAMAGED)
    try:
        parsed: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise _failure(result, _DAMAGED) from None
    return parsed


# ---------------------------------------------------------------------------
# Probing.

_PROBE_ENTRIES = (
    "format=duration,bit_rate"
    ":stream=index,codec_type,width,height,sample_aspect_ratio,pix_fmt,sample_fmt,channels,"
    "avg_frame_rate,r_frame_rate,nb_frames"
    ":stream_disposition=attached_pic:stream_side_data=rotation"
)
_ALPHA = re.compile(r"^(yuva|ya|gbrap|pal8$)|rgba|bgra|argb|abgr")
_TAIL_S = 3.0
_TAIL_SLACK_S = 1.5  # a last video frame is shown for a while; streams rarely end together
# Slides detection: a sample decoded at 5 fps; slides keep few frames after
# mpdecimate drops the near-duplicates (measured on 720p: slides 4 %, camera and
# testsrc2 motion 100 %; a still camera on a static scene also counts as slides,
# and those settings suit it too).
_SLIDES_MIN_S = 4.0
_SLIDES_WINDOW_S = 8.0
_SLIDES_SAMPLE_FPS = 5
_SLIDES_MAX_KEPT = 0.25


def probe(path: Path, limits: MediaLimits) -> Probe:
    """Find out what an untrusted file is, within ``limits``; MediaError with a readable reason if unusable."""
    deadline = time.monotonic() + limits.timeout_s
    size = path.stat().st_size
    if size == 0:
        raise MediaError("The file is empty.")
    fmt = sniff(path)
    if fmt is None:
        raise MediaError(_NOT_MEDIA)
    if fmt == "pdf":
        pages = _pdf_pages(path, limits, _remaining(deadline))
        return Probe(
            kind="document",
            format=fmt,
            bytes=size,
            duration=None,
            width=None,
            height=None,
            has_video=False,
            has_audio=False,
            video_streams=0,
            audio_streams=0,
            streams=0,
            bitrate_kbps=None,
            frame_rate=None,
            slides=False,
            pages=pages,
        )
    orientation = 1
    if fmt in _IMAGES:
        orientation = _check_image_header(path, fmt, limits)
    info = _ffprobe(path, fmt, limits, _PROBE_ENTRIES, _remaining(deadline))
    streams: list[dict[str, Any]] = info.get("streams", [])
    if len(streams) > limits.max_streams:
        raise MediaError(f"The file has {len(streams)} tracks; the most we accept is {limits.max_streams}.")
    videos = [s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    # A stream is decodable when ffprobe could open its decoder (it then knows the sample layout).
    video = next((s for s in videos if s.get("pix_fmt") and s.get("width")), None)
    audio = next((s for s in audios if s.get("sample_fmt") and s.get("channels")), None)
    if video is None and audio is None:
        raise MediaError("We found no picture or sound we can decode in this file.")
    kind: MediaKind = "image" if fmt in _IMAGES else "video" if video is not None else "audio"
    if kind == "image":
        audio = None
    duration = _float(info.get("format", {}).get("duration")) if kind != "image" else None
    if kind != "image":
        _check_duration(duration, limits)
    width = height = None
    if video is not None:
        width, height = _display_size(video, orientation)
        _check_size(kind, int(video["width"]), int(video["height"]), limits)
    frame_rate = _frame_rate(video) if kind == "video" and video is not None else None
    _check_decodes(path, fmt, limits, video, audio, duration, _remaining(deadline))
    bitrate = _float(info.get("format", {}).get("bit_rate"))
    return Probe(
        kind=kind,
        format=fmt,
        bytes=size,
        duration=duration,
        width=width,
        height=height,
        has_video=kind == "video",
        has_audio=audio is not None,
        video_streams=len(videos),
        audio_streams=len(audios),
        streams=len(streams),
        bitrate_kbps=bitrate / 1000 if bitrate else None,
        frame_rate=frame_rate,
        slides=kind == "video" and _looks_like_slides(path, fmt, limits, video, duration, _remaining(deadline)),
        animated=fmt == "gif" and video is not None and int(video.get("nb_frames") or 1) > 1,
        has_alpha=video is not None and bool(_ALPHA.search(video.get("pix_fmt", ""))),
        video_index=int(video["index"]) if video is not None else None,
        audio_index=int(audio["index"]) if audio is not None else None,
        orientation=orientation,
    )


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise MediaError("Reading the file took too long; it may be damaged.")
    return remaining


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):  # absent, or ffprobe's "N/A"
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _check_duration(duration: float | None, limits: MediaLimits) -> None:
    if duration is None:
        raise MediaError("The length of the recording cannot be read; the file may be damaged.")
    if duration > limits.max_duration_s:
        raise MediaError(
            f"The recording is {_hours_minutes(duration)} long; the longest we accept is "
            f"{_hours_minutes(limits.max_duration_s)}."
        )


def _hours_minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{round(seconds)} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return " ".join(part for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if part)


def _check_size(kind: MediaKind, width: int, height: int, limits: MediaLimits) -> None:
    if kind == "image":
        if width * height > limits.max_image_pixels:
            raise MediaError(
                f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
                f"the largest we accept is {limits.max_image_pixels / 1e6:.0f} megapixels."
            )
        return
    fits = (width <= limits.max_width and height <= limits.max_height) or (
        height <= limits.max_width and width <= limits.max_height  # the same box, turned for portrait video
    )
    if not fits:
        raise MediaError(
            f"The video is {width}x{height}; the largest we accept is {limits.max_width}x{limits.max_height}."
        )


def _display_size(stream: dict[str, Any], orientation: int) -> tuple[int, int]:
    """The picture as shown: pixel aspect ratio applied, turned by rotation metadata or EXIF."""
    width, height = int(stream["width"]), int(stream["height"])
    num, _, den = str(stream.get("sample_aspect_ratio", "")).partition(":")
    if num.isdigit() and den.isdigit() and int(num) > 0 and int(den) > 0:
        width = max(1, round(width * int(num) / int(den)))
    rotation = next((int(d["rotation"]) for d in stream.get("side_data_list", []) if "rotation" in d), 0)
    if rotation % 180 or orientation >= 5:  # EXIF 5-8 are the quarter turns
        width, height = height, width
    return width, height


def _frame_rate(stream: dict[str, Any]) -> Fraction | None:
    for key in ("avg_frame_rate", "r_frame_rate"):
        try:
            rate = Fraction(str(stream.get(key, "0/0")))
        except (ValueError, ZeroDivisionError):  # "0/0" when unknown
            continue
        if rate > 0:
            return rate
    return None


def _check_decodes(
    path: Path,
    fmt: str,
    limits: MediaLimits,
    video: dict[str, Any] | None,
    audio: dict[str, Any] | None,
    duration: float | None,
    timeout: float,
) -> None:
    """Decode the last seconds of the file (its first, where the length is only an estimate).

    A file cut short keeps a header claiming the full length, so the decoded data
    must reach to within a second and a half of that end: this is how an
    interrupted copy or recording shows.
    """
    indexed = bool(duration) and fmt in _INDEXED
    start = max(0.0, (duration or 0.0) - _TAIL_S) if indexed else 0.0
    source = _input(path, fmt, limits, ss=start) if start else _input(path, fmt, limits)
    picked = [source[str(s["index"])] for s in (video, audio) if s is not None]
    argv = _ffmpeg_argv(ffmpeg.output(*picked, "-", f="null", t=5))
    last: dict[str, str] = {}
    result = _run(argv, limits, inputs=(path,), timeout=timeout, on_progress=last.update)
    if result.returncode != 0:
        raise _failure(result, _DAMAGED)
    frames, decoded = int(last.get("frame") or 0), int(last.get("out_time_us") or 0) / 1e6
    if (frames == 0 and decoded <= 0) or (indexed and start + decoded < (duration or 0.0) - _TAIL_SLACK_S):
        raise MediaError(_DAMAGED, detail=f"decoded to {start + decoded:.2f}s of {duration}s")


def _looks_like_slides(
    path: Path, fmt: str, limits: MediaLimits, video: dict[str, Any] | None, duration: float | None, timeout: float
) -> bool:
    """Whether the picture is mostly still: slides, a screen, a blackboard filmed from a tripod.

    Cheap and bounded: at most three 8 s windows (around the quartiles) are
    decoded, reference frames only, at 5 fps and 320 px wide, and mpdecimate
    drops each frame too close to the last one kept.
    """
    if video is None or duration is None or duration < _SLIDES_MIN_S:
        return False
    if duration <= 5 * _SLIDES_WINDOW_S:
        windows = [(0.0, duration)]
    else:
        windows = [(duration * quarter / 4 - _SLIDES_WINDOW_S / 2, _SLIDES_WINDOW_S) for quarter in (1, 2, 3)]
    parts = [
        _input(path, fmt, limits, ss=start, t=length, skip_frame="noref")[str(video["index"])]
        .filter("fps", fps=_SLIDES_SAMPLE_FPS)
        .filter("scale", 320, -2)
        for start, length in windows
    ]
    sampled = ffmpeg.concat(*parts, v=1, a=0) if len(parts) > 1 else parts[0]
    argv = _ffmpeg_argv(sampled.filter("mpdecimate").output("-", f="null"))
    last: dict[str, str] = {}
    result = _run(
        argv,
        limits,
        inputs=(path,),
        timeout=timeout,
        stall_timeout=limits.stall_timeout_s,
        on_progress=last.update,
    )
    if result.returncode != 0:
        raise _failure(result, _DAMAGED)
    kept = int(last.get("frame") or 0)
    sampled_frames = sum(length for _, length in windows) * _SLIDES_SAMPLE_FPS
    return kept <= _SLIDES_MAX_KEPT * sampled_frames


def _pdf_pages(path: Path, limits: MediaLimits, timeout: float) -> int:
    """The page count, as qpdf reads the file; MediaError when it cannot.

    qpdf parses PDF objects and nothing else: no interpreter runs, whatever the file holds.
    """
    argv = [_binary("qpdf"), "--show-npages", "--", str(path.resolve())]
    result = _run(argv, limits, inputs=(path,), timeout=timeout)
    last = result.stdout.strip().rsplit("\n", 1)[-1].strip()
    # Exit 3: read with warnings (a damaged file qpdf repaired); 2: could not read it.
    pages = int(last) if result.returncode in (0, 3) and last.isascii() and last.isdigit() else 0
    if pages == 0:
        raise _failure(result, "This PDF cannot be read; it may be damaged or password-protected.")
    return pages


def _check_image_header(path: Path, fmt: str, limits: MediaLimits) -> int:
    """Check the dimensions an image declares before any decoder sees it; returns the EXIF orientation.

    An image bomb is a few KB claiming 100000x100000 pixels: decoding it would
    allocate tens of GB. The header says so in its first bytes.
    """
    with open(path, "rb") as file:
        try:
            width, height, orientation = _image_header(file, fmt)
        except (struct.error, IndexError):
            raise MediaError(_DAMAGED) from None
    if width <= 0 or height <= 0:
        raise MediaError(_DAMAGED)
    _check_size("image", width, height, limits)
    return orientation


def _image_header(file: BinaryIO, fmt: str) -> tuple[int, int, int]:
    head = file.read(64)
    if fmt == "png":
        if head[12:16] != b"IHDR":
            raise IndexError
        width, height = struct.unpack(">II", head[16:24])
        return width, height, 1
    if fmt == "gif":
        width, height = struct.unpack("<HH", head[6:10])
        return width, height, 1
    if fmt == "webp":
        chunk = head[12:16]
        if chunk == b"VP8X":  # extended: 24-bit (size - 1) each
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little"), 1
        if chunk == b"VP8L":  # lossless: 14-bit (size - 1) each, packed
            bits = int.from_bytes(head[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF), 1
        if chunk == b"VP8 ":  # lossy: 14-bit sizes after the key frame's start code
            width, height = struct.unpack("<HH", head[26:30])
            return width & 0x3FFF, height & 0x3FFF, 1
        raise IndexError
    file.seek(2)
    return _jpeg_header(file)


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_header(file: BinaryIO) -> tuple[int, int, int]:
    """Walk the JPEG segments up to the frame header: its size, and the EXIF orientation on the way."""
    orientation = 1
    for _ in range(1000):  # real files have a few dozen segments
        marker = file.read(2)
        while marker[:1] == b"\xff" and marker[1:] == b"\xff":  # fill bytes before a marker
            marker = marker[1:] + file.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            break
        if 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01:  # markers without a length
            continue
        (length,) = struct.unpack(">H", file.read(2))
        if marker[1] in _SOF:
            _precision, height, width = struct.unpack(">BHH", file.read(5))
            return width, height, orientation
        if marker[1] in (0xDA, 0xD9):  # scan data or the end before any frame header
            break
        segment = file.read(length - 2)
        if marker[1] == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:])
    raise IndexError


def _exif_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0; 1 (upright) when absent or malformed, which is no reason to refuse a photo."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    try:
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
        for entry in range(ifd + 2, ifd + 2 + 12 * min(count, 200), 12):
            tag, _type, _count, value = struct.unpack(order + "HHIH", tiff[entry : entry + 10])
            if tag == 0x0112:
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


# ---------------------------------------------------------------------------
# Transcoding.

# Fragmented MP4, one progressive file per rendition, measured in a browser (issue 14).
#
# Why fragmented: a progressive MP4 with +faststart puts the whole sample index
# before the first frame, and it grows with the length (660 KB for a 10-minute
# 360p lesson, 3 MB for 45 minutes: a minute and more at 256 kbit/s). Fragmented,
# the file opens with a moov that describes the tracks but no samples, a sidx,
# then one moof + mdat per fragment. Plain <video src> plays it in every
# mainstream browser and in Android's own player (it is also DASH's format), so
# no HLS manifest and no JavaScript needed, one file per rendition to mirror and
# to put in a course ZIP. The lesson page's hub/static/stream.js plays the same
# file through MSE (it reads the sidx and fetches the fragment a seek needs),
# only adding to the plain src.
#
# How it is laid out, and why, from measurements in Debian's Chromium 156
# (FFmpegDemuxer), throttled through DevTools to 256 kbit/s and 300 ms, on a
# 150 s 720p slides lesson with a small moving inset (detected as camera: 5 s
# GOPs) and on the same lesson without the inset (slides: GOPs up to 20 s);
# first frame = readyState >= 2 with currentTime advancing, seeks to 10..90 %:
#
#                                          240p start   360p start   seeks (360p, inset)
#   fragments <= 2 s (until issue 14)      2.7 s 70 KB  1.8 s 39 KB  4 of 5 PIPELINE_ERROR_DECODE
#   a fragment per GOP, video then audio   2.3 s 60 KB  4.2 s 118 KB all resume, 4.0-6.5 s
#   the same + frag_interleave 1/15/45     2.3-2.6 s    2.4-2.7 s    decode errors again (240p or 360p)
#   +faststart (progressive, 150 s only)   2.7 s 89 KB  3.5 s 110 KB all resume, 1.8-4.5 s; index grows
#   a fragment per GOP, audio then video,  1.6 s 44 KB  1.5 s 39 KB  all resume, 4.5-6.6 s
#     no mfra (chosen)                     slides: 2.7 s 90 KB, 3.5 s 109 KB; seeks 0.4-4.1 s
#
# - A fragment starts only at a keyframe (frag_keyframe, no frag_duration). A
#   player seeks to the fragment the sidx names and decodes from its first
#   sample; when 2 s fragments cut a 5 s or 20 s GOP, that sample is not a
#   keyframe and Chromium stops with PIPELINE_ERROR_DECODE ... is_key_frame=0.
#   Scene cuts still add keyframes where slides change, so seeks land there.
# - The audio track comes first in each fragment (it is mapped first). Within a
#   fragment the muxer writes each track's samples as one run, and a player
#   reads the run it needs first to the end: with video first, a camera GOP
#   (up to 5 s of 160 kbit/s, ~100 KB) had to arrive before any sound, so before
#   playing; audio first costs one GOP of speech (~2.7 KB/s: <= 54 KB for a
#   20 s slide GOP) and then the keyframe. Interleaving inside a fragment
#   (frag_interleave) would do better on paper, but Chromium then mistakes the
#   first sample of each run for a keyframe and fails to decode it.
# - Each fragment's sound starts at or before its keyframe (hub.media.fmp4, after the
#   encode). The muxer closes a fragment at the keyframe's decode time, so the AAC
#   frame playing at that moment (begun up to 64 ms before) ended the previous
#   fragment. A seek in Chromium seeks the audio to the frame at or before the
#   keyframe, so it read the previous fragment's index and audio run first. One
#   seek to 45 s (30 %) right after the first frame, in the 150 s mixed lesson's
#   360p (the same packets, remuxed), at 256 kbit/s and 300 ms:
#
#                                          first frame   seek    range requests after the seek
#     as muxed (ENCODER_REVISION 2)        2.0 s 43 KB   5.3 s   393216-, 327680- (back), 425984-
#     the same without its audio track     1.6 s 39 KB   2.5 s   262144-
#     +faststart (progressive)             3.7 s 110 KB  1.6 s   458752-; index grows with length
#     sound moved to the keyframe (chosen) 1.6 s 47 KB   2.6 s   393216-
#
#   Progressive +faststart seeks faster, but its whole index comes before the first
#   frame and grows with the length (the 45-minute lesson's +faststart reference:
#   a 1.08 MB index, 35 s to the first frame; benchmarks/media/RESULTS.md).
# - The first fragment of a slides rendition is short (_first_fragment: a keyframe at
#   4 s). The first picture comes after its fragment's audio run, and a slide GOP is up
#   to 20 s of speech. Same inputs, same browser session, 256 kbit/s and 300 ms, load ~15
#   (ENCODER_REVISION 3 -> 4; "structure" = bytes through the first video sample):
#
#                                    structure       first frame      file
#     150 s slides lesson, 360p      67.9 -> 20.9 KB  4.10 -> 2.84 s   +1.0 %
#     150 s slides lesson, 240p      51.0 -> 15.9 KB  2.90 -> 1.76 s   +1.1 %
#     10 min drawn slides, 360p      59.1 -> 14.4 KB  2.63 -> 1.69 s   -0.05 %
#     10 min drawn slides, 240p      47.6 -> 12.5 KB  2.75 -> 1.81 s   -0.03 %
#
#   Camera renditions (5 s GOPs) get keyframes at 2, 4 and 7 s (ENCODER_REVISION 5): through
#   MSE (hub/static/stream.js) the first picture waits for the whole first fragment, not only
#   its audio run. The reason against 1-2 s above holds there for a lone cut: a 5 s camera
#   fragment (~110 KB at 360p) takes ~3.5 s at 256 kbit/s, longer than 2 s of buffer, so 2 + 2
#   + 3 s before the usual GOPs. The bare element reads samples as they come and loses little.
#   Old and new encodes played side by side, 256 kbit/s and 300 ms, load 5-12 (2026-12-04):
#
#                                   first fragment   first frame MSE   bare             file
#     120 s camera clip, 360p       110.0 -> 41.7 KB  4.18 -> 2.37 s   2.55 -> 2.54 s   +0.4 %
#     120 s camera clip, 240p        69.9 -> 30.2 KB  3.08 -> 1.79 s   2.47 -> 1.43 s   +0.6 %
#     150 s mixed lesson, 360p       47.5 -> 23.9 KB  2.30 -> 1.69 s   1.64 -> 1.66 s   +1.0 %
#     5 s clip, 360p (one fragment) 108.1 -> 47.2 KB  4.08 -> 2.22 s   2.47 -> 2.48 s   +13 %
#
# - No mfra at the end (skip_trailer): Chromium read the last 32 KB block for it
#   before playing (one more round trip and up to 32 KB); the sidx at the start
#   already indexes every fragment.
# - An audio rendition has no keyframes to cut at; every AAC frame is a sync
#   sample, so it is cut every _AUDIO_FRAGMENT_US.
#   empty_moov         the moov carries no samples: the first fragment is like every other
#   default_base_moof  sample offsets relative to their own moof, as MSE and DASH players expect
#   global_sidx        one index of all fragments (12 bytes each) up front: the length and
#                      byte ranges are known at once, so a player can seek without scanning
_MOVFLAGS = "+empty_moov+default_base_moof+global_sidx+skip_trailer"
_VIDEO_MOVFLAGS = _MOVFLAGS + "+frag_keyframe"
_AUDIO_FRAGMENT_US = 2_000_000
_FIRST_FRAGMENT_S = 4
"""The first fragment of a long-GOP (slides) rendition ends here (see _first_fragment)."""
_SHORT_GOP_KEYS = (2, 4, 7)
"""Forced keyframes (s) of a short-GOP (camera) rendition: fragments of 2, 2, 3 s (see _first_fragment)."""


def transcode(
    src: Path,
    probe: Probe,
    profile: Profile,
    dest: Path,
    *,
    on_progress: Callable[[float], None] | None = None,
    limits: MediaLimits,
    plan: quality.Plan | None = None,
) -> RenditionInfo | None:
    """Write ``profile``'s rendition of ``src`` to ``dest`` (a temp path the caller owns).

    Returns None when the profile does not apply to this original, or when a
    document or image rendition would not be smaller than the original (the
    caller records it as skipped). Raises MediaError when conversion fails.
    A video rendition is planned first (:func:`plan_video`) unless ``plan`` is given.
    """
    if not profile.applies_to(probe.kind, has_audio=probe.has_audio, animated=probe.animated):
        return None
    if profile.kind == "document":
        compressed = _compress_pdf(src, probe, profile, dest, limits)
        if on_progress is not None:
            on_progress(100.0)
        return compressed
    duration = min(probe.duration or 0.0, limits.max_duration_s)
    mime_type = profile.mime_type
    full_plan = None
    if profile.kind == "video":
        full_plan = _full_plan(probe, profile)
        if plan is None:
            plan = plan_video(src, probe, profile, dest.parent, limits, on_progress=on_progress).plan
        argv = _video_argv(src, probe, profile, dest, limits, plan)
    elif profile.kind == "audio":
        argv = _audio_argv(src, probe, profile, dest, limits)
    else:  # a poster or an image
        png = profile.kind == "image" and probe.has_alpha  # JPEG would lose the transparency
        mime_type = "image/png" if png else mime_type
        argv = _picture_argv(src, probe, profile, dest, limits, png=png)

    def report(block: dict[str, str]) -> None:
        if on_progress is not None and duration > 0:
            done = int(block.get("out_time_us") or 0) / 1e6  # "N/A" before the first frame
            on_progress(min(100.0, max(0.0, 100.0 * done / duration)))

    result = _run(
        argv,
        limits,
        inputs=(src,),
        outputs=(dest,),
        timeout=limits.media_timeout(duration) if profile.kind in ("video", "audio") else limits.timeout_s,
        stall_timeout=limits.stall_timeout_s,
        on_progress=report,
    )
    if result.returncode != 0 or not dest.exists() or dest.stat().st_size == 0:
        raise _failure(result, _NOT_CONVERTED)
    if profile.kind == "video" and probe.audio_index is not None:
        fmp4.align_audio(dest)  # each fragment's sound starts at its keyframe: one read per seek (see _MOVFLAGS)
    info = dataclasses.replace(_describe(dest, profile, mime_type, limits), plan=plan, full_plan=full_plan)
    if profile.keep_only_if_smaller and info.bytes >= probe.bytes:
        dest.unlink()
        return None
    if profile.kind in ("video", "audio") and duration > 2 and (info.duration or 0) < duration / 2:
        # ffmpeg skips damaged data and exits 0: a rendition of half the lesson must not become "ready".
        raise MediaError("Only part of the file could be read; it may be damaged.")
    if on_progress is not None:
        on_progress(100.0)
    return info


def _mp4_options(limits: MediaLimits, *, video: bool) -> dict[str, Any]:
    # A video rendition is cut at keyframes only; an audio one every 2 s (see _MOVFLAGS).
    fragments = {"movflags": _VIDEO_MOVFLAGS} if video else {"movflags": _MOVFLAGS, "frag_duration": _AUDIO_FRAGMENT_US}
    return {
        "f": "mp4",
        **fragments,
        "map_metadata": -1,  # no uploader's metadata (a phone's GPS position) in a public file
        "map_chapters": -1,
        "fflags": "+bitexact",  # no encoder version strings: a reprocess of unchanged input gives the same bytes
        "t": limits.max_duration_s,  # a header may understate the length; the output never exceeds the limit
        "threads": ENCODER_THREADS,
    }


def _audio_options(profile: Profile) -> dict[str, Any]:
    assert profile.audio is not None
    return {
        "c:a": "aac",
        "profile:a": "aac_low",
        "b:a": f"{profile.audio.bitrate_kbps}k",
        "ac": 1,  # speech is mono; stereo would halve the bits per channel
        "ar": profile.audio.sample_rate,
    }


def _encoding(probe: Probe, profile: Profile) -> VideoEncoding:
    encoding: VideoEncoding | None = profile.slides if probe.slides else profile.camera
    assert encoding is not None and probe.width and probe.height
    return encoding


def _full_plan(probe: Probe, profile: Profile) -> quality.Plan:
    assert probe.width and probe.height
    return quality.nominal(profile, _encoding(probe, profile), probe.width, probe.height, probe.frame_rate)


def _source_video(
    src: Path, probe: Probe, limits: MediaLimits, windows: list[tuple[float, float]] | None = None
) -> Any:
    """The source's picture, whole or (for a trial) the sample's windows one after another."""
    if not windows:
        return _input(src, probe.format, limits, threads=DECODER_THREADS)[str(probe.video_index)]
    parts = [
        _input(src, probe.format, limits, ss=start, t=length, threads=DECODER_THREADS)[str(probe.video_index)]
        for start, length in windows
    ]
    return ffmpeg.concat(*parts, v=1, a=0) if len(parts) > 1 else parts[0]


def _video_argv(
    src: Path,
    probe: Probe,
    profile: Profile,
    dest: Path,
    limits: MediaLimits,
    plan: quality.Plan,
    *,
    windows: list[tuple[float, float]] | None = None,
) -> list[str]:
    """The command for a rendition (or, with ``windows``, a silent trial of a sample of it)."""
    encoding = _encoding(probe, profile)
    assert probe.video_index is not None
    picture = _source_video(src, probe, limits, windows)
    rate = plan.rate
    if rate != probe.frame_rate:
        picture = picture.filter("fps", fps=str(rate))
    picture = picture.filter("scale", plan.width, plan.height)
    if plan.denoise:
        # After scaling: fewer pixels to filter, and the downscale has already averaged some grain away.
        picture = picture.filter("hqdn3d", **quality.DENOISE_FILTERS[plan.denoise])
    picture = picture.filter("setsar", 1).filter("format", "yuv420p")
    streams = [picture]
    options: dict[str, Any] = {
        "c:v": "libx264",
        "profile:v": encoding.h264_profile,
        "level:v": encoding.h264_level,
        "preset": encoding.preset,
        "crf": plan.crf,
        "maxrate": f"{encoding.maxrate_kbps}k",
        "bufsize": f"{encoding.bufsize_kbit}k",
        "g": max(1, round(encoding.keyint_s * rate)),
        "sc_threshold": 40,  # x264's scene-cut detection (its default, pinned): keyframes where slides change
        **_first_fragment(encoding),
        **_mp4_options(limits, video=True),
    }
    if probe.audio_index is not None and windows is None:  # a silent original gets no audio track
        # Mapped first, so each fragment holds its sound before its pictures (see _MOVFLAGS).
        streams.insert(0, _input(src, probe.format, limits, threads=DECODER_THREADS)[str(probe.audio_index)])
        options.update(_audio_options(profile))
    return _ffmpeg_argv(ffmpeg.output(*streams, f"file:{dest.resolve()}", **options), overwrite=True)


def _first_fragment(encoding: VideoEncoding) -> dict[str, Any]:
    """Keyframes that make the first fragment short: at _FIRST_FRAGMENT_S for long GOPs, _SHORT_GOP_KEYS for short.

    The first picture comes after its fragment's whole audio run (audio first, see _MOVFLAGS),
    and through MSE (hub/static/stream.js) after the whole fragment: Chromium's MSE parser hands
    a fragment's samples over only once its mdat has arrived. With a 20 s slide GOP the audio
    run is 20 s of speech (~54 KB at 360p): an IDR at 4 s ends the first fragment there
    (~11 KB of sound); the next GOP then runs its usual length. With a 5 s camera GOP the whole
    first fragment (~120 KB at 360p, the 5 s clip's only one) came before the first picture
    through MSE: IDRs at 2, 4 and 7 s end it at 2 s (~45 KB). Not 2 s and then the usual 5 s:
    through MSE each next fragment must have arrived whole before the ones before it have played,
    and at 256 kbit/s a 5 s camera fragment (~180 kbit/s) takes ~3.5 s, longer than 2 s or 4 s
    of buffer; 2 + 2 + 3 s keeps each arrival ahead (see the table above _MOVFLAGS). Slides'
    fragments are cheap (~2.7 KB/s of speech plus a still picture), so one cut at 4 s suffices.
    """
    if encoding.keyint_s >= 2 * _FIRST_FRAGMENT_S:
        return {"force_key_frames": f"{_FIRST_FRAGMENT_S:g}", "forced-idr": 1}
    if encoding.keyint_s > _SHORT_GOP_KEYS[0]:
        return {"force_key_frames": ",".join(f"{at:g}" for at in _SHORT_GOP_KEYS), "forced-idr": 1}
    return {}


def plan_video(
    src: Path,
    probe: Probe,
    profile: Profile,
    workdir: Path,
    limits: MediaLimits,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> quality.Choice:
    """Choose this title's plan for ``profile`` by encoding a sample with each plan in turn (:mod:`hub.media.quality`).

    Each trial encodes the sample's windows (a few seconds from across the file)
    with the rendition's own encoder settings, then measures its SSIM against the
    original's same frames at the profile's full size. ``workdir`` is the job
    directory the trial files go to (and are removed from).
    """
    assert probe.width and probe.height and probe.video_index is not None
    encoding = _encoding(probe, profile)
    full = _full_plan(probe, profile)
    duration = min(probe.duration or 0.0, limits.max_duration_s)
    sample = quality.sample_windows(duration)
    windows = None if len(sample) == 1 and sample[0][0] == 0 else sample
    seconds = max(0.04, sum(length for _, length in sample))  # a one-frame video has a length of ~0
    trials: list[quality.Trial] = []
    limit = quality.max_trials(duration, seconds)
    while (
        plan := quality.next_plan(profile, encoding, probe.width, probe.height, probe.frame_rate, trials, limit=limit)
    ) is not None:
        trial = workdir / f"trial-{len(trials)}.mp4"
        try:
            argv = _video_argv(src, probe, profile, trial, limits, plan, windows=windows or [(0.0, duration)])
            result = _run(
                argv,
                limits,
                inputs=(src,),
                outputs=(trial,),
                timeout=limits.media_timeout(seconds),
                stall_timeout=limits.stall_timeout_s,
                # A trial shows no progress of its own; reporting keeps the worker's lease alive.
                on_progress=(lambda _block: on_progress(0.0)) if on_progress is not None else None,
            )
            if result.returncode != 0 or not trial.exists() or trial.stat().st_size == 0:
                raise _failure(result, _NOT_CONVERTED)
            score = _compare(src, trial, probe, full.width, full.height, plan.rate, limits=limits, windows=windows)
            trials.append(quality.Trial(plan, score, trial.stat().st_size * 8 / seconds / 1000))
        finally:
            trial.unlink(missing_ok=True)
        log.info(
            "trial %s for %s: %s -> SSIM %.4f, %.0f kbit/s", len(trials), profile.name, plan, score, trials[-1].kbps
        )
    return quality.choose(trials, profile.ssim_floor)


def _audio_argv(src: Path, probe: Probe, profile: Profile, dest: Path, limits: MediaLimits) -> list[str]:
    assert probe.audio_index is not None
    source = _input(src, probe.format, limits, threads=DECODER_THREADS)
    options = {**_mp4_options(limits, video=False), **_audio_options(profile)}
    output = ffmpeg.output(source[str(probe.audio_index)], f"file:{dest.resolve()}", **options)
    return _ffmpeg_argv(output, overwrite=True)


# EXIF orientation -> the filters that make the picture upright.
_UPRIGHT: dict[int, list[tuple[str, dict[str, Any]]]] = {
    2: [("hflip", {})],
    3: [("hflip", {}), ("vflip", {})],
    4: [("vflip", {})],
    5: [("transpose", {"dir": "cclock_flip"})],
    6: [("transpose", {"dir": "clock"})],
    7: [("transpose", {"dir": "clock_flip"})],
    8: [("transpose", {"dir": "cclock"})],
}


def _picture_argv(
    src: Path, probe: Probe, profile: Profile, dest: Path, limits: MediaLimits, *, png: bool
) -> list[str]:
    """A poster (one frame 10 % into a video, or the image) or an image rendition."""
    assert probe.video_index is not None and probe.width and probe.height
    if probe.kind == "video" and probe.duration:
        # 10 % in: past title cards and fades, early enough to show the lesson's subject.
        source = _input(src, probe.format, limits, ss=round(probe.duration / 10, 3))
    else:
        source = _input(src, probe.format, limits)
    picture = source[str(probe.video_index)]
    for name, arguments in _UPRIGHT.get(probe.orientation, []):
        picture = picture.filter(name, **arguments)
    width, height = profile.fit(probe.width, probe.height)
    picture = picture.filter("scale", width, height).filter("setsar", 1)
    options: dict[str, Any] = {
        "frames:v": 1,
        "f": "image2pipe",  # one picture to one file; "image2" would read % in the name as a pattern
        "map_metadata": -1,  # and mjpeg writes no EXIF: no GPS position of the photographer
        "fflags": "+bitexact",
    }
    if png:
        options.update({"c:v": "png", "pred": "mixed"})  # "mixed" row filters: the smallest PNGs
    else:
        if probe.has_alpha:
            # JPEG has no transparency: lay the picture on white, as a page shows it, rather
            # than let transparent pixels turn black (black text on a transparent diagram).
            # (rgba pinned before the split: both branches must share a format, and the
            # white one would otherwise make the negotiation drop the alpha channel.)
            layers = picture.filter("format", "rgba").filter_multi_output("split")
            white = layers[0].filter("format", "rgb24").filter("lutrgb", r=255, g=255, b=255)
            picture = ffmpeg.overlay(white, layers[1])
        picture = picture.filter("format", "yuvj420p")  # full-range 4:2:0, what JPEG decoders expect
        options.update({"c:v": "mjpeg", "q:v": profile.jpeg_quality})
    return _ffmpeg_argv(ffmpeg.output(picture, f"file:{dest.resolve()}", **options), overwrite=True)


def _compress_pdf(src: Path, probe: Probe, profile: Profile, dest: Path, limits: MediaLimits) -> RenditionInfo | None:
    """Downsample a PDF's pictures with Ghostscript; None when that does not make it smaller.

    Ghostscript is a PostScript interpreter. It is handed only a PDF that qpdf
    wrote from the objects it parsed (so its first bytes are ``%PDF-`` and it
    goes to Ghostscript's PDF reader), runs in the sandbox like every decoder,
    and each step has the same time limit whatever the page count claims.
    """
    clean = src.with_name("document-qpdf.pdf")
    argv = [_binary("qpdf"), "--decrypt", "--object-streams=generate", "--", str(src.resolve()), str(clean.resolve())]
    result = _run(argv, limits, inputs=(src,), outputs=(clean,), timeout=limits.timeout_s)
    try:
        if result.returncode not in (0, 3) or clean.stat().st_size == 0:
            raise _failure(result, "We could not compress this PDF; it may be damaged.")
        argv = [
            _binary("gs"),
            "-q",
            "-dSAFER",  # Ghostscript's default, pinned: no file access beyond its input and output
            "-dBATCH",
            "-dNOPAUSE",
            "-sDEVICE=pdfwrite",
            f"-dPDFSETTINGS={profile.pdf_settings}",
            # % in an output name is a page-number pattern to Ghostscript.
            "-sOutputFile=" + str(dest.resolve()).replace("%", "%%"),
            "-f",  # the next argument is a file, even if it looked like an option
            str(clean.resolve()),
        ]
        result = _run(argv, limits, inputs=(clean,), outputs=(dest,), timeout=limits.timeout_s)
    finally:
        clean.unlink(missing_ok=True)
    if result.returncode != 0 or dest.stat().st_size == 0:
        raise _failure(result, "We could not compress this PDF; it may be damaged.")
    size = dest.stat().st_size
    if size >= probe.bytes:
        dest.unlink()
        return None
    pages = _pdf_pages(dest, limits, limits.timeout_s)
    if pages != probe.pages:
        # Ghostscript repairs damaged files as it reads them, and may drop pages doing so.
        log.warning("Ghostscript wrote %s of %s pages of %s; keeping only the original", pages, probe.pages, src)
        dest.unlink()
        return None
    return RenditionInfo(bytes=size, kbps=None, width=None, height=None, duration=None, mime_type=profile.mime_type)


def _describe(dest: Path, profile: Profile, mime_type: str, limits: MediaLimits) -> RenditionInfo:
    """Read back what was written: the numbers on the rendition row come from the file, not the plan."""
    fmt = "mov" if profile.kind in ("video", "audio") else "png" if mime_type == "image/png" else "jpeg"
    info = _ffprobe(dest, fmt, limits, "format=duration:stream=codec_type,width,height", limits.timeout_s)
    size = dest.stat().st_size
    picture = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    duration = _float(info.get("format", {}).get("duration")) if profile.kind in ("video", "audio") else None
    return RenditionInfo(
        bytes=size,
        kbps=round(size * 8 / duration / 1000, 1) if duration else None,
        width=int(picture["width"]) if picture else None,
        height=int(picture["height"]) if picture else None,
        duration=duration,
        mime_type=mime_type,
    )


# ---------------------------------------------------------------------------
# Quality.


def ssim(
    reference: Path,
    rendition: Path,
    probe: Probe,
    width: int,
    height: int,
    *,
    limits: MediaLimits,
    on_progress: Callable[[float], None] | None = None,
) -> float:
    """SSIM (the "All" value, 0..1) of a video rendition against its source, both at ``width`` x ``height``.

    ``width`` x ``height`` is the profile's full size (:attr:`RenditionInfo.full_plan`):
    a rendition made smaller to keep its budget is scaled up to it with bicubic,
    as a player shows it, so that the score counts the detail it lost. The source
    goes through the same frame-rate reduction as the rendition did, so that each
    rendition frame is compared with the frame it was made from. ``on_progress``
    gets the percentage compared: on a long lesson this decode of the whole
    source takes minutes, and a worker must show it is alive.
    """
    if probe.video_index is None:
        raise ValueError("ssim needs a probe of a video")
    info = _ffprobe(rendition, "mov", limits, "stream=codec_type,r_frame_rate", limits.timeout_s)
    stream = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    if stream is None:
        raise ValueError(f"{rendition} has no video")
    # r_frame_rate, not avg_frame_rate: in a fragmented MP4 the first frame lasts longer (the
    # AAC priming shift), which skews the average (15 fps read back as 14.5).
    rate = Fraction(str(stream.get("r_frame_rate", "0/1")))
    return _compare(reference, rendition, probe, width, height, rate, limits=limits, on_progress=on_progress)


def _compare(
    reference: Path,
    rendition: Path,
    probe: Probe,
    width: int,
    height: int,
    rate: Fraction,
    *,
    limits: MediaLimits,
    windows: list[tuple[float, float]] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> float:
    """SSIM of ``rendition`` (``rate`` fps) against ``reference`` (or its ``windows``), at ``width`` x ``height``."""
    original = _source_video(reference, probe, limits, windows)
    if probe.frame_rate is not None and 0 < rate < probe.frame_rate * Fraction(9, 10):
        original = original.filter("fps", fps=str(rate))  # the transcode reduced the frame rate
    original = (
        original.filter("scale", width, height)
        .filter("setsar", 1)
        .filter("format", "yuv420p")
        .filter("setpts", "PTS-STARTPTS")  # both start at 0, whatever edit lists and start times said
    )
    # Scaled to the full size only when it is not already (a rendition reduced to keep its budget).
    rendered = (
        _input(rendition, "mov", limits, threads=DECODER_THREADS)["v:0"]
        .filter("scale", width, height, flags="bicubic")
        .filter("setsar", 1)
        .filter("format", "yuv420p")
        .filter("setpts", "PTS-STARTPTS")
    )
    compared = ffmpeg.filter([rendered, original], "ssim").output("-", f="null")
    duration = sum(length for _, length in windows) if windows else probe.duration or 0.0

    def report(block: dict[str, str]) -> None:
        if on_progress is not None and duration > 0:
            done = int(block.get("out_time_us") or 0) / 1e6  # "N/A" before the first frame
            on_progress(min(100.0, max(0.0, 100.0 * done / duration)))

    # The ssim filter prints its summary at "info" level when it closes.
    result = _run(
        _ffmpeg_argv(compared, loglevel="info"),
        limits,
        inputs=(reference, rendition),
        timeout=limits.media_timeout(duration),
        stall_timeout=limits.stall_timeout_s,
        on_progress=report,
    )
    found = re.search(r"SSIM .* All:([0-9.]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise _failure(result, "We could not measure the quality of this rendition.")
    return float(found[1])


# ---------------------------------------------------------------------------
# Chapters: where the picture changes (slide changes), for hub.media.chapters.

# The picture is sampled at 2 fps and 320 px wide: a slide change is found within half a
# second. mpdecimate then drops every sampled frame too close to the last one it kept, so
# what it keeps are the moments the picture changed. Its "too close", tuned for slides with
# a talking-head inset: at most 1/16 of its (overlapping) 8x8 blocks may differ (frac=1,
# the most it takes, is about 6 % of the picture: a camera inset in a corner), by a mean
# of 5 levels a pixel (lo=320), and no block is big enough to keep a frame on its own
# (hi above any 8x8 sum). Measured on generated 720p slides with a moving 192x108 inset:
# only the slide changes are kept; on full-frame motion, every frame.
# Decoding costs the most: skip_frame=noref spares the B-frames of a camera-encoded upload,
# and skip_loop_filter=all the deblocking nobody looks at (-20 % wall time on 720p). Measured
# on this shared 2-core machine, against the two video renditions alone (audio, poster and
# SSIM passes come on top): a 200 s 720p slides lesson 3.4 s against 37.4 s (9 %), a 60 s
# 720p30 camera clip 2.2 s against 41.2 s (5 %).
_SCENE_FPS = 2
_SCENE_WIDTH = 320
_STILL = {"hi": 64 * 256, "lo": 64 * 5, "frac": 1}
_SCENE_LINE = re.compile(r"pts_time:([0-9.]+)")


@dataclass(frozen=True)
class PictureChanges:
    """What :func:`picture_changes` saw."""

    times: list[float]
    """When the picture changed (s), the first frame included, ascending."""
    sampled: int
    """How many frames were looked at (2 a second)."""


def picture_changes(
    src: Path,
    probe: Probe,
    *,
    limits: MediaLimits,
    on_progress: Callable[[float], None] | None = None,
) -> PictureChanges:
    """The moments the picture of a video changes, and how many frames were looked at.

    A slides lesson keeps a few frames (one per slide); camera footage nearly all.
    ``metadata=print`` writes the kept frames' times to a file in the job directory
    (the ``select`` before it only gives each frame a score, so that it has metadata
    to print).
    """
    if probe.video_index is None:
        raise ValueError("picture_changes needs a probe of a video")
    found = src.with_name("changes.txt")
    picture = (
        _input(src, probe.format, limits, threads=DECODER_THREADS, skip_frame="noref", skip_loop_filter="all")[
            str(probe.video_index)
        ]
        .filter("fps", fps=_SCENE_FPS)
        .filter("scale", _SCENE_WIDTH, -2)
        .filter("mpdecimate", **_STILL)
        .filter("select", "gte(scene,0)")
        .filter("metadata", mode="print", file=str(found.resolve()))
    )
    duration = probe.duration or 0.0

    def report(block: dict[str, str]) -> None:
        if on_progress is not None and duration > 0:
            done = int(block.get("out_time_us") or 0) / 1e6  # "N/A" before the first frame
            on_progress(min(100.0, max(0.0, 100.0 * done / duration)))

    try:
        result = _run(
            _ffmpeg_argv(picture.output("-", f="null")),
            limits,
            inputs=(src,),
            outputs=(found,),
            timeout=limits.media_timeout(probe.duration),
            stall_timeout=limits.stall_timeout_s,
            on_progress=report,
        )
        if result.returncode != 0:
            raise _failure(result, _DAMAGED)
        # "frame:N pts:P pts_time:T" and the frame's metadata lines: bounded, at most a few
        # lines per sampled frame of a length-checked file.
        with found.open(encoding="ascii", errors="replace") as lines:
            times = [float(at[1]) for line in lines if (at := _SCENE_LINE.search(line)) is not None]
        return PictureChanges(times=sorted(times), sampled=max(1, math.ceil(duration * _SCENE_FPS)))
    finally:
        found.unlink(missing_ok=True)

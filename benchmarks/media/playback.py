"""Benchmark: the renditions played in Debian's Chromium at 256 kbit/s / 300 ms (issue 14).

    .venv/bin/python -m benchmarks.media.playback [--quick] [--workdir DIR] [--no-write] [--reuse] [--inputs a,b]
        [--players plain,mse]

Per content type (slides lesson, camera clip, mixed = the slides lesson with a small
moving inset, a 45-minute lesson, a 5-second clip), the ladder's ``video-360p``,
``video-240p`` and ``audio`` renditions (:func:`hub.media.ffmpeg.transcode`, the code
the workers run) and, in the same run, ricecooker's ``--compress`` encoding of the
same input (:func:`benchmarks.media.run.reference_argv`, ``+faststart``) are served
over loopback with Range support and played, each in its own throttled tab, by
:func:`tests.support.playback.measure`: seconds and bytes to the first frame, and
five seeks (10..90 %) with the seconds and bytes until playback resumed. Each of our
renditions plays twice in the same run: as a bare ``<video src>`` (what plays without
JavaScript) and through the lesson page's ``hub/static/stream.js`` (Media Source Extensions).

The 45-minute lesson is a cheap stand-in (640x360 drawn slides changing every 30 s,
a tone, generated in seconds), since what its length tests is the container: the
index before the first frame and the seeks across it. ``--quick`` makes the slides
lesson 1 minute and the long one 10 minutes, and prints without rewriting RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.media import inputs, mp4, run
from hub.media import ffmpeg
from hub.media.profiles import PROFILES
from tests.support import playback
from tests.support.browser import chromium

BEGIN = "<!-- playback results: written by `python -m benchmarks.media.playback`; edit above or below -->"
END = "<!-- end of playback results -->"
OURS = ("video-360p", "video-240p", "audio")
MSE = " MSE"
"""Label suffix of a rendition played through hub/static/stream.js (Media Source Extensions)."""


def mixed_lesson(work: Path, seconds: float) -> Path:
    """The slides lesson with a 160x120 moving picture in a corner (a teacher's camera)."""
    out = work / f"mixed-{seconds:g}s-r{inputs.RECIPE}.mp4"
    if not out.exists():
        base = inputs.slides_lesson(work, seconds)
        inputs.ffmpeg(
            ["-i", base.name, "-f", "lavfi", "-i", f"testsrc2=s=160x120:r=30:d={seconds:g}",
             "-filter_complex", "[0:v][1:v]overlay=x='1080+20*sin(2*PI*t/7)':y='560+10*cos(2*PI*t/5)'[v]",
             "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "60",
             "-c:a", "copy", "-movflags", "+faststart", "-f", "mp4", out.name + ".part"],
            work,
        )  # fmt: skip
        (work / (out.name + ".part")).rename(out)
    return out


def long_lesson(work: Path, seconds: float) -> Path:
    """Drawn slides changing every 30 s, 640x360 @ 15 fps, with a tone: a long lesson made in seconds."""
    out = work / f"long-{seconds:g}s.mp4"
    if not out.exists():
        slide = (
            f"color=c=white:size=640x360:rate=15:duration={seconds:g},"
            "drawbox=x=0:y=0:w=iw:h=60:color=0x1f4e79:t=fill,"
            "drawbox=x='40+mod(floor(t/30),10)*40':y=120:w=200:h=24:color=0x202020:t=fill,"
            "drawbox=x=380:y='140+mod(floor(t/30),7)*20':w=200:h=120:color=0xd43b3b:t=fill"
        )
        inputs.ffmpeg(
            ["-f", "lavfi", "-i", slide, "-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds:g}",
             "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-g", "450",
             "-c:a", "aac", "-b:a", "64k", "-ac", "1", "-f", "mp4", out.name + ".part"],
            work,
        )  # fmt: skip
        (work / (out.name + ".part")).rename(out)
    return out


def short_clip(work: Path, seconds: float) -> Path:
    out = work / f"short-{seconds:g}s.mp4"
    if not out.exists():
        inputs.ffmpeg(
            ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds:g}",
             "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds:g}",
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac", "-shortest",
             "-f", "mp4", out.name + ".part"],
            work,
        )  # fmt: skip
        (work / (out.name + ".part")).rename(out)
    return out


class _Files(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte ranges, as the hub (and nginx, S3) answer them."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        found = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        start, end = 0, size - 1
        if found and (found[1] or found[2]):
            start = int(found[1]) if found[1] else max(0, size - int(found[2]))
            end = min(int(found[2]), size - 1) if found[1] and found[2] else size - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        kind = {".mp4": "video/mp4", ".m4a": "audio/mp4"}.get(path.suffix, "text/html")
        self.send_header("Content-Type", kind)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        file = path.open("rb")
        file.seek(start)
        self._left = end - start + 1
        return file

    def copyfile(self, source: Any, outputfile: Any) -> None:
        left = getattr(self, "_left", None)
        while left is None or left > 0:
            chunk = source.read(65536 if left is None else min(65536, left))
            if not chunk:
                return
            try:
                outputfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return  # the player moved on: normal for a media element
            if left is not None:
                left -= len(chunk)


def serve(root: Path) -> http.server.ThreadingHTTPServer:
    def handler(*args: Any, **kwargs: Any) -> _Files:
        return _Files(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def encode(key: str, path: Path, out: Path, reuse: bool) -> list[tuple[str, Path, int]]:
    """(label, file, bytes) of our renditions and the reference for one input."""
    probe = ffmpeg.probe(path, run.LIMITS)
    made: list[tuple[str, Path, int]] = []
    for name in OURS:
        profile = PROFILES[name]
        target = out / f"{key}-{name}{profile.extension}"
        if reuse and target.exists():
            made.append((name, target, target.stat().st_size))
            continue
        started = time.perf_counter()
        info = ffmpeg.transcode(path, probe, profile, target, limits=run.LIMITS)
        assert info is not None
        run.say(f"{key} {name}: {info.bytes / 1000:.0f} KB in {time.perf_counter() - started:.0f} s")
        made.append((name, target, info.bytes))
    source = run.Source(key, key, path, probe)
    target = out / f"{key}-reference.mp4"
    if not (reuse and target.exists()):
        run.encode_reference(source, target, 480)
    made.append((run.REFERENCE, target, target.stat().st_size))
    return made


def explain(seek: playback.Seek, starts: list[tuple[float, int]], mse: bool = False) -> str:
    """Where a seek got its bytes: a request of its own, or the download already running, and where that was.

    Chromium's media cache (MultiBuffer::AddReader) opens no request for a position
    less than five 32 KiB blocks (163,840 bytes: 5.1 s at 256 kbit/s) ahead of a
    download in progress: it waits for that download to get there. Either way the
    seek then needs its fragment's audio run and its pictures up to the target.
    """
    fragment = max((offset for start, offset in starts if start <= seek.target + 1e-6), default=0)
    nearest = min(seek.downloads, key=lambda at: abs(fragment - at), default=None)
    where = (
        "no download running"
        if nearest is None
        else f"download {abs(fragment - nearest) / 1000:.0f} KB {'behind' if nearest <= fragment else 'past'} "
        f"the fragment's start"
    )
    if seek.ranges:
        return f"own request from byte {seek.ranges[0]}" + (f" (+{len(seek.ranges) - 1})" if seek.ranges[1:] else "")
    if mse:  # stream.js keeps a request only when it is about to reach the fragment, or it was buffered
        return f"no request of its own: buffered, or stream.js kept its running request ({where})"
    return f"read from the running download ({where})"


def report(
    rows: list[tuple[str, str, int, float, playback.Playback, mp4.Layout, list[tuple[float, int]]]],
    started: datetime,
    load: str,
) -> str:
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC in Debian's Chromium, {run.machine()}; load average {load}. "
        f"Each file in its own tab, throttled through DevTools to {playback.KBIT_S} kbit/s and "
        f"{playback.LATENCY_MS} ms; first frame = readyState ≥ 2 with currentTime advancing; KB = 1000 bytes "
        "received by the tab (headers included); a seek is timed from setting currentTime until it plays past "
        "that point, while the previous position's read-ahead is still arriving. Both are marked by the page "
        "itself (on timeupdate), and the KB are those received between the two marks.",
        "",
        "| input | encoding | KB | kbit/s | structure: KB index / +frame | first frame s | first frame KB "
        "| seeks resumed | seek s median / max | seek KB max |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label, size, seconds, result, layout, _ in rows:
        resumed = [s for s in result.seeks if s.resumed]
        times = [s.seconds or 0.0 for s in resumed]
        first = "–" if result.first_frame_s is None else f"{result.first_frame_s:.2f}"
        first_kb = "–" if result.first_frame_bytes is None else f"{result.first_frame_bytes / 1000:.1f}"
        seek_s = f"{statistics.median(times):.1f} / {max(times):.1f}" if times else "–"
        seek_kb = f"{max(s.bytes for s in resumed) / 1000:.0f}" if resumed else "–"
        verdict = f"{len(resumed)}/{len(playback.SEEKS)}"
        if result.error:
            verdict += f" (**{result.error[:90]}**)"
        if label.endswith(MSE) and result.stream != "mse":
            verdict += f" (**fell back: {result.stream}**)"
        lines.append(
            f"| {key} | {label} | {size / 1000:.0f} | {size * 8 / seconds / 1000:.1f} "
            f"| {layout.head / 1000:.1f} / {layout.first_frame / 1000:.1f} | {first} | {first_kb} "
            f"| {verdict} | {seek_s} | {seek_kb} |"
        )
    ours = [r for r in rows if r[1] != run.REFERENCE]
    lines.append("")
    for name, group in (
        ("bare `<video src>`", [r for r in ours if not r[1].endswith(MSE)]),
        ("MSE (hub/static/stream.js)", [r for r in ours if r[1].endswith(MSE)]),
    ):
        if not group:
            continue
        worst_first = max(group, key=lambda r: r[4].first_frame_s or 1e9)
        seeks = [s for r in group for s in r[4].seeks]
        lines.append(
            f"Budgets (ours, {name}): first frame ≤ {playback.BUDGET_S:g} s — worst {worst_first[0]} {worst_first[1]} "
            f"{worst_first[4].first_frame_s} s / {(worst_first[4].first_frame_bytes or 0) / 1000:.1f} KB; "
            f"every seek resumes ≤ {playback.BUDGET_S:g} s — {sum(1 for s in seeks if s.resumed)} of {len(seeks)} "
            f"resumed, {sum(1 for s in seeks if s.resumed and (s.seconds or 0) <= playback.BUDGET_S)} within "
            f"{playback.BUDGET_S:g} s.  "
        )
    seeks = [s for r in ours for s in r[4].seeks]
    slow = [
        f"- {r[0]} {r[1]} seek to {s.at:.0%} ({s.target:.1f} s): {s.seconds} s, {s.bytes / 1000:.0f} KB; "
        + explain(s, r[6], r[1].endswith(MSE))
        for r in ours
        for s in r[4].seeks
        if not s.resumed or (s.seconds or 0) > playback.BUDGET_S
    ]
    waited = [s for r in ours if not r[1].endswith(MSE) for s in r[4].seeks if not s.ranges]
    lines += [
        "",
        "Bare element's seeks that opened no request of their own and read from the running download: "
        f"{len(waited)} of {sum(len(r[4].seeks) for r in ours if not r[1].endswith(MSE))}, "
        f"{sum(1 for s in waited if (s.seconds or 0) > playback.BUDGET_S)} of them over the budget.",
    ]
    if slow:
        lines += ["", "Seeks over the budget:", *slow]
    return "\n".join(lines) + "\n"


def write_results(text: str) -> None:
    current = run.RESULTS.read_text(encoding="utf-8")
    if BEGIN not in current:
        current = current.rstrip("\n") + f"\n\n## Playback in a browser (issue 14)\n\n{BEGIN}\n{END}\n"
    before, rest = current.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    run.RESULTS.write_text(f"{before}{BEGIN}\n\n{text}\n{END}{after}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.media.playback", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter inputs; prints, never rewrites RESULTS.md")
    parser.add_argument("--workdir", help="where inputs (kept, reused) and outputs go; default: a temp dir")
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    parser.add_argument("--reuse", action="store_true", help="play the encodes already in --workdir (no re-encoding)")
    parser.add_argument(
        "--inputs", default="slides,camera,mixed,long,short", help="comma-separated subset of the inputs to measure"
    )
    parser.add_argument(
        "--preload", default="auto", choices=("auto", "metadata", "none"), help="the media element's preload"
    )
    parser.add_argument("--labels", help="comma-separated subset of the encodings to play (default: all four)")
    parser.add_argument(
        "--players",
        default="plain,mse",
        help="how our renditions play: plain (a bare <video src>), mse (hub/static/stream.js), or both in one run",
    )
    args = parser.parse_args(argv)
    work, temporary = run.workdir(args.workdir)
    started, load = datetime.now(UTC), "/".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        slides_s, camera_s, mixed_s, long_s = (60, 20, 60, 600) if args.quick else (600, 120, 150, 45 * 60)
        makers = {
            "slides": lambda: inputs.slides_lesson(work, slides_s),
            "camera": lambda: inputs.camera_clip(work, camera_s),
            "mixed": lambda: mixed_lesson(work, mixed_s),
            "long": lambda: long_lesson(work, long_s),
            "short": lambda: short_clip(work, 5),
        }
        chosen = args.inputs.split(",")
        if unknown := set(chosen) - set(makers):
            parser.error(f"--inputs: unknown {', '.join(sorted(unknown))} (choose from {', '.join(makers)})")
        sources = {key: make() for key, make in makers.items() if key in chosen}
        out = work / "playback"
        out.mkdir(exist_ok=True)
        (out / "index.html").write_text("<!doctype html><title>playback</title><body></body>", encoding="utf-8")
        made = {key: encode(key, path, out, args.reuse) for key, path in sources.items()}
        if args.labels:
            made = {k: [f for f in files if f[0] in args.labels.split(",")] for k, files in made.items()}
        server = serve(out)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        players = args.players.split(",")
        if unknown := set(players) - {"plain", "mse"}:
            parser.error(f"--players: unknown {', '.join(sorted(unknown))}")
        # Both ways side by side in one run (the machine's load moves the seconds): each of our
        # renditions as a bare src, then through MSE; the reference (+faststart, no sidx) plain only.
        made = {
            key: [
                (label + (MSE if player == "mse" else ""), file, size)
                for label, file, size in files
                for player in players
                if player == "plain" or label != run.REFERENCE
            ]
            for key, files in made.items()
        }
        media = [
            (f"{key} {label}", f"{base}/{file.name}", "audio" if file.suffix == ".m4a" else "video")
            for key, files in made.items()
            for label, file, _ in files
        ]
        through_mse = {label for label, _, _ in media if label.endswith(MSE)}
        run.say(f"playing {len(media)} files in Chromium, four tabs at a time")
        with chromium("--autoplay-policy=no-user-gesture-required") as browser:
            results = playback.measure(browser, f"{base}/index.html", media, preload=args.preload, mse=through_mse)
        server.shutdown()
        (out / "results.json").write_text(json.dumps([r.as_dict() for r in results], indent=1), encoding="utf-8")
        rows = []
        flat = [(key, label, size, file) for key, files in made.items() for label, file, size in files]
        for (key, label, size, file), result in zip(flat, results, strict=True):
            run.say(result.summary())
            rows.append(
                (key, label, size, run.media_duration(file), result, mp4.layout(file), mp4.fragment_starts(file))
            )
        text = report(rows, started, load + " → " + "/".join(f"{x:.1f}" for x in os.getloadavg()))
        print(text)
        if not (args.quick or args.no_write):
            write_results(text)
            run.say(f"wrote {run.RESULTS.relative_to(run.ROOT)}")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

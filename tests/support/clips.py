"""Generated lessons of different character, for the quality floor (issue 14).

Each recipe is one ffmpeg command over lavfi sources (no fonts, no binary media
in git): a classroom filmed hand-held with sensor grain (low or high), a zoom
into a detailed picture, handwriting appearing stroke by stroke on a board, and
slides that change every few seconds. The tests and the media benchmark
(``benchmarks/media``) both make them from here, so that what the benchmark
reports is what the tests check.

Which clips the per-title decisions were tuned on, and which are held out, is
said in :data:`CLIPS`.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Clip:
    name: str
    character: str
    """What makes it hard, in a few words (shown in the benchmark's table)."""
    size: str
    seconds: float
    kind: str
    """"camera", "zoom", "board", "slides" or "fractal": the recipe."""
    noise: int = 0
    """ffmpeg's ``noise=alls`` strength, temporal (``allf=t``): a sensor's grain."""
    tuned: bool = False
    """True for the clips the choices in :mod:`hub.media.quality` were tuned on; False: held out."""
    fps: int = 30


CLIPS: dict[str, Clip] = {
    clip.name: clip
    for clip in (
        # Tuned on: the margins and the order of the trades were chosen watching these.
        Clip("camera-grain-low", "hand-held pan, light grain", "854x480", 10, "camera", noise=5, tuned=True),
        Clip("slides", "slide changes every 2-3 s", "854x480", 12, "slides", tuned=True),
        Clip("board", "handwriting drawn stroke by stroke, grain", "854x480", 10, "board", noise=8, tuned=True),
        # Clean but every frame new: a zoom into a fractal, as an animation in a science video.
        Clip("fractal", "continuous zoom into a fractal, no grain", "854x480", 10, "fractal", tuned=True),
        # Held out: never looked at while choosing margins or trades, only measured afterwards.
        # The first is the failure: a noisy 720p30 camera whose 360p came out at SSIM 0.908.
        Clip("camera-grain-high-720p", "hand-held pan, heavy grain, 720p", "1280x720", 10, "camera", noise=22),
        Clip("zoom", "slow zoom into a detailed picture, grain", "854x480", 10, "zoom", noise=10),
    )
}


# Draw a still picture once and repeat it: hundreds of drawbox filters on every frame cost seconds.
_STILL = "trim=end_frame=1,loop=loop=-1:size=1"


def _room(width: int, height: int, seed: int) -> list[str]:
    """drawbox filters for a classroom wall: a board with chalk lines, a window, posters, desks."""
    rng = random.Random(seed)
    bx, by, bw, bh = width * 18 // 100, height * 14 // 100, width * 62 // 100, height * 46 // 100
    chain = [
        f"drawbox=x=0:y={height * 68 // 100}:w=iw:h=ih:color=0x8a7560:t=fill",
        f"drawbox=x={bx - 10}:y={by - 10}:w={bw + 20}:h={bh + 20}:color=0x5a3d22:t=fill",
        f"drawbox=x={bx}:y={by}:w={bw}:h={bh}:color=0x2e4a3a:t=fill",
        f"drawbox=x={width * 3 // 100}:y={height * 10 // 100}:w={width * 11 // 100}:h={height * 40 // 100}"
        ":color=0xe6eef8:t=fill",
    ]
    # Chalk "words": short thin strokes in rows, the fine detail a viewer wants to read.
    for row in range(6):
        x = bx + 20
        y = by + 18 + row * (bh - 30) // 6
        while x < bx + bw - 60:
            word = rng.randint(18, 70)
            for letter in range(0, word, 7):
                top, tall = y + rng.randint(0, 6), rng.randint(8, 16)
                chain.append(f"drawbox=x={x + letter}:y={top}:w=3:h={tall}:color=white@0.8:t=fill")
            x += word + rng.randint(10, 22)
    for y in (height * 78 // 100, height * 90 // 100):
        chain.append(f"drawbox=x=0:y={y}:w=iw:h={height // 24}:color=0x6b4a2b:t=fill")
    return chain


def _camera(clip: Clip) -> list[str]:
    width, height = (int(side) for side in clip.size.split("x"))
    room_w, room_h = width * 5 // 4 // 2 * 2, height * 5 // 4 // 2 * 2
    poster = f"{width // 7}x{height // 3}"
    # A still room, a fractal poster and a teacher walking; the crop pans over it hand-held.
    graph = (
        f"color=c=0xcfc6ae:s={room_w}x{room_h}:r={clip.fps},{','.join(_room(room_w, room_h, 5))},{_STILL}[room];"
        f"mandelbrot=s={poster}:r={clip.fps}:start_scale=1.2:end_scale=1.2:maxiter=300[poster];"
        f"color=c=0x40506e:s={width // 9}x{height * 2 // 3}:r={clip.fps}[teacher];"
        f"[room][poster]overlay=x={room_w * 82 // 100}:y={room_h // 6}[r1];"
        f"[r1][teacher]overlay=x='{room_w // 2}+{room_w // 3}*sin(2*PI*t/9)':y={room_h // 3}[r2];"
        f"[r2]crop=w={width}:h={height}:x='{(room_w - width) // 2}+{(room_w - width) // 2 - 8}*sin(2*PI*t/7)"
        f"+4*sin(2*PI*t*1.9)':y='{(room_h - height) // 2}+{(room_h - height) // 2 - 8}*sin(2*PI*t/11)"
        f"+3*sin(2*PI*t*2.7)',gblur=sigma=0.7,noise=alls={clip.noise}:allf=t,format=yuv420p"
    )
    return ["-f", "lavfi", "-i", f"{graph}"]


def _zoom(clip: Clip) -> list[str]:
    width, height = (int(side) for side in clip.size.split("x"))
    frames = round(clip.seconds * clip.fps)
    # zoompan over a detailed still (a fractal beside a board): every frame is rescaled, nothing repeats.
    graph = (
        f"mandelbrot=s={width}x{height}:r=1:start_scale=0.9:end_scale=0.9:maxiter=400,trim=end_frame=1,"
        f"{','.join(_room(width, height, 7)[2:])},"
        f"zoompan=z='1+0.5*on/{frames}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={frames}:s={clip.size}"
        f":fps={clip.fps},noise=alls={clip.noise}:allf=t,format=yuv420p"
    )
    return ["-f", "lavfi", "-i", graph]


def _board(clip: Clip) -> list[str]:
    width, height = (int(side) for side in clip.size.split("x"))
    rng = random.Random(11)
    # The whole board written, then a board-coloured cover per line that slides right as the
    # teacher "writes": the strokes appear one after another, the rest of the picture is still.
    lines = 5
    per_line = clip.seconds / lines
    strokes = ["drawbox=x=0:y=0:w=iw:h=ih:color=0x2e4a3a:t=fill"]
    for row in range(lines):
        y = 30 + row * (height - 60) // lines
        x = 30
        while x < width - 60:
            stroke = rng.randint(4, 12)
            strokes.append(
                f"drawbox=x={x}:y={y + rng.randint(0, 10)}:w={rng.randint(2, 4)}:h={rng.randint(12, 34)}"
                ":color=0xf0f0e8@0.9:t=fill"
            )
            x += stroke
    graph = f"color=c=black:s={clip.size}:r={clip.fps},{','.join(strokes)},{_STILL}[board]"
    last = "board"
    for row in range(lines):
        y = 25 + row * (height - 60) // lines
        start = row * per_line
        speed = (width - 60) / per_line
        graph += (
            f";color=c=0x2e4a3a:s={width}x{(height - 60) // lines}:r={clip.fps}[cover{row}]"
            f";[{last}][cover{row}]overlay=x='30+max(0,{speed:.2f}*(t-{start:.2f}))':y={y}[w{row}]"
        )
        last = f"w{row}"
    graph += f";[{last}]gblur=sigma=0.6,noise=alls={clip.noise}:allf=t,format=yuv420p"
    return ["-f", "lavfi", "-i", graph]


def _slides(clip: Clip) -> list[str]:
    width, height = (int(side) for side in clip.size.split("x"))
    rng = random.Random(13)
    themes = ("white", "0xfdf6e3", "0x10243e")
    inks = ("0x202020", "0x303030", "0xf0f0f0")
    parts = []
    t = 0.0
    index = 0
    while t < clip.seconds:
        hold = min(rng.uniform(2, 3), clip.seconds - t)
        chain = [f"drawbox=x=0:y=0:w=iw:h={height // 7}:color=0x1f4e79:t=fill"]
        for row in range(5):
            y = height // 5 + row * height // 8
            x = width // 12
            for _ in range(rng.randint(3, 7)):
                word = rng.randint(20, 90)
                chain.append(f"drawbox=x={x}:y={y}:w={word}:h={height // 30}:color={inks[index % 3]}:t=fill")
                x += word + 12
        if index % 2:
            chain.append(
                f"drawbox=x={width * 6 // 10}:y={height // 4}:w={width // 3}:h={height // 2}:color=0x3b6fd4:t=fill"
            )
        parts.append(f"color=c={themes[index % 3]}:s={clip.size}:r={clip.fps}:d={hold:.3f},{','.join(chain)}[s{index}]")
        t += hold
        index += 1
    inputs = "".join(f"[s{i}]" for i in range(index))
    graph = ";".join(parts) + f";{inputs}concat=n={index}:v=1:a=0,format=yuv420p"
    return ["-f", "lavfi", "-i", graph]


def _fractal(clip: Clip) -> list[str]:
    return ["-f", "lavfi", "-i", f"mandelbrot=s={clip.size}:r={clip.fps}:maxiter=200:end_scale=0.01,format=yuv420p"]


_RECIPES = {"camera": _camera, "zoom": _zoom, "board": _board, "slides": _slides, "fractal": _fractal}


def make(clip: Clip, directory: Path) -> Path:
    """Write ``clip`` as H.264 + AAC in MP4, as a phone would record it; reused if present.

    A phone's 10 Mbit/s cap keeps part of the grain out of the file, as in real ones;
    one x264 thread, because with a VBV cap x264 is deterministic only single-threaded,
    and the same clip every run keeps the tests' SSIM figures the same every run.
    """
    out = directory / f"{clip.name}.mp4"
    if out.exists():
        return out
    partial = directory / f"{clip.name}.part.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-nostdin", "-y",
            *_RECIPES[clip.kind](clip),
            "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:sample_rate=48000:seed=1",
            "-t", f"{clip.seconds:g}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-maxrate", "10M", "-bufsize", "10M",
            "-g", str(2 * clip.fps), "-threads", "1",
            "-c:a", "aac", "-b:a", "96k", "-ac", "1",
            str(partial),
        ],
        check=True,
    )  # fmt: skip
    partial.rename(out)
    return out

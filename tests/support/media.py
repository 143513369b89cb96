"""Generated media for tests: ffmpeg's lavfi sources make test files in milliseconds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def ffmpeg(path: Path, *args: str) -> Path:
    """Run ffmpeg (trusted arguments, generated content) into ``path``."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args, str(path)], check=True)
    return path


def lesson_video(path: Path, seconds: float = 3, size: str = "640x360", rate: int = 25) -> Path:
    """A moving test picture with a tone: a stand-in for a recorded lesson."""
    return ffmpeg(
        path,
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:d={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "10", "-c:a", "aac", "-shortest"),
    )


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


# -- slides with a moving camera inset (chapters) ---------------------------------------


def slides_video(
    path: Path, durations: tuple[float, ...] = (8, 9, 7), size: str = "1280x720", inset: str = "testsrc2"
) -> Path:
    """A slides lesson: one slide per duration (text on white), a camera inset, a tone.

    The slides change at the running sums of ``durations`` (8 and 17 s by default): where
    its chapters must start. ``inset`` is the lavfi source in the corner: ``testsrc2``
    moves all the time, ``smptebars`` stands still (the probe then calls it slides).
    """
    inputs: list[str] = []
    for number, seconds in enumerate(durations, start=1):
        # Each slide a different layout: a title, and a box or a line of working below it.
        body = (
            f"drawbox=x=80:y={260 + 40 * number}:w={300 + 60 * number}:h=160:color=blue@0.5:t=fill"
            if number % 2
            else f"drawtext=text='x^2 + {number}x = {number * 7}':fontsize=48:x=80:y=320:fontcolor=black"
        )
        inputs += [
            "-f",
            "lavfi",
            "-i",
            f"color=c=white:s={size}:r=30:d={seconds},"
            f"drawtext=text='Slide {number}':fontsize=56:x=80:y=120:fontcolor=black,{body}",
        ]
    total = sum(durations)
    count = len(durations)
    slides = "".join(f"[{i}]" for i in range(count))
    return ffmpeg(
        path,
        *inputs,
        *("-f", "lavfi", "-i", f"{inset}=s=192x108:r=30:d={total}"),
        *("-f", "lavfi", "-i", f"sine=frequency=300:duration={total}"),
        *("-filter_complex", f"{slides}concat=n={count}:v=1:a=0[s];[s][{count}]overlay=x=W-w-20:y=H-h-20[v]"),
        *("-map", "[v]", "-map", str(count + 1)),
        *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac"),
    )


def speech_audio(path: Path, seconds: float = 30) -> Path:
    """A tone standing in for a recorded talk, as a WAV file."""
    return ffmpeg(path, "-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}", "-ac", "1")

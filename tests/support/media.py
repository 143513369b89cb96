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

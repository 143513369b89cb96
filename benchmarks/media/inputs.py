"""The two benchmark inputs, generated with ffmpeg and espeak-ng (no binary media in git).

- **Slides lesson** (10 min, 1280x720, 30 fps, as a screen recorder writes it):
  slides with a header bar, a title, bullets and sometimes a figure (a chart, or
  a fractal "photo"), each held 20-40 s; halfway through each slide its last
  bullet appears highlighted. The sound is espeak-ng reading a lesson, looped to
  the length, with a faint room hiss under it.
- **Classroom camera** (2 min, 1280x720, 30 fps, as a phone records it): a
  classroom (wall, blackboard with chalk writing, window, poster, pupils' heads)
  filmed hand-held (a slow pan plus a shake), a teacher walking in front of the
  board, and sensor noise on every frame (``noise=alls=12:allf=t``). The sound is
  a second voice over classroom noise.

Both are H.264 + AAC in MP4 at recorder-like quality (slides CRF 18; camera CRF 20
capped at 10 Mbit/s, like a phone; 128 kbit/s stereo AAC at 48 kHz), the kind of
file a teacher uploads. Everything is written into the
work directory given, never into the repository.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WIDTH, HEIGHT, FPS = 1280, 720, 30
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
# Bump when the recipes below change: inputs cached in a --workdir are then remade.
RECIPE = "4"

LESSON_TEXT = """\
Good morning, everyone. Today we are going to learn how a green leaf turns sunlight into food. \
This process is called photosynthesis, and almost every living thing on Earth depends on it.

Let us start with the ingredients. A plant takes in water through its roots. The water travels up the stem \
in thin tubes called xylem, all the way to the leaves. At the same time, the leaf takes in carbon dioxide \
from the air through tiny openings on its underside. These openings are called stomata.

Now, where does the energy come from? It comes from the Sun. Inside the cells of the leaf there are small \
green bodies called chloroplasts. They contain a pigment called chlorophyll. Chlorophyll absorbs red and blue \
light very well, but it reflects green light. That is why leaves look green to our eyes.

In the first stage, the light reactions, the energy of light is used to split water molecules. \
Oxygen is released as a waste product, and it leaves the plant through the stomata. \
Every breath you take contains oxygen that was released by a plant or by algae in the ocean.

In the second stage, the Calvin cycle, the plant uses the stored energy to join carbon dioxide molecules \
together into sugar. The sugar is glucose. We can write the whole process as one equation: \
six molecules of carbon dioxide plus six molecules of water, with light energy, give one molecule of glucose \
and six molecules of oxygen.

What does the plant do with the glucose? Some of it is burned for energy, the same way our own cells burn food. \
Some of it is turned into starch and stored in roots, seeds and fruits. And some of it becomes cellulose, \
the material of cell walls, which gives the plant its shape and strength.

Which factors change the speed of photosynthesis? There are three main ones: the intensity of light, \
the concentration of carbon dioxide, and the temperature. If any one of them is low, it limits the rate, \
no matter how much of the others there is. Farmers use this idea in greenhouses.

Let us do a simple experiment you can repeat at home or at school. Put a water plant in a glass of water \
in bright sunlight, and count the small bubbles that rise from its leaves in one minute. \
Then move the glass into the shade and count again. You will see fewer bubbles. The bubbles are oxygen.

To summarise: plants take in water and carbon dioxide, capture the energy of sunlight with chlorophyll, \
make glucose, and release oxygen. Please copy the equation from the board into your notebooks, \
and for homework, answer the three questions at the end of chapter five. Thank you, and see you tomorrow.
"""


@dataclass(frozen=True)
class Slide:
    title: str
    bullets: tuple[str, ...]
    figure: str = ""
    """"" (text only), "chart" (a bar chart drawn with boxes) or "fractal" (a photo-like picture)."""


SLIDES: tuple[Slide, ...] = (
    Slide("Photosynthesis", ("How a green leaf makes food", "Lesson 3 of the biology unit", "Grade 7 science")),
    Slide("What a plant needs", ("Water, taken in by the roots", "Carbon dioxide from the air", "Light from the Sun")),
    Slide("Inside the leaf", ("Xylem carries water", "Stomata let gases in", "Chloroplasts hold pigment"), "fractal"),
    Slide("Chlorophyll", ("Absorbs red and blue light", "Reflects green light", "That is why leaves are green")),
    Slide("Absorption of light", ("Blue: absorbed", "Green: reflected", "Red: absorbed"), "chart"),
    Slide("Stage 1: light reactions", ("Light splits water", "Oxygen is released", "Energy is stored for later")),
    Slide("Stage 2: Calvin cycle", ("Carbon dioxide is fixed", "Sugar is built up", "Needs no light itself")),
    Slide("The equation", ("6 CO2 + 6 H2O + light", "gives C6H12O6 + 6 O2", "Glucose and oxygen")),
    Slide("Uses of glucose", ("Energy for the cell", "Starch in roots, seeds", "Cellulose for cell walls"), "fractal"),
    Slide("Limiting factors", ("Light intensity", "Carbon dioxide level", "Temperature"), "chart"),
    Slide("Greenhouses", ("Extra light in winter", "Warm air", "More carbon dioxide")),
    Slide("Experiment", ("Water plant in sunlight", "Count bubbles per minute", "Repeat in the shade"), "fractal"),
    Slide("Results", ("Sun: 42 bubbles a minute", "Shade: 11 bubbles a minute", "The bubbles are oxygen"), "chart"),
    Slide("Summary", ("Water and carbon dioxide in", "Light captured by chlorophyll", "Glucose and oxygen out")),
    Slide("Homework", ("Copy the equation", "Chapter 5, questions 1 to 3", "Bring a leaf tomorrow")),
)

# (background, header bar, text, accent, highlight behind the new bullet)
THEMES = (
    ("white", "0x1f4e79", "0x202020", "0xe07b00", "0xffe066@0.7"),
    ("0xfdf6e3", "0x8b3a1a", "0x303030", "0x2a7f62", "0xffd0a0@0.8"),
    ("0x10243e", "0x2f6db5", "0xf0f0f0", "0xffc20e", "0x4f7fbf@0.6"),
)


def ffmpeg(args: list[str], cwd: Path) -> None:
    """Run ffmpeg for generation; fail loudly, with its last words."""
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"ffmpeg failed generating inputs:\n{' '.join(argv)}\n{result.stderr[-3000:]}")


def font(name: str) -> str:
    path = FONT_DIR / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: apt-get install -y fonts-dejavu-core")
    return str(path)


def speech(work: Path, name: str, voice: str, words_per_minute: int) -> Path:
    """espeak-ng reading the lesson text into a WAV file."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: apt-get install -y espeak-ng")
    text = work / "lesson.txt"
    text.write_text(LESSON_TEXT, encoding="utf-8")
    wav = work / name
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav), "-f", str(text)],
        check=True,
        capture_output=True,
    )
    return wav


def fractal(work: Path, name: str, width: int, height: int, scale: float) -> Path:
    """One frame of the Mandelbrot set: a busy, photo-like picture for a slide or a poster."""
    ffmpeg(
        ["-f", "lavfi", "-i", f"mandelbrot=size={width}x{height}:maxiter=800:start_scale={scale}:end_scale={scale}",
         "-frames:v", "1", name],
        work,
    )  # fmt: skip
    return work / name


def _text(work: Path, name: str, text: str) -> str:
    # drawtext reads the text from a file: no escaping of quotes, colons or commas in filter arguments.
    (work / name).write_text(text, encoding="utf-8")
    return name


def _slide_png(work: Path, index: int, total: int, slide: Slide, *, revealed: bool) -> str:
    """One state of a slide: all bullets but the last, or all of them with the last highlighted."""
    background, header, ink, accent, highlight = THEMES[index % len(THEMES)]
    regular, bold = font("DejaVuSans.ttf"), font("DejaVuSans-Bold.ttf")
    title = _text(work, f"s{index:02d}_title.txt", slide.title)
    footer = _text(work, f"s{index:02d}_footer.txt", f"Biology, grade 7  ·  Photosynthesis  ·  {index + 1} / {total}")
    chain = [
        f"drawbox=x=0:y=0:w=iw:h=112:color={header}:t=fill",
        f"drawbox=x=0:y=112:w=iw:h=6:color={accent}:t=fill",
        f"drawtext=fontfile={bold}:textfile={title}:expansion=none:fontsize=46:fontcolor=white:x=56:y=32",
        f"drawtext=fontfile={regular}:textfile={footer}:expansion=none:fontsize=20:fontcolor=0x808080:x=56:y=676",
    ]
    shown = slide.bullets if revealed else slide.bullets[:-1]
    for line, bullet in enumerate(shown):
        y = 178 + line * 86
        if revealed and line == len(slide.bullets) - 1:
            chain.append(f"drawbox=x=40:y={y - 16}:w={700 if slide.figure else 1180}:h=66:color={highlight}:t=fill")
        name = _text(work, f"s{index:02d}_b{line}.txt", bullet)
        chain.append(f"drawbox=x=60:y={y + 10}:w=16:h=16:color={accent}:t=fill")
        chain.append(
            f"drawtext=fontfile={regular}:textfile={name}:expansion=none:fontsize=34:fontcolor={ink}:x=96:y={y}"
        )
    if slide.figure == "chart":
        chain.append("drawbox=x=800:y=180:w=420:h=330:color=0xe8e8e8:t=fill")
        chain.append("drawbox=x=840:y=200:w=3:h=280:color=0x404040:t=fill")
        chain.append("drawbox=x=840:y=478:w=360:h=3:color=0x404040:t=fill")
        for bar, (height, color) in enumerate(((240, "0x3b6fd4"), (60, "0x3fa34d"), (200, "0xd43b3b"))):
            chain.append(f"drawbox=x={880 + bar * 110}:y={478 - height}:w=70:h={height}:color={color}:t=fill")
    out = f"slide_{index:02d}_{'b' if revealed else 'a'}.png"
    inputs = ["-f", "lavfi", "-i", f"color=c={background}:s={WIDTH}x{HEIGHT}:d=1"]
    if slide.figure == "fractal":
        picture = fractal(work, f"figure_{index:02d}.png", 400, 300, 3.0 / (1 + index % 4))
        inputs += ["-i", picture.name]
        frame = "drawbox=x=806:y=196:w=408:h=308:color=0x404040:t=4"
        graph = f"[0:v]{','.join(chain)}[bg];[bg][1:v]overlay=x=810:y=200,{frame}"
        ffmpeg([*inputs, "-filter_complex", graph, "-frames:v", "1", out], work)
    else:
        ffmpeg([*inputs, "-vf", ",".join(chain), "-frames:v", "1", out], work)
    return out


def slides_lesson(work: Path, seconds: float) -> Path:
    """The slides + speech lesson, ``seconds`` long."""
    out = work / f"slides-{seconds:g}s-r{RECIPE}.mp4"
    if out.exists():
        return out
    rng = random.Random(3)  # the same lesson every run
    holds: list[float] = []
    while sum(holds) < seconds:
        holds.append(round(rng.uniform(20, 40), 2))
    holds[-1] = round(seconds - sum(holds[:-1]), 2)
    lines = ["ffconcat version 1.0"]
    for index, hold in enumerate(holds):
        slide = SLIDES[index % len(SLIDES)]
        first = _slide_png(work, index, len(holds), slide, revealed=False)
        second = _slide_png(work, index, len(holds), slide, revealed=True)
        lines += [f"file {first}", f"duration {hold / 2:.3f}", f"file {second}", f"duration {hold / 2:.3f}"]
    lines.append(f"file {second}")  # the concat demuxer ignores the last entry's duration
    (work / "slides.ffconcat").write_text("\n".join(lines) + "\n", encoding="utf-8")
    voice = speech(work, "speech-slides.wav", "en-us", 150)
    ffmpeg(
        [
            "-f", "concat", "-i", "slides.ffconcat",
            "-stream_loop", "-1", "-i", voice.name,
            "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.004:sample_rate=48000:seed=1",
            "-filter_complex",
            "[0:v]fps=30,format=yuv420p[v];"
            "[1:a]aresample=48000,volume=0.8[s];"
            "[s][2:a]amix=inputs=2:duration=first:normalize=0,aformat=channel_layouts=stereo[a]",
            "-map", "[v]", "-map", "[a]", "-t", f"{seconds:g}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "60",
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
            "-movflags", "+faststart", out.name + ".part.mp4",
        ],
        work,
    )  # fmt: skip
    (work / (out.name + ".part.mp4")).rename(out)
    return out


def _sprite(work: Path, name: str, width: int, height: int, shape: str, rgb: tuple[str, str, str]) -> str:
    """An RGBA picture: colour ``rgb`` inside ``shape`` (a geq expression of X and Y), transparent outside."""
    red, green, blue = rgb
    ffmpeg(
        ["-f", "lavfi", "-i", f"color=c=black:s={width}x{height}:d=1,format=rgba",
         "-vf", f"geq=r='{red}':g='{green}':b='{blue}':a='if({shape},255,0)'", "-frames:v", "1", name],
        work,
    )  # fmt: skip
    return name


def _room(work: Path) -> str:
    """The classroom as a still 1600x900 picture the camera pans over."""
    serif = font("DejaVuSerif.ttf")
    head = _sprite(work, "head.png", 70, 84, "lte(pow((X-35)/35,2)+pow((Y-42)/42,2),1)", ("58+20*sin(Y/5)", "40", "30"))
    poster = fractal(work, "poster.png", 200, 260, 1.2)
    chalk = [
        ("Photosynthesis", 58, 320, 150),
        ("6 CO2 + 6 H2O  ->  C6H12O6 + 6 O2", 40, 320, 250),
        ("light + chlorophyll", 36, 320, 320),
        ("1. light reactions: water is split, O2 out", 30, 320, 400),
        ("2. Calvin cycle: CO2 fixed into sugar", 30, 320, 450),
    ]
    chain = [
        "drawbox=x=0:y=600:w=iw:h=300:color=0x8a7560:t=fill",  # the floor and desks' level
        "drawbox=x=260:y=110:w=1080:h=440:color=0x5a3d22:t=fill",  # the board's wooden frame
        "drawbox=x=272:y=122:w=1056:h=416:color=0x2e4a3a:t=fill",  # the board
        "drawbox=x=40:y=80:w=190:h=400:color=0xe6eef8:t=fill",  # the window
        "drawbox=x=40:y=80:w=190:h=400:color=0x6a6a6a:t=8",
        "drawbox=x=131:y=80:w=8:h=400:color=0x6a6a6a:t=fill",
        "drawbox=x=40:y=276:w=190:h=8:color=0x6a6a6a:t=fill",
        "drawbox=x=900:y=330:w=330:h=180:color=white@0.7:t=3",  # a diagram on the board
        "drawbox=x=960:y=370:w=90:h=90:color=white@0.7:t=3",
    ]
    for index, (text, size, x, y) in enumerate(chalk):
        name = _text(work, f"chalk{index}.txt", text)
        chain.append(
            f"drawtext=fontfile={serif}:textfile={name}:expansion=none:fontsize={size}:fontcolor=white@0.85:x={x}:y={y}"
        )
    for y in (700, 800):
        chain.append(f"drawbox=x=0:y={y + 50}:w=iw:h=40:color=0x6b4a2b:t=fill")  # a row of desks
    graph = f"[0:v]{','.join(chain)}[room];[room][1:v]overlay=x=1370:y=150[r0]"
    last = "r0"
    rng = random.Random(5)
    spots = [(x + rng.randint(-20, 20), y) for y in (690, 790) for x in range(60, 1560, 150)]
    for index, (x, y) in enumerate(spots):
        graph += f";[{last}][2:v]overlay=x={x}:y={y}[r{index + 1}]"
        last = f"r{index + 1}"
    graph += f";[{last}]gblur=sigma=0.8"  # a phone lens is not pixel-sharp
    ffmpeg(
        ["-f", "lavfi", "-i", "gradients=s=1600x900:c0=0xd9d0b8:c1=0xb3a88f:x0=0:y0=0:x1=1600:y1=900:nb_colors=2",
         "-i", poster.name, "-i", head, "-filter_complex", graph, "-frames:v", "1", "room.png"],
        work,
    )  # fmt: skip
    return "room.png"


def camera_clip(work: Path, seconds: float) -> Path:
    """The hand-held classroom camera clip, ``seconds`` long."""
    out = work / f"camera-{seconds:g}s-r{RECIPE}.mp4"
    if out.exists():
        return out
    room = _room(work)
    body = "between(Y,100,479)*between(X,20+0.04*(Y-100),159-0.04*(Y-100))"
    face = "lte(pow((X-90)/36,2)+pow((Y-52)/46,2),1)"
    teacher = _sprite(
        work,
        "teacher.png",
        180,
        480,
        f"{face}+{body}",
        (f"if({face},205,if(lt(mod(Y,18),9),40,70))", f"if({face},150,80)", f"if({face},120,140)"),
    )
    voice = speech(work, "speech-camera.wav", "en-gb", 140)
    # Hand-held: a slow pan over the room plus a quicker shake of a few pixels.
    pan_x = "160+130*sin(2*PI*t/19)+5*sin(2*PI*t*1.9)"
    pan_y = "90+55*sin(2*PI*t/23)+4*sin(2*PI*t*2.7)"
    ffmpeg(
        [
            "-loop", "1", "-framerate", str(FPS), "-i", room,
            "-loop", "1", "-framerate", str(FPS), "-i", teacher,
            "-stream_loop", "-1", "-i", voice.name,
            "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.02:sample_rate=48000:seed=2",
            "-f", "lavfi", "-i", "anoisesrc=color=brown:amplitude=0.03:sample_rate=48000:seed=3",
            "-filter_complex",
            f"[0:v][1:v]overlay=x='720+420*sin(2*PI*t/31)':y='300+6*abs(sin(2*PI*t*0.9))',"
            f"crop=w={WIDTH}:h={HEIGHT}:x='{pan_x}':y='{pan_y}',"
            "noise=alls=12:allf=t,format=yuv420p[v];"
            "[2:a]aresample=48000,volume=0.7[s];"
            "[s][3:a][4:a]amix=inputs=3:duration=first:normalize=0,aformat=channel_layouts=stereo[a]",
            "-map", "[v]", "-map", "[a]", "-t", f"{seconds:g}",
            # A phone's encoder: 720p at about 10 Mbit/s, so the noise is partly in the file, as in real ones.
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-maxrate", "10M", "-bufsize", "10M", "-g", "60",
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
            "-movflags", "+faststart", out.name + ".part.mp4",
        ],
        work,
    )  # fmt: skip
    (work / (out.name + ".part.mp4")).rename(out)
    return out

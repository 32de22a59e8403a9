"""Short videos the demo corpus draws, with everything needed to describe them exactly: one shape that
moves across the bottom half of the picture for the whole clip, and shapes that appear (and maybe
disappear) in the top half at known times. Times are multiples of half a second, the period of the
2 fps frame sampling, so every event lands on a sampled frame."""

from __future__ import annotations

import dataclasses
import fractions
import io
import random

import numpy as np
from PIL import Image

from data_prep.demo.scenes import BACKGROUNDS, COLORS, SHAPES, Scene, Shape, draw_scene

STEP = 0.5
"""Event times are multiples of this many seconds."""
CODEC_OPTIONS = {"qp": "18", "preset": "medium"}
"""A constant quantiser: with rate control (crf), x264's macroblock tree gave other bytes from one process to
the next once torch was imported, where a constant quantiser gives the same bytes every time."""
DIRECTIONS = ("from the left to the right", "from the right to the left")
SLOTS = 2
"""The top half holds this many event places side by side, so shapes in different places never overlap."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """A shape visible from ``start`` (inclusive) to ``end`` (exclusive) seconds."""

    shape: Shape
    """What is drawn, and where."""
    start: float
    """Second at which it appears (a multiple of ``STEP``)."""
    end: float
    """Second at which it disappears: the clip's duration if it stays to the end."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Clip:
    """A video: a background, a moving shape and the events above it."""

    width: int
    """Frame width in pixels (even: H.264's 4:2:0 colour planes are half size)."""
    height: int
    """Frame height in pixels (even)."""
    fps: int
    """Frames per second of the encoded file."""
    num_frames: int
    """Frames in the file; ``num_frames / fps`` is the duration."""
    background: str
    """A name from ``BACKGROUNDS``."""
    mover: Shape
    """The moving shape at its first frame (``box`` is where it starts)."""
    direction: str
    """One of ``DIRECTIONS``."""
    events: list[Event]
    """Shapes appearing in the top half, in order of their start."""

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def mover_box(self, index: int) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = self.mover.box
        travel = self.width - (x2 - x1)
        offset = round(travel * index / (self.num_frames - 1))
        left = offset if self.direction == DIRECTIONS[0] else travel - offset
        return left, y1, left + x2 - x1, y2


def random_clip(rng: random.Random, width: int, height: int, fps: int, seconds: float, num_events: int) -> Clip:
    """A clip of ``seconds`` (a multiple of ``STEP``) with up to ``num_events`` (at most one per colour) events
    (fewer when their random times find no free place). Events differ from one another in colour and from the
    mover in colour or kind, so each shape can be named uniquely."""
    steps = round(seconds / STEP)
    side = max(8, min(width // (2 * SLOTS), height // 2) - 4)
    names = [(rng.choice(SHAPES), color) for color in rng.sample(list(COLORS), num_events)]
    mover_shape, mover_color = rng.choice([(s, c) for s in SHAPES for c in COLORS if (s, c) not in names])
    mover_top = rng.randint(height // 2, height - side)
    mover = Shape(shape=mover_shape, color=mover_color, box=(0, mover_top, side, mover_top + side))
    busy: list[list[tuple[int, int]]] = [[] for _ in range(SLOTS)]
    events = []
    for shape, color in names:
        first = rng.randint(1, steps - 1)
        last = rng.randint(first + 1, steps)
        free = [slot for slot in range(SLOTS) if all(last <= a or b <= first for a, b in busy[slot])]
        if not free:
            continue
        slot = rng.choice(free)
        busy[slot].append((first, last))
        left = slot * width // SLOTS + rng.randint(0, width // SLOTS - side)
        top = rng.randint(0, height // 2 - side)
        box = (left, top, left + side, top + side)
        events.append(Event(shape=Shape(shape=shape, color=color, box=box), start=first * STEP, end=last * STEP))
    events.sort(key=lambda event: (event.start, event.end))
    return Clip(
        width=width, height=height, fps=fps, num_frames=round(seconds * fps), background=rng.choice(list(BACKGROUNDS)),
        mover=mover, direction=rng.choice(DIRECTIONS), events=events,
    )


def draw_frame(clip: Clip, index: int) -> Image.Image:
    time = index / clip.fps
    shapes = [dataclasses.replace(clip.mover, box=clip.mover_box(index))]
    shapes += [event.shape for event in clip.events if event.start <= time < event.end]
    return draw_scene(Scene(width=clip.width, height=clip.height, background=clip.background, shapes=shapes))


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def describe_clip(clip: Clip) -> str:
    """The caption: the moving shape, then every appearance and disappearance in time order."""
    happenings = []
    for event in clip.events:
        place = event.shape.place(clip.width, clip.height)
        happenings.append((event.start, f"at {event.start:.1f} seconds {_article(event.shape.name)} {event.shape.name} "
                                        f"appears at the {place}"))
        if event.end < clip.duration:
            happenings.append((event.end, f"at {event.end:.1f} seconds the {event.shape.name} disappears"))
    happenings.sort(key=lambda happening: happening[0])
    mover = clip.mover.name
    sentences = [f"{_article(mover).title()} {mover} moves {clip.direction} on a {clip.background} background."]
    sentences += [f"{text[0].upper()}{text[1:]}." for _, text in happenings]
    return " ".join(sentences)


def encode_clip(clip: Clip) -> bytes:
    """The clip as an H.264 MP4 (yuv420p), the same bytes for the same clip: one encoder thread and a constant
    quantiser (see ``CODEC_OPTIONS``)."""
    import av  # here, not at the top: drawing a corpus without videos needs no PyAV (the GPU check's machine has none)

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=clip.fps, options=CODEC_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.codec_context.thread_count = 1
        for index in range(clip.num_frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(draw_frame(clip, index)), format="rgb24")
            frame.pts, frame.time_base = index, fractions.Fraction(1, clip.fps)  # frame j shows second j / fps
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()

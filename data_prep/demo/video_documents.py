"""The raw video records of the demo corpus: captions that say what happens when, the time spans of
an event, interleaved documents with a video between text, and long videos for stage 4.

Videos are short (2, 3 or 4 s at 4, 6 or 8 frames per second) and small (``Canvas`` sides, made even), so
that sampled at 2 fps they give 4-8 frames; the long ones last 8-16 s at 4 fps.
"""

from __future__ import annotations

import dataclasses
import random

from data_prep.demo.clips import STEP, Clip, describe_clip, encode_clip, random_clip
from data_prep.demo.documents import NUMBER_WORDS, Canvas
from data_prep.demo.scenes import describe_scene, draw_scene

SHORT_FPS = (4, 6, 8)
SHORT_SECONDS = (2.0, 3.0, 4.0)
"""Whole seconds: 2 fps sampling keeps an even number of frames, so temporal pairing drops none and the kept
frames are exactly every half second."""
LONG_FPS = 4


def _even_size(rng: random.Random, canvas: Canvas) -> tuple[int, int]:
    width, height = canvas.size(rng)
    return width - width % 2, height - height % 2


def _short_clip(rng: random.Random, canvas: Canvas, num_events: int) -> Clip:
    width, height = _even_size(rng, canvas)
    return random_clip(rng, width, height, rng.choice(SHORT_FPS), rng.choice(SHORT_SECONDS), num_events)


def video_caption(rng: random.Random, canvas: Canvas) -> dict:
    clip = _short_clip(rng, canvas, rng.randint(1, 2))
    return {"kind": "video_caption", "video": canvas.save_video(encode_clip(clip)), "caption": describe_clip(clip)}


def video_grounding(rng: random.Random, canvas: Canvas) -> dict:
    """When one shape is visible: one span, or two when it shows up twice."""
    clip = _short_clip(rng, canvas, 1)
    event = clip.events[0]
    if rng.random() < 0.3:
        a, b, c, d = sorted(rng.sample(range(1, round(clip.duration / STEP) + 1), 4))
        events = [dataclasses.replace(event, start=a * STEP, end=b * STEP),
                  dataclasses.replace(event, start=c * STEP, end=d * STEP)]
        clip = dataclasses.replace(clip, events=events)
    return {
        "kind": "video_grounding",
        "video": canvas.save_video(encode_clip(clip)),
        "query": f"When is the {event.shape.name} visible?",
        "spans": [[shown.start, shown.end] for shown in clip.events],
    }


def interleaved_video(rng: random.Random, canvas: Canvas) -> dict:
    """An interleaved document with one video and one or two pictures, in random order."""
    clip = _short_clip(rng, canvas, rng.randint(1, 2))
    parts = [[{"video": canvas.save_video(encode_clip(clip))}, {"text": f"In the video: {describe_clip(clip)}"}]]
    for _ in range(rng.randint(1, 2)):
        scene = canvas.scene(rng, rng.randint(1, 3))
        parts.append([{"image": canvas.save(draw_scene(scene))}, {"text": f"In the picture: {describe_scene(scene)}"}])
    rng.shuffle(parts)
    pictures = len(parts) - 1
    content: list[dict] = [{"text": f"Here are a video and {NUMBER_WORDS[pictures]} picture{'s' * (pictures > 1)}."}]
    for part in parts:
        content += part
    return {"kind": "interleaved", "content": content}


def long_video_caption(rng: random.Random, canvas: Canvas) -> dict:
    """A video of 8-16 s with 3-6 events (stage 4's long videos)."""
    width, height = _even_size(rng, canvas)
    clip = random_clip(rng, width, height, LONG_FPS, rng.randint(8, 16), rng.randint(3, 6))
    return {"kind": "video_caption", "video": canvas.save_video(encode_clip(clip)), "caption": describe_clip(clip)}


GENERATORS = {
    "video_caption": video_caption,
    "video_grounding": video_grounding,
    "interleaved_video": interleaved_video,
}
LONG_GENERATORS = {"video_caption_long": long_video_caption}

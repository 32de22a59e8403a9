"""Pictures the demo corpus draws, with everything needed to describe them exactly: coloured
shapes at known boxes, and rendered text lines at known boxes."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (240, 130, 30),
}
BACKGROUNDS = {"white": (255, 255, 255), "gray": (190, 190, 190), "black": (25, 25, 25)}
SHAPES = ("circle", "square", "triangle")
SHADED_BLUE = 128
"""The blue channel of a shaded background (red and green tell the place)."""
TEXT_BACKGROUNDS = ((255, 255, 255), (245, 240, 225), (225, 235, 245))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shape:
    """One drawn shape."""

    shape: str
    """circle, square or triangle."""
    color: str
    """A name from ``COLORS``."""
    box: tuple[int, int, int, int]
    """(x1, y1, x2, y2) in pixels: the shape touches all four sides."""

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    def place(self, width: int, height: int) -> str:
        """Where the shape sits, in words ("top left", "middle", "bottom right", ...)."""
        x = (self.box[0] + self.box[2]) / 2 / width
        y = (self.box[1] + self.box[3]) / 2 / height
        row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
        column = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "center"
        if row == "middle":
            return "center" if column == "center" else f"middle {column}"
        return row if column == "center" else f"{row} {column}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scene:
    """A picture of shapes on a plain background."""

    width: int
    height: int
    background: str
    """A name from ``BACKGROUNDS``."""
    shapes: list[Shape]


def random_scene(
    rng: random.Random, width: int, height: int, num_shapes: int, *, distinct: bool = True, size_range: float = 3
) -> Scene:
    """Up to ``num_shapes`` non-overlapping shapes (fewer if the picture has no room left).
    With ``distinct``, no two shapes share both colour and kind, so each can be named uniquely. A shape's side is at
    most half the picture's shorter side and at least that divided by ``size_range``."""
    shapes: list[Shape] = []
    side_limit = max(8, min(width, height) // 2)
    for _ in range(num_shapes * 20):
        if len(shapes) == num_shapes:
            break
        side = rng.randint(max(6, int(side_limit // size_range)), side_limit)
        x1, y1 = rng.randint(0, width - side), rng.randint(0, height - side)
        box = (x1, y1, x1 + side, y1 + side)
        shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
        clashes = any(_overlap(box, other.box) for other in shapes)
        repeated = distinct and any((other.shape, other.color) == (shape, color) for other in shapes)
        if not clashes and not repeated:
            shapes.append(Shape(shape=shape, color=color, box=box))
    return Scene(width=width, height=height, background=rng.choice(list(BACKGROUNDS)), shapes=shapes)


def _overlap(a: tuple[int, ...], b: tuple[int, ...], gap: int = 2) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def draw_scene(scene: Scene, *, shaded: bool = False) -> Image.Image:
    """``scene`` drawn on its plain background, or with ``shaded`` on ``shaded_background``, whose colour tells
    every patch where in the picture it lies. Qwen2.5-ViT has only rotary (relative) positions: on a plain
    background no patch can tell where it is, and the tiny model did not learn boxes from such pictures (README
    "The demo's scores")."""
    size = (scene.width, scene.height)
    image = shaded_background(*size) if shaded else Image.new("RGB", size, BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        x1, y1, x2, y2 = shape.box
        # PIL's boxes include their last pixel; ours end one past it, like array slices.
        corners = (x1, y1, x2 - 1, y2 - 1)
        fill = COLORS[shape.color]
        if shape.shape == "circle":
            draw.ellipse(corners, fill=fill)
        elif shape.shape == "square":
            draw.rectangle(corners, fill=fill)
        else:
            draw.polygon([((x1 + x2 - 1) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=fill)
    return image


def shaded_background(width: int, height: int) -> Image.Image:
    """A background whose colour says where each pixel is: red grows from 0 at the left edge to 255 at the right,
    green from 0 at the top to 255 at the bottom; blue is 128 throughout."""
    red = np.linspace(0, 255, width).round().astype(np.uint8)
    green = np.linspace(0, 255, height).round().astype(np.uint8)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = red[None, :], green[:, None], SHADED_BLUE
    return Image.fromarray(pixels)


def describe_scene(scene: Scene) -> str:
    """The caption: every shape with its place, then the background."""
    parts = [f"a {shape.name} at the {shape.place(scene.width, scene.height)}" for shape in scene.shapes]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed[0].upper()}{listed[1:]} on a {scene.background} background."


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextLine:
    text: str
    box: tuple[int, int, int, int]
    """(x1, y1, x2, y2): the ink of the line lies inside."""


def render_text(lines: list[str], *, font_size: int, rng: random.Random, max_side: int) -> tuple[Image.Image, list[TextLine]]:
    """Dark text lines on a light page just large enough to hold them (sides at most ``max_side``;
    lines that do not fit are dropped, so check the returned lines)."""
    font = ImageFont.load_default(size=font_size)
    margin, spacing = rng.randint(4, 12), max(2, font_size // 3)
    sizes = [font.getbbox(line) for line in lines]
    width = min(max_side, max(right for _, _, right, _ in sizes) + 2 * margin)
    placed, y = [], margin
    for line, (left, top, right, bottom) in zip(lines, sizes):
        if right + 2 * margin > width or y + bottom + margin > max_side:
            break
        placed.append((line, y, (margin + left, y + top, margin + right, y + bottom)))
        y += bottom + spacing
    height = max(y - spacing + margin, 2 * margin + 1)
    image = Image.new("RGB", (width, height), rng.choice(TEXT_BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    for line, line_y, _ in placed:
        draw.text((margin, line_y), line, font=font, fill=(rng.randint(0, 60),) * 3)
    return image, [TextLine(text=line, box=box) for line, _, box in placed]

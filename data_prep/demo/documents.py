"""The raw records of the demo corpus, one generator per kind.

Everything is templated so a tiny model can learn it in a few hundred steps: captions list the
drawn shapes with their places in a fixed order, grounding answers are the boxes the shapes were
drawn at (on a shaded background, which shows where each patch lies), OCR transcripts are the
rendered lines, and chains of thought work arithmetic column by column. Each generator takes a
seeded ``random.Random`` and a ``Canvas`` that saves the images it draws and returns their paths,
and returns one raw record (the ingest schema).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from data_prep.demo.scenes import SHAPES, Scene, describe_scene, draw_scene, random_scene, render_text
from data_prep.ingest.raw_schema import parse_document

WORDS = (
    "red", "green", "blue", "yellow", "circle", "square", "triangle", "cat", "dog", "sun", "tree", "house",
    "open", "stop", "exit", "north", "south", "milk", "bread", "apple", "river", "stone", "seven", "ten",
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
FACTS = (
    "A triangle has three sides.",
    "A square has four equal sides.",
    "A circle has no corners.",
    "Mixing red and yellow gives orange.",
    "Mixing blue and yellow gives green.",
    "Mixing red and blue gives purple.",
    "The sum of two even numbers is even.",
    "Any number times zero is zero.",
    "Ten is two times five.",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Canvas:
    """Where a generator's pictures and videos go, and how big they may be."""

    save: Callable[..., str]
    """``save(picture, lossless=False)`` stores a picture (as PNG when ``lossless``, else PNG or JPEG) and
    returns the path a record refers to it by."""
    save_video: Callable[[bytes], str]
    """Stores an encoded video file and returns the path a record refers to it by."""
    min_side: int
    """Smallest picture (or video frame) side in pixels."""
    max_side: int
    """Largest picture (or video frame) side in pixels."""

    def size(self, rng: random.Random) -> tuple[int, int]:
        """A random (width, height); pictures are mostly not square."""
        return rng.randint(self.min_side, self.max_side), rng.randint(self.min_side, self.max_side)

    def scene(self, rng: random.Random, num_shapes: int, *, distinct: bool = True, size_range: float = 3) -> Scene:
        width, height = self.size(rng)
        return random_scene(rng, width, height, num_shapes, distinct=distinct, size_range=size_range)


def caption(rng: random.Random, canvas: Canvas) -> dict:
    scene = canvas.scene(rng, rng.randint(1, 3))
    return {"kind": "caption", "image": canvas.save(draw_scene(scene)), "caption": describe_scene(scene)}


def grounding(rng: random.Random, canvas: Canvas) -> dict:
    # One large shape on a shaded background: with two, or smaller ones, or on a plain background, tiny did not
    # learn to place boxes in the demo's budget (README "The demo's scores").
    scene = canvas.scene(rng, 1, size_range=1.5)
    if rng.random() < 0.7:
        target = rng.choice(scene.shapes)
        query, found = f"Locate the {target.name}.", [target]
    else:
        shape = rng.choice([shape.shape for shape in scene.shapes])
        query, found = f"Locate every {shape}.", [item for item in scene.shapes if item.shape == shape]
    return {
        "kind": "grounding",
        "image": canvas.save(draw_scene(scene, shaded=True)),
        "query": query,
        "boxes": [{"bbox_2d": list(item.box), "label": item.name} for item in found],
    }


def ocr(rng: random.Random, canvas: Canvas) -> dict:
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
    image, placed = render_text(lines, font_size=rng.randint(12, 22), rng=rng, max_side=canvas.max_side)
    if not placed:  # even one word was too wide: a single short word always fits
        image, placed = render_text([rng.choice(WORDS)], font_size=12, rng=rng, max_side=canvas.max_side)
    record = {"kind": "ocr", "image": canvas.save(image)}
    if rng.random() < 0.5:
        record["text"] = "\n".join(line.text for line in placed)
    else:
        record["boxes"] = [{"bbox_2d": list(line.box), "text": line.text} for line in placed]
    return record


def interleaved(rng: random.Random, canvas: Canvas, num_pictures: tuple[int, int] = (2, 3)) -> dict:
    count = rng.randint(*num_pictures)
    content: list[dict] = [{"text": f"Here are {count} pictures."}]
    total = 0
    for number in range(1, count + 1):
        scene = canvas.scene(rng, rng.randint(1, 3))
        total += len(scene.shapes)
        description = describe_scene(scene)
        content.append({"image": canvas.save(draw_scene(scene))})
        content.append({"text": f"Picture {number} shows {description[0].lower()}{description[1:]}"})
    content.append({"text": f"Together the pictures show {total} shapes."})
    return {"kind": "interleaved", "content": content}


PLACES = ("Ones", "Tens", "Hundreds", "Thousands")


def _column_addition(a: int, b: int) -> list[str]:
    steps, carry, place = [], 0, 1
    for name in PLACES:
        if a // place == 0 and b // place == 0:
            break
        da, db = a // place % 10, b // place % 10
        total = da + db + carry
        terms = f"{da} + {db}" + (f" + {carry}" if carry else "")
        carry = total // 10
        steps.append(f"{name}: {terms} = {total}, write {total % 10}" + (f", carry {carry}." if carry else "."))
        place *= 10
    if carry:
        steps.append(f"Write the last carry {carry} in front.")
    return steps


def _column_subtraction(a: int, b: int) -> list[str]:
    steps, borrow, place = [], 0, 1
    for name in PLACES:
        if a // place == 0:
            break
        digit, other = a // place % 10, b // place % 10
        top = digit - borrow
        step = f"{name}: {digit} - {borrow} borrowed = {top}; " if borrow else f"{name}: "
        if top < other:
            step += f"{top} is less than {other}, so borrow: {top + 10} - {other} = {top + 10 - other}."
        else:
            step += f"{top} - {other} = {top - other}."
        borrow = int(top < other)
        steps.append(step)
        place *= 10
    return steps


def _multiplication(a: int, b: int) -> list[str]:
    steps, carry, place = [], 0, 1
    while a // place:
        digit = a // place % 10
        product = digit * b + carry
        terms = f"{digit} x {b}" + (f" + {carry}" if carry else "")
        steps.append(f"{terms} = {product}, write {product % 10}" + (f", carry {product // 10}." if product >= 10 else "."))
        carry = product // 10
        place *= 10
    if carry:
        steps.append(f"Write the last carry {carry} in front.")
    return steps


def arithmetic_problem(rng: random.Random) -> tuple[str, list[str], int]:
    """(expression, worked steps, result) of a random +, - or x problem."""
    operation = rng.choice("+-x")
    if operation == "+":
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        return f"{a} + {b}", _column_addition(a, b), a + b
    if operation == "-":
        a = rng.randint(20, 999)
        b = rng.randint(1, a)
        return f"{a} - {b}", _column_subtraction(a, b), a - b
    a, b = rng.randint(10, 99), rng.randint(2, 9)
    return f"{a} x {b}", _multiplication(a, b), a * b


def cot(rng: random.Random, canvas: Canvas) -> dict:
    style = rng.random()
    if style < 0.5:
        expression, steps, result = arithmetic_problem(rng)
        return {
            "kind": "cot", "question": f"What is {expression}?",
            "thinking": " ".join(steps + [f"So {expression} = {result}."]), "answer": str(result),
        }
    if style < 0.75:
        expression, steps, result = arithmetic_problem(rng)
        image, _ = render_text([f"{expression} = ?"], font_size=rng.randint(14, 22), rng=rng, max_side=canvas.max_side)
        return {
            "kind": "cot", "images": [canvas.save(image)], "question": "Solve the problem in the picture.",
            "thinking": " ".join([f"The picture asks for {expression}."] + steps + [f"So {expression} = {result}."]),
            "answer": str(result),
        }
    scene = canvas.scene(rng, rng.randint(2, 6), distinct=False)
    shape = rng.choice(SHAPES)
    ordered = sorted(scene.shapes, key=lambda item: (item.box[0], item.box[1]))
    matching = [item for item in ordered if item.shape == shape]
    seen = ", ".join(f"a {item.name}" for item in ordered)
    counted = " ".join(f"{NUMBER_WORDS[n]}: the {item.name}." for n, item in enumerate(matching, start=1))
    return {
        "kind": "cot",
        "images": [canvas.save(draw_scene(scene))],
        "question": f"How many {shape}s are in the picture?",
        "thinking": f"From left to right I see {seen}. Counting the {shape}s: "
                    + (counted or f"there is no {shape}.") + f" That makes {len(matching)}.",
        "answer": str(len(matching)),
    }


def text(rng: random.Random, canvas: Canvas) -> dict:
    sentences = []
    for _ in range(rng.randint(3, 6)):
        style = rng.random()
        if style < 0.35:
            step, count = rng.randint(1, 12), rng.randint(4, 8)
            sentences.append(f"Counting by {step}: " + ", ".join(str(step * n) for n in range(1, count + 1)) + ".")
        elif style < 0.7:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            sentences.append(f"{a} + {b} = {a + b}.")
        else:
            sentences.append(rng.choice(FACTS))
    return {"kind": "text", "text": " ".join(sentences)}


def long_interleaved(rng: random.Random, canvas: Canvas) -> dict:
    """An interleaved document of 8-16 pictures (stage 4's long documents)."""
    return interleaved(rng, canvas, num_pictures=(8, 16))


def long_cot(rng: random.Random, canvas: Canvas) -> dict:
    """A running sum of 8-25 numbers, one step per number (stage 4's long reasoning)."""
    numbers = [rng.randint(10, 999) for _ in range(rng.randint(8, 25))]
    steps, total = [f"Start with {numbers[0]}."], numbers[0]
    for number in numbers[1:]:
        steps.append(f"{total} + {number} = {total + number}.")
        total += number
    return {
        "kind": "cot",
        "question": "What is " + " + ".join(map(str, numbers)) + "?",
        "thinking": " ".join(steps + [f"The total is {total}."]),
        "answer": str(total),
    }


PICTURE_GENERATORS = (caption, grounding, ocr, interleaved)


def language(rng: random.Random, canvas: Canvas) -> dict:
    """The text of a picture document without its pictures (a caption, a grounding query and its boxes, an OCR
    prompt and transcript, an interleaved document's text): the LLM's text-only warm-up learns the demo's language
    from these before any picture reaches it, as MiMo-VL's LLM is pretrained before its vision stages."""
    unsaved = dataclasses.replace(canvas, save=lambda image: "unsaved.png")
    record = rng.choice(PICTURE_GENERATORS)(rng, unsaved)
    pieces = parse_document(record, None).texts()
    # Where a picture stood the text breaks a line; a prompt ends with its own newline already.
    return {"kind": "text", "text": "".join(piece if piece.endswith("\n") else piece + "\n" for piece in pieces).rstrip("\n")}


GENERATORS = {
    "caption": caption,
    "interleaved": interleaved,
    "ocr": ocr,
    "grounding": grounding,
    "cot": cot,
    "text": text,
    "language": language,
}
LONG_GENERATORS = {"interleaved_long": long_interleaved, "cot_long": long_cot}

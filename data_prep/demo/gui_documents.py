"""The raw GUI records of the demo corpus: a drawn screenshot, an instruction, and either the targets it
names (a widget's box or point) or the actions that carry it out, in MiMo-VL's unified action space
(click, longpress, hover, input, select, scroll, drag, press, open, appswitch, wait, finished).

Coordinates are pixels of the drawn screenshot: a box is the widget's outline (the last row and column
excluded, as grounding boxes are), a point is the widget's centre pixel (for a slider: the knob's, and
the track's end for a drag).
"""

from __future__ import annotations

import random

from data_prep.demo.documents import Canvas
from data_prep.demo.screens import MENU_CHOICES, Screen, Widget, draw_screen, random_screen, widgets_of

TYPED_WORDS = ("alice", "bob@mail.com", "Paris", "555 0199", "hello world", "Main Street 7", "demo", "x9")
PRESSES = (
    ("Press Enter to confirm.", ["enter"]),
    ("Go back to the previous page.", ["back"]),
    ("Go to the home screen.", ["home"]),
    ("Copy the selected text.", ["ctrl", "c"]),
)
APPS = ("Calculator", "Camera", "Clock", "Maps", "Calendar", "Weather")
TARGET_KINDS = ("button", "field", "checkbox", "menu", "list")
"""Widgets a target may name (a slider's box is partly hidden by its knob)."""
_STATUS = {"wait": "Loading...", "finished": "Saved."}


def _center(widget: Widget) -> list[int]:
    return list(widget.center)


def _actions(task: str, rng: random.Random, screen: Screen) -> tuple[str, list[dict]]:
    """The instruction of an action task on ``screen`` and the actions that carry it out."""
    if task in ("click", "longpress", "hover"):
        widget = rng.choice(widgets_of(screen, "button") + (widgets_of(screen, "checkbox") if task == "click" else []))
        verb = {"click": "Click", "longpress": "Long-press", "hover": "Hover over"}[task]
        if widget.kind == "checkbox":
            verb = "Tick"
        return f"{verb} the {widget.name}.", [{"action": task, "start_point": _center(widget)}]
    if task == "input":
        widget = rng.choice(widgets_of(screen, "field"))
        word = rng.choice(TYPED_WORDS)
        return (f'Type "{word}" into the {widget.name}.',
                [{"action": "click", "start_point": _center(widget)}, {"action": "input", "text": word}])
    if task == "select":
        widget = widgets_of(screen, "menu")[0]
        choice = rng.choice([value for value in MENU_CHOICES[widget.label] if value != widget.value])
        return (f"Choose {choice} in the {widget.name}.",
                [{"action": "select", "start_point": _center(widget), "text": choice}])
    if task == "scroll":
        widget = widgets_of(screen, "list")[0]
        direction = rng.choice(("up", "down"))
        return (f"Scroll {direction} in the {widget.name}.",
                [{"action": "scroll", "direction": direction, "start_point": _center(widget)}])
    if task == "drag":
        widget = widgets_of(screen, "slider")[0]
        k1, k2, k3, k4 = widget.knob
        x1, y1, x2, y2 = widget.box
        side = rng.choice(("left", "right"))
        end = [x1 + 1 if side == "left" else x2 - 2, (y1 + y2) // 2]
        return (f"Drag the {widget.name} to the {side} end.",
                [{"action": "drag", "start_point": [(k1 + k3) // 2, (k2 + k4) // 2], "end_point": end}])
    if task == "press":
        instruction, keys = rng.choice(PRESSES)
        return instruction, [{"action": "press", "keys": keys}]
    if task == "open":
        app = rng.choice(APPS)
        return f"Open the {app} app.", [{"action": "open", "app": app}]
    if task == "appswitch":
        return "Switch to the previous app.", [{"action": "appswitch"}]
    if task == "wait":
        return "Save the file once the window has loaded.", [{"action": "wait"}]
    assert task == "finished", task
    return "Save the file.", [{"action": "finished", "status": "success"}]


NEEDS = {"click": "button", "longpress": "button", "hover": "button", "input": "field", "select": "menu",
         "scroll": "list", "drag": "slider"}
"""The widget an action task needs on the screen."""
ACTION_TASKS = ("click", "click", "longpress", "hover", "input", "input", "select", "scroll", "drag", "press",
                "open", "appswitch", "wait", "finished")
"""Action tasks, the commonest listed twice."""


def gui(rng: random.Random, canvas: Canvas) -> dict:
    if rng.random() < 0.4:
        kind = rng.choice(TARGET_KINDS)
        screen = random_screen(rng, needs=kind)
        widget = rng.choice(widgets_of(screen, kind))
        if rng.random() < 0.5:
            instruction, targets = f"Find the {widget.name}.", [{"bbox_2d": list(widget.box), "label": widget.name}]
        else:
            instruction, targets = f"Point to the {widget.name}.", [{"point": _center(widget), "label": widget.name}]
        answer = {"targets": targets}
    else:
        task = rng.choice(ACTION_TASKS)
        screen = random_screen(rng, needs=NEEDS.get(task), status=_STATUS.get(task, ""))
        instruction, actions = _actions(task, rng, screen)
        answer = {"actions": actions}
    # Screenshots stay PNG: their flat colours are what the targets are checked against.
    image = canvas.save(draw_screen(screen), lossless=True)
    return {"kind": "gui", "image": image, "instruction": instruction, **answer}


GENERATORS = {"gui": gui}

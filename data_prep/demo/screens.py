"""GUI-like screenshots the demo corpus draws: a window with a title bar and a column of widgets
(buttons, text fields, checkboxes, a drop-down menu, a slider, a scrollable list) at known boxes.

Every widget kind has its own outline colour, saturated so that no blend of the black text with a
light fill can equal it: a widget's box is exactly the rectangle of its outline colour.
"""

from __future__ import annotations

import dataclasses
import random

from PIL import Image, ImageDraw, ImageFont

WINDOW = (236, 236, 236)
TITLE_BAR = (40, 60, 110)
INK = (0, 0, 0)
FILL = {
    "button": (214, 228, 250),
    "field": (255, 255, 255),
    "checkbox": (255, 255, 255),
    "menu": (250, 246, 232),
    "list": (255, 255, 255),
    "slider": (170, 170, 170),
}
"""Inside colour of each widget kind (for the slider: its track)."""
OUTLINE = {
    "button": (30, 90, 210),
    "field": (0, 150, 120),
    "checkbox": (210, 70, 0),
    "menu": (150, 0, 160),
    "list": (190, 140, 0),
    "slider": (90, 90, 90),
}
KNOB = (220, 30, 90)
"""The slider's handle."""
BUTTON_LABELS = ("OK", "Cancel", "Save", "Open", "Delete", "Search", "Apply", "Next", "Back", "Send", "Print", "Close")
FIELD_LABELS = ("Name", "Email", "City", "Phone", "Title", "Password", "Address", "Username")
CHECKBOX_LABELS = ("Remember me", "Dark mode", "Notifications", "Auto save", "Show hidden files", "Wi-Fi")
MENU_CHOICES = {
    "Size": ("Small", "Medium", "Large"),
    "Color": ("Red", "Green", "Blue"),
    "Language": ("English", "French", "German"),
    "Sort by": ("Name", "Date", "Type"),
}
SLIDER_LABELS = ("Volume", "Brightness", "Speed", "Zoom")
LIST_LABELS = ("Files", "Contacts", "Messages", "Songs")
LIST_ITEMS = ("report.pdf", "notes.txt", "photo.png", "Alice", "Bob", "Carol", "Hello", "Meeting", "Track 1", "Track 2")
TITLES = ("Settings", "Editor", "Mail", "Photos", "Music", "Files", "Profile", "Downloads")
FONT_SIZE = 11
MARGIN = 8
ROW_GAP = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class Widget:
    """One drawn element of a screen."""

    kind: str
    """A key of ``OUTLINE``: button, field, checkbox, menu, list or slider."""
    label: str
    """Its name as instructions say it ("Save", "Name", "Volume", ...)."""
    box: tuple[int, int, int, int]
    """(x1, y1, x2, y2) in pixels, the last row and column excluded: the outline runs along the edge."""
    value: str = ""
    """The menu's current choice."""
    knob: tuple[int, int, int, int] | None = None
    """The slider handle's box."""

    @property
    def name(self) -> str:
        """How instructions and targets call it: "Save button", "Name field", "Volume slider", ..."""
        return f"{self.label} {self.kind}"

    @property
    def center(self) -> tuple[int, int]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) // 2, (y1 + y2) // 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class Screen:
    """A window of widgets, with an optional status line at the bottom."""

    width: int
    height: int
    title: str
    widgets: list[Widget]
    texts: list[tuple[str, tuple[int, int]]]
    """Plain text drawn at (x, y): field labels, checkbox labels, list items, the status line."""


def _font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _text_width(text: str) -> int:
    return int(_font().getlength(text))


def random_screen(rng: random.Random, *, needs: str | None = None, status: str = "") -> Screen:
    """A window of 3-6 rows of widgets in random order, each label used once, with a widget of kind ``needs``
    among them; ``status`` is written at the bottom."""
    width = rng.randint(10, 16) * 20
    rows = rng.sample(["button", "field", "field", "checkbox", "menu", "slider", "list"], rng.randint(3, 6))
    if needs is not None and needs not in rows:
        rows[rng.randrange(len(rows))] = needs
    fields = iter(rng.sample(FIELD_LABELS, 2))
    widgets: list[Widget] = []
    texts: list[tuple[str, tuple[int, int]]] = []
    y = 20 + ROW_GAP
    for row in rows:
        if row == "button":
            x = MARGIN
            for label in rng.sample(BUTTON_LABELS, rng.randint(1, 3)):
                side = max(_text_width(label) + 16, 44)
                if x + side > width - MARGIN:
                    break
                widgets.append(Widget(kind="button", label=label, box=(x, y, x + side, y + 22)))
                x += side + 8
            y += 22
        elif row == "field":
            label = next(fields)
            left = MARGIN + _text_width("Password:") + 8
            texts.append((f"{label}:", (MARGIN, y + 4)))
            widgets.append(Widget(kind="field", label=label, box=(left, y, width - MARGIN, y + 20)))
            y += 20
        elif row == "checkbox":
            label = rng.choice(CHECKBOX_LABELS)
            widgets.append(Widget(kind="checkbox", label=label, box=(MARGIN, y + 2, MARGIN + 13, y + 15)))
            texts.append((label, (MARGIN + 20, y + 2)))
            y += 17
        elif row == "menu":
            label = rng.choice(list(MENU_CHOICES))
            left = MARGIN + _text_width("Language:") + 8
            texts.append((f"{label}:", (MARGIN, y + 4)))
            value = rng.choice(MENU_CHOICES[label])
            widgets.append(Widget(kind="menu", label=label, box=(left, y, left + 90, y + 20), value=value))
            y += 20
        elif row == "slider":
            label = rng.choice(SLIDER_LABELS)
            left = MARGIN + _text_width("Brightness:") + 8
            texts.append((f"{label}:", (MARGIN, y + 2)))
            box = (left, y + 6, width - MARGIN, y + 12)
            knob_x = rng.randint(box[0] + 2, box[2] - 10)
            widgets.append(Widget(kind="slider", label=label, box=box, knob=(knob_x, y, knob_x + 8, y + 18)))
            y += 18
        else:
            label = rng.choice(LIST_LABELS)
            items = rng.sample(LIST_ITEMS, 4)
            widgets.append(Widget(kind="list", label=label, box=(MARGIN, y, width - MARGIN, y + 4 * 16 + 6)))
            texts += [(item, (MARGIN + 6, y + 4 + 16 * n)) for n, item in enumerate(items)]
            y += 4 * 16 + 6
        y += ROW_GAP
    if status:
        texts.append((status, (MARGIN, y)))
        y += 16 + ROW_GAP
    return Screen(width=width, height=y, title=rng.choice(TITLES), widgets=widgets, texts=texts)


def draw_screen(screen: Screen) -> Image.Image:
    image = Image.new("RGB", (screen.width, screen.height), WINDOW)
    draw = ImageDraw.Draw(image)
    font = _font()
    draw.rectangle((0, 0, screen.width - 1, 19), fill=TITLE_BAR)
    draw.text((MARGIN, 4), screen.title, font=font, fill=(255, 255, 255))
    for widget in screen.widgets:
        x1, y1, x2, y2 = widget.box
        # PIL's boxes include their last pixel; ours end one past it, like array slices.
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=FILL[widget.kind], outline=OUTLINE[widget.kind])
        if widget.kind == "button":
            draw.text(((x1 + x2) / 2, (y1 + y2) / 2), widget.label, font=font, fill=INK, anchor="mm")
        elif widget.kind == "menu":
            draw.text((x1 + 5, y1 + 4), f"{widget.value}  v", font=font, fill=INK)
        elif widget.kind == "slider":
            k1, k2, k3, k4 = widget.knob
            draw.rectangle((k1, k2, k3 - 1, k4 - 1), fill=KNOB)
    for text, position in screen.texts:
        draw.text(position, text, font=font, fill=INK)
    return image


def widgets_of(screen: Screen, kind: str) -> list[Widget]:
    return [widget for widget in screen.widgets if widget.kind == kind]

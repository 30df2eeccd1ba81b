"""Draw each hardware profile's wiring diagram (SVG) and write hardware/README.md from the profiles.

    python hardware/draw_wiring.py            # rewrite hardware/wiring/*.svg and hardware/README.md
    python hardware/draw_wiring.py --check    # exit 1 if they are not what the profiles say

The pictures come from the same TOML files the device loads, so a pin changed in a profile
changes the diagram, the pin table and the parts list together.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from agentpi.config.profiles import load_profile

HERE = Path(__file__).resolve().parent
PROFILES = HERE / "profiles"

# The 40-pin header: physical pin -> name. Odd pins are the column nearer the board's edge.
HEADER: dict[int, str] = {
    1: "3V3", 2: "5V", 3: "GPIO2", 4: "5V", 5: "GPIO3", 6: "GND", 7: "GPIO4", 8: "GPIO14",
    9: "GND", 10: "GPIO15", 11: "GPIO17", 12: "GPIO18", 13: "GPIO27", 14: "GND", 15: "GPIO22",
    16: "GPIO23", 17: "3V3", 18: "GPIO24", 19: "GPIO10", 20: "GND", 21: "GPIO9", 22: "GPIO25",
    23: "GPIO11", 24: "GPIO8", 25: "GND", 26: "GPIO7", 27: "ID_SD", 28: "ID_SC", 29: "GPIO5",
    30: "GND", 31: "GPIO6", 32: "GPIO12", 33: "GPIO13", 34: "GND", 35: "GPIO19", 36: "GPIO16",
    37: "GPIO26", 38: "GPIO20", 39: "GND", 40: "GPIO21",
}  # fmt: skip
PHYSICAL = {int(name[4:]): pin for pin, name in HEADER.items() if name.startswith("GPIO")}
WIRE_COLORS = {
    "red": "#d62728", "green": "#2ca02c", "blue": "#1f77b4", "white": "#999999",
    "yellow": "#e6b800", "orange": "#ff7f0e", "purple": "#9467bd", "cyan": "#17becf",
}  # fmt: skip
PIN_FILL = {"GND": "#222222", "5V": "#d62728", "3V3": "#ff7f0e"}

ROW = 26  # vertical distance between header rows
TOP = 90
LEFT_PIN_X, RIGHT_PIN_X = 380, 410
WIDTH = 790


@dataclass(frozen=True)
class Connection:
    """One wire from a header pin to a part."""

    gpio: int | None  # None for a power pin
    physical: int
    part: str
    color: str
    to_ground: bool  # the part's other leg goes to GND

    @property
    def function(self) -> str:
        return HEADER[self.physical]


def connections(
    settings: dict[str, Any], on_hat: bool, uses: dict[str, str] | None = None
) -> list[Connection]:
    """The wires of a build; ``uses`` names pins the board takes for itself (audio, codec)."""
    wires: list[Connection] = []
    leds = settings.get("leds", {})
    kind = leds.get("type", "none")
    pins = list(leds.get("pins", []))
    resistor = "" if on_hat else "330 Ω + "
    if kind in ("led", "pwmled", "board"):
        colors = leds.get("colors") or ["white"] * len(pins)
        for pin, color in zip(pins, colors, strict=True):
            wires.append(Connection(pin, PHYSICAL[pin], f"{resistor}{color} LED", color, True))
    elif kind == "rgbled":
        for pin, leg in zip(pins, ("red", "green", "blue"), strict=True):
            wires.append(Connection(pin, PHYSICAL[pin], f"{resistor}RGB LED {leg} leg", leg, True))
    elif kind == "apa102":
        count = leds.get("count", 3)
        wires.append(
            Connection(pins[0], PHYSICAL[pins[0]], f"{count}x APA102 data (DI)", "green", False)
        )
        wires.append(
            Connection(pins[1], PHYSICAL[pins[1]], f"{count}x APA102 clock (CI)", "yellow", False)
        )
        if not on_hat:
            wires.append(Connection(None, 2, "APA102 power (VCC)", "red", False))
    if leds.get("enable_pin") is not None:
        pin = leds["enable_pin"]
        wires.append(Connection(pin, PHYSICAL[pin], "LED power enable", "orange", False))
    button = settings.get("button", {})
    if button.get("pin") is not None:
        pin = button["pin"]
        wires.append(Connection(pin, PHYSICAL[pin], "push button", "white", True))
    for gpio, use in (uses or {}).items():
        wires.append(Connection(int(gpio), PHYSICAL[int(gpio)], use, "purple", False))
    return sorted(wires, key=lambda wire: wire.physical)


def pin_xy(physical: int) -> tuple[int, int]:
    row = (physical - 1) // 2
    return (LEFT_PIN_X if physical % 2 else RIGHT_PIN_X), TOP + row * ROW


def nearest_ground(side_odd: bool, rows: list[int]) -> int:
    grounds = [p for p, name in HEADER.items() if name == "GND" and (p % 2 == 1) == side_odd]
    middle = sum(rows) / len(rows)
    return min(grounds, key=lambda p: abs(pin_xy(p)[1] - middle))


def line(x1: int, y1: int, x2: int, y2: int, stroke: str = "#222", width: int = 3) -> str:
    return (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{stroke}" stroke-width="{width}"/>'
    )


def text(x: int, y: int, content: str, size: int = 11, extra: str = 'text-anchor="middle"') -> str:
    return f'<text x="{x}" y="{y}" font-size="{size}" {extra}>{escape(content)}</text>'


def draw(name: str, info: dict[str, Any], settings: dict[str, Any]) -> str:
    on_hat = bool(info.get("hat", False))
    wires = connections(settings, on_hat, info.get("uses"))
    height = TOP + 20 * ROW + 70
    on_hat_note = " · the HAT plugs onto it" if on_hat else ""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        text(20, 30, info["title"], 18, 'font-weight="bold"'),
        text(
            20,
            52,
            f'profile "{name}" · Raspberry Pi 40-pin header, pin 1 at the top left{on_hat_note}',
            12,
            'fill="#555"',
        ),
        f'<rect x="{LEFT_PIN_X - 18}" y="{TOP - 18}" width="{RIGHT_PIN_X - LEFT_PIN_X + 36}" '
        f'height="{20 * ROW + 10}" rx="6" fill="#2f4f2f"/>',
    ]
    ringed = {wire.physical for wire in wires}
    for left in (True, False):
        # Parts whose other leg goes to ground share a rail beyond them, joined to the nearest GND.
        rows = [pin_xy(w.physical)[1] for w in wires if w.to_ground and (w.physical % 2) == left]
        if not rows or on_hat:
            continue
        ground = nearest_ground(left, rows)
        ringed.add(ground)
        x_pin, y_pin = pin_xy(ground)
        rail_x = 30 if left else WIDTH - 30
        out.append(line(rail_x, min([*rows, y_pin]), rail_x, max([*rows, y_pin])))
        out.append(line(x_pin, y_pin, rail_x, y_pin))
        out.append(text((x_pin + rail_x) // 2, y_pin - 5, f"GND (pin {ground})"))
        box_edge = 60 if left else WIDTH - 60
        out.extend(line(box_edge, row, rail_x, row, width=2) for row in rows)

    box_w, box_h = 190, 20
    for wire in wires:
        x, y = pin_xy(wire.physical)
        left = wire.physical % 2 == 1
        stroke = WIRE_COLORS.get(wire.color, "#555")
        box_x = 60 if left else WIDTH - 60 - box_w
        near_edge = box_x + box_w if left else box_x
        out.append(line(x, y, near_edge, y, stroke))
        out.append(text((x + near_edge) // 2, y - 5, f"{wire.function} (pin {wire.physical})"))
        out.append(
            f'<rect x="{box_x}" y="{y - box_h // 2}" width="{box_w}" height="{box_h}" rx="4" '
            f'fill="#f4f4f4" stroke="{stroke}" stroke-width="2"/>'
        )
        out.append(text(box_x + box_w // 2, y + 4, wire.part, 12))

    for physical, pin_name in HEADER.items():
        x, y = pin_xy(physical)
        fill = PIN_FILL.get(pin_name, "#c8a000")
        ring = ' stroke="white" stroke-width="3"' if physical in ringed else ""
        out.append(f'<circle cx="{x}" cy="{y}" r="8" fill="{fill}"{ring}/>')
        out.append(text(x, y + 3, str(physical), 8, 'text-anchor="middle" fill="white"'))

    legend_y = TOP + 20 * ROW + 28
    legend = "Header pins: yellow GPIO, red 5V, orange 3V3, black GND; ringed pins are used."
    for number, note in enumerate([legend, *textwrap.wrap(info.get("notes", ""), 120)]):
        out.append(text(20, legend_y + 15 * number, note, 11, 'fill="#555"'))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def pin_table(wires: list[Connection], on_hat: bool) -> list[str]:
    lines = ["| Part | GPIO (BCM) | Header pin | Other leg |", "|---|---|---|---|"]
    for wire in wires:
        gpio = f"GPIO{wire.gpio}" if wire.gpio is not None else wire.function
        other = "on the HAT" if on_hat else ("GND" if wire.to_ground else "-")
        lines.append(f"| {wire.part} | {gpio} | {wire.physical} | {other} |")
    return lines


INTRO = """# Hardware builds

Each build is a profile in [`profiles/`](profiles/); `[hardware] profile = "NAME"` in the config
picks one, and any key of it can still be set in the config. The diagrams, pin tables and parts
lists below are generated from those same files by `python hardware/draw_wiring.py`
(`make wiring`); a test fails if they drift apart.

Check an assembly with `agentpi leds --profile NAME`: it shows every state's light pattern in
turn on the real pins.
"""


def readme(drawn: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    parts = [INTRO]
    for name, info, settings in drawn:
        on_hat = bool(info.get("hat", False))
        parts.append(f"## {info['title']}\n")
        parts.append(f'`[hardware] profile = "{name}"`\n')
        parts.append(f"![wiring of {name}](wiring/{name}.svg)\n")
        wires = connections(settings, on_hat, info.get("uses"))
        parts.append("\n".join(pin_table(wires, on_hat)) + "\n")
        audio = settings.get("audio", {})
        if audio:
            parts.append(
                f"Audio devices: input `{audio.get('input')}`, output `{audio.get('output')}`.\n"
            )
        parts.append("Parts:\n\n" + "\n".join(f"- {part}" for part in info["parts"]) + "\n")
        if info.get("notes"):
            parts.append(f"{info['notes']}\n")
    return "\n".join(parts)


def outputs() -> dict[Path, str]:
    drawn = []
    files: dict[Path, str] = {}
    for path in sorted(PROFILES.glob("*.toml")):
        info, settings = load_profile(str(path))
        drawn.append((path.stem, info, settings))
        files[HERE / "wiring" / f"{path.stem}.svg"] = draw(path.stem, info, settings)
    files[HERE / "README.md"] = readme(drawn)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the files are current")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(exist_ok=True)
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python hardware/draw_wiring.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

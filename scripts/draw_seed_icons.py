#!/usr/bin/env python3
"""Draw the seed apps' icons (appstore/seeds/<app>/icon.png): 128x128 RGBA PNGs, made of simple
shapes on a rounded square, written with zlib only (no imaging library), so the bytes are the same
on every machine and every run.

    python3 scripts/draw_seed_icons.py            # rewrite the icons
    python3 scripts/draw_seed_icons.py --check    # exit 1 if a committed icon differs
    python3 scripts/draw_seed_icons.py --out DIR  # write DIR/<app>.png instead

Each pixel is the average of 4x4 samples (anti-aliased edges); a sample takes the colour of the
last shape that contains it. The glyphs are the project's own drawings, not the projects' logos.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

SIZE = 128
SAMPLES = 4  # per axis
SEEDS = Path(__file__).resolve().parents[1] / "appstore" / "seeds"

Point = tuple[float, float]
Shape = Callable[[float, float], bool]
Color = tuple[int, int, int, int]
WHITE: Color = (255, 255, 255, 255)


# Shapes: functions of a point in 0..128 coordinates -------------------------------------------
def rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        cx, cy = min(max(x, x0 + r), x1 - r), min(max(y, y0 + r), y1 - r)
        return x0 <= x <= x1 and y0 <= y <= y1 and (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    return inside


def circle(cx: float, cy: float, r: float) -> Shape:
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def ring(cx: float, cy: float, r: float, width: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        d = math.hypot(x - cx, y - cy)
        return r - width / 2 <= d <= r + width / 2
    return inside


def ellipse(cx: float, cy: float, rx: float, ry: float) -> Shape:
    return lambda x, y: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def stroke(points: list[Point], width: float) -> Shape:
    """A polyline with round caps and joins."""
    half2 = (width / 2) ** 2
    segments = list(zip(points, points[1:], strict=False))

    def inside(x: float, y: float) -> bool:
        for (ax, ay), (bx, by) in segments:
            dx, dy = bx - ax, by - ay
            t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
            if (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2 <= half2:
                return True
        return False
    return inside


def polygon(points: list[Point]) -> Shape:
    def inside(x: float, y: float) -> bool:
        hit = False
        for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1], strict=False):
            if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
                hit = not hit
        return hit
    return inside


def minus(shape: Shape, hole: Shape) -> Shape:
    return lambda x, y: shape(x, y) and not hole(x, y)


def hexagon(cx: float, cy: float, r: float) -> list[Point]:
    return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in range(-90, 270, 60)]


# The icons -------------------------------------------------------------------------------------
def background(color: Color) -> tuple[Shape, Color]:
    return rounded_rect(4, 4, 124, 124, 24), color


def redis() -> list[tuple[Shape, Color]]:
    layers: list[tuple[Shape, Color]] = [background((176, 36, 30, 255))]
    for i, top in enumerate((28, 48, 68)):  # three stacked slabs, the top one brightest
        shade = (255, 255, 255, 255) if i == 0 else (255, 214, 208, 255)
        layers.append((polygon([(64, top), (104, top + 14), (64, top + 28), (24, top + 14)]), (120, 20, 16, 255)))
        layers.append((polygon([(64, top + 3), (98, top + 14), (64, top + 25), (30, top + 14)]), shade))
    layers.append((polygon([(58, 38), (70, 38), (64, 44)]), (176, 36, 30, 255)))  # a star-like notch
    return layers


def postgresql() -> list[tuple[Shape, Color]]:
    blue, light = (38, 84, 140, 255), (214, 230, 247, 255)
    body = lambda x, y: 34 <= x <= 94 and 34 <= y <= 92  # noqa: E731
    return [background(blue),
            (lambda x, y: body(x, y) or ellipse(64, 92, 30, 11)(x, y), WHITE),  # the cylinder
            (ellipse(64, 34, 30, 11), WHITE),
            (ellipse(64, 34, 25, 7), light),  # its open top
            (stroke([(35, 54), (44, 60), (64, 63), (84, 60), (93, 54)], 3), blue),  # the rings
            (stroke([(35, 73), (44, 79), (64, 82), (84, 79), (93, 73)], 3), blue)]


def nginx() -> list[tuple[Shape, Color]]:
    green = (0, 128, 57, 255)
    return [background(green),
            (polygon(hexagon(64, 64, 46)), WHITE),
            (polygon(hexagon(64, 64, 37)), green),
            (stroke([(48, 84), (48, 44), (80, 84), (80, 44)], 10), WHITE)]  # an N


def wordpress() -> list[tuple[Shape, Color]]:
    navy = (33, 117, 155, 255)
    return [background(navy),
            (ring(64, 64, 42, 8), WHITE),
            (stroke([(38, 48), (50, 86), (64, 56), (78, 86), (90, 48)], 8), WHITE)]  # a W


def gitea() -> list[tuple[Shape, Color]]:
    green, leaf = (97, 153, 52, 255), (224, 243, 207, 255)
    cup = minus(rounded_rect(26, 44, 86, 98, 14), lambda x, y: y < 52)
    return [background(green),
            (ring(88, 66, 12, 7), WHITE),  # the handle, under the cup
            (lambda x, y: cup(x, y) or rounded_rect(26, 44, 86, 60, 2)(x, y), WHITE),
            # a branch on the cup: two commits and their merge
            (stroke([(46, 88), (46, 62)], 5), green), (stroke([(46, 78), (64, 66)], 5), green),
            (circle(46, 60, 5), green), (circle(66, 64, 5), green), (circle(46, 88, 5), green),
            (polygon([(58, 20), (74, 26), (66, 40)]), leaf)]  # steam, as a leaf


def voting_app() -> list[tuple[Shape, Color]]:
    purple = (92, 53, 163, 255)
    return [background(purple),
            (rounded_rect(50, 24, 94, 66, 4), WHITE),  # the ballot
            (stroke([(58, 46), (68, 56), (86, 34)], 7), (46, 160, 67, 255)),  # its tick
            (rounded_rect(26, 60, 102, 104, 8), (229, 221, 245, 255)),  # the box
            (rounded_rect(40, 60, 88, 66, 2), purple)]  # its slot


ICONS: dict[str, Callable[[], list[tuple[Shape, Color]]]] = {
    "redis": redis, "postgresql": postgresql, "nginx": nginx, "wordpress": wordpress, "gitea": gitea,
    "voting-app": voting_app,
}


# Raster and PNG --------------------------------------------------------------------------------
def raster(layers: list[tuple[Shape, Color]]) -> bytes:
    """RGBA rows, each led by PNG filter byte 0, with straight (not premultiplied) alpha."""
    out = bytearray()
    offsets = [(i + 0.5) / SAMPLES for i in range(SAMPLES)]
    n = SAMPLES * SAMPLES
    for py in range(SIZE):
        out.append(0)
        for px in range(SIZE):
            r = g = b = a = 0
            for oy in offsets:
                for ox in offsets:
                    x, y = px + ox, py + oy
                    for shape, color in reversed(layers):
                        if shape(x, y):
                            r += color[0] * color[3]
                            g += color[1] * color[3]
                            b += color[2] * color[3]
                            a += color[3]
                            break
            if a:
                out += bytes((round(r / a), round(g / a), round(b / a), round(a / n)))
            else:
                out += b"\0\0\0\0"
    return bytes(out)


def png(width: int, height: int, rows: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def draw(name: str) -> bytes:
    return png(SIZE, SIZE, raster(ICONS[name]()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed icons; write nothing")
    parser.add_argument("--out", type=Path, help="write <app>.png files into this folder instead")
    parser.add_argument("apps", nargs="*", help="only these seed apps (default: all)")
    args = parser.parse_args(argv)
    names = args.apps or sorted(ICONS)
    unknown = [n for n in names if n not in ICONS]
    if unknown:
        parser.error(f"no icon drawing for {', '.join(unknown)} (known: {', '.join(sorted(ICONS))})")
    stale = []
    for name in names:
        data = draw(name)
        target = args.out / f"{name}.png" if args.out else SEEDS / name / "icon.png"
        if args.check:
            if not target.is_file() or target.read_bytes() != data:
                stale.append(str(target))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        print(f"wrote {target} ({len(data)} bytes)")
    if stale:
        print("icons differ from their drawing (run scripts/draw_seed_icons.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

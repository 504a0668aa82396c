#!/usr/bin/env python3
"""Deterministic larger image sets made from the example model's photos, for calibration and
evaluation at scale when no bigger set is at hand.

    python3 scripts/scale_sets.py --calib DIR --calib-count N --eval DIR --eval-count M

Calibration: N images in DIR/<source class>/ (an ImageNet-like class layout, so that
`--calib-count` samples across classes). Evaluation: M images in DIR/<class>/ (ImageFolder,
classes the example model's labels). Each image is one of the example's 256x256 crops
(tests/fixtures/trained: the 32 calibration crops for calibration, the 200 held-out crops for
evaluation) with a crop of 80-100 % of its side resized back to 256, a horizontal flip every
other round, and a brightness / contrast / saturation jitter of up to 15 %, all drawn from a
seed fixed by the image's index: the same arguments write the same files. Needs Pillow.
"""
import argparse
import os
import random

from PIL import Image, ImageEnhance

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TRAINED = os.path.join(ROOT, "tests", "fixtures", "trained")


def sources(kind):
    """(class, path) of every source image, in a fixed order."""
    if kind == "eval":
        base = os.path.join(TRAINED, "eval")
        return [
            (c, os.path.join(base, c, f))
            for c in sorted(os.listdir(base))
            for f in sorted(os.listdir(os.path.join(base, c)))
        ]
    base = os.path.join(TRAINED, "calib")
    # The calibration crops carry no class: eight groups of four stand in for classes.
    files = sorted(os.listdir(base))
    return [(f"group{i // 4:02d}", os.path.join(base, f)) for i, f in enumerate(files)]


def variant(path, index, round_):
    rng = random.Random(index * 7919 + 17)
    img = Image.open(path).convert("RGB")
    side = img.size[0]
    crop = int(side * rng.uniform(0.8, 1.0))
    x, y = rng.randint(0, side - crop), rng.randint(0, side - crop)
    img = img.crop((x, y, x + crop, y + crop)).resize((side, side), Image.BILINEAR)
    if round_ % 2 == 1:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(rng.uniform(0.85, 1.15))
    return img


def write(kind, out, count):
    src = sources(kind)
    for i in range(count):
        cls, path = src[i % len(src)]
        os.makedirs(os.path.join(out, cls), exist_ok=True)
        img = variant(path, i, i // len(src))
        img.save(os.path.join(out, cls, f"{i:05d}.jpg"), quality=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", help="calibration set folder")
    ap.add_argument("--calib-count", type=int, default=0)
    ap.add_argument("--eval", help="evaluation set folder")
    ap.add_argument("--eval-count", type=int, default=0)
    a = ap.parse_args()
    if a.calib:
        write("calib", a.calib, a.calib_count)
    if a.eval:
        write("eval", a.eval, a.eval_count)


if __name__ == "__main__":
    main()

"""Two datasets of your own to try `--dataset` with, made on this machine (no download):

    .venv/bin/python examples/make_datasets.py digits data/digits    # scikit-learn's 8x8 digits as PNG folders
    .venv/bin/python examples/make_datasets.py shapes data/shapes    # colour shapes of several sizes, as PNGs
    .venv/bin/python examples/make_datasets.py shapes-npz data/shapes.npz

digits: the 1,797 handwritten digits scikit-learn ships, as data/digits/<digit>/<n>.png (one folder per class:
the runner carves a stratified test split). shapes: squares, discs and triangles in random colours, sizes
(20 to 36 pixels) and places on a noisy background, as data/shapes/{train,test}/<shape>/<n>.png. (git ignores data/.)
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits

SHAPES = ("square", "disc", "triangle")


def digits_folder(out: Path) -> Path:
    """scikit-learn's digits (values 0..16) as 8x8 grey PNGs in one folder per class."""
    digits = load_digits()
    for n, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).save(folder / f"{n}.png")
    return out


def shape_image(shape: str, rng: np.random.Generator) -> Image.Image:
    """One shape in a random colour, size and place, on a noisy grey background."""
    size = int(rng.integers(20, 37))
    background = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(90, 256, 3))
    half = size * rng.uniform(0.25, 0.4)
    cx, cy = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "disc":
        draw.ellipse(box, fill=colour)
    else:
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    return image


def shapes_arrays(per_class: int, seed: int, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, size, size, 3) uint8, labels) of per_class images of each shape."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(SHAPES)), per_class)
    images = np.stack([np.asarray(shape_image(SHAPES[k], rng).resize((size, size))) for k in labels])
    return images, labels


def shapes_folder(out: Path, train_per_class: int = 120, test_per_class: int = 40, seed: int = 0) -> Path:
    """PNG shapes of several sizes in out/train/<shape>/ and out/test/<shape>/ (train with --image-size)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for shape in SHAPES:
            folder = out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                shape_image(shape, rng).save(folder / f"{n}.png")
    return out


def shapes_npz(out: Path, train_per_class: int = 120, test_per_class: int = 40) -> Path:
    """The shapes at 24x24 as an .npz: x_train, y_train, x_test, y_test, class_names."""
    x_train, y_train = shapes_arrays(train_per_class, seed=0)
    x_test, y_test = shapes_arrays(test_per_class, seed=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=np.array(SHAPES))
    return out


MAKERS = {"digits": digits_folder, "shapes": shapes_folder, "shapes-npz": shapes_npz}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=MAKERS)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(MAKERS[args.kind](args.out))

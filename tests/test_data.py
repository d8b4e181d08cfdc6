"""The IDX reader, checksum verification and the splits, on real MNIST and on hand-made files."""

import gzip
import shutil

import numpy as np
import pytest

from core.datasets import DATASETS, SPLIT_FILES, DataError, read_idx, read_split, verify_dir
from experiments import data
from experiments.data import make_splits, scale_images


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(folder, images, labels, gz=False):
    folder.mkdir(exist_ok=True)
    for name, array in zip(SPLIT_FILES["train"], (images, labels), strict=True):
        raw = idx_bytes(array)
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.fixture
def tiny_split(rng):
    return rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8)


def test_real_mnist_reads_with_expected_shapes_and_class_balance(mnist_dir):
    images, labels = read_split(mnist_dir, "train")
    test_images, test_labels = read_split(mnist_dir, "test")
    assert images.shape == (60_000, 28, 28) and test_images.shape == (10_000, 28, 28)
    assert np.bincount(labels).tolist()[:3] == [5923, 6742, 5958]  # the well-known MNIST class counts
    assert labels.max() == 9 and test_labels.min() == 0


@pytest.mark.parametrize("gz", [False, True])
def test_good_file_round_trips_raw_and_gzipped(tmp_path, tiny_split, gz):
    write_split(tmp_path / "d", *tiny_split, gz=gz)
    images, labels = read_split(tmp_path / "d", "train")
    np.testing.assert_array_equal(images, tiny_split[0])
    np.testing.assert_array_equal(labels, tiny_split[1])


def test_wrong_magic_names_the_file(tmp_path, tiny_split):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x0d\x03" + idx_bytes(tiny_split[0])[4:])
    with pytest.raises(DataError, match=f"{path}.*magic"):
        read_idx(path)


def test_truncated_images_name_the_file_and_sizes(tmp_path, tiny_split):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(tiny_split[0])[:-10])
    with pytest.raises(DataError, match=f"{path}: truncated: .* need 4720"):
        read_idx(path)


def test_trailing_bytes_are_refused(tmp_path, tiny_split):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(tiny_split[0]) + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match=f"{path}: cannot read"):
        read_idx(path)


def test_image_label_count_mismatch(tmp_path, tiny_split):
    write_split(tmp_path / "d", tiny_split[0], tiny_split[1][:5])
    with pytest.raises(DataError, match="6 images but .* 5 labels"):
        read_split(tmp_path / "d", "train")


def test_label_out_of_range(tmp_path, tiny_split):
    labels = tiny_split[1].copy()
    labels[2] = 12
    write_split(tmp_path / "d", tiny_split[0], labels)
    with pytest.raises(DataError, match="label 12 out of range"):
        read_split(tmp_path / "d", "train")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte"):
        read_split(tmp_path, "train")


def test_checksum_mismatch_names_the_file(tmp_path, mnist_dir):
    copy = tmp_path / "mnist"
    shutil.copytree(mnist_dir, copy)
    raw = bytearray((copy / "t10k-labels-idx1-ubyte").read_bytes())
    raw[100] = (raw[100] + 1) % 10  # still a valid IDX file, but not MNIST
    (copy / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    verify_dir(mnist_dir, DATASETS["mnist"])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: SHA-256 .* does not match"):
        verify_dir(copy, DATASETS["mnist"])


def test_corrupt_cache_is_fetched_again(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("CNN_DATA_CACHE", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"corrupt")
    monkeypatch.setitem(data.FETCHERS, "mnist", lambda dest: [shutil.copy(p, dest) for p in mnist_dir.iterdir()])
    folder = data.ensure_dataset("mnist")
    verify_dir(folder, DATASETS["mnist"])


def test_val_split_is_stratified_and_sizes_add_up(mnist_dir):
    splits = make_splits("mnist", data_dir=mnist_dir, val_split=0.2, train_size=5000, test_size=1000)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4000, 1000, 1000)
    assert set(splits.train.index).isdisjoint(splits.val.index)
    full = np.bincount(np.concatenate([splits.train.labels, splits.val.labels]), minlength=10) / 5000
    assert np.abs(np.bincount(splits.val.labels, minlength=10) / 1000 - full).max() < 0.002
    np.testing.assert_array_equal(splits.test.index, np.arange(1000))


def test_val_from_test_carves_2k_of_10k(mnist_dir):
    splits = make_splits("mnist", data_dir=mnist_dir, val_from_test=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (60_000, 2000, 8000)
    assert set(splits.val.index).isdisjoint(splits.test.index)


def test_train_size_larger_than_data_is_refused(mnist_dir):
    with pytest.raises(ValueError, match="--train-size 70000 is larger than the 60000 train images"):
        make_splits("mnist", data_dir=mnist_dir, val_split=0.2, train_size=70_000)


def test_scalings():
    images = np.array([[[0, 255]]], dtype=np.uint8)
    assert scale_images(images, "unit").tolist() == [[[[0.0, 1.0]]]]
    assert scale_images(images, "centered").tolist() == [[[[-0.5, 0.5]]]]

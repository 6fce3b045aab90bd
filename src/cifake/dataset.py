"""The decoded dataset: validation of every raw image, duplicate and leakage report, the split.

``preprocess`` turns a raw layout into ``train``/``val``/``test`` arrays
(:class:`Split`) and materialises the clean test set as a flat folder of
neutrally named files with a labels CSV beside it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifake.fileio import atomic_path, fresh_partial_dir, replace_dir, sha256_file, write_csv
from cifake.images import CLASSES, IMAGE_SIZE, LABEL_NAMES, LABEL_OF_CLASS, ImageError, decode_image
from cifake.progress import progress
from cifake.sources import DataError, find_layout_root, list_raw

log = logging.getLogger(__name__)


SAMPLE_NOTE = "sample: generated offline by the project, not CIFAKE; says nothing about real detection"


def describe_dataset(source: str) -> str:
    """The ``dataset`` value every metrics file carries; says plainly when it is the offline sample."""
    return SAMPLE_NOTE if source == "sample" else f"cifake ({source})"


@dataclass(frozen=True)
class Split:
    """Decoded images of one split: ``x`` (N, 32, 32, 3) uint8, ``y`` (N,) 0=Real 1=Fake."""

    x: np.ndarray
    y: np.ndarray
    names: np.ndarray

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, x=self.x, y=self.y, names=self.names)

    def take(self, index: np.ndarray) -> Split:
        """The images at ``index``."""
        return Split(self.x[index], self.y[index], self.names[index])

    @classmethod
    def load(cls, path: str | Path) -> Split:
        with np.load(path, allow_pickle=False) as z:
            return cls(x=z["x"], y=z["y"], names=z["names"])


@dataclass(frozen=True)
class Record:
    """One decoded raw file: where it came from, its hash, its pixels and its original bytes."""

    split: str
    cls: str
    name: str  # path relative to the layout root
    sha256: str
    pixels: np.ndarray
    data: bytes

    @property
    def group(self) -> str:
        return f"{self.split}/{self.cls}"


def decode_all(items: Sequence[tuple[str, str, Path]], root: Path) -> tuple[list[Record], list[tuple[str, str]]]:
    """Decode every raw file; return the records and the unreadable files with reasons."""
    records, errors = [], []
    with progress("decode", total=len(items)) as bar:
        for split, cls, path in items:
            data = path.read_bytes()
            rel = path.relative_to(root).as_posix()
            try:
                records.append(Record(split, cls, rel, hashlib.sha256(data).hexdigest(), decode_image(data), data))
            except ImageError as exc:
                errors.append((rel, str(exc)))
            bar.update(unreadable=len(errors))
    return records, errors


def duplicate_report(records: Sequence[Record]) -> dict:
    """Byte-identical duplicates within each split/class, and test images found in train."""
    by_group: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        by_group[r.group][r.sha256] += 1
    report: dict = {"duplicate_groups": {}, "duplicate_extra_files": {}}
    for group, counter in sorted(by_group.items()):
        report["duplicate_groups"][group] = sum(1 for c in counter.values() if c > 1)
        report["duplicate_extra_files"][group] = sum(c - 1 for c in counter.values() if c > 1)
    hashes = {group: set(counter) for group, counter in by_group.items()}
    train = {cls: hashes.get(f"train/{cls}", set()) for cls in CLASSES}
    all_train = set().union(*train.values())
    test = {cls: hashes.get(f"test/{cls}", set()) for cls in CLASSES}
    report["test_in_train"] = {cls: len(test[cls] & train[cls]) for cls in CLASSES}
    report["test_in_train_other_class"] = {cls: len((test[cls] & all_train) - train[cls]) for cls in CLASSES}
    real, fake = train["REAL"] | test["REAL"], train["FAKE"] | test["FAKE"]
    report["same_image_in_both_classes"] = len(real & fake)
    return report


def to_split(records: Sequence[Record], names: Sequence[str] | None = None) -> Split:
    """Stack records into a :class:`Split` (``names`` default to the raw file names)."""
    x = np.stack([r.pixels for r in records]) if records else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    y = np.array([LABEL_OF_CLASS[r.cls] for r in records], dtype=np.uint8)
    return Split(x, y, np.array(names if names is not None else [r.name for r in records], dtype=np.str_))


def _check_both_classes(records: Sequence[Record], where: str) -> None:
    present = {LABEL_OF_CLASS[r.cls] for r in records}
    if present != {0, 1}:
        raise DataError(f"{where}: needs readable images of both classes, found labels {present}")


def split_indices(labels: np.ndarray, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation images, drawn stratified by label: :func:`preprocess`'s split of
    the train images (in :func:`list_raw`'s order), which anyone can redraw from their labels alone."""
    from sklearn.model_selection import train_test_split

    idx_train, idx_val = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed
    )
    return idx_train, idx_val


def preprocess(
    raw_dir: str | Path, out_dir: str | Path, test_dir: str | Path, *, val_fraction: float, seed: int
) -> dict:
    """Decode, validate and split the raw layout.

    Writes ``out_dir/{train,val,test}.npz`` and ``out_dir/errors.csv``, copies the
    readable test images to ``test_dir`` under neutral shuffled names with
    ``<test_dir>_labels.csv`` beside it, and returns the report for
    ``metrics/data.json``.
    """
    raw_root = find_layout_root(Path(raw_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, errors = decode_all(list_raw(raw_root), raw_root)
    for rel, reason in errors:
        log.warning("unreadable image skipped: %s: %s", rel, reason)
    train_rows = [r for r in records if r.split == "train"]
    test_rows = [r for r in records if r.split == "test"]
    _check_both_classes(train_rows, f"{raw_root}/train")
    _check_both_classes(test_rows, f"{raw_root}/test")
    train = to_split(train_rows)
    idx_train, idx_val = split_indices(train.y, val_fraction=val_fraction, seed=seed)
    train.take(idx_train).save(out_dir / "train.npz")
    train.take(idx_val).save(out_dir / "val.npz")
    test = _write_test_set(test_rows, out_dir / "test.npz", Path(test_dir), seed)
    write_csv(out_dir / "errors.csv", ["File", "Error"], errors)
    return {
        "images": dict(sorted(Counter(r.group for r in records).items())),
        "unreadable": len(errors),
        "train": int(len(idx_train)),
        "val": int(len(idx_val)),
        "test": int(len(test.y)),
        "dataset_sha256": sha256_file(*(out_dir / n for n in ("train.npz", "val.npz", "test.npz"))),
        **duplicate_report(records),
    }


def _write_test_set(rows: Sequence[Record], npz: Path, folder: Path, seed: int) -> Split:
    """The clean test set, shuffled under neutral names so that a name never gives the label away."""
    rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    file_names = [f"{i:05d}{Path(r.name).suffix.lower()}" for i, r in enumerate(rows)]
    test = to_split(rows, file_names)
    test.save(npz)
    write_test_folder(folder, file_names, [r.data for r in rows], test.y, sources=[r.name for r in rows])
    return test


def load_test_folder(folder: str | Path) -> Split:
    """Decode a materialised test folder with its labels CSV (``<folder>_labels.csv``)."""
    import csv

    from cifake.images import load_image

    folder = Path(folder)
    with open(labels_path(folder), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    x = np.stack([load_image(folder / r["Image Name"]) for r in rows])
    y = np.array([LABEL_NAMES.index(r["Label"]) for r in rows], dtype=np.uint8)
    return Split(x, y, np.array([r["Image Name"] for r in rows], dtype=np.str_))


def labels_path(folder: str | Path) -> Path:
    """Where the labels of a materialised test folder live: ``<folder>_labels.csv``."""
    folder = Path(folder)
    return folder.with_name(folder.name + "_labels.csv")


def write_test_folder(
    folder: str | Path,
    file_names: list[str],
    contents: list[bytes],
    labels: np.ndarray,
    sources: list[str] | None = None,
) -> None:
    """Write a flat folder of test images and its labels CSV (both replaced whole)."""
    folder = Path(folder)
    tmp = fresh_partial_dir(folder)
    for name, data in zip(file_names, contents, strict=True):
        (tmp / name).write_bytes(data)
    header = ["Image Name", "Label"] + (["Source"] if sources else [])
    rows = [
        [name, LABEL_NAMES[int(label)]] + ([sources[i]] if sources else [])
        for i, (name, label) in enumerate(zip(file_names, labels, strict=True))
    ]
    write_csv(labels_path(folder), header, rows)
    replace_dir(tmp, folder)

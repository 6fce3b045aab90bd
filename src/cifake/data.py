"""CIFAKE on disk: decoding images, fetching the raw layout, and preprocessing it.

The raw layout is Kaggle's: ``train|test/REAL|FAKE/<images>``. Labels are mapped
explicitly (``REAL`` -> 0, ``FAKE`` -> 1): the positive class is Fake, whatever
order a directory listing gives.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import stat
import warnings
import zipfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifake.fileio import atomic_path, write_csv, write_json
from cifake.progress import progress

log = logging.getLogger(__name__)

IMAGE_SIZE = 32
SPLITS = ("train", "test")
CLASSES = ("REAL", "FAKE")
LABEL_OF_CLASS = {"REAL": 0, "FAKE": 1}
LABEL_NAMES = ("Real", "Fake")  # index = label; what the CSVs say
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# Header-declared size above which an image is refused before any pixel is decoded.
MAX_PIXELS = 64_000_000
# Archive limits: anything beyond them is refused as a probable zip bomb.
MAX_ARCHIVE_BYTES = 8 << 30
MAX_ENTRY_BYTES = 64 << 20
MAX_COMPRESSION_RATIO = 200

KAGGLE_DATASET = "birdy654/cifake-real-and-ai-generated-synthetic-images"


class ImageError(ValueError):
    """An input file that is not a usable image; the message says why."""


class DataError(RuntimeError):
    """A data source that cannot be used; the message says what was found and expected."""


# --------------------------------------------------------------------------- decoding


def decode_image(data: bytes) -> np.ndarray:
    """Decode any image Pillow reads into a ``(32, 32, 3)`` uint8 RGB array.

    EXIF orientation is applied; animated images give their first frame; grey,
    palette, CMYK, alpha and 16-bit images are converted to 8-bit RGB; other sizes
    are resized with bicubic, antialiased resampling (the same for training and
    prediction). Raises :class:`ImageError` for empty, corrupt, truncated,
    non-image or absurdly large inputs.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"refused: header claims {width}x{height} pixels (limit {MAX_PIXELS:,})"
                    )
                if img.format == "JPEG":
                    img.draft("RGB", (IMAGE_SIZE * 2, IMAGE_SIZE * 2))
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can identify") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path) -> np.ndarray:
    """Read and decode one file; see :func:`decode_image`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from None
    return decode_image(data)


# --------------------------------------------------------------------------- layout


def _has_layout(root: Path) -> bool:
    return all((root / split / cls).is_dir() for split in SPLITS for cls in CLASSES)


def find_layout_root(path: Path, max_depth: int = 2) -> Path:
    """Find the folder at or below ``path`` that holds ``train|test/REAL|FAKE``."""
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    frontier = [path]
    for _ in range(max_depth + 1):
        for candidate in frontier:
            if _has_layout(candidate):
                return candidate
        frontier = [c for f in frontier for c in sorted(f.iterdir()) if c.is_dir() and not c.is_symlink()]
    found = sorted(str(p.relative_to(path)) for p in path.iterdir())[:10]
    raise DataError(
        f"{path}: expected folders train/REAL, train/FAKE, test/REAL, test/FAKE "
        f"(at the top or up to {max_depth} levels down); found {found or 'nothing'}"
    )


def list_raw(root: Path) -> list[tuple[str, str, Path]]:
    """List ``(split, class, path)`` for every file in a raw layout, sorted."""
    items = []
    for split in SPLITS:
        for cls in CLASSES:
            folder = root / split / cls
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    items.append((split, cls, path))
    return items


# --------------------------------------------------------------------------- fetch


def replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def fresh_partial_dir(target: Path) -> Path:
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _check_entry_name(name: str) -> PurePosixPath:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"archive refused: entry {name!r} has an absolute or Windows path")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise DataError(f"archive refused: entry {name!r} would escape the target folder")
    return path


def extract_archive(archive: str | Path, out_dir: str | Path) -> dict:
    """Safely extract a CIFAKE zip into ``out_dir`` (replaced whole on success).

    Refuses the whole archive for entries with ``..`` or absolute paths, symlink
    entries, duplicate names, and sizes or compression ratios that look like a zip
    bomb. Entries that are not images, or lie outside ``train|test/REAL|FAKE``, are
    skipped and reported. Nothing is written outside ``out_dir``.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    if not archive.is_file():
        raise DataError(f"archive not found: {archive}")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a readable zip archive ({exc})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        names = Counter(i.filename for i in infos)
        dupes = [n for n, c in names.items() if c > 1]
        if dupes:
            raise DataError(f"archive refused: duplicate entry names, e.g. {dupes[:3]}")
        total = 0
        for info in infos:
            _check_entry_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"archive refused: entry {info.filename!r} is a symbolic link")
            total += info.file_size
            if info.file_size > MAX_ENTRY_BYTES:
                raise DataError(f"archive refused: entry {info.filename!r} unpacks to {info.file_size:,} bytes")
            if info.file_size > 1024 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                raise DataError(f"archive refused: entry {info.filename!r} has an absurd compression ratio")
        if total > MAX_ARCHIVE_BYTES:
            raise DataError(f"archive refused: unpacks to {total:,} bytes (limit {MAX_ARCHIVE_BYTES:,})")

        prefix = _archive_prefix([PurePosixPath(i.filename) for i in infos], archive)
        tmp = fresh_partial_dir(out_dir)
        counts: Counter = Counter()
        skipped = []
        with progress("extract", total=len(infos), unit="file") as bar:
            for info in infos:
                bar.update()
                rel = PurePosixPath(info.filename).relative_to(prefix) if prefix.parts else PurePosixPath(info.filename)
                parts = rel.parts
                if len(parts) != 3 or parts[0] not in SPLITS or parts[1] not in CLASSES:
                    skipped.append(info.filename)
                    continue
                if PurePosixPath(parts[2]).suffix.lower() not in IMAGE_SUFFIXES:
                    skipped.append(info.filename)
                    continue
                target = (tmp / rel).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise DataError(f"archive refused: entry {info.filename!r} would escape the target folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                counts[f"{parts[0]}/{parts[1]}"] += 1
    for name in skipped[:20]:
        log.warning("archive entry skipped (not an image in train|test/REAL|FAKE): %s", name)
    if len(skipped) > 20:
        log.warning("... and %d more skipped entries", len(skipped) - 20)
    replace_dir(tmp, out_dir)
    return {"files": dict(sorted(counts.items())), "skipped_entries": len(skipped)}


def _archive_prefix(paths: list[PurePosixPath], archive: Path) -> PurePosixPath:
    """The folder inside the archive that holds ``train|test/REAL|FAKE``."""
    seen: dict[PurePosixPath, set] = defaultdict(set)
    for p in paths:
        for depth in range(min(len(p.parts) - 2, 3)):
            if p.parts[depth] in SPLITS and p.parts[depth + 1] in CLASSES:
                seen[PurePosixPath(*p.parts[:depth])].add((p.parts[depth], p.parts[depth + 1]))
    for prefix, pairs in sorted(seen.items(), key=lambda kv: len(kv[0].parts)):
        if len(pairs) == len(SPLITS) * len(CLASSES):
            return prefix
    tops = sorted({p.parts[0] for p in paths})[:10]
    raise DataError(
        f"{archive}: expected entries under train/REAL, train/FAKE, test/REAL, test/FAKE; "
        f"found top-level entries {tops or 'none'}"
    )


def copy_directory(source: str | Path, out_dir: str | Path) -> dict:
    """Copy an extracted CIFAKE folder (images only) into ``out_dir``."""
    root = find_layout_root(Path(source))
    tmp = fresh_partial_dir(Path(out_dir))
    counts: Counter = Counter()
    files = list_raw(root)
    with progress("copy", total=len(files), unit="file") as bar:
        for split, cls, path in files:
            bar.update()
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                log.warning("skipped (not an image file name): %s", path)
                continue
            target = tmp / split / cls / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            counts[f"{split}/{cls}"] += 1
    replace_dir(tmp, Path(out_dir))
    return {"files": dict(sorted(counts.items()))}


def download_kaggle(dataset: str, out_dir: str | Path) -> dict:
    """Download CIFAKE with kagglehub (needs network and Kaggle credentials), then copy it."""
    try:
        import kagglehub

        path = kagglehub.dataset_download(dataset)
    except Exception as exc:  # kagglehub raises many kinds; none may leak credentials
        raise DataError(
            f"could not download {dataset!r} from Kaggle ({type(exc).__name__}). "
            "Offline? Use data.source=archive with data.archive=PATH_TO_ZIP, "
            "data.source=directory with data.directory=PATH, or data.source=sample."
        ) from None
    return copy_directory(path, out_dir)


# --------------------------------------------------------------------------- preprocess


@dataclass(frozen=True)
class Split:
    """Decoded images of one split: ``x`` (N, 32, 32, 3) uint8, ``y`` (N,) 0=Real 1=Fake."""

    x: np.ndarray
    y: np.ndarray
    names: np.ndarray

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=self.x, y=self.y, names=self.names)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        with np.load(path, allow_pickle=False) as z:
            return cls(x=z["x"], y=z["y"], names=z["names"])


def _decode_all(items: Sequence[tuple[str, str, Path]], root: Path):
    """Decode every raw file; return records and unreadable files with reasons."""
    records, errors = [], []
    with progress("decode", total=len(items)) as bar:
        for split, cls, path in items:
            data = path.read_bytes()
            rel = path.relative_to(root).as_posix()
            try:
                records.append((split, cls, rel, hashlib.sha256(data).hexdigest(), decode_image(data), data))
            except ImageError as exc:
                errors.append((rel, str(exc)))
            bar.update(unreadable=len(errors))
    return records, errors


def duplicate_report(records) -> dict:
    """Byte-identical duplicates within each split/class, and test images found in train."""
    by_group: dict[str, Counter] = defaultdict(Counter)
    for split, cls, _, digest, *_ in records:
        by_group[f"{split}/{cls}"][digest] += 1
    report: dict = {"duplicate_groups": {}, "duplicate_extra_files": {}}
    for group, counter in sorted(by_group.items()):
        report["duplicate_groups"][group] = sum(1 for c in counter.values() if c > 1)
        report["duplicate_extra_files"][group] = sum(c - 1 for c in counter.values() if c > 1)
    train_hashes = {cls: set(by_group.get(f"train/{cls}", {})) for cls in CLASSES}
    all_train = set().union(*train_hashes.values())
    report["test_in_train"] = {
        cls: sum(1 for d in by_group.get(f"test/{cls}", {}) if d in train_hashes[cls]) for cls in CLASSES
    }
    report["test_in_train_other_class"] = {
        cls: sum(1 for d in by_group.get(f"test/{cls}", {}) if d in all_train and d not in train_hashes[cls])
        for cls in CLASSES
    }
    real = set(by_group.get("train/REAL", {})) | set(by_group.get("test/REAL", {}))
    fake = set(by_group.get("train/FAKE", {})) | set(by_group.get("test/FAKE", {}))
    report["same_image_in_both_classes"] = len(real & fake)
    return report


def preprocess(
    raw_dir: str | Path,
    out_dir: str | Path,
    test_dir: str | Path,
    *,
    val_fraction: float,
    seed: int,
) -> dict:
    """Decode, validate and split the raw layout.

    Writes ``out_dir/{train,val,test}.npz`` and ``out_dir/errors.csv``, copies the
    readable test images to ``test_dir`` under neutral shuffled names with
    ``<test_dir>_labels.csv`` beside it, and returns the report for
    ``metrics/data.json``.
    """
    from sklearn.model_selection import train_test_split

    raw_root = find_layout_root(Path(raw_dir))
    out_dir, test_dir = Path(out_dir), Path(test_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, errors = _decode_all(list_raw(raw_root), raw_root)
    for rel, reason in errors:
        log.warning("unreadable image skipped: %s: %s", rel, reason)

    def arrays(rows):
        x = np.stack([r[4] for r in rows]) if rows else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        y = np.array([LABEL_OF_CLASS[r[1]] for r in rows], dtype=np.uint8)
        names = np.array([r[2] for r in rows], dtype=np.str_)
        return x, y, names

    train_rows = [r for r in records if r[0] == "train"]
    test_rows = [r for r in records if r[0] == "test"]
    for split, rows in (("train", train_rows), ("test", test_rows)):
        present = {LABEL_OF_CLASS[r[1]] for r in rows}
        if present != {0, 1}:
            raise DataError(f"{raw_root}/{split}: needs readable images of both classes, found labels {present}")
    x, y, names = arrays(train_rows)
    idx_train, idx_val = train_test_split(
        np.arange(len(y)), test_size=val_fraction, stratify=y, random_state=seed
    )
    Split(x[idx_train], y[idx_train], names[idx_train]).save(out_dir / "train.npz")
    Split(x[idx_val], y[idx_val], names[idx_val]).save(out_dir / "val.npz")

    # The clean test set, shuffled under neutral names so a name never gives the label away.
    order = np.random.default_rng(seed).permutation(len(test_rows))
    test_rows = [test_rows[i] for i in order]
    file_names = [f"{i:05d}{Path(r[2]).suffix.lower()}" for i, r in enumerate(test_rows)]
    xt, yt, _ = arrays(test_rows)
    Split(xt, yt, np.array(file_names, dtype=np.str_)).save(out_dir / "test.npz")
    write_test_folder(test_dir, file_names, [r[5] for r in test_rows], yt, sources=[r[2] for r in test_rows])

    write_csv(out_dir / "errors.csv", ["File", "Error"], errors)

    counts = Counter(f"{r[0]}/{r[1]}" for r in records)
    digest = hashlib.sha256()
    for name in ("train.npz", "val.npz", "test.npz"):
        digest.update((out_dir / name).read_bytes())
    report = {
        "images": dict(sorted(counts.items())),
        "unreadable": len(errors),
        "train": int(len(idx_train)),
        "val": int(len(idx_val)),
        "test": int(len(yt)),
        "dataset_sha256": digest.hexdigest(),
        **duplicate_report(records),
    }
    write_json(out_dir / "meta.json", report)
    return report


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

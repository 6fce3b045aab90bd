"""Fetching raw CIFAKE into Kaggle's layout: ``train|test/REAL|FAKE/<images>``.

From a local zip (extracted safely: no path escapes, links or zip bombs), from an
extracted folder, or from Kaggle with ``kagglehub``. Each writes into a
``.partial`` folder that replaces the target only when complete.
"""

from __future__ import annotations

import logging
import shutil
import stat
import zipfile
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

from cifake.errors import CifakeError
from cifake.fileio import fresh_partial_dir, replace_dir
from cifake.images import CLASSES, IMAGE_SUFFIXES
from cifake.progress import progress

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
# Archive limits: anything beyond them is refused as a probable zip bomb.
MAX_ARCHIVE_BYTES = 8 << 30
MAX_ENTRY_BYTES = 64 << 20
MAX_COMPRESSION_RATIO = 200

KAGGLE_DATASET = "birdy654/cifake-real-and-ai-generated-synthetic-images"


class DataError(CifakeError, RuntimeError):
    """A data source that cannot be used; the message says what was found and expected."""


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
        _check_entries(infos)
        prefix = _archive_prefix([PurePosixPath(i.filename) for i in infos], archive)
        tmp = fresh_partial_dir(out_dir)
        counts, skipped = _extract_images(zf, infos, prefix, tmp)
    for name in skipped[:20]:
        log.warning("archive entry skipped (not an image in train|test/REAL|FAKE): %s", name)
    if len(skipped) > 20:
        log.warning("... and %d more skipped entries", len(skipped) - 20)
    replace_dir(tmp, out_dir)
    return {"files": dict(sorted(counts.items())), "skipped_entries": len(skipped)}


def _check_entries(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse the archive for duplicate names, unsafe paths, links and zip-bomb sizes."""
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


def _extract_images(zf: zipfile.ZipFile, infos, prefix: PurePosixPath, tmp: Path) -> tuple[Counter, list[str]]:
    """Write the image entries under ``train|test/REAL|FAKE`` into ``tmp``; return counts and skipped names."""
    counts: Counter = Counter()
    skipped = []
    with progress("extract", total=len(infos), unit="file") as bar:
        for info in infos:
            bar.update()
            rel = PurePosixPath(info.filename).relative_to(prefix) if prefix.parts else PurePosixPath(info.filename)
            parts = rel.parts
            if (
                len(parts) != 3
                or parts[0] not in SPLITS
                or parts[1] not in CLASSES
                or PurePosixPath(parts[2]).suffix.lower() not in IMAGE_SUFFIXES
            ):
                skipped.append(info.filename)
                continue
            target = (tmp / rel).resolve()
            if not target.is_relative_to(tmp.resolve()):
                raise DataError(f"archive refused: entry {info.filename!r} would escape the target folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            counts[f"{parts[0]}/{parts[1]}"] += 1
    return counts, skipped


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

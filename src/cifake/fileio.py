"""Files written whole or not at all, and small file helpers shared by the stages."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    An interrupted or failing writer leaves ``target`` as it was (absent or the old
    file), never half-written. The folder must exist and be writable.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | Path, text: str) -> None:
    """Atomically write ``text`` to ``target``, creating its folder if needed."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(target: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Atomically write a CSV with ``header`` then ``rows``, creating its folder if needed."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)


def write_rows(target: str | Path, rows: list[dict]) -> None:
    """Atomically write a list of dicts as CSV (header from the first row)."""
    header = list(rows[0]) if rows else []
    write_csv(target, header, ([row[k] for k in header] for row in rows))


def write_json(target: str | Path, data: object) -> None:
    """Atomically write ``data`` as indented JSON (the format DVC metrics read)."""
    write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(*paths: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (of several files' bytes one after the other, if given several)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def fresh_partial_dir(target: Path) -> Path:
    """An empty ``<target>.partial`` folder to build ``target`` in (see :func:`replace_dir`)."""
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` in the place of ``target``."""
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)

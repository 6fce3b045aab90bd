"""Files written whole or not at all, and small file helpers shared by the stages."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from cifake.errors import CifakeError

# errors that mean "this folder cannot take the file": a full disk or quota, a read-only or forbidden folder
CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class OutputError(CifakeError, OSError):
    """A file could not be written (full disk, read-only folder); the message names it and what to do."""

    def __str__(self) -> str:
        return str(self.strerror or super().__str__())


@contextlib.contextmanager
def writing(target: str | Path, kept: str = "the previous file is unchanged") -> Iterator[None]:
    """Turn a full disk or a read-only folder while writing ``target`` into one clear :class:`OutputError`.

    ``kept`` says what is left as it was (the caller makes sure of it, e.g. with :func:`atomic_path`).
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, OutputError) or not (exc.errno in CANNOT_WRITE or "No space left" in str(exc)):
            raise
        reason = exc.strerror or str(exc).splitlines()[0]
        raise OutputError(
            exc.errno or errno.ENOSPC,
            f"cannot write {target}: {reason}; {kept}. Free some space or make the folder writable, then run again.",
        ) from None


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    An interrupted or failing writer leaves ``target`` as it was (absent or the old
    file), never half-written, and no temporary file behind. The folder must exist;
    a full disk or a read-only folder is one :class:`OutputError`.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    with writing(target):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=folder)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
            yield tmp_path
            os.replace(tmp_path, target)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


def make_parent(target: str | Path) -> None:
    """Create the folder of ``target`` if needed (a read-only place is one :class:`OutputError`)."""
    with writing(target, kept="nothing was written"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | Path, text: str) -> None:
    """Atomically write ``text`` to ``target``, creating its folder if needed."""
    make_parent(target)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(target: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Atomically write a CSV with ``header`` then ``rows``, creating its folder if needed."""
    make_parent(target)
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
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

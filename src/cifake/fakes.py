"""The training fakes that the project makes itself (issue 40): their folders, and their share in training.

The ``fakes`` stage writes one folder of JPEG files per generator and kind (for example
``diff_nearest_resynth/``), in two sets: ``train`` (made from training images, drawn into training) and
``heldout`` (made from validation images with another seed: what ``evaluate`` scores, so a generator
left out of training is a leave-one-generator-out test). Every file goes through JPEG quality 75, the encoding
of every CIFAKE image, so that a detector cannot learn the file format instead of the generator.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from cifake.dataset import Split
from cifake.fileio import fresh_partial_dir, replace_dir
from cifake.generalisation import generator_folders, load_folder
from cifake.images import LABEL_OF_CLASS

JPEG_QUALITY = 75  # CIFAKE's: both of its classes share PIL's quality-75 tables


def jpeg_bytes(image: np.ndarray) -> bytes:
    """One (32, 32, 3) uint8 image encoded as CIFAKE's files are: Pillow JPEG at quality 75."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def write_fakes(images: np.ndarray, folder: Path) -> None:
    """Write ``images`` as ``00000.jpg``, ``00001.jpg``, ... into ``folder``, whole or not at all."""
    tmp = fresh_partial_dir(folder)
    for i, image in enumerate(images):
        (tmp / f"{i:05d}.jpg").write_bytes(jpeg_bytes(image))
    replace_dir(tmp, folder)


def grid(images: np.ndarray, columns: int = 8, scale: int = 2) -> np.ndarray:
    """The first ``columns`` x ``columns`` images side by side, each pixel ``scale`` x ``scale``, for a look."""
    shown = images[: columns * columns]
    rows = -(-len(shown) // columns)
    canvas = np.zeros((rows * columns, *images.shape[1:]), np.uint8)
    canvas[: len(shown)] = shown
    side = images.shape[1]
    tiled = canvas.reshape(rows, columns, side, side, 3).transpose(0, 2, 1, 3, 4).reshape(rows * side, -1, 3)
    return tiled.repeat(scale, axis=0).repeat(scale, axis=1)


def read_fakes(root: str | Path, names: list[str]) -> dict[str, np.ndarray]:
    """The images of the named generator folders under ``root`` (decoded as every input is)."""
    folders = generator_folders(root)
    missing = sorted(set(names) - set(folders))
    if missing:
        raise FileNotFoundError(f"{root} has no fakes of {missing}; it has {sorted(folders)}")
    return {name: load_folder(folders[name])[0] for name in names}


def mix_fakes(train: Split, fakes: dict[str, np.ndarray], shares: dict[str, float], seed: int) -> Split:
    """``train`` with a ``shares[name]`` share of its Fake images replaced by images of ``fakes[name]``.

    Class balance and the number of images stay the same, so an epoch costs what it did. The replaced
    CIFAKE fakes and the generator's images are drawn at random (seeded); names of the form
    ``<generator>/<index>`` say where each image came from.
    """
    rng = np.random.default_rng(seed)
    fake_rows = rng.permutation(np.flatnonzero(train.y == LABEL_OF_CLASS["FAKE"]))
    x, names, start = train.x.copy(), train.names.astype(object), 0
    for name, share in sorted(shares.items()):
        count = int(round(share * len(fake_rows)))
        if count > len(fakes[name]):
            raise ValueError(f"{name}: {count} fakes wanted ({share:.0%} of {len(fake_rows)}), {len(fakes[name])} made")
        rows, picked = fake_rows[start : start + count], rng.choice(len(fakes[name]), count, replace=False)
        x[rows] = fakes[name][picked]
        names[rows] = [f"{name}/{i}" for i in picked]
        start += count
    return Split(x, train.y, names.astype(str))


def with_own_fakes(train: Split, root: str | Path, shares: dict[str, float], seed: int) -> tuple[Split, str]:
    """``train`` with the ``shares`` of own fakes under ``root`` mixed in (:func:`mix_fakes`), and a hash of
    the images used ('' when no share is set): a checkpoint must not resume a run that had other fakes."""
    if not shares:
        return train, ""
    mixed = mix_fakes(train, read_fakes(root, sorted(shares)), shares, seed)
    return mixed, hashlib.sha256(mixed.x.tobytes()).hexdigest()

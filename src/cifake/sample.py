"""The offline sample dataset: real photographs vs images from a fitted generative model.

REAL images are random crops of colour photographs that ship inside scikit-image
and scikit-learn, downscaled to 32x32. FAKE images are drawn from a generative
model fitted on the REAL training crops: PCA to a low-dimensional space, then a
Gaussian mixture there; samples are mapped back to pixels. Everything is seeded,
so the same parameters give byte-identical JPEG files.

It proves the pipeline runs; it says nothing about detecting Stable Diffusion
images. Every metric computed on it is marked ``dataset: sample``.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from cifake.fileio import fresh_partial_dir, replace_dir
from cifake.images import IMAGE_SIZE

PHOTOS = (
    ("skimage.data", "astronaut.png"),
    ("skimage.data", "coffee.png"),
    ("skimage.data", "chelsea.png"),
    ("skimage.data", "rocket.jpg"),
    ("skimage.data", "motorcycle_left.png"),
    ("skimage.data", "motorcycle_right.png"),
    ("skimage.data", "hubble_deep_field.jpg"),
    ("sklearn.datasets.images", "china.jpg"),
    ("sklearn.datasets.images", "flower.jpg"),
)
JPEG_QUALITY = 90
PCA_COMPONENTS = 48
MIXTURE_COMPONENTS = 8


def load_photos() -> list[Image.Image]:
    """The packaged colour photographs, as RGB images."""
    photos = []
    for package, name in PHOTOS:
        with resources.files(package).joinpath(name).open("rb") as fh:
            photos.append(Image.open(fh).convert("RGB"))
    return photos


def real_crops(photos: list[Image.Image], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random square crops (24-160 px, random flips) resized to 32x32."""
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(24, min(160, *photo.size) + 1))
        left = int(rng.integers(0, photo.size[0] - side + 1))
        top = int(rng.integers(0, photo.size[1] - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        crop = crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(crop)
    return out


class PixelGenerator:
    """A small generative model of 32x32 images: PCA + Gaussian mixture."""

    def __init__(self, seed: int):
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        self.pca = PCA(n_components=PCA_COMPONENTS, svd_solver="full")
        self.mixture = GaussianMixture(MIXTURE_COMPONENTS, covariance_type="full", random_state=seed)
        self.seed = seed

    def fit(self, images: np.ndarray) -> PixelGenerator:
        flat = images.reshape(len(images), -1).astype(np.float64) / 255.0
        self.pca.n_components = min(PCA_COMPONENTS, len(images) // 2)
        self.mixture.n_components = min(MIXTURE_COMPONENTS, max(1, len(images) // 10))
        self.mixture.fit(self.pca.fit_transform(flat))
        return self

    def sample(self, n: int) -> np.ndarray:
        self.mixture.random_state = self.seed + n
        codes, _ = self.mixture.sample(n)
        codes = codes[np.random.default_rng(self.seed + n).permutation(n)]
        flat = self.pca.inverse_transform(codes)
        pixels = np.clip(flat * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return pixels.reshape(n, IMAGE_SIZE, IMAGE_SIZE, 3)


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def generate_sample(out_dir: str | Path, *, train_per_class: int, test_per_class: int, seed: int) -> dict:
    """Write the sample in the CIFAKE layout to ``out_dir`` (replaced whole)."""
    rng = np.random.default_rng(seed)
    photos = load_photos()
    real = {
        "train": real_crops(photos, train_per_class, rng),
        "test": real_crops(photos, test_per_class, rng),
    }
    generator = PixelGenerator(seed).fit(real["train"])
    fake = {"train": generator.sample(train_per_class), "test": generator.sample(test_per_class)}

    out_dir = Path(out_dir)
    tmp = fresh_partial_dir(out_dir)
    counts = {}
    for split in ("train", "test"):
        for cls, images in (("REAL", real[split]), ("FAKE", fake[split])):
            folder = tmp / split / cls
            folder.mkdir(parents=True)
            for i, pixels in enumerate(images):
                (folder / f"{i:05d}.jpg").write_bytes(_jpeg(pixels))
            counts[f"{split}/{cls}"] = len(images)
    replace_dir(tmp, out_dir)
    return {"files": counts}

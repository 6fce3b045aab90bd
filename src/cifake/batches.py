"""Training batches: shuffled, augmented, and the same for a given seed and epoch.

Every batch is a pure function of ``(seed, epoch, batch index)``, so a training
run resumed after a kill sees exactly the batches a straight run would have
seen, whatever thread made them. :meth:`TrainingBatches.dataset` streams them as a
``tf.data.Dataset`` (endless: ``Model.fit`` takes ``steps_per_epoch``), made by two
parallel calls in order, with the tf.data autotuner off (it stalled epochs on 2 cores).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifake.corruptions import random_everyday, training_ranges

PAD = 2  # the largest shift, in pixels
GEOMETRY = ["index", "flip", "dy", "dx"]  # where each image came from (cifake.carry.Geometry)


def flip_and_shift(x: np.ndarray, rng: np.random.Generator, pad: int = 2) -> np.ndarray:
    """Random horizontal flips and shifts of up to ``pad`` pixels (edges reflected)."""
    flip, dy, dx = draw_flip_and_shift(len(x), rng, pad)
    return shifted(x, flip, dy, dx, pad)


def draw_flip_and_shift(n: int, rng: np.random.Generator, pad: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n`` images: mirrored or not, and the corner ``(dy, dx)`` of its crop of the padded image."""
    flip = np.asarray(rng.random(n) < 0.5)
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    return flip, dy, dx


def shifted(x: np.ndarray, flip: np.ndarray, dy: np.ndarray, dx: np.ndarray, pad: int = 2) -> np.ndarray:
    """``x`` mirrored where ``flip``, padded by ``pad`` (edges reflected) and cropped back at ``(dy, dx)``."""
    h, w = x.shape[1:3]
    flipped = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    padded = np.pad(flipped, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(len(x))])


class TrainingBatches:
    """Batches of ``(float32 pixels in [0, 255], float32 labels)`` for ``Model.fit``.

    ``augment`` adds flips and 2-pixel shifts; ``everyday`` is the probability
    that an image also gets a random everyday change (JPEG, blur, resize,
    brightness, contrast or noise; see :mod:`cifake.corruptions`), of a strength
    drawn from the default ranges, except for the kinds given in ``everyday_ranges``.
    ``unchanged_share`` of each batch, at its start, never gets an everyday change: with
    it the share that adversarial training attacks (the batch's first images) stays unchanged.
    With ``soft_targets`` (a teacher's P(Fake) per image) or ``geometry`` (where each image came from, for
    :mod:`cifake.carry`) each batch is ``(pixels, {"label": ..., "teacher": ..., "index", "flip", "dy", "dx"})``
    with the keys that apply.
    """

    def __init__(
        self,
        x,
        y,
        batch_size: int,
        seed: int,
        augment: bool,
        everyday: float,
        everyday_ranges=None,
        unchanged_share: float = 0.0,
        soft_targets=None,
        geometry: bool = False,
    ):
        self.x, self.y = x, np.asarray(y, dtype=np.float32)
        self.batch_size, self.seed = batch_size, seed
        self.augment, self.everyday, self.everyday_ranges = augment, everyday, training_ranges(everyday_ranges)
        self.unchanged_share = unchanged_share
        self.soft_targets = None if soft_targets is None else np.asarray(soft_targets, dtype=np.float32)
        self.geometry = geometry
        # a last batch of one image is left out of its epoch (a different image each epoch, as the order is
        # shuffled): training on a batch of one crashes TensorFlow's oneDNN kernels (double free, abort) on the
        # CPUs where they are on by default (AVX-512 VNNI/BF16, AMX)
        whole, rest = divmod(len(self.y), batch_size)
        self.steps_per_epoch = whole + (rest > 1 or whole == 0)
        self._order: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def order(self, epoch: int) -> np.ndarray:
        """The shuffled image indices of ``epoch`` (cached for the epoch in progress)."""
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.y)))
        return self._order[1]

    @property
    def fields(self) -> list[str]:
        """The names of what each batch carries after its pixels."""
        return ["label", *(["teacher"] if self.soft_targets is not None else []), *(GEOMETRY if self.geometry else [])]

    def __getitem__(self, i: int):
        """Batch ``i`` of the endless stream: ``(float32 pixels, *one array per name in fields)``."""
        epoch, index = divmod(int(i), self.steps_per_epoch)
        pick = np.sort(self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size])
        x = self.x[pick]
        rng = np.random.default_rng([self.seed, epoch, index])
        flip, dy, dx = np.zeros(len(pick), bool), np.full(len(pick), PAD), np.full(len(pick), PAD)
        if self.augment:
            flip, dy, dx = draw_flip_and_shift(len(x), rng, PAD)
            x = shifted(x, flip, dy, dx, PAD)
        if self.everyday > 0:
            start = int(np.round(len(x) * self.unchanged_share))  # rounded as Trainer.attack rounds its share
            x = np.concatenate([x[:start], random_everyday(x[start:], rng, self.everyday, self.everyday_ranges)])
        extra = [self.soft_targets[pick]] if self.soft_targets is not None else []
        if self.geometry:
            extra += [a.astype(np.int32) for a in (pick, flip, dy, dx)]
        return (x.astype(np.float32), self.y[pick], *extra)

    def dataset(self, first_epoch: int = 0) -> tf.data.Dataset:
        """The batches from ``first_epoch`` on (later than 0 when a run resumes), endlessly."""
        image_shape, fields = [None, *self.x.shape[1:]], self.fields
        types = (tf.float32, *(tf.int32 if name in GEOMETRY else tf.float32 for name in fields))

        def load(i):
            out = tf.numpy_function(self.__getitem__, [i], types, stateful=False)
            x, extra = tf.ensure_shape(out[0], image_shape), [tf.ensure_shape(t, [None]) for t in out[1:]]
            return x, extra[0] if len(extra) == 1 else dict(zip(fields, extra, strict=True))

        ds = tf.data.Dataset.counter(first_epoch * self.steps_per_epoch)
        ds = ds.map(load, num_parallel_calls=2, deterministic=True).prefetch(2)
        options = tf.data.Options()
        options.autotune.enabled = False
        options.deterministic = True
        return ds.with_options(options)


def validation_batches(x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> tf.data.Dataset:
    """The validation images in order, in batches of ``batch_size``, as ``(float32 pixels, float32 labels)``.

    A dataset of our own rather than arrays: Keras turns arrays into a parallel map, which op determinism
    rewrites with a spurious E0000 log line in every epoch.
    """
    return tf.data.Dataset.from_tensor_slices((x.astype(np.float32), np.asarray(y, np.float32))).batch(batch_size)

"""Training batches are a pure function of (seed, epoch, batch): what makes a resumed run equal a straight one."""

import numpy as np
import pytest
import tensorflow as tf

from cifake.batches import TrainingBatches, flip_and_shift, shifted
from cifake.corruptions import TRAINING_RANGES

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8), (np.arange(100) % 2).astype(np.uint8)


def test_every_image_once_per_epoch_with_its_label(data):
    x, y = data
    b = TrainingBatches(x, y, batch_size=32, seed=0, augment=False, everyday=0.0)
    assert b.steps_per_epoch == 4
    seen = np.concatenate([b[i][0] for i in range(4)])
    labels = np.concatenate([b[i][1] for i in range(4)])
    assert seen.dtype == np.float32 and len(seen) == 100
    index = {img.tobytes(): k for k, img in enumerate(x.astype(np.float32))}
    ids = [index[img.tobytes()] for img in seen]
    assert sorted(ids) == list(range(100))
    assert np.array_equal(labels, y[ids].astype(np.float32))


def test_a_last_batch_of_one_image_is_left_out_of_its_epoch(data):
    """97 images in batches of 32: three batches of 32 an epoch, the one image over is another each epoch
    (oneDNN's training kernels crash on a batch of one); 98 images keep their last batch of two."""
    x, y = data
    b = TrainingBatches(x[:97], y[:97], batch_size=32, seed=0, augment=False, everyday=0.0)
    assert b.steps_per_epoch == 3 and [len(b[i][1]) for i in range(6)] == [32] * 6
    left_out = [set(range(97)) - {int(i) for i in b.order(epoch)[:96]} for epoch in (0, 1)]
    assert len(left_out[0]) == 1 and left_out[0] != left_out[1]
    assert TrainingBatches(x[:98], y[:98], 32, seed=0, augment=False, everyday=0.0).steps_per_epoch == 4
    assert TrainingBatches(x[:1], y[:1], 32, seed=0, augment=False, everyday=0.0).steps_per_epoch == 1


def test_epochs_are_shuffled_differently_and_reproducibly(data):
    x, y = data
    b = TrainingBatches(x, y, 32, seed=0, augment=True, everyday=0.5)
    again = TrainingBatches(x, y, 32, seed=0, augment=True, everyday=0.5)
    assert not np.array_equal(b[0][0], b[4][0])  # epoch 0 vs epoch 1
    for i in (0, 5, 7):
        assert np.array_equal(b[i][0], again[i][0])


def test_the_dataset_resumes_at_the_right_batch(data):
    x, y = data
    b = TrainingBatches(x, y, 32, seed=3, augment=True, everyday=0.5)
    first = next(iter(b.dataset(first_epoch=2)))
    assert np.array_equal(first[0].numpy(), b[2 * b.steps_per_epoch][0])


def test_flip_and_shift_moves_pixels_but_keeps_content(data):
    x, _ = data
    out = flip_and_shift(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype and not np.array_equal(out, x)
    assert abs(out.astype(float).mean() - x.astype(float).mean()) < 3


def test_everyday_ranges_replace_the_named_kinds_only(data):
    x, y = data
    b = TrainingBatches(x, y, 32, seed=0, augment=False, everyday=1.0, everyday_ranges={"brightness": (-50.0, -50.0)})
    assert b.everyday_ranges == {**TRAINING_RANGES, "brightness": (-50.0, -50.0)}
    default = TrainingBatches(x, y, 32, seed=0, augment=False, everyday=1.0)
    # the same draws of kind: where the default drew brightness, this one subtracted 50 levels
    changed = [i for i in range(32) if not np.array_equal(b[1][0][i], default[1][0][i])]
    assert changed and all(
        np.array_equal(b[1][0][i], np.clip(x[np.sort(b.order(0)[32:64])][i] - 50.0, 0, 255)) for i in changed
    )


def test_the_unchanged_share_of_each_batch_gets_no_everyday_change(data):
    x, y = data
    b = TrainingBatches(x, y, 32, seed=0, augment=False, everyday=1.0, unchanged_share=0.25)
    for i in (0, 3):  # a full batch of 32 and the last one, of 4
        out, source = b[i][0], x[np.sort(b.order(0)[i * 32 : (i + 1) * 32])].astype(np.float32)
        start = len(out) // 4
        assert np.array_equal(out[:start], source[:start])
        changed = [not np.array_equal(a, s) for a, s in zip(out[start:], source[start:], strict=True)]
        assert sum(changed) >= 0.8 * len(changed)
    # none unchanged: the same batches as without the setting (a resumed run of an older version sees them too)
    plain = TrainingBatches(x, y, 32, seed=0, augment=True, everyday=0.5)
    share0 = TrainingBatches(x, y, 32, seed=0, augment=True, everyday=0.5, unchanged_share=0.0)
    assert all(np.array_equal(plain[i][0], share0[i][0]) for i in range(4))


def test_soft_targets_travel_with_their_images(data):
    """A teacher's soft target stays with its image through the shuffle, in both __getitem__ and the dataset."""
    x, y = data
    soft = np.linspace(0.0, 1.0, 100, dtype=np.float32)
    b = TrainingBatches(x, y, batch_size=32, seed=0, augment=False, everyday=0.0, soft_targets=soft)
    index = {img.tobytes(): k for k, img in enumerate(x.astype(np.float32))}
    images, labels, targets = b[5]
    ids = [index[img.tobytes()] for img in images]
    assert np.array_equal(labels, y[ids].astype(np.float32)) and np.array_equal(targets, soft[ids])
    streamed_x, streamed = next(iter(b.dataset(first_epoch=1).skip(1)))  # batch 5 of the stream
    assert np.array_equal(streamed_x.numpy(), images) and np.array_equal(streamed["teacher"].numpy(), targets)
    assert np.array_equal(streamed["label"].numpy(), labels)


def test_geometry_says_where_each_image_came_from(data):
    """With ``geometry`` a batch names each image's index, flip and crop corner; redoing them from the stored
    images gives the batch's pixels, and the pixels are those of the batch without geometry."""
    x, y = data
    b = TrainingBatches(x, y, batch_size=32, seed=0, augment=True, everyday=0.0, geometry=True)
    images, labels, index, flip, dy, dx = b[5]
    assert np.array_equal(images, shifted(x[index], flip.astype(bool), dy, dx).astype(np.float32))
    assert np.array_equal(labels, y[index].astype(np.float32)) and flip.any() and not flip.all()
    assert set(dy) | set(dx) <= {0, 1, 2, 3, 4} and len(set(dy)) > 1
    plain = TrainingBatches(x, y, batch_size=32, seed=0, augment=True, everyday=0.0)
    assert np.array_equal(plain[5][0], images)
    _, streamed = next(iter(b.dataset(first_epoch=1).skip(1)))
    assert list(streamed) == ["label", "index", "flip", "dy", "dx"]
    assert np.array_equal(streamed["index"].numpy(), index) and streamed["dx"].dtype == tf.int32
    unshifted = TrainingBatches(x, y, batch_size=32, seed=0, augment=False, everyday=0.0, geometry=True)[0]
    assert not unshifted[3].any() and set(unshifted[4]) == set(unshifted[5]) == {2}  # the centre crop

"""Attacks stay in the eps-ball and in [0, 1], and actually hurt an undefended model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifake.attacks import Attacker, attack_images, fgsm, logit_fn, n_fgsm

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    x[:4] = 0.0  # pixels at the bounds must stay in [0, 1]
    x[4:8] = 1.0
    y = (np.arange(16) % 2).astype(np.float32)
    return x, y


@pytest.mark.parametrize("eps", [1 / 255, 4 / 255, 8 / 255])
def test_fgsm_and_pgd_stay_in_the_ball(tiny_model, batch, eps):
    x, y = batch
    attacker = Attacker(tiny_model)
    for adv in (
        attacker.fgsm(x, y, eps),
        attacker.fgsm(x, y, eps, step=1.25 * eps, random_start=True),
        attacker.pgd(x, y, eps, steps=5, step=eps / 4),
    ):
        adv = adv.numpy()
        assert adv.shape == x.shape
        assert np.abs(adv - x).max() <= eps + 1e-6
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert np.abs(adv - x).max() > 0.5 * eps  # it moved


def test_random_start_changes_fgsm(tiny_model, batch):
    x, y = batch
    attacker = Attacker(tiny_model)
    plain = attacker.fgsm(x, y, 4 / 255).numpy()
    random = attacker.fgsm(x, y, 4 / 255, step=5 / 255, random_start=True).numpy()
    assert not np.allclose(plain, random)


def test_attacks_raise_the_loss_of_the_attacked_model(tiny_model, batch):
    x, y = batch
    attacker = Attacker(tiny_model)

    def loss(images):
        z = attacker.logits(images).numpy()
        return np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))

    eps = 8 / 255
    assert loss(attacker.fgsm(x, y, eps)) > loss(x)
    assert loss(attacker.pgd(x, y, eps, steps=10, step=eps / 4)) > loss(x)


def test_attack_images_works_on_the_pixel_scale(tiny_model, batch):
    x, y = batch
    x255 = x * 255.0
    adv = attack_images(Attacker(tiny_model), x255, y, method="pgd", eps=2 / 255, steps=3, batch_size=5)
    assert adv.dtype == np.float32 and np.abs(adv - x255).max() <= 2.0 + 1e-3
    with pytest.raises(ValueError, match="unknown attack"):
        attack_images(Attacker(tiny_model), x255, y, method="cw", eps=0.1)


def test_models_without_a_logit_layer_can_be_attacked(batch):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    foreign = keras.Model(inputs, outputs)
    x01, y = batch
    adv = Attacker(foreign).pgd(x01, y, 4 / 255, steps=3, step=1 / 255).numpy()
    assert np.abs(adv - x01).max() <= 4 / 255 + 1e-6 and np.abs(adv - x01).max() > 0


def test_n_fgsm_is_not_projected_to_the_ball_and_is_seeded(tiny_model, batch):
    """N-FGSM's noise of 2 eps plus a step of eps reaches past eps (up to 3 eps), in [0, 1], repeatable by seed."""
    x, y = batch
    eps = 4 / 255
    logits = logit_fn(tiny_model)

    def run(seed):
        return n_fgsm(logits, tf.constant(x), tf.constant(y), eps, eps, seed=keras.random.SeedGenerator(seed)).numpy()

    adv = run(1)
    moved = np.abs(adv - x)
    assert moved.max() <= 3 * eps + 1e-6 and moved.max() > 1.5 * eps  # beyond FGSM-RS's ball, within noise + step
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.array_equal(adv, run(1)) and not np.array_equal(adv, run(2))


class _Killed(RuntimeError):
    pass


class _Counting(Attacker):
    """An attacker that counts the batches it attacks and can be 'killed' after some of them."""

    def __init__(self, model, die_after: int | None = None):
        super().__init__(model)
        self.batches, self.die_after = 0, die_after

    def pgd(self, x01, y, eps, steps, step):
        if self.die_after is not None and self.batches == self.die_after:
            raise _Killed
        self.batches += 1
        return super().pgd(x01, y, eps, steps=steps, step=step)


def test_a_killed_attack_resumes_from_its_finished_batches(tiny_model, batch, tmp_path):
    x, y = batch[0] * 255.0, batch[1]
    run = dict(method="pgd", eps=4 / 255, steps=3, batch_size=5, cache=tmp_path)  # 16 images: batches of 5, 5, 5, 1
    killed = _Counting(tiny_model, die_after=2)
    with pytest.raises(_Killed):
        attack_images(killed, x, y, **run)
    resumed = _Counting(tiny_model)
    adv = attack_images(resumed, x, y, **run)
    assert resumed.batches == 2  # only the two batches the killed run had not finished
    first = np.concatenate([np.load(f) for f in sorted(next(tmp_path.iterdir()).glob("*.npy"))[:2]])
    np.testing.assert_array_equal(adv[:10], first)  # the finished batches are the killed run's own
    assert np.abs(adv - x).max() <= 4.0 + 1e-3 and np.abs(adv - x).max() > 1.0
    again = _Counting(tiny_model)
    np.testing.assert_array_equal(attack_images(again, x, y, **run), adv)
    assert again.batches == 0


def test_the_cache_reuses_nothing_of_another_attack_model_or_image_set(tiny_model, batch, tmp_path):
    x, y = batch[0] * 255.0, batch[1]
    run = dict(method="pgd", steps=3, batch_size=8, cache=tmp_path)
    attack_images(Attacker(tiny_model), x, y, eps=4 / 255, **run)
    other = keras.models.clone_model(tiny_model)
    other.set_weights([w * 0.5 for w in tiny_model.get_weights()])
    for model, images, eps in [(tiny_model, x, 2 / 255), (other, x, 4 / 255), (tiny_model, x[::-1].copy(), 4 / 255)]:
        counting = _Counting(model)
        attack_images(counting, images, y, eps=eps, **run)
        assert counting.batches == 2
    assert len(list(tmp_path.iterdir())) == 4


def test_an_unreadable_cached_batch_is_attacked_again(tiny_model, batch, tmp_path):
    x, y = batch[0] * 255.0, batch[1]
    run = dict(method="pgd", eps=4 / 255, steps=3, batch_size=8, cache=tmp_path)
    attack_images(Attacker(tiny_model), x, y, **run)
    saved = sorted(next(tmp_path.iterdir()).glob("*.npy"))
    saved[1].write_bytes(b"not a numpy file")
    counting = _Counting(tiny_model)
    adv = attack_images(counting, x, y, **run)
    assert counting.batches == 1 and adv.shape == x.shape and np.isfinite(adv).all()


def test_fgsm_ascends_the_loss_it_is_given(batch):
    """With a 10-class softmax cross-entropy FGSM steps each pixel by the sign of that loss's gradient (clipped to
    [0, 1]), and the loss rises: the probe's robust CIFAR-10 classifier trains on these steps."""
    x, _ = batch
    classes = np.arange(16) % 10
    weights = tf.constant(np.random.default_rng(1).normal(size=(32 * 32 * 3, 10)), tf.float32)

    def logits(x01, training=False):
        return tf.reshape(x01, (-1, 32 * 32 * 3)) @ weights

    def named(labels, out):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=out)

    eps = 2 / 255
    moved = fgsm(logits, tf.constant(x), tf.constant(classes), eps, eps, random_start=False, loss=named).numpy()
    x_var = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_var)
        total = tf.reduce_sum(named(classes, logits(x_var)))
    expected = np.clip(x + eps * np.sign(tape.gradient(total, x_var).numpy()), 0, 1)
    np.testing.assert_allclose(moved, expected, atol=1e-6)
    assert named(classes, logits(tf.constant(moved))).numpy().mean() > total.numpy() / 16

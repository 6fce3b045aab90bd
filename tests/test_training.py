"""Keras-native training: precision, early stopping, the adversarial step, checkpoints; and the evaluation helpers."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifake import awp
from cifake.attacks import fgsm_from
from cifake.carry import Geometry, placed, view
from cifake.config import ModelParams
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.distill import teacher_targets
from cifake.evaluation import competition_score, eps_key
from cifake.fitconfig import Adversarial, FitConfig
from cifake.model import (
    build_model,
    load_model,
    predict_proba,
    save_model,
    view_shift,
    with_flip_average,
    with_precision,
)
from cifake.report import evaluation_summary
from cifake.training import Trainer, fit

from .conftest import add_callbacks

pytestmark = pytest.mark.model

PARAMS = ModelParams(architecture="resnet", widths=(4, 8), blocks_per_stage=1, dense_units=1, dropout=0.0)


def _split(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.uint8)
    x = rng.integers(0, 160, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1] += 60  # fakes are brighter: learnable in a few steps
    return Split(x, y, np.array([f"{i}.png" for i in range(n)]))


def _config(**kw):
    base = dict(epochs=2, batch_size=32, learning_rate=3e-3, weight_decay=0.0, patience=5, augment=False, seed=0)
    return FitConfig(**{**base, **kw})


class _ForcedValAccuracy(keras.callbacks.Callback):
    """Sets each epoch's ``val_accuracy`` from ``peak`` (1-based; ``otherwise`` for the rest) and keeps the weights."""

    def __init__(self, peak, otherwise=0.6):
        super().__init__()
        self.peak, self.otherwise, self.snapshots = peak, otherwise, {}

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.peak.get(epoch + 1, self.otherwise)
        self.snapshots[epoch + 1] = [w.copy() for w in self.model.detector.get_weights()]


def test_bf16_training_gives_a_float32_model_that_keeps_the_contract(tmp_path):
    set_determinism(0)
    result = fit(build_model(PARAMS), _split(128, 0), _split(64, 1), _config(precision="mixed_bfloat16"))
    model = result.model
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    p = loaded(np.zeros((2, 32, 32, 3), np.float32))
    assert p.dtype == "float32" and p.shape == (2, 1)
    assert result.history[-1]["accuracy"] > 0.6  # it learned in bfloat16


def test_with_precision_keeps_weights_and_outputs():
    set_determinism(0)
    model = build_model(PARAMS)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    mixed = with_precision(model, "mixed_bfloat16")
    assert mixed.get_layer("s1b0_conv1").compute_dtype == "bfloat16"
    assert mixed.get_layer("logits").compute_dtype == "float32"
    assert np.allclose(predict_proba(mixed, x), predict_proba(model, x), atol=0.05)  # bf16 rounding only
    back = with_precision(mixed, "float32")
    assert np.array_equal(predict_proba(back, x), predict_proba(model, x))
    with pytest.raises(ValueError, match="precision"):
        with_precision(model, "float16")


def test_early_stopping_keeps_the_best_epoch(monkeypatch):
    """Validation accuracy is forced to peak at epoch 2: the returned weights must be epoch 2's."""
    set_determinism(0)
    spy = _ForcedValAccuracy({1: 0.5, 2: 0.9, 3: 0.6, 4: 0.6})
    add_callbacks(monkeypatch, before=[spy])
    result = fit(build_model(PARAMS), _split(64, 0), _split(32, 1), _config(epochs=4, patience=2))
    assert len(result.history) == 4  # epoch 2 best, 3 and 4 worse: patience 2 stops after epoch 4
    for got, best in zip(result.model.get_weights(), spy.snapshots[2], strict=True):
        assert np.array_equal(got, best)


def test_a_run_killed_after_early_stopping_resumes_without_training(tmp_path, monkeypatch):
    """Killed after the stopping epoch's checkpoint, before its outputs: resuming trains no further epoch."""
    set_determinism(0)
    spy = _ForcedValAccuracy({2: 0.9})
    add_callbacks(monkeypatch, before=[spy])
    run = dict(config=_config(epochs=6, patience=2), checkpoint_dir=tmp_path, fingerprint="f")
    first = fit(build_model(PARAMS), _split(64, 0), _split(32, 1), **run)
    assert len(first.history) == 4 and (tmp_path / "epoch-0004").is_dir()  # stopped; outputs never written
    spy.snapshots.clear()
    again = fit(build_model(PARAMS), _split(64, 0), _split(32, 1), **run)
    assert again.resumed_at_epoch == 4 and spy.snapshots == {}  # no epoch ran
    assert [r["epoch"] for r in again.history] == [1, 2, 3, 4]
    for got, best in zip(again.model.get_weights(), first.model.get_weights(), strict=True):
        assert np.array_equal(got, best)  # the best epoch's weights, as the uninterrupted run returned


def test_adversarial_step_attacks_within_the_ramped_epsilon():
    set_determinism(0)
    adv = Adversarial(epsilon=8 / 255, step=10 / 255, random_start=True, clean_fraction=0.5, warmup_epochs=2)
    trainer = Trainer(build_model(PARAMS), _config(adversarial=adv), steps_per_epoch=10)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer.optimizer.build(trainer.trainable_variables)
    x = tf.constant(np.random.default_rng(0).uniform(20, 235, (8, 32, 32, 3)).astype(np.float32))
    y = tf.constant((np.arange(8) % 2).astype(np.float32))
    assert float(trainer.epsilon()) == pytest.approx(8 / 255 / 20)  # step 1 of a 20-step warm-up
    x_adv = trainer.attack(x, y).numpy()
    moved = np.abs(x_adv - x.numpy()) / 255
    assert moved[:4].max() <= 8 / 255 / 20 + 1e-6 and moved[:4].max() > 0  # attacked, within the ramp
    assert moved[4:].max() == 0  # the clean half is untouched
    trainer.optimizer.iterations.assign(100)
    assert float(trainer.epsilon()) == pytest.approx(8 / 255)


def test_a_last_batch_too_small_to_attack_leaves_the_model_finite():
    """66 images in batches of 32: the last batch has two images, of which a quarter rounds to none attacked."""
    set_determinism(0)
    adv = Adversarial(
        epsilon=4 / 255, step=5 / 255, random_start=True, clean_fraction=0.75, val_pgd_steps=1, val_subset=8
    )
    model = fit(build_model(PARAMS), _split(66, 0), _split(16, 1), _config(epochs=1, adversarial=adv)).model
    assert all(np.isfinite(v.numpy()).all() for v in model.non_trainable_variables)  # batch-norm statistics
    assert np.isfinite(predict_proba(model, _split(8, 2).x.astype(np.float32))).all()


def test_a_training_set_one_image_over_whole_batches_trains():
    """65 images in batches of 32: a last batch of one image crashed oneDNN's training kernels (double free)
    on CPUs where they are on by default; it is left out of its epoch, so training runs and stays finite."""
    set_determinism(0)
    result = fit(build_model(PARAMS), _split(65, 0), _split(16, 1), _config(epochs=2))
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all(np.isfinite(v.numpy()).all() for v in result.model.weights)


def test_n_fgsm_training_attacks_past_epsilon_on_the_attacked_share_only():
    """method="n_fgsm": noise of 2 eps and a step of eps, not projected, so pixels move past eps (never past 3 eps)."""
    set_determinism(0)
    adv = Adversarial(epsilon=4 / 255, step=4 / 255, random_start=True, clean_fraction=0.5, method="n_fgsm")
    trainer = Trainer(build_model(PARAMS), _config(adversarial=adv), steps_per_epoch=10)
    x = tf.constant(np.random.default_rng(0).uniform(20, 235, (8, 32, 32, 3)).astype(np.float32))
    y = tf.constant((np.arange(8) % 2).astype(np.float32))
    moved = np.abs(trainer.attack(x, y).numpy() - x.numpy()) / 255
    assert 4 / 255 * 1.5 < moved[:4].max() <= 12 / 255 + 1e-6
    assert moved[4:].max() == 0


def test_atta_starts_each_images_attack_from_its_last_perturbation():
    """method="atta": a second attack on the same images (another flip and shift) is FGSM from the first one's
    perturbation, moved with the image; the clean share is neither attacked nor stored."""
    set_determinism(0)
    adv = Adversarial(epsilon=4 / 255, step=5 / 255, random_start=True, clean_fraction=0.5, method="atta")
    trainer = Trainer(build_model(PARAMS), _config(adversarial=adv), steps_per_epoch=10, images=20)
    x = tf.constant(np.random.default_rng(0).uniform(20, 235, (8, 32, 32, 3)).astype(np.float32))
    y = tf.constant((np.arange(8) % 2).astype(np.float32))
    index = tf.constant([3, 9, 4, 17, 0, 1, 2, 5])

    def where(flip, shift):
        return Geometry(index, tf.fill([8], flip), tf.fill([8], shift), tf.fill([8], 2))

    first = trainer.attack(x, y, where(0, 2)).numpy()
    assert trainer.carried.seen.numpy().nonzero()[0].tolist() == [3, 4, 9, 17]  # the attacked half only
    delta = tf.constant((first[:4] - x.numpy()[:4]) / 255)
    stored = tf.cast(tf.cast(delta, tf.float16), tf.float32)  # the store keeps float16
    carried = view(placed(tf.zeros((4, 36, 36, 3)), stored, where(0, 2).head(4)), where(1, 0).head(4))
    carried = tf.clip_by_value(carried, -4 / 255, 4 / 255)
    second = trainer.attack(x, y, where(1, 0)).numpy()
    x01 = x[:4] / 255
    expected = fgsm_from(trainer.logits, x01, y[:4], carried, 4 / 255, 5 / 255, training=True).numpy() * 255
    # a gradient within rounding of zero can take either sign in two computations (oneDNN's kernels differ
    # between them on AVX-512 CPUs): those few pixels may differ by up to two steps (5/255 each), no more
    close = np.isclose(second[:4], expected, atol=0.01)  # rounding on the 0-255 scale
    assert close.mean() > 0.999 and np.abs(second[:4] - expected).max() <= 2 * 5 + 0.01
    assert np.array_equal(second[4:], x.numpy()[4:])
    with pytest.raises(ValueError, match="geometry"):
        trainer.attack(x, y)


class Killed(Exception):
    """Stands for the process being killed."""


class KillAfterFirstEpoch(keras.callbacks.Callback):
    """Kills the run at the end of its first epoch (after the checkpoint, which is listed before it)."""

    def on_epoch_end(self, epoch, logs=None):
        raise Killed


SOFT = np.random.default_rng(3).uniform(0.0, 1.0, 64).astype(np.float32)  # a stand-in teacher's targets


@pytest.mark.parametrize(
    "option, soft",
    [
        (dict(method="n_fgsm", step=4 / 255), None),
        (dict(distill_weight=0.7), SOFT),
        (dict(awp_gamma=0.05), None),
        (dict(method="atta"), None),
    ],
    ids=["n_fgsm", "distillation", "awp", "atta"],
)
def test_a_training_option_is_deterministic_changes_the_update_and_resumes_after_a_kill(
    option, soft, tmp_path, monkeypatch
):
    """Two seeded runs with the option agree and differ from plain FGSM-RS; a run killed after epoch 1 resumes
    to the uninterrupted run's weights."""
    plain = Adversarial(
        epsilon=4 / 255, step=5 / 255, random_start=True, clean_fraction=0.5, val_pgd_steps=1, val_subset=16
    )
    adv = dataclasses.replace(plain, **option)

    def run(settings=adv, targets=soft, kill=False, **kw):
        set_determinism(0)
        with monkeypatch.context() as patch:
            add_callbacks(patch, after=[KillAfterFirstEpoch()] if kill else [])
            config = _config(epochs=2, adversarial=settings)
            return fit(build_model(PARAMS), _split(64, 0), _split(32, 1), config, soft_targets=targets, **kw)

    whole = run().model.get_weights()
    again = run().model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(whole, again, strict=True))
    other = run(settings=plain, targets=None).model.get_weights()
    assert not all(np.allclose(a, b) for a, b in zip(whole, other, strict=True))  # the option changes the update
    with pytest.raises(Killed):
        run(kill=True, checkpoint_dir=tmp_path, fingerprint="f")
    resumed = run(checkpoint_dir=tmp_path, fingerprint="f")
    assert resumed.resumed_at_epoch == 1
    for a, b in zip(resumed.model.get_weights(), whole, strict=True):
        assert np.allclose(a, b, atol=1e-5)


def _bce(y, p):
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


@pytest.mark.parametrize("shift", [0, 1])
def test_validate_flip_average_judges_the_flip_averaged_model_that_is_saved(monkeypatch, shift):
    """Clean validation figures (and so early stopping) are the flip-averaged model's, with the saved model's
    shifted views when it has them, and PGD validation attacks that model, not the single view that trains."""
    import cifake.callbacks as callbacks

    attacked = []

    class SpyAttacker(callbacks.Attacker):
        def __init__(self, model):
            attacked.append(model)
            super().__init__(model)

    monkeypatch.setattr(callbacks, "Attacker", SpyAttacker)
    adv = Adversarial(
        epsilon=4 / 255, step=5 / 255, random_start=True, clean_fraction=0.5, val_pgd_steps=1, val_subset=8
    )
    val = _split(32, 1)
    set_determinism(0)
    config = _config(epochs=1, adversarial=adv, validate_flip_average=True, view_shift=shift)
    result = fit(build_model(PARAMS), _split(64, 0), val, config)
    x = val.x.astype(np.float32)
    saved = _bce(val.y, predict_proba(with_flip_average(result.model, shift), x))
    other = _bce(val.y, predict_proba(with_flip_average(result.model, 1 - shift), x))
    single = _bce(val.y, predict_proba(result.model, x))
    assert result.history[0]["val_loss"] == pytest.approx(saved, rel=1e-4)
    assert abs(saved - single) > 1e-4 and abs(saved - other) > 1e-4  # the views do differ here
    assert [(m.get_layer("single_view") is not None, view_shift(m)) for m in attacked] == [(True, shift)]


def test_a_run_validated_flip_averaged_resumes_after_a_kill(tmp_path, monkeypatch):
    def run(kill=False, **kw):
        set_determinism(0)
        with monkeypatch.context() as patch:
            add_callbacks(patch, after=[KillAfterFirstEpoch()] if kill else [])
            config = _config(epochs=2, validate_flip_average=True)
            return fit(build_model(PARAMS), _split(64, 0), _split(32, 1), config, **kw)

    whole = run()
    with pytest.raises(Killed):
        run(kill=True, checkpoint_dir=tmp_path, fingerprint="f")
    resumed = run(checkpoint_dir=tmp_path, fingerprint="f")
    assert resumed.resumed_at_epoch == 1
    assert [r["val_loss"] for r in resumed.history] == pytest.approx([r["val_loss"] for r in whole.history], rel=1e-5)
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        assert np.allclose(a, b, atol=1e-5)


def test_awp_takes_the_gradient_at_weights_moved_uphill_and_applies_it_to_the_weights_as_they_were():
    """One SGD step with AWP: w - lr * grad L(w + v), v = gamma * ||w|| * g / ||g|| per kernel (g = grad L(w));
    batch-norm statistics advance once, by the forward pass at the moved weights (the climb's pass leaves them)."""
    set_determinism(0)
    gamma, lr = 0.05, 0.1
    adv = Adversarial(epsilon=4 / 255, step=5 / 255, random_start=True, clean_fraction=0.95, awp_gamma=gamma)
    model = build_model(PARAMS)
    trainer = Trainer(model, _config(adversarial=adv), steps_per_epoch=1)  # 8 images, none attacked
    trainer.compile(optimizer=keras.optimizers.SGD(lr))
    trainer.optimizer.build(trainer.trainable_variables)
    x = tf.constant(_split(8, 2).x.astype(np.float32))
    y = tf.constant((np.arange(8) % 2).astype(np.float32))
    variables, statistics, kernels = trainer.trainable_variables, model.non_trainable_variables, awp.kernels(model)
    start, start_stats = [v.numpy() for v in variables], [v.numpy() for v in statistics]

    def gradients():
        with tf.GradientTape() as tape:
            value = Trainer._loss(y, trainer.logits(x / 255.0, training=True))
        return dict(zip([id(v) for v in variables], tape.gradient(value, variables), strict=True))

    at_start = gradients()
    assert kernels and all(len(k.shape) > 1 for k in kernels) and len(kernels) < len(variables)
    for k in kernels:
        g = at_start[id(k)]
        k.assign_add(gamma * tf.norm(k) * g / tf.norm(g))
    for v, w in zip(statistics, start_stats, strict=True):
        v.assign(w)
    uphill = gradients()
    one_step_stats = [v.numpy() for v in statistics]  # one forward pass, at the moved weights
    expected = [w - lr * uphill[id(v)].numpy() for v, w in zip(variables, start, strict=True)]
    plain = [w - lr * at_start[id(v)].numpy() for v, w in zip(variables, start, strict=True)]
    for group, values in ((variables, start), (statistics, start_stats)):
        for v, w in zip(group, values, strict=True):
            v.assign(w)

    trainer.train_step((x, y))
    for v, e in zip(variables, expected, strict=True):
        np.testing.assert_allclose(v.numpy(), e, atol=1e-6)
    for v, e in zip(statistics, one_step_stats, strict=True):
        np.testing.assert_allclose(v.numpy(), e, atol=1e-6)
    assert max(np.abs(e - p).max() for e, p in zip(expected, plain, strict=True)) > 1e-4  # AWP changed the step


def test_distillation_mixes_the_teachers_targets_into_the_share_it_names():
    """Clean share: (1 - w) * smoothed label + w * teacher; the attacked share keeps the label unless
    ``distill_attacked``. Without soft targets the labels are only smoothed."""
    adv = Adversarial(epsilon=4 / 255, step=5 / 255, random_start=True, clean_fraction=0.5, distill_weight=0.25)
    y = tf.constant([1.0, 0.0, 1.0, 0.0])
    teacher = tf.constant([0.2, 0.4, 0.6, 0.8])
    smooth = 0.1 * 0.5
    trainer = Trainer(build_model(PARAMS), _config(adversarial=adv, label_smoothing=0.1), steps_per_epoch=1)
    labels = np.array([1 - smooth, smooth, 1 - smooth, smooth])
    mixed = 0.75 * labels + 0.25 * teacher.numpy()
    assert np.allclose(trainer.targets(y, teacher), [*labels[:2], *mixed[2:]])
    both = Trainer(build_model(PARAMS), _config(adversarial=dataclasses.replace(adv, distill_attacked=True)), 1)
    assert np.allclose(both.targets(y, teacher), 0.75 * y.numpy() + 0.25 * teacher.numpy())
    assert np.allclose(trainer.targets(y), labels)


def test_fit_refuses_distillation_settings_without_soft_targets_and_targets_without_them():
    adv = Adversarial(epsilon=4 / 255, step=5 / 255, random_start=True, clean_fraction=0.5, distill_weight=0.5)
    with pytest.raises(ValueError, match="soft_targets"):
        fit(build_model(PARAMS), _split(64, 0), _split(32, 1), _config(adversarial=adv))
    plain = dataclasses.replace(adv, distill_weight=0.0)
    with pytest.raises(ValueError, match="soft_targets"):
        fit(build_model(PARAMS), _split(64, 0), _split(32, 1), _config(adversarial=plain), soft_targets=SOFT)


def test_teacher_targets_are_its_probabilities_softened_by_the_temperature():
    set_determinism(0)
    teacher = build_model(PARAMS)
    x = _split(16, 2).x.astype(np.float32)
    p = predict_proba(teacher, x)
    assert np.allclose(teacher_targets(teacher, x), p, atol=1e-6)
    soft = teacher_targets(teacher, x, temperature=4.0)
    assert np.all(np.sign(soft - 0.5) == np.sign(p - 0.5))  # same side of 0.5
    assert np.all(np.abs(soft - 0.5) <= np.abs(p - 0.5) + 1e-7) and np.abs(soft - 0.5).sum() < np.abs(p - 0.5).sum()


def test_a_checkpoint_of_other_settings_is_never_resumed(tmp_path):
    set_determinism(0)
    fit(build_model(PARAMS), _split(64, 0), _split(32, 1), _config(epochs=1), checkpoint_dir=tmp_path, fingerprint="a")
    state = json.loads((tmp_path / "epoch-0001" / "state.json").read_text())
    assert state["epoch"] == 1 and state["fingerprint"] == "a" and len(state["history"]) == 1
    other = fit(
        build_model(PARAMS), _split(64, 0), _split(32, 1), _config(epochs=1), checkpoint_dir=tmp_path, fingerprint="b"
    )
    assert other.resumed_at_epoch == 0
    same = fit(
        build_model(PARAMS), _split(64, 0), _split(32, 1), _config(epochs=2), checkpoint_dir=tmp_path, fingerprint="b"
    )
    assert same.resumed_at_epoch == 1 and [r["epoch"] for r in same.history] == [1, 2]


def test_eps_keys_name_multiples_of_one_255th():
    assert eps_key("pgd", 4 / 255) == "pgd_eps4"
    assert eps_key("fgsm", 2.5 / 255) == "fgsm_eps2p5"
    assert eps_key("pgd", 0.0078431) == "pgd_eps2"


def test_competition_score_weights_clean_40_perturbed_60():
    assert competition_score(1.0, 0.0) == pytest.approx(0.4)
    assert competition_score(0.9, 0.5) == pytest.approx(0.66)


def test_registry_summary_names_every_figure():
    metric = {
        "accuracy": 0.9,
        "accuracy_ci95_low": 0.88,
        "accuracy_ci95_high": 0.92,
        "precision": 0.91,
        "recall": 0.89,
        "f1": 0.9,
        "n": 2000,
    }
    scores = {
        "clean": metric,
        "pgd_eps2": {"accuracy": 0.8},
        "pgd_eps4": {"accuracy": 0.7},
        "corruptions": {"mean": 0.85, "worst": 0.6, "worst_condition": "blur_1.0"},
    }
    text = evaluation_summary(scores, 300, 20, {"attack": "pgd-10", "accuracy": 0.75, "f1": 0.74})
    for part in (
        "2,000 images",
        "0.9000",
        "[95% CI 0.8800-0.9200]",
        "PGD-20",
        "2/255 0.8000",
        "4/255 0.7000",
        "mean 0.8500, worst 0.6000 (blur_1.0)",
        "Test_dataset_2 (pgd-10): accuracy 0.7500",
    ):
        assert part in text


class _StepWeights(keras.callbacks.Callback):
    """Records the training weights after every step (EMAWeights swaps only between epochs)."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([v.numpy().copy() for v in self.model.trainable_variables])


def test_ema_returns_the_moving_average_of_the_training_weights(monkeypatch):
    set_determinism(0)
    recorder = _StepWeights()
    add_callbacks(monkeypatch, after=[recorder])
    result = fit(build_model(PARAMS), _split(64, 0), _split(32, 1), _config(epochs=1, ema=0.9))
    expected = recorder.steps[0]
    for step in recorder.steps[1:]:
        expected = [0.9 * a + 0.1 * w for a, w in zip(expected, step, strict=True)]
    got = result.model.trainable_variables
    assert len(recorder.steps) == 2 and len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert np.allclose(g.numpy(), e, atol=1e-6)
    assert not all(
        np.allclose(g.numpy(), last) for g, last in zip(got, recorder.steps[-1], strict=True)
    )  # not the raw weights


def test_a_resumed_ema_run_trains_on_where_it_stopped(tmp_path, monkeypatch):
    """Killed after epoch 1 and resumed, an EMA run ends where an uninterrupted one does."""

    class Improving(keras.callbacks.Callback):  # the last epoch is the best: its weights are returned
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = float(epoch)

    def run(kill=False, **kw):
        set_determinism(0)
        with monkeypatch.context() as patch:
            add_callbacks(patch, before=[Improving()], after=[KillAfterFirstEpoch()] if kill else [])
            return fit(build_model(PARAMS), _split(64, 0), _split(32, 1), _config(epochs=2, ema=0.5), **kw)

    whole = run().model.get_weights()
    with pytest.raises(Killed):
        run(kill=True, checkpoint_dir=tmp_path, fingerprint="f")
    resumed = run(checkpoint_dir=tmp_path, fingerprint="f")
    assert resumed.resumed_at_epoch == 1
    for a, b in zip(resumed.model.get_weights(), whole, strict=True):
        assert np.allclose(a, b, atol=1e-5)

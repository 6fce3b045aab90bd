"""Training through Keras' own machinery: ``Model.fit`` with a custom ``train_step`` (settings: cifake.fitconfig).

:class:`Trainer` wraps a detector. Its ``train_step`` trains on clean batches or,
with :class:`Adversarial` settings, replaces a share of every batch by
random-start FGSM examples made against the current weights (Wong et al.,
2020: a random start in the eps-ball, then one step of 1.25 eps), with an
optional linear eps warm-up. Early stopping, the per-epoch MLflow log, the
progress line, PGD validation, the resumable checkpoint and (optionally) an
exponential moving average of the weights are callbacks.

For adversarial training early stopping watches PGD accuracy on a fixed validation subset, since
FGSM training can overfit to FGSM while PGD robustness collapses; optionally it judges the
flip-averaged model that is saved. Fine-tuning can also distill a teacher (:mod:`cifake.distill`),
perturb the weights adversarially (:mod:`cifake.awp`) and carry each image's perturbation to its next
attack (:mod:`cifake.carry`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from cifake import awp
from cifake.attacks import fgsm, fgsm_from, logit_fn, n_fgsm
from cifake.batches import TrainingBatches, validation_batches
from cifake.callbacks import EMAWeights, EpochLog, PGDValidation
from cifake.carry import CarriedPerturbations, Geometry
from cifake.checkpoint import EpochCheckpoint
from cifake.dataset import Split
from cifake.distill import mixed_targets
from cifake.fitconfig import Adversarial, FitConfig, monitored_metric
from cifake.model import with_flip_average, with_precision

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """The trained float32 detector (best epoch's weights) and one metrics dict per epoch."""

    model: keras.Model
    history: list[dict]
    resumed_at_epoch: int = 0


class Trainer(keras.Model):
    """Trains ``detector`` clean or adversarially; calling it calls the detector."""

    def __init__(self, detector: keras.Model, config: FitConfig, steps_per_epoch: int, images: int = 0):
        """``images``: how many training images there are (ATTA keeps a perturbation for each)."""
        super().__init__(name="trainer")
        self.detector = detector
        self.logits = logit_fn(detector)
        validated = with_flip_average(detector, config.view_shift) if config.validate_flip_average else detector
        self.validated = validated  # the saved model's views, or the network alone; the same weights
        self.val_logits = logit_fn(self.validated) if config.validate_flip_average else self.logits
        self.adv = config.adversarial
        self.label_smoothing = config.label_smoothing
        self.warmup_steps = float(steps_per_epoch * (self.adv.warmup_epochs if self.adv else 0.0))
        self.seed_generator = keras.random.SeedGenerator(config.seed)
        self.carried = CarriedPerturbations(images) if self.adv and self.adv.method == "atta" else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)  # on logits
        self.built = True  # its only layer, the detector, is built

    def call(self, x, training=False):
        return self.detector(x, training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Everything is built before fit (detector and optimizer). Keras would still reduce a
        # sample batch across replicas here, which fails under MultiWorkerMirroredStrategy.
        if not self.optimizer.built:
            super()._maybe_symbolic_build(iterator, data_batch)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    @property
    def attack_settings(self) -> Adversarial:
        """The adversarial settings (clean training has none, and never attacks)."""
        if self.adv is None:
            raise ValueError("clean training has no attack settings")
        return self.adv

    def epsilon(self) -> tf.Tensor:
        """The attack radius now: ramps linearly to ``epsilon`` over the warm-up steps."""
        if self.warmup_steps <= 0:
            return tf.constant(self.attack_settings.epsilon, tf.float32)
        done = tf.cast(self.optimizer.iterations + 1, tf.float32) / self.warmup_steps
        return self.attack_settings.epsilon * tf.minimum(1.0, done)

    def attacked_count(self, batch: tf.Tensor) -> tf.Tensor:
        """How many images, at the start of a batch of ``batch``, are attacked (rounded half to even)."""
        share = 1.0 - self.attack_settings.clean_fraction
        return tf.cast(tf.math.round(tf.cast(batch, tf.float32) * share), tf.int32)

    def attack(self, x, y, where: Geometry | None = None):
        """Replace the first ``1 - clean_fraction`` of the batch by FGSM (N-FGSM, ATTA) examples.

        ATTA needs ``where`` each image of the batch came from (:class:`cifake.carry.Geometry`).

        A batch too small to have an attacked share (a last batch of one image) is left as it is: an attack on
        no images would still run the network in training mode and turn batch-norm statistics into NaN.
        """
        n_adv = self.attacked_count(tf.shape(x)[0])
        head = where.head(n_adv) if where is not None else None
        x_adv = tf.cond(n_adv > 0, lambda: self._examples(x[:n_adv] / 255.0, y[:n_adv], head), lambda: x[:0] / 255.0)
        return tf.concat([tf.stop_gradient(x_adv) * 255.0, x[n_adv:]], axis=0)

    def _examples(self, x01, y, where: Geometry | None):
        """Adversarial examples of ``x01`` (0-1 scale) at this step's epsilon, by the configured method."""
        adv, eps = self.attack_settings, self.epsilon()
        step = eps * (adv.step / adv.epsilon)
        if self.carried is not None:
            if where is None:
                raise ValueError("ATTA needs the geometry of each batch (TrainingBatches(geometry=True))")
            x_adv = fgsm_from(self.logits, x01, y, self.carried.start(where, eps, self.seed_generator), eps, step, True)
            self.carried.keep(where, x_adv - x01)
            return x_adv
        if adv.method == "n_fgsm":
            return n_fgsm(self.logits, x01, y, eps, step, seed=self.seed_generator, training=True)
        return fgsm(self.logits, x01, y, eps, step, adv.random_start, seed=self.seed_generator, training=True)

    def targets(self, y, teacher=None):
        """Smoothed labels, mixed with the ``teacher``'s soft targets where distillation applies
        (:func:`cifake.distill.mixed_targets`)."""
        target = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if teacher is None:
            return target
        adv = self.attack_settings
        n_adv = self.attacked_count(tf.shape(y)[0])
        return mixed_targets(target, teacher, adv.distill_weight, n_adv, adv.distill_attacked)

    def train_step(self, data):
        x, y = data
        extra = y if isinstance(y, dict) else {"label": y}  # a teacher's targets and the geometry come as a dict
        y = tf.reshape(tf.cast(extra["label"], tf.float32), [-1])
        if self.adv is not None:
            where = Geometry(*(extra[k] for k in Geometry._fields)) if "index" in extra else None
            x = self.attack(x, y, where)  # the attack pushes against the true label
        target = self.targets(y, extra.get("teacher"))
        moved = self._climb(x, target)
        with tf.GradientTape() as tape:
            logits = self.logits(x / 255.0, training=True)
            value = self._loss(target, logits)
        variables = self.trainable_variables
        grads = tape.gradient(value, variables)
        awp.restore(moved)  # the gradient was taken at the moved weights; it is applied to the weights as they were
        self.optimizer.apply(grads, variables)
        return self._update(y, logits)

    def _climb(self, x, target) -> awp.Moved:
        """AWP: the weights moved uphill on this batch before its gradient is taken (none without ``awp_gamma``)."""
        if self.adv is None or self.adv.awp_gamma <= 0:
            return []
        return awp.perturb(
            lambda: self._loss(target, self.logits(x / 255.0, training=True)), self.detector, self.adv.awp_gamma
        )

    @staticmethod
    def _loss(target, logits):
        per_image = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
        return tf.nn.compute_average_loss(per_image)  # mean over the global batch (all replicas)

    def test_step(self, data):
        x, y = data
        y = tf.reshape(tf.cast(y, tf.float32), [-1])
        return self._update(y, self.val_logits(x / 255.0, training=False))

    def _update(self, y, logits):
        per_image = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
        self.loss_tracker.update_state(per_image)
        self.accuracy.update_state(y, logits)
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces step results across workers along axis 0, which a scalar lacks;
            # epoch logs still come from the (already aggregated) metrics themselves.
            return {m.name: tf.reshape(m.result(), [1]) for m in self.metrics}
        return {m.name: m.result() for m in self.metrics}


def training_batches(train: Split, config: FitConfig, soft_targets=None) -> TrainingBatches:
    """The batches :func:`fit` trains on; without ``everyday_attacked`` the share each batch attacks stays unchanged."""
    adv = config.adversarial
    unchanged = 0.0 if adv is None or adv.everyday_attacked else 1.0 - adv.clean_fraction
    return TrainingBatches(
        train.x,
        train.y,
        config.batch_size,
        config.seed,
        config.augment,
        config.everyday,
        config.everyday_ranges,
        unchanged_share=unchanged,
        soft_targets=soft_targets,
        geometry=adv is not None and adv.method == "atta",
    )


def _optimizer(config: FitConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, steps_per_epoch * config.epochs), alpha=0.01
    )
    ema = dict(use_ema=True, ema_momentum=config.ema) if config.ema > 0 else {}
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, **ema)


def _callbacks(config: FitConfig, val: Split, images: int, checkpoint_dir, fingerprint, on_epoch):
    early = keras.callbacks.EarlyStopping(
        monitor=monitored_metric(config), mode="max", patience=config.patience, restore_best_weights=True
    )
    callbacks = [EMAWeights()] if config.ema > 0 else []  # first: every later callback sees the average
    if config.adversarial is not None:
        callbacks.append(PGDValidation(val, config.adversarial, config.seed))
    callbacks += [EpochLog(config.epochs, images, config.batch_size, on_epoch), early]
    checkpoint = EpochCheckpoint(checkpoint_dir, fingerprint, early) if checkpoint_dir else None
    return callbacks + ([checkpoint] if checkpoint else []), checkpoint


def _rows(done: keras.callbacks.History, start: int) -> list[dict]:
    """One dict per epoch run by ``Model.fit``, numbered from ``start + 1``."""
    keys = list(done.history)
    count = len(done.history[keys[0]]) if keys else 0
    return [{"epoch": start + i + 1, **{k: float(done.history[k][i]) for k in keys}} for i in range(count)]


def fit(
    model: keras.Model,
    train: Split,
    val: Split,
    config: FitConfig,
    on_epoch: Callable[[dict], None] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    checkpoint_dir: str | Path | None = None,
    fingerprint: str = "",
    soft_targets=None,
) -> FitResult:
    """Train ``model`` with ``Model.fit``; return the best epoch's float32 detector and the history.

    With a ``strategy`` (see :func:`cifake.distribute.distribution_strategy`), ``model`` must have
    been built or loaded inside ``strategy.scope()``; each batch of
    ``config.batch_size`` images is split across its replicas. With a
    ``checkpoint_dir`` the state is saved after every epoch, and a run killed
    part-way resumes after its last finished epoch (if ``fingerprint`` matches).
    ``on_epoch`` gets each epoch's metrics (e.g. to log them to MLflow). Adversarial settings with a
    ``distill_weight`` need ``soft_targets``, a teacher's P(Fake) per training image
    (:func:`cifake.distill.teacher_targets`).
    """
    distilling = config.adversarial is not None and config.adversarial.distill_weight > 0
    if distilling != (soft_targets is not None):
        raise ValueError("soft_targets go with (and only with) adversarial settings that have a distill_weight")
    strategy = strategy or tf.distribute.get_strategy()
    batches = training_batches(train, config, soft_targets)
    with strategy.scope():
        detector = with_precision(model, config.precision) if config.precision != "float32" else model
        trainer = Trainer(detector, config, steps_per_epoch=batches.steps_per_epoch, images=len(train.y))
        trainer.compile(optimizer=_optimizer(config, batches.steps_per_epoch), jit_compile=False)
        trainer.optimizer.build(trainer.trainable_variables)
    callbacks, checkpoint = _callbacks(config, val, len(train.y), checkpoint_dir, fingerprint, on_epoch)
    resumed = checkpoint.restore(trainer) if checkpoint else None
    start = resumed.epoch if resumed else 0
    epochs = start if resumed and resumed.stopped else config.epochs  # stopped early: only restore the best
    if resumed:
        log.info("resuming from the checkpoint after epoch %d of %d", start, epochs)
        for callback in callbacks:
            if isinstance(callback, EMAWeights):
                callback.resumed()
    done = trainer.fit(
        batches.dataset(first_epoch=start),
        steps_per_epoch=batches.steps_per_epoch,
        validation_data=validation_batches(val.x, val.y),
        epochs=epochs,
        initial_epoch=start,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )
    history = (resumed.history if resumed else []) + _rows(done, start)
    final = with_precision(detector, "float32") if config.precision != "float32" else detector
    return FitResult(final, history, start)

"""Training loops: clean training and random-start FGSM adversarial fine-tuning.

One loop serves both (``fit``): with ``adversarial`` set, a fraction of every
batch is replaced by FGSM examples made against the current weights (Wong et
al., 2020: random start in the eps-ball, step 1.25 eps). Validation runs every
epoch; early stopping restores the best weights. For adversarial training the
monitored value is PGD accuracy on a fixed validation subset, since FGSM
training can overfit catastrophically to FGSM while PGD robustness collapses.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cifake.attacks import Attacker, attack_images
from cifake.data import Split
from cifake.model import predict_proba
from cifake.progress import progress

log = logging.getLogger(__name__)


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy named in ``params.yaml`` (``train.strategy``).

    ``none``: TensorFlow's default strategy (one device). ``mirrored``: synchronous
    data parallelism over all GPUs, or over all logical CPU devices when there is
    no GPU. ``multi_worker``: ``MultiWorkerMirroredStrategy``, which reads the
    cluster from the ``TF_CONFIG`` environment variable. Build or load the model
    inside ``strategy.scope()``; :func:`fit` then trains it on every replica.
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            log.warning("multi_worker: TF_CONFIG is not set, so this process trains as a single worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use none, mirrored or multi_worker")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process saves the model and logs to MLflow.

    True everywhere except on the non-chief workers of a ``multi_worker`` cluster:
    the chief is the task of type ``chief``, or worker 0 when ``TF_CONFIG`` names none.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


@dataclass(frozen=True)
class Adversarial:
    """Random-start FGSM settings for adversarial training (0-1 pixel scale)."""

    epsilon: float
    step: float
    random_start: bool
    clean_fraction: float
    val_pgd_steps: int = 10
    val_subset: int = 1000


@dataclass(frozen=True)
class FitConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    augment: bool
    seed: int
    adversarial: Adversarial | None = None
    strategy: str = "none"


EpochCallback = Callable[[dict], None]


def monitored_metric(config: FitConfig) -> str:
    """What early stopping maximises: PGD accuracy for adversarial training, else clean accuracy."""
    return "val_pgd_accuracy" if config.adversarial is not None else "val_accuracy"


def _dataset(split: Split, batch_size: int, augment: bool, seed: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((split.x, split.y.astype(np.float32)))
    ds = ds.shuffle(len(split.y), seed=seed, reshuffle_each_iteration=True).batch(batch_size)

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        if augment:  # horizontal flips and +-2 px translations, in pixel space [0, 255]
            x = tf.image.random_flip_left_right(x, seed=seed)
            padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
            x = tf.image.random_crop(padded, tf.shape(x), seed=seed)
        return x, y

    ds = ds.map(prepare, num_parallel_calls=1, deterministic=True).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False  # autotune stalled epochs by seconds on 2-core CPUs
    options.deterministic = True
    return ds.with_options(options)


def fit(
    model: keras.Model,
    train: Split,
    val: Split,
    config: FitConfig,
    on_epoch: EpochCallback | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> list[dict]:
    """Train ``model`` in place; return one dict of metrics per epoch.

    With a ``strategy`` (see :func:`distribution_strategy`), ``model`` must have
    been built or loaded inside ``strategy.scope()``; each batch of
    ``config.batch_size`` images is split across its replicas.

    Keys: ``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
    ``seconds``, ``images_per_second`` and, for adversarial training,
    ``val_pgd_accuracy``. The best epoch's weights are restored at the end.
    """
    adv = config.adversarial
    strategy = strategy or tf.distribute.get_strategy()
    attacker = Attacker(model)
    steps_per_epoch = math.ceil(len(train.y) / config.batch_size)
    variables = model.trainable_variables
    with strategy.scope():
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, steps_per_epoch * config.epochs), alpha=0.01
        )
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
        optimizer.build(variables)

    def replica_step(x, y):
        """One step on one replica's share of the batch; the gradient is of the global mean loss."""
        if adv is not None:
            n_adv = tf.cast(tf.math.round(tf.cast(tf.shape(x)[0], tf.float32) * (1.0 - adv.clean_fraction)), tf.int32)
            x_adv = attacker.fgsm(x[:n_adv] / 255.0, y[:n_adv], adv.epsilon, adv.step, adv.random_start) * 255.0
            x = tf.concat([x_adv, x[n_adv:]], axis=0)
        with tf.GradientTape() as tape:
            logits = attacker.logits(x / 255.0, training=True)
            per_image = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.nn.compute_average_loss(per_image)  # divides by the global batch size
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), y), tf.float32))
        return tf.reduce_sum(per_image), correct, tf.shape(x)[0]

    @tf.function
    def train_step(x, y):
        totals = strategy.run(replica_step, args=(x, y))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None) for t in totals]

    dataset = strategy.experimental_distribute_dataset(_dataset(train, config.batch_size, config.augment, config.seed))
    if adv is not None:
        rng = np.random.default_rng(config.seed)
        pick = np.sort(rng.choice(len(val.y), size=min(adv.val_subset, len(val.y)), replace=False))
        val_attack = (val.x[pick], val.y[pick])
    monitor = monitored_metric(config)
    best, best_weights, waited, history = -np.inf, model.get_weights(), 0, []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        total_loss = total_correct = seen = 0.0
        # the epoch line printed below is the summary, so the bar itself prints none
        with progress(f"epoch {epoch}/{config.epochs}", total=len(train.y), summary=False) as bar:
            for x, y in dataset:
                loss, correct, count = train_step(x, y)
                total_loss += float(loss)
                total_correct += float(correct)
                seen += int(count)
                bar.update(int(count), accuracy=f"{total_correct / seen:.4f}")
        seconds = time.perf_counter() - start
        p_val = predict_proba(model, val.x)
        row = {
            "epoch": epoch,
            "loss": total_loss / len(train.y),
            "accuracy": total_correct / len(train.y),
            "val_loss": float(keras.losses.binary_crossentropy(val.y.astype(np.float32), p_val)),
            "val_accuracy": float(np.mean((p_val >= 0.5) == val.y)),
            "seconds": seconds,
            "images_per_second": len(train.y) / seconds,
        }
        if adv is not None:
            x_adv = attack_images(
                attacker, *val_attack, method="pgd", eps=adv.epsilon, steps=adv.val_pgd_steps, step_fraction=0.25
            )
            row["val_pgd_accuracy"] = float(np.mean((predict_proba(model, x_adv) >= 0.5) == val_attack[1]))
        history.append(row)
        print(
            f"epoch {epoch}/{config.epochs}: "
            + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k not in ("epoch",)),
            file=sys.stderr,
            flush=True,
        )
        if on_epoch is not None:
            on_epoch(row)
        if row[monitor] > best:
            best, best_weights, waited = row[monitor], model.get_weights(), 0
        else:
            waited += 1
            if waited >= config.patience:
                print(f"early stop: {monitor} has not improved for {waited} epochs", file=sys.stderr)
                break
    model.set_weights(best_weights)
    return history

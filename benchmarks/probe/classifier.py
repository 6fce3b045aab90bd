"""CIFAR-10 classifiers of photographs (a VGG-style net and airbench's) and how the ``semantic`` step trains them."""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from .common import ROOT, batched, epoch_log, log, remembered, save_float32, save_whole

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def cifar_classes(folder: Path) -> np.ndarray:
    """CIFAR-10 class index of each image in ``folder``, in load order: CIFAKE names class k+1 ``NNNN (k+1).jpg``,
    and class 1 plain ``NNNN.jpg``."""
    from cifake.generalisation import _image_files

    names = [p.stem for p in _image_files(folder)]
    return np.array([int(n.split("(")[1].rstrip(")")) - 1 if "(" in n else 0 for n in names])


def semantic_net(widths=(64, 128, 256), activation: str = "gelu", rotation: bool = False):
    """A VGG-style CIFAR-10 classifier (two 3x3 convolutions per stage, max pooling) with flips and shifts;
    its layer ``features`` is the pooled last stage. ReLU trains about twice as fast as GELU on these CPUs.
    With ``rotation`` a second output (layer ``rotation``) tells which of four quarter turns an image was given."""
    import keras

    x = inputs = keras.Input((32, 32, 3))
    x = keras.layers.RandomFlip("horizontal")(x)
    x = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="reflect")(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    for i, width in enumerate(widths):
        for _ in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = keras.layers.Activation(activation)(keras.layers.BatchNormalization()(x))
        x = keras.layers.MaxPooling2D()(x) if i < len(widths) - 1 else keras.layers.GlobalMaxPooling2D()(x)
    features = keras.layers.Activation("linear", name="features")(x)
    logits = keras.layers.Dense(10, dtype="float32")(features)
    if rotation:
        return keras.Model(inputs, [logits, keras.layers.Dense(4, dtype="float32", name="rotation")(features)])
    return keras.Model(inputs, logits)


def whitening_kernel(images: np.ndarray, eps: float = 5.0e-4) -> np.ndarray:
    """A 2x2 convolution kernel (2, 2, 3, 24) that whitens the images' 2x2 patches: each eigenvector of their
    covariance scaled by 1/sqrt(eigenvalue), with its negative (airbench, Jordan 2024). ``images`` are normalised."""
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))  # (n, 31, 31, 3, 2, 2)
    flat = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype(np.float64)
    values, vectors = np.linalg.eigh(flat.T @ flat / len(flat))
    scaled = (vectors / np.sqrt(values + eps)).T[::-1].reshape(12, 2, 2, 3).transpose(1, 2, 3, 0)
    return np.concatenate([scaled, -scaled], axis=-1).astype(np.float32)


def airbench_net(
    widths=(64, 256, 256),
    activation: str = "relu",
    whitening: np.ndarray | None = None,
    bias_scale: float = 1.0,
    augment: bool = True,
    coarse: int = 1,
    outputs: int = 10,
):
    """airbench94's network (Jordan 2024, KellerJordan/cifar10-airbench) in Keras: a frozen whitening 2x2
    convolution, three groups of convolution, max pooling, batch norm (no scale), activation, convolution, the
    convolutions started as identities, and a bias-free linear head scaled by 1/9; flips and 2-pixel shifts.
    Its layer ``features`` is the pooled last group. With ``bias_scale`` c the batch norms' biases are c times a
    trained variable, which under SGD is airbench's c² times larger learning rate for them at the same decay.
    Without ``augment`` it has no random layers (Keras's random layers augment when called without
    ``training=False``). With ``coarse`` k it sees each image's k x k block means only (its coarse layout).
    ``outputs``: its number of classes (10, or 10 k with :func:`fine_classes`' k sub-classes of each class)."""
    import keras

    def norm(x):
        x = keras.layers.BatchNormalization(momentum=0.6, epsilon=1.0e-5, scale=False, center=bias_scale == 1)(x)
        return keras.layers.Activation(activation)(x if bias_scale == 1 else _scaled_bias()(bias_scale)(x))

    x = inputs = keras.Input((32, 32, 3))
    if augment:
        x = keras.layers.RandomFlip("horizontal")(x)
        x = keras.layers.RandomTranslation(2 / 32, 2 / 32, fill_mode="reflect")(x)
    x = keras.layers.Normalization(mean=CIFAR_MEAN * 255, variance=(CIFAR_STD * 255) ** 2)(x)
    if coarse > 1:
        x = keras.layers.AveragePooling2D(coarse)(x)
    white = keras.layers.Conv2D(24, 2, name="whitening", trainable=False)
    x = keras.layers.Activation(activation)(white(x))
    if whitening is not None:
        white.set_weights([whitening, np.zeros(24, np.float32)])
    for width in widths:
        x = norm(keras.layers.MaxPooling2D()(keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)))
        x = norm(keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x))
    features = keras.layers.Activation("linear", name="features")(keras.layers.GlobalMaxPooling2D()(x))
    logits = keras.layers.Dense(outputs, use_bias=False)(features)
    model = keras.Model(inputs, keras.layers.Rescaling(1 / 9, dtype="float32")(logits), name="airbench")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.trainable:  # identity start: an implicit residual
            kernel = layer.get_weights()[0]
            same = np.arange(min(kernel.shape[2:]))
            kernel[..., same] = 0.0
            kernel[1, 1, same, same] = 1.0
            layer.set_weights([kernel])
    return model


@cache
def _scaled_bias():
    """The layer class ``ScaledBias``, registered for loading (made on first use: keras is imported lazily)."""
    import keras

    @keras.saving.register_keras_serializable(package="probe")
    class ScaledBias(keras.layers.Layer):
        """``x + scale * b`` for a trained per-channel ``b`` started at zero."""

        def __init__(self, scale: float, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def build(self, input_shape):
            self.b = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="b")

        def call(self, x):
            return x + keras.ops.cast(self.scale * self.b, x.dtype)

        def get_config(self):
            return super().get_config() | {"scale": self.scale}

    return ScaledBias


def for_inference(model):
    """An ``airbench_net`` as the same function in built-in layers only, without random layers (safe to load and
    call anywhere): each batch norm of a ``bias_scale`` c model gets the bias c * b of the ``ScaledBias`` after it."""
    import keras

    widths = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable]
    activation = next(layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Activation))
    pooling = [layer.pool_size[0] for layer in model.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    outputs = model.output.shape[-1]
    plain = airbench_net(
        tuple(widths[::2]), activation, augment=False, coarse=pooling[0] if pooling else 1, outputs=outputs
    )
    source = iter(layer for layer in model.layers if layer.weights)
    for layer in (layer for layer in plain.layers if layer.weights):
        original = next(source)
        weights = original.get_weights()
        if isinstance(original, keras.layers.BatchNormalization) and not original.center:
            bias = next(source)
            weights = [bias.scale * bias.get_weights()[0], *weights]
        layer.set_weights(weights)
    return plain


def load_classifier(path: Path):
    """A ``semantic`` step's saved classifier (its custom layer registered first)."""
    import keras

    _scaled_bias()
    return keras.saving.load_model(path)


@cache
def _net_task():
    """The class ``NetTask(net, seed)``: a model that trains the network ``net`` by its subclass's ``train_step``
    (which ends in :meth:`descend`) and reports the mean loss; made on first use (keras is imported lazily)."""
    import keras

    class NetTask(keras.Model):
        def __init__(self, net, seed: int, **kwargs):
            super().__init__(**kwargs)
            self.net, self.seed = net, keras.random.SeedGenerator(seed)
            self.tracker = keras.metrics.Mean(name="loss")
            self.built = True  # the net is built; keras.callbacks.BackupAndRestore asks before fit

        def call(self, x, training=False):
            return self.net(x, training=training)

        @property
        def metrics(self):
            return [self.tracker]

        def descend(self, tape, loss) -> dict:
            """One optimiser step down ``loss`` (recorded on ``tape``) for the net's weights."""
            weights = self.net.trainable_weights
            self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
            self.tracker.update_state(loss)
            return {"loss": self.tracker.result()}

    return NetTask


def rotation_task(net, seed: int):
    """``net`` (class and rotation outputs) trained to name the quarter turn each image was given (Golan and
    El-Yaniv 2018; Hendrycks et al. 2019: a self-supervised task whose failure flags images unlike the photos
    it was trained on), and the class of the unturned ones (a random quarter of each batch)."""
    import keras
    import tensorflow as tf

    base: Any = _net_task()

    class RotationTask(base):
        def train_step(self, data):
            x, y = data
            turns = keras.random.randint((tf.shape(x)[0],), 0, 4, seed=self.seed)
            turned = tf.gather(tf.stack([tf.image.rot90(x, k) for k in range(4)], 1), turns, batch_dims=1)
            upright = tf.cast(turns == 0, "float32")
            with tf.GradientTape() as tape:
                logits, rotation = self.net(turned, training=True)
                named = keras.losses.sparse_categorical_crossentropy(tf.cast(y, "int32"), logits, from_logits=True)
                turn = keras.losses.sparse_categorical_crossentropy(turns, rotation, from_logits=True)
                loss = tf.reduce_mean(turn) + tf.reduce_sum(named * upright) / tf.maximum(tf.reduce_sum(upright), 1)
            return self.descend(tape, loss)

    return RotationTask(net, seed)


def adversarial_task(net, eps: float, seed: int):
    """``net`` (built without its random layers) trained on each batch flipped and shifted as airbench does, then
    moved by one FGSM step with a random start (Wong et al. 2020: step 1.25 ``eps``, on the 0-1 scale) up its
    classes' softmax cross-entropy (:func:`cifake.attacks.fgsm`): a robust classifier, whose features are closer to
    what people see (Engstrom et al. 2019, robustness as a prior for learned representations)."""
    import keras
    import tensorflow as tf

    from cifake.attacks import fgsm

    def named(labels, logits):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)

    base: Any = _net_task()

    class AdversarialTask(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.flip = keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32")  # the attack's dtype
            self.shift = keras.layers.RandomTranslation(2 / 32, 2 / 32, "reflect", seed=seed + 1, dtype="float32")

        def logits(self, x01, training=False):
            return tf.cast(self.net(x01 * 255.0, training=training), tf.float32)

        def train_step(self, data):
            x, y = data
            x = self.shift(self.flip(x, training=True), training=True) / 255.0
            moved = 255.0 * fgsm(self.logits, x, y, eps, 1.25 * eps, True, self.seed, training=True, loss=named)
            with tf.GradientTape() as tape:
                loss = self.compute_loss(x=moved, y=y, y_pred=self.net(moved, training=True))
            return self.descend(tape, loss)

    return AdversarialTask(net, seed)


def outlier_exposure_loss(weight: float, smoothing: float = 0.0):
    """Cross-entropy on CIFAR-10 photographs (a class 0-9, or a ``--fine`` sub-class; targets smoothed by
    ``smoothing``); on outliers (label -1) ``weight`` times the cross-entropy to the uniform distribution over
    classes (Hendrycks et al. 2019, outlier exposure): be unsure of non-photos."""
    from keras import ops

    def loss(y_true, logits):
        y = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        log_p = ops.log_softmax(ops.cast(logits, "float32"))
        named = -ops.sum(ops.one_hot(ops.maximum(y, 0), log_p.shape[-1]) * log_p, axis=-1)
        unsure = -ops.mean(log_p, axis=-1)
        return ops.where(y >= 0, (1 - smoothing) * named + smoothing * unsure, weight * unsure)

    return loss


def shipped_val_reals(args) -> np.ndarray:
    """Indices (into train/REAL in file-name order) of the real photographs the shipped models never trained on
    (:func:`shipped_val_images`)."""
    return shipped_val_images(args.cifake)[0]


@cache  # drawn once per archive: --sd-classes with --holdout shipped-val holds out both sides of one split
def shipped_val_images(cifake: Path) -> tuple[np.ndarray, np.ndarray]:
    """Indices into train/REAL and into train/FAKE (each in file-name order) of the images the shipped models never
    trained on: ``preprocess``'s validation split of the ``cifake`` archive (:func:`cifake.dataset.split_indices`
    with params.yaml's seed and ``preprocess.val_fraction``, over every train image, REAL listed before FAKE)."""
    from cifake.config import load_params
    from cifake.dataset import split_indices

    params = load_params(ROOT / "params.yaml")
    counts = [len(list((cifake / "train" / cls).iterdir())) for cls in ("REAL", "FAKE")]
    _, val = split_indices(np.repeat([0, 1], counts), val_fraction=params.preprocess.val_fraction, seed=params.seed)
    val = np.sort(val)
    return val[val < counts[0]], val[val >= counts[0]] - counts[0]


def train_semantic(
    args, real: np.ndarray, outliers: dict[str, np.ndarray], path: Path, sd: np.ndarray | None = None
) -> None:
    """Train the step's classifier on train/REAL (all, or with ``--holdout shipped-val`` all but
    :func:`shipped_val_reals`) and ``outliers``, and save it in float32 at ``path``; a killed run resumes after its
    last finished epoch. With ``--sd-classes``, train/FAKE (``sd``) joins as ten classes of its own
    (:func:`with_sd_classes`)."""
    import keras

    one_probe(args, outliers)
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)
    classes = cifar_classes(args.cifake / "train" / "REAL")
    # held out before the whitening is fitted; cifake-generalist.keras's classifier was trained before this order:
    # its whitening saw the patches of 491 held-out photographs (train/REAL's first 5 000), no labels
    if args.holdout == "shipped-val":
        kept = np.setdiff1d(np.arange(len(real)), shipped_val_reals(args))
        real, classes = real[kept], classes[kept]
    if args.fine > 1:
        teacher = load_classifier(args.root / args.fine_from / "classifier.keras")
        classes = fine_classes(embedding(teacher)(real)[1], classes, args.fine, args.seed)
    if args.sd_classes:
        real, classes = with_sd_classes(args, real, classes, sd)
    build = _classifier_builder(args, real)
    net = build(augment=False) if args.adversarial else build()
    model = rotation_task(net, args.seed) if args.rotation else net
    if args.adversarial:
        model = adversarial_task(net, args.adversarial / 255, args.seed)
    x = np.concatenate([real, *outliers.values()])
    y = np.r_[classes, -np.ones(len(x) - len(real), np.int64)]
    steps = args.epochs * (len(x) // args.batch + 1)
    loss = None if args.rotation else outlier_exposure_loss(args.oe, args.smoothing)
    data = {"x": x, "y": y, "batch_size": args.batch}
    if args.mixup:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.smoothing)
        data = {"x": mixup_batches(x, y, args.batch, args.mixup, args.seed)}
    model.compile(_semantic_optimizer(args, steps), loss=loss)
    backup = keras.callbacks.BackupAndRestore(str(path.parent / "backup"))
    callbacks = [backup, epoch_log(path.parent)]
    model.fit(**data, epochs=args.epochs, callbacks=callbacks, verbose=0)
    save_float32(build, net, path)


def one_probe(args, outliers: dict) -> None:
    """Stop before training unless at most one of the step's training variants is given (each is a probe
    of its own), those that need airbench's network on ``--arch airbench``, and ``--fine`` with its teacher."""
    given = {
        "--rotation": args.rotation,
        "--outliers": bool(outliers),
        "--mixup": args.mixup,
        "--adversarial": args.adversarial,
        "--fine": args.fine > 1,
        "--sd-classes": args.sd_classes,
    }
    named = [flag for flag, on in given.items() if on]
    if len(named) > 1:
        raise SystemExit(f"{' and '.join(named)} are separate probes: give one")
    if named and named[0] in ("--adversarial", "--fine", "--sd-classes") and args.arch != "airbench":
        raise SystemExit(f"{named[0]} needs --arch airbench")
    if args.fine > 1 and not args.fine_from:
        raise SystemExit("--fine needs --fine-from: the semantic step whose features are clustered")


def with_sd_classes(args, real: np.ndarray, classes: np.ndarray, sd: np.ndarray | None):
    """Photographs and Stable Diffusion's images together, each named by its object and its side: class
    ``2 * object + 1`` for SD's (CIFAKE names their prompts' classes as it names the photographs'), ``2 * object``
    for photographs. Twice the objects to learn from; the SD half of the outputs can hold "generated" apart from
    "unnameable". With ``--holdout shipped-val``, SD's images in ``preprocess``'s validation split stay out too."""
    if sd is None:
        raise SystemExit("--sd-classes needs train/FAKE's images")
    sd_classes = cifar_classes(args.cifake / "train" / "FAKE")
    if args.holdout == "shipped-val":
        kept = np.setdiff1d(np.arange(len(sd)), shipped_val_images(args.cifake)[1])
        sd, sd_classes = sd[kept], sd_classes[kept]
    return np.concatenate([real, sd]), np.r_[2 * classes, 2 * sd_classes + 1]


def mixup_batches(x: np.ndarray, y: np.ndarray, batch: int, alpha: float, seed: int):
    """Shuffled batches of ``x`` each mixed with a shuffled partner, ``lam * a + (1 - lam) * b`` with ``lam`` drawn
    from Beta(alpha, alpha) per image, and the same mix of their one-hot classes (mixup, Zhang et al. 2018; better
    calibrated and less sure off the photographs, Thulasidasan et al. 2019)."""
    import keras

    one_hot = np.eye(10, dtype=np.float32)

    class Mixup(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self):
            return len(x) // batch

        def on_epoch_end(self):
            self.order, self.partner = self.rng.permutation(len(x)), self.rng.permutation(len(x))
            self.lam = self.rng.beta(alpha, alpha, len(x)).astype(np.float32)

        def __getitem__(self, i):
            a, b = self.order[i * batch : (i + 1) * batch], self.partner[i * batch : (i + 1) * batch]
            lam = self.lam[a]
            mixed = lam[:, None, None, None] * x[a] + (1 - lam[:, None, None, None]) * x[b]
            targets = lam[:, None] * one_hot[y[a]] + (1 - lam[:, None]) * one_hot[y[b]]
            return mixed, targets

    return Mixup()


def _classifier_builder(args, real: np.ndarray):
    """The step's network constructor: ``--arch vgg`` (:func:`semantic_net`) or ``airbench``
    (:func:`airbench_net`, its whitening fitted on 5 000 of ``real``, seen as the network sees them)."""
    if args.arch == "vgg":
        if args.coarse != 1:
            raise SystemExit("--coarse needs --arch airbench")
        return partial(semantic_net, tuple(args.widths), args.activation, args.rotation)
    if args.rotation:
        raise SystemExit("--rotation needs --arch vgg")
    k = args.coarse
    sample = real[:5000].reshape(-1, 32 // k, k, 32 // k, k, 3).mean((2, 4))
    whitening = whitening_kernel((sample / 255.0 - CIFAR_MEAN) / CIFAR_STD)
    outputs = 10 * args.fine * (2 if args.sd_classes else 1)
    return partial(
        airbench_net, tuple(args.widths), args.activation, whitening, args.bias_scale, coarse=k, outputs=outputs
    )


def fine_classes(features: np.ndarray, classes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each image's sub-class ``class * k + cluster``: k-means (k clusters) of each class's unit-length
    ``features``. Finer labels than the ten: a classifier that must name finer kinds of object may doubt more
    where an object is no kind it knows."""
    from sklearn.cluster import KMeans

    fine = np.empty_like(classes)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    for c in np.unique(classes):
        members = classes == c
        clusters = KMeans(k, n_init=4, random_state=seed).fit_predict(unit[members])
        fine[members] = c * k + clusters
    return fine


def embedding(model):
    """images -> (logits, pooled features) of a ``semantic`` step's classifier, once per image set."""
    import keras

    features = keras.Model(model.input, [model.outputs[0], model.get_layer("features").output])
    return remembered(lambda images: tuple(batched(features, images)))


def _semantic_optimizer(args, steps: int):
    """AdamW with warmup and cosine decay for ``vgg``; for ``airbench`` its Nesterov SGD (momentum 0.85) with a
    triangular schedule (0.2 -> 1 at 23 % -> 0.07 of ``--lr``) and decoupled weight decay of 0.0153 per 1 024
    images (airbench94's hyperparameters, its per-example learning rate times the batch)."""
    import keras

    if args.arch == "vgg":
        schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=args.lr, warmup_steps=steps // 10)
        return keras.optimizers.AdamW(schedule, weight_decay=5.0e-4)

    class Triangle(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step, peak = keras.ops.cast(step, "float32"), 0.23 * steps
            rise = 0.2 + 0.8 * step / peak
            fall = 1.0 - 0.93 * (step - peak) / (steps - peak)
            return args.lr * keras.ops.where(step < peak, rise, keras.ops.maximum(fall, 0.07))

        def get_config(self):
            return {}

    triangle = Triangle()
    decay = 0.0153 * args.batch / 1024 / args.lr
    return keras.optimizers.SGD(triangle, momentum=0.85, nesterov=True, weight_decay=decay)


def cmd_extract(args) -> None:
    """The CIFAR-10 classifier inside the shipped generalist file (models/pretrained/cifake-generalist.keras),
    saved whole as a ``semantic`` step's classifier at ``--root/--name``: the steps that read a classifier
    (``semantic``, ``ensemble``, ``layers``, ``patches``, ``stability``) then run on it without the half hour of
    training it took (docs/experiments.md gives its recipe and minutes; none are recorded here)."""
    import keras

    if not args.name:
        raise SystemExit("extract needs --name: the folder the classifier is saved in")
    path = args.root / args.name / "classifier.keras"
    if path.exists():
        log.info("%s exists; nothing to do", path)
        return
    generalist = keras.saving.load_model(ROOT / "models" / "pretrained" / "cifake-generalist.keras", safe_mode=True)
    save_whole(classifier_of(generalist), path)


def classifier_of(generalist):
    """The generalist's nested CIFAR-10 classifier (pixels -> 10 logits, with its ``features`` layer) as a model
    of its own."""
    import keras

    nested = [layer for layer in generalist.layers if isinstance(layer, keras.Model) and layer.output.shape[-1] == 10]
    if len(nested) != 1:
        raise ValueError(f"expected one nested 10-class network, found {len(nested)}")
    return keras.Model(nested[0].input, nested[0].output, name="generalist_classifier")

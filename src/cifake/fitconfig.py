"""The settings of one training run, as :func:`cifake.training.fit` takes them, and where they come from.

:class:`FitConfig` holds a run's settings and, for adversarial training, :class:`Adversarial` its attack
(random-start FGSM or N-FGSM) with the options around it: distillation (:mod:`cifake.distill`) and
adversarial weight perturbation (:mod:`cifake.awp`). :func:`fit_config` and :func:`adversarial_config`
read them from a validated ``train`` or ``fgsm_finetune`` section of ``params.yaml`` by field name.
"""

from __future__ import annotations

from dataclasses import dataclass

from cifake.inference import choose_precision


@dataclass(frozen=True)
class Adversarial:
    """Random-start FGSM settings for adversarial training (0-1 pixel scale)."""

    epsilon: float
    step: float
    random_start: bool
    clean_fraction: float
    warmup_epochs: float = 0.0
    everyday_attacked: bool = True  # False: everyday changes go to the clean share of each batch only
    method: str = "fgsm"  # "n_fgsm": noise of 2 epsilon, one step, no projection (de Jorge et al. 2022);
    # "atta": FGSM from each image's last perturbation (Zheng et al. 2020; cifake.carry)
    distill_weight: float = 0.0  # share of a teacher's soft target in the loss target (0: hard labels only)
    distill_attacked: bool = False  # True: the attacked share gets the soft target too (else the clean share only)
    awp_gamma: float = 0.0  # adversarial weight perturbation's relative size (Wu et al. 2020; 0: off)
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
    precision: str = "float32"
    everyday: float = 0.0
    everyday_ranges: dict | None = None  # kind -> (low, high): replaces that kind's default strength range
    label_smoothing: float = 0.0
    ema: float = 0.0  # momentum of the weights' moving average; 0: no averaging
    validate_flip_average: bool = False  # validation and early stopping judge the flip-averaged model
    view_shift: int = 0  # the saved model's shifted views (cifake.model.with_flip_average): what is validated too


def fit_config(
    section,
    seed: int,
    adversarial: Adversarial | None = None,
    cpu_flags: frozenset[str] | None = None,
    view_shift: int = 0,
) -> FitConfig:
    """The :class:`FitConfig` of a ``train`` or ``fgsm_finetune`` section of ``params.yaml``
    (``view_shift``: ``model.view_shift`` where the stage saves the robust model).

    ``precision: auto`` becomes the precision this CPU computes fastest (``cpu_flags``: this machine's
    by default; see :func:`cifake.inference.choose_precision`), so the config says what actually ran.
    """
    fields = set(FitConfig.__dataclass_fields__) - {"seed", "adversarial", "view_shift"}
    values = section.model_dump(include=fields)
    if values["precision"] == "auto":
        values["precision"] = choose_precision("auto", cpu_flags)[0]
    return FitConfig(**values, seed=seed, adversarial=adversarial, view_shift=view_shift)


def adversarial_config(section) -> Adversarial:
    """The random-start FGSM settings of the ``fgsm_finetune`` section."""
    fields = set(Adversarial.__dataclass_fields__) & set(type(section).model_fields)
    return Adversarial(**section.model_dump(include=fields))


def monitored_metric(config: FitConfig) -> str:
    """What early stopping maximises: PGD accuracy for adversarial training, else clean accuracy."""
    return "val_pgd_accuracy" if config.adversarial is not None else "val_accuracy"

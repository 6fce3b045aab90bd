"""The one validated view of ``params.yaml``.

Every stage and the CLI read their settings through :func:`load_params`, so a
missing key, a wrong type or a value out of range is reported once, naming the
key and what is allowed, before any long work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from cifake.errors import CifakeError
from cifake.fakes_params import FakesParams
from cifake.param_errors import describe_error
from cifake.section import Section as _Section


class ConfigError(CifakeError, ValueError):
    """Raised when ``params.yaml`` cannot be read or does not validate."""


Epsilon = Field(gt=0.0, le=1.0, description="L-inf radius on the 0-1 pixel scale")
TrainedKind = Literal["jpeg", "blur", "resize", "brightness", "contrast", "noise"]  # the training draw's
NovelKind = Literal["gamma", "saturation", "sharpen", "rotate", "zoom", "webp"]  # never trained on by default
CorruptionKind = Literal[TrainedKind, NovelKind]


class SampleParams(_Section):
    """Size of the offline sample dataset that the project generates itself."""

    train_per_class: int = Field(ge=10)
    test_per_class: int = Field(ge=10)


class DataParams(_Section):
    """Where the raw CIFAKE images come from (the ``fetch`` stage)."""

    source: Literal["sample", "archive", "directory", "kaggle"]
    archive: str
    directory: str
    kaggle_dataset: str
    sample: SampleParams


class PreprocessParams(_Section):
    val_fraction: float = Field(gt=0.0, lt=0.5)


class ModelParams(_Section):
    architecture: Literal["seed_cnn", "resnet", "vgg"]
    widths: tuple[int, ...] = Field(min_length=1)
    blocks_per_stage: int | tuple[int, ...] = Field(
        description="blocks (resnet) or conv layers (vgg) per stage: one number for every stage, or one per width"
    )
    stem_stride: Literal[1, 2] = Field(default=1, description="resnet only: 2 halves the resolution at the stem")
    normalization: Literal["scale", "per_image"] = Field(
        default="scale",
        description="scale: pixels / 255; per_image: then each image to mean 0 and standard deviation 1 over "
        "its pixels, which makes the network blind to global brightness and contrast",
    )
    dense_units: int = Field(ge=1)
    dropout: float = Field(ge=0.0, lt=1.0)
    flip_average: bool = Field(
        default=False,
        description="the saved model averages its logit over each image and its mirror (2x inference work)",
    )
    view_shift: Literal[0, 1, 2] = Field(
        default=0,
        description="the robust model also averages 4 diagonal shifts of this many pixels of both views (10 views)",
    )

    @field_validator("widths")
    @classmethod
    def _positive(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in widths):
            raise ValueError("every width must be a positive integer")
        return widths

    @model_validator(mode="after")
    def _blocks_per_width(self) -> ModelParams:
        blocks = self.stage_blocks()
        if len(blocks) != len(self.widths) or any(b < 1 for b in blocks):
            wanted = f"a positive integer or one per width ({len(self.widths)})"
            raise ValueError(f"blocks_per_stage must be {wanted}, got {self.blocks_per_stage}")
        return self

    def stage_blocks(self) -> tuple[int, ...]:
        """The number of blocks of each stage (one per width)."""
        if isinstance(self.blocks_per_stage, int):
            return (self.blocks_per_stage,) * len(self.widths)
        return tuple(self.blocks_per_stage)


class TrainParams(_Section):
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    patience: int = Field(ge=1)
    augment: bool
    everyday: float = Field(0.0, ge=0.0, le=1.0, description="share of images given a random everyday change")
    everyday_ranges: dict[CorruptionKind, tuple[float, float]] | None = Field(
        default=None,
        description="[low, high] strength range of the everyday changes named, replacing their defaults "
        "(cifake.corruptions.TRAINING_RANGES) or adding the kind to the draw; kinds not named keep theirs",
    )
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)
    ema: float = Field(0.0, ge=0.0, lt=1.0, description="momentum of a kept moving average of the weights; 0: off")
    precision: Literal["float32", "mixed_bfloat16", "auto"] = Field(
        default="float32", description="training's (auto: bfloat16 on AVX-512 BF16 or AMX); saved models are float32"
    )
    strategy: Literal["none", "mirrored", "multi_worker"] = Field(
        default="none", description="tf.distribute: none, mirrored (all GPUs), multi_worker (cluster from TF_CONFIG)"
    )
    validate_flip_average: bool = Field(False, description="validation judges the saved, flip-averaged model")
    fakes: dict[str, float] = Field(
        default_factory=dict,
        description="folder of the fakes stage (<generator>_<kind>) -> share of the Fake training images taken "
        "from it instead of CIFAKE's",
    )

    @field_validator("fakes")
    @classmethod
    def _shares(cls, fakes: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 < v <= 1.0 for v in fakes.values()) or sum(fakes.values()) > 1.0:
            raise ValueError(f"each share must lie in (0, 1] and together at most 1, got {fakes}")
        return fakes

    @field_validator("everyday_ranges")
    @classmethod
    def _ordered(cls, ranges: dict | None) -> dict | None:
        for kind, (low, high) in (ranges or {}).items():
            if low > high:
                raise ValueError(f"{kind}: the range must be [low, high] with low <= high, got [{low}, {high}]")
        return ranges


class FinetuneParams(TrainParams):
    """The training settings plus the random-start FGSM attack used while fine-tuning."""

    epsilon: float = Epsilon
    step: float = Epsilon
    random_start: bool
    clean_fraction: float = Field(ge=0.0, lt=1.0)
    warmup_epochs: float = Field(default=0.0, ge=0.0, description="epochs over which epsilon ramps up from 0")
    everyday_attacked: bool = Field(True, description="false: only the clean share gets everyday changes")
    # fgsm (Wong et al. 2020), n_fgsm (de Jorge et al. 2022), atta (Zheng et al. 2020): described in params.yaml
    method: Literal["fgsm", "n_fgsm", "atta"] = "fgsm"
    # distillation (ARD, Goldblum et al. 2020; RSLAD, Zi et al. 2021): see cifake.distill
    teacher: str = Field("", description="a saved model whose soft targets are distilled")
    distill_weight: float = Field(0.0, ge=0.0, le=1.0, description="share of the teacher's P(Fake) in each target")
    distill_temperature: float = Field(1.0, gt=0.0, description="softens the teacher: sigmoid(logit / T)")
    distill_attacked: bool = Field(False, description="true: the attacked share is distilled too")
    awp_gamma: float = Field(0.0, ge=0.0, description="adversarial weight perturbation (Wu et al. 2020); 0: off")

    @model_validator(mode="after")
    def _options_complete(self):
        if self.distill_weight > 0 and not self.teacher:
            raise ValueError("distill_weight > 0 needs a teacher (the path of a saved model)")
        if self.awp_gamma > 0 and self.strategy != "none":
            raise ValueError("awp_gamma > 0 runs on one device only (strategy: none)")
        if self.method == "atta" and self.strategy != "none":
            raise ValueError("method: atta runs on one device only (strategy: none)")
        return self


class Corruption(_Section):
    """One everyday change of the evaluation suite: a kind from cifake.corruptions and its strength."""

    kind: CorruptionKind
    value: float


class EvaluateParams(_Section):
    epsilons: tuple[float, ...] = Field(min_length=1)
    corruptions: dict[str, Corruption] = Field(min_length=1)
    pgd_steps: int = Field(ge=1)
    pgd_step_fraction: float = Field(gt=0.0, le=1.0)
    attack_subset: int = Field(ge=2)
    sample_attack_subset: int | None = Field(
        default=None, ge=2, description="on the offline sample (data.source: sample) attack at most this many images"
    )
    sample_pgd_steps: int | None = Field(
        default=None, ge=1, description="on the offline sample, PGD takes at most this many steps"
    )
    batch_size: int = Field(ge=1)
    transfer_sources: dict[str, str] = Field(
        default_factory=dict,
        description="name -> .keras file: PGD crafted on each (and always on the clean model) scores the robust "
        "model under a transfer (black-box) attack",
    )
    generator_sets: dict[str, str] = Field(
        default_factory=dict, description="name -> folder of fakes, one sub-folder per generator; absent: skipped"
    )

    @field_validator("epsilons")
    @classmethod
    def _in_range(cls, eps: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < e <= 1.0 for e in eps):
            raise ValueError("every epsilon must lie in (0, 1] (0-1 pixel scale)")
        return eps


class PerturbParams(_Section):
    """Test_dataset_2: every test image under white-box PGD against the robust model."""

    epsilon: float = Epsilon
    pgd_steps: int = Field(ge=1)
    pgd_step_fraction: float = Field(gt=0.0, le=1.0)
    batch_size: int = Field(ge=1)


class PredictParams(_Section):
    datasets: dict[str, str] = Field(min_length=1)
    model: str
    threshold: float = Field(gt=0.0, lt=1.0)
    batch_size: int = Field(ge=1)


class TrackingParams(_Section):
    experiment: str = Field(min_length=1)
    registered_model: str = Field(min_length=1)


class Params(_Section):
    """All of ``params.yaml``."""

    seed: int = Field(ge=0)
    data: DataParams
    preprocess: PreprocessParams
    model: ModelParams
    train: TrainParams
    fgsm_finetune: FinetuneParams
    fakes: FakesParams
    perturb: PerturbParams
    evaluate: EvaluateParams
    predict: PredictParams
    tracking: TrackingParams

    @model_validator(mode="after")
    def _validated_as_saved(self):
        judged = self.train.validate_flip_average or self.fgsm_finetune.validate_flip_average
        if (judged or self.model.view_shift) and not self.model.flip_average:
            raise ValueError("validate_flip_average and view_shift: each needs model.flip_average: true")
        unknown = (set(self.train.fakes) | set(self.fgsm_finetune.fakes)) - set(self.fakes.folders())
        if unknown:
            raise ValueError(
                f"train/fgsm_finetune fakes {sorted(unknown)}: the fakes stage makes {self.fakes.folders()}"
            )
        return self


def parse_params(raw: object) -> Params:
    """Validate an already-parsed mapping; raise :class:`ConfigError` with every problem."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml: the file must hold a mapping of sections")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [describe_error(e, Params) for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the project root)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw)

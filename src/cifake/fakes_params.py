"""The settings of the ``fakes`` stage (``params.yaml``'s ``fakes:``): which generators the project trains to
make its own training fakes, and how many fakes each makes (issue 40)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cifake.section import Section

Upsampling = Literal["nearest", "bilinear", "transpose"]


class GanSpec(Section):
    """One GAN (:mod:`cifake.gan`): how its generator upsamples and which loss trains it."""

    upsample: Upsampling
    loss: Literal["ns", "hinge"]


class GanParams(Section):
    """The small GANs; each makes ``sample`` fakes (a folder ``<name>_sample``)."""

    generators: dict[str, GanSpec] = Field(default_factory=dict)
    widths: tuple[int, int, int] = Field(description="generator channels at 4, 8 and 16 px")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0.0)


class FakesParams(Section):
    """The training fakes the project makes itself (stage ``fakes``): tiny diffusion models
    (:mod:`cifake.generators`; ``generators`` to ``strengths``) and small GANs (``gans``)."""

    generators: dict[str, Upsampling] = Field(min_length=1)  # diffusion: name -> upsampling
    kinds: tuple[Literal["sample", "resynth"], ...] = Field(min_length=1)
    widths: tuple[int, ...] = Field(min_length=2)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0.0)
    steps: int = Field(ge=1, description="DDIM steps from pure noise; resynthesis takes its strength's share")
    strengths: tuple[Annotated[float, Field(gt=0.0, le=1.0)], ...] = Field(min_length=1)  # resynthesis's noise
    gans: GanParams
    precision: Literal["float32", "mixed_bfloat16", "auto"]
    images: int = Field(ge=1, description="training fakes made per generator and kind")
    heldout_images: int = Field(ge=1, description="fakes per generator and kind kept for evaluate")
    sample_epochs: int = Field(ge=1, description="on the offline sample (data.source: sample)")
    sample_images: int = Field(ge=1, description="on the offline sample: fakes per generator, kind and set")

    def folders(self) -> list[str]:
        """The folder names the stage writes, one per generator and kind."""
        diffusion = [f"{name}_{kind}" for name in self.generators for kind in self.kinds]
        return diffusion + [f"{name}_sample" for name in self.gans.generators]

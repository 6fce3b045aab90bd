"""The base of every section of ``params.yaml``: an unknown key is an error, and settings once read stay fixed."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

"""The base of every stack config model: unknown keys refused, camelCase keys, frozen values."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    """A section of the stack config (``mlops-platform:<section>`` in Pulumi.<env>.yaml)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )

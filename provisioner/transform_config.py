"""``[sources.attributes]`` table form: a canonical attribute read out of a directory
attribute with a regular expression and (for hire and leave dates) strptime formats."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AttributeTransform(BaseModel):
    """A canonical attribute read out of a directory attribute's values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(min_length=1)
    pattern: str | None = None
    """Regular expression with exactly one capture group; values it does not match are not this attribute's."""
    format: str | None = None
    """strptime format of a hire or leave date (``%d/%m/%Y``); or several in ``formats``, tried in order."""
    formats: list[str] = []

    @model_validator(mode="after")
    def _check(self) -> AttributeTransform:
        if self.pattern is not None:
            try:
                groups = re.compile(self.pattern).groups
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression: {exc}") from None
            if groups != 1:
                raise ValueError(f"pattern {self.pattern!r} must have exactly one capture group, not {groups}")
        if self.format is not None and self.formats:
            raise ValueError("set format or formats, not both")
        return self

    @property
    def all_formats(self) -> tuple[str, ...]:
        return (self.format,) if self.format is not None else tuple(self.formats)

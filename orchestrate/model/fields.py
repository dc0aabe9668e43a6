"""The pieces every part of the model is built from: the strict base model, verbatim
validation errors and DNS labels. Apart from ``topology`` so that ``hosts`` can use them
without an import cycle."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

MAX_NAME_LEN = 63  # DNS label / hostname limit
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)


def fail(message: str) -> PydanticCustomError:
    """A validation error whose message is shown verbatim (no "Value error, " prefix)."""
    return PydanticCustomError("distproc", "{message}", {"message": message})


def check_label(value: str) -> str:
    """``value`` if it is a DNS label, else a validation error saying what one is."""
    if not _DNS_LABEL.match(value) or len(value) > MAX_NAME_LEN:
        raise fail(
            f"{value!r} is not a DNS label: use lowercase letters, digits and '-', starting and "
            f"ending with a letter or digit, at most {MAX_NAME_LEN} characters"
        )
    return value


DnsLabel = Annotated[
    str,
    AfterValidator(check_label),
    Field(json_schema_extra={"pattern": DNS_LABEL_PATTERN, "maxLength": MAX_NAME_LEN}),
]


class StrictModel(BaseModel):
    """No unknown keys, no coercion ("5000" is not 5000), immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

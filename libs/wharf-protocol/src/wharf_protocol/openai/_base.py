"""The base of every OpenAI wire model: unknown fields kept, absent fields stay absent."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict


class OpenAIModel(BaseModel):
    """A JSON object of the OpenAI API as OpenAI and vLLM send it.

    Unknown fields are kept (`extra="allow"`): engines add their own (vLLM's `top_k`,
    `repetition_penalty`, `stop_reason`, ...) and a proxy must pass them on. `wire()` writes
    back only what was given or set, plus the fields a class lists in `wire_always` (such as
    `object`), so a payload read and written again is the payload that came in.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=(), populate_by_name=True)

    wire_always: ClassVar[tuple[str, ...]] = ()

    def model_post_init(self, context: Any, /) -> None:
        if self.wire_always:
            self.model_fields_set.update(self.wire_always)

    def wire(self) -> dict[str, Any]:
        """The JSON object to send: given and set fields only, unknown fields included."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)

    def wire_json(self) -> bytes:
        return orjson.dumps(self.wire())

    @property
    def extra_fields(self) -> dict[str, Any]:
        """The fields this model does not declare (an engine's own), as they came."""
        return dict(self.__pydantic_extra__ or {})

"""Pydantic models of the Open Inference Protocol (V2) REST bodies.

For OpenAPI schemas, documentation and clients. The model server's hot path does not
validate through these (see `wharf_protocol.rest`), but they describe the same JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wharf_protocol.datatypes import Datatype

Parameters = dict[str, Any]
TensorData = list[Any]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class RequestInput(_Model):
    name: str
    shape: list[int] = Field(description="Dimensions of the tensor; non-negative.")
    datatype: Datatype
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size` marks data carried in the binary section."
    )
    data: TensorData | None = Field(
        default=None,
        description="Row-major values, flat or nested; absent when sent as binary data.",
    )


class RequestOutput(_Model):
    name: str
    parameters: Parameters | None = Field(
        default=None, description="`binary_data: true` asks for this output as binary data."
    )


class InferenceRequest(_Model):
    id: str | None = None
    parameters: Parameters | None = Field(
        default=None,
        description="`binary_data_output: true` asks for every output as binary data.",
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Model):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: TensorData | None = None


class InferenceResponse(_Model):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ServerMetadataResponse(_Model):
    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class TensorMetadata(_Model):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable-size dimension.")
    parameters: Parameters | None = None


class ModelMetadataResponse(_Model):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata] = Field(default_factory=list)
    outputs: list[TensorMetadata] = Field(default_factory=list)
    parameters: Parameters | None = None


class ServerLiveResponse(_Model):
    live: bool


class ServerReadyResponse(_Model):
    ready: bool


class ModelReadyResponse(_Model):
    name: str
    ready: bool


class RepositoryLoadResponse(_Model):
    name: str
    load: bool


class RepositoryUnloadResponse(_Model):
    name: str
    unload: bool


class ErrorResponse(_Model):
    error: str

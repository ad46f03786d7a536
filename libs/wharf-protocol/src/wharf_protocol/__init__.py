"""wharf_protocol: Open Inference Protocol (REST + gRPC), V1 bodies, tensor codecs, the data
plane's error types, and the OpenAI API's wire models (`wharf_protocol.openai`). Imports nothing
internal and no web framework or engine."""

from wharf_protocol.datatypes import Datatype, from_numpy_dtype, to_numpy_dtype
from wharf_protocol.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    Unsupported,
    WharfError,
)
from wharf_protocol.infer_types import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)

__all__ = [
    "Datatype",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InferenceError",
    "InvalidInput",
    "ModelNotFound",
    "ModelNotReady",
    "RequestedOutput",
    "ServerNotLive",
    "ServerNotReady",
    "Unsupported",
    "WharfError",
    "from_numpy_dtype",
    "to_numpy_dtype",
]

"""Wharf's model server: KServe's model-server API over V1/V2 REST and gRPC.

KServe custom models port by changing ``from kserve import ...`` to
``from wharf_model_server import ...``.
"""

from wharf_model_server import model_server
from wharf_model_server.batching import BatchConfig
from wharf_model_server.model import BaseKServeModel, InferenceModel, InferenceVerb, Model
from wharf_model_server.model_repository import ModelRepository
from wharf_model_server.model_server import ModelServer
from wharf_model_server.payload_logger import LoggerConfig, LogMode
from wharf_model_server.predictor_config import PredictorConfig, PredictorProtocol
from wharf_protocol.infer_types import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)

__all__ = [
    "BaseKServeModel",
    "BatchConfig",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InferenceModel",
    "InferenceVerb",
    "LogMode",
    "LoggerConfig",
    "Model",
    "ModelRepository",
    "ModelServer",
    "PredictorConfig",
    "PredictorProtocol",
    "RequestedOutput",
    "model_server",
]

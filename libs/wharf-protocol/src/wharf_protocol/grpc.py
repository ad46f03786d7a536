"""The generated gRPC modules of `protos/inference/grpc_predict_v2.proto`.

`pb` holds the messages (`pb.ModelInferRequest`, ...), `pb_grpc` the service
(`pb_grpc.GRPCInferenceServiceServicer`, `pb_grpc.add_GRPCInferenceServiceServicer_to_server`,
`pb_grpc.GRPCInferenceServiceStub`).
"""

from wharf_protocol._generated import grpc_predict_v2_pb2 as pb
from wharf_protocol._generated import grpc_predict_v2_pb2_grpc as pb_grpc

SERVICE_NAME = "inference.GRPCInferenceService"

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]

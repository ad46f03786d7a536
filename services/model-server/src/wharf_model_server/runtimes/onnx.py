"""ONNX models run by onnxruntime on the CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from wharf_model_server.model import Model
from wharf_model_server.utils import as_numpy_output, generate_uuid, get_predict_input
from wharf_protocol.datatypes import from_numpy_dtype
from wharf_protocol.errors import InvalidInput
from wharf_protocol.infer_types import InferOutput, InferRequest, InferResponse

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def _dims(shape: list[Any]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


class ONNXModel(Model):
    def __init__(self, name: str, model_file: str, nthread: int = 1) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.nthread = nthread
        self._session: ort.InferenceSession | None = None

    def load(self) -> bool:
        options = ort.SessionOptions()
        # Small CPU models gain nothing from spinning intra-op threads on a shared machine.
        options.intra_op_num_threads = self.nthread
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            self.model_file, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.ready = True
        return self.ready

    def _tensor_metadata(self, nodes: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": node.name,
                "datatype": str(
                    from_numpy_dtype(np.dtype(_ORT_TO_NUMPY.get(node.type, np.object_)))
                ),
                "shape": _dims(node.shape),
            }
            for node in nodes
        ]

    def get_input_types(self) -> list[dict[str, Any]]:
        return [] if self._session is None else self._tensor_metadata(self._session.get_inputs())

    def get_output_types(self) -> list[dict[str, Any]]:
        return [] if self._session is None else self._tensor_metadata(self._session.get_outputs())

    def _feeds(self, payload: dict[str, Any] | InferRequest) -> dict[str, np.ndarray]:
        assert self._session is not None
        inputs = self._session.get_inputs()
        if isinstance(payload, InferRequest):
            by_name = {i.name: i for i in payload.inputs}
            if set(by_name) == {node.name for node in inputs}:
                arrays = [by_name[node.name].as_numpy() for node in inputs]
            elif len(payload.inputs) == len(inputs):
                arrays = [i.as_numpy() for i in payload.inputs]
            else:
                expected = ", ".join(node.name for node in inputs)
                raise InvalidInput(f"model {self.name!r} expects inputs: {expected}")
        else:
            if len(inputs) != 1:
                raise InvalidInput(f"model {self.name!r} has {len(inputs)} inputs; use the V2 API")
            arrays = [np.asarray(get_predict_input(payload))]
        feeds = {}
        for node, array in zip(inputs, arrays, strict=True):
            dtype = _ORT_TO_NUMPY.get(node.type)
            feeds[node.name] = array if dtype is None else array.astype(dtype, copy=False)
        return feeds

    def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        assert self._session is not None
        feeds = self._feeds(payload)
        outputs = self._session.get_outputs()
        try:
            results = self._session.run(None, feeds)
        except Exception as exc:
            raise InvalidInput(f"model {self.name!r} cannot predict on this input: {exc}") from exc
        if not isinstance(payload, InferRequest):
            first = results[0]
            return {"predictions": first.tolist() if isinstance(first, np.ndarray) else first}
        infer_outputs = []
        for node, result in zip(outputs, results, strict=True):
            array = as_numpy_output(result)
            output = InferOutput(
                name=node.name, shape=list(array.shape), datatype=from_numpy_dtype(array.dtype)
            )
            output.set_data_from_numpy(array, binary_data=False)
            infer_outputs.append(output)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=infer_outputs,
            from_grpc=payload.from_grpc,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )

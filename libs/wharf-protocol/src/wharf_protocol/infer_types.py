"""Transport-free inference request/response types, named like KServe's `infer_type`.

Tensors hold their numpy array once decoded (`as_numpy()` is then free); the REST and gRPC
codecs validate and build the arrays while decoding, so a tensor that reaches a model is
well-formed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from wharf_protocol.datatypes import Datatype, from_numpy_dtype
from wharf_protocol.errors import InvalidInput
from wharf_protocol.tensor_codec import array_from_json, array_from_raw

Array = npt.NDArray[Any]


_WIRE_ONLY = frozenset(("binary_data", "binary_data_size"))


def _semantic(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters without the REST binary-extension bookkeeping (for equality)."""
    return {k: v for k, v in params.items() if k not in _WIRE_ONLY}


class _Tensor:
    __slots__ = ("_array", "_data", "_datatype", "_parameters", "_shape", "name")

    def __init__(
        self,
        name: str,
        shape: list[int],
        datatype: str,
        data: Any = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._shape = list(shape)
        self._datatype = str(datatype)
        self._data = data
        self._parameters = parameters if parameters is not None else {}
        self._array: Array | None = data if isinstance(data, np.ndarray) else None

    @property
    def shape(self) -> list[int]:
        return self._shape

    @shape.setter
    def shape(self, value: list[int]) -> None:
        self._shape = list(value)

    @property
    def datatype(self) -> str:
        return self._datatype

    @property
    def data(self) -> Any:
        """The data as given (a list from JSON) or the numpy array (binary/raw, numpy)."""
        return self._data

    @property
    def parameters(self) -> dict[str, Any]:
        return self._parameters

    @parameters.setter
    def parameters(self, value: dict[str, Any] | None) -> None:
        self._parameters = value if value is not None else {}

    def as_numpy(self) -> Array:
        """The tensor as a numpy array of `shape` (BF16 as float32, BYTES as object)."""
        if self._array is None:
            if self._data is None:
                raise InvalidInput(f"tensor '{self.name}' has no data")
            data = self._data
            if not isinstance(data, list):
                data = list(data) if isinstance(data, tuple) else [data]
            where = f"tensor '{self.name}'"
            self._array = array_from_json(data, self._datatype, self._shape, where)
        return self._array

    def _set_array(self, arr: Array) -> None:
        self._array = arr
        self._data = arr

    def _set_from_numpy(self, arr: npt.ArrayLike) -> None:
        array = np.asarray(arr)
        given = from_numpy_dtype(array.dtype)
        ok = given == self._datatype or (
            self._datatype == Datatype.BF16 and array.dtype.kind == "f"
        )
        if not ok:
            raise InvalidInput(
                f"tensor '{self.name}': numpy dtype {array.dtype} does not match "
                f"datatype {self._datatype}"
            )
        self._shape = list(array.shape)
        self._set_array(array)

    def _set_raw(self, raw: bytes | memoryview, where: str) -> None:
        self._set_array(array_from_raw(raw, self._datatype, self._shape, where))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Tensor) or type(other) is not type(self):
            return NotImplemented
        return (
            self.name == other.name
            and self._shape == other._shape
            and self._datatype == other._datatype
            and _semantic(self._parameters) == _semantic(other._parameters)
            and np.array_equal(self.as_numpy(), other.as_numpy(), equal_nan=self._nan_ok())
        )

    __hash__ = None  # type: ignore[assignment]

    def _nan_ok(self) -> bool:
        return self._datatype in ("FP16", "FP32", "FP64", "BF16")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, shape={self._shape!r}, "
            f"datatype={self._datatype!r}, parameters={self._parameters!r})"
        )


class InferInput(_Tensor):
    __slots__ = ()

    def set_data_from_numpy(self, arr: npt.ArrayLike, binary_data: bool = True) -> None:
        """Take data and shape from `arr`; its dtype must match the datatype.

        `binary_data` is recorded in parameters (`binary_data`) for clients; the REST encoder
        sends binary when asked for the whole request (`encode_infer_request(..., binary=True)`)
        or for this input.
        """
        self._set_from_numpy(arr)
        if binary_data:
            self._parameters["binary_data"] = True
        else:
            self._parameters.pop("binary_data", None)


class InferOutput(_Tensor):
    __slots__ = ()

    def set_data_from_numpy(self, arr: npt.ArrayLike, binary_data: bool = False) -> None:
        """Take data and shape from `arr`; its dtype must match the datatype.

        Whether the REST response carries it as binary is the client's choice (requested
        output `binary_data`, else request `binary_data_output`), as in KServe; the flag is
        kept for KServe's signature and recorded in `parameters` but not sent.
        """
        self._set_from_numpy(arr)
        if binary_data:
            self._parameters["binary_data"] = True
        else:
            self._parameters.pop("binary_data", None)


class RequestedOutput:
    __slots__ = ("name", "parameters")

    def __init__(self, name: str, parameters: dict[str, Any] | None = None) -> None:
        self.name = name
        self.parameters: dict[str, Any] = parameters if parameters is not None else {}

    @property
    def binary_data(self) -> bool:
        return bool(self.parameters.get("binary_data", False))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestedOutput):
            return NotImplemented
        return self.name == other.name and self.parameters == other.parameters

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RequestedOutput(name={self.name!r}, parameters={self.parameters!r})"


def _apply_raw(tensors: list[InferInput] | list[InferOutput], raw: list[bytes], kind: str) -> None:
    if len(raw) != len(tensors):
        raise InvalidInput(f"{len(raw)} raw contents given for {len(tensors)} {kind}s")
    for tensor, chunk in zip(tensors, raw, strict=True):
        tensor._set_raw(chunk, f"{kind} '{tensor.name}'")


class InferRequest:
    __slots__ = (
        "from_grpc",
        "id",
        "inputs",
        "model_name",
        "model_version",
        "parameters",
        "request_outputs",
    )

    def __init__(
        self,
        model_name: str,
        infer_inputs: list[InferInput],
        request_id: str | None = None,
        raw_inputs: list[bytes] | None = None,
        from_grpc: bool = False,
        parameters: dict[str, Any] | None = None,
        request_outputs: list[RequestedOutput] | None = None,
        model_version: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.inputs = infer_inputs
        self.id = request_id
        self.from_grpc = from_grpc
        self.parameters: dict[str, Any] = parameters if parameters is not None else {}
        self.request_outputs: list[RequestedOutput] = (
            request_outputs if request_outputs is not None else []
        )
        self.model_version = model_version
        if raw_inputs:
            _apply_raw(infer_inputs, raw_inputs, "input")

    @property
    def use_binary_outputs(self) -> bool:
        """Whether the request asked for binary outputs by default (`binary_data_output`)."""
        return bool(self.parameters.get("binary_data_output", False))

    def get_input_by_name(self, name: str) -> InferInput | None:
        for infer_input in self.inputs:
            if infer_input.name == name:
                return infer_input
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InferRequest):
            return NotImplemented
        fields = ("id", "inputs", "model_name", "model_version", "parameters", "request_outputs")
        return all(getattr(self, f) == getattr(other, f) for f in fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"InferRequest(model_name={self.model_name!r}, id={self.id!r}, "
            f"inputs={self.inputs!r}, parameters={self.parameters!r})"
        )


class InferResponse:
    __slots__ = (
        "from_grpc",
        "id",
        "model_name",
        "model_version",
        "outputs",
        "parameters",
        "requested_outputs",
        "use_binary_outputs",
    )

    def __init__(
        self,
        response_id: str | None,
        model_name: str,
        infer_outputs: list[InferOutput],
        model_version: str | None = None,
        raw_outputs: list[bytes] | None = None,
        from_grpc: bool = False,
        parameters: dict[str, Any] | None = None,
        use_binary_outputs: bool = False,
        requested_outputs: list[RequestedOutput] | None = None,
    ) -> None:
        self.id = response_id
        self.model_name = model_name
        self.outputs = infer_outputs
        self.model_version = model_version
        self.from_grpc = from_grpc
        self.parameters: dict[str, Any] = parameters if parameters is not None else {}
        self.use_binary_outputs = use_binary_outputs
        self.requested_outputs: list[RequestedOutput] = (
            requested_outputs if requested_outputs is not None else []
        )
        if raw_outputs:
            _apply_raw(infer_outputs, raw_outputs, "output")

    def get_output_by_name(self, name: str) -> InferOutput | None:
        for output in self.outputs:
            if output.name == name:
                return output
        return None

    def selected_outputs(self) -> list[InferOutput]:
        """The outputs to send: the requested ones in the order asked, or all when none
        were requested (the protocol's rule). A requested output the model did not produce
        is an InvalidInput."""
        if not self.requested_outputs:
            return self.outputs
        selected = []
        for requested in self.requested_outputs:
            output = self.get_output_by_name(requested.name)
            if output is None:
                produced = ", ".join(o.name for o in self.outputs)
                raise InvalidInput(
                    f"requested output '{requested.name}' is not produced by model "
                    f"'{self.model_name}' (outputs: {produced})"
                )
            selected.append(output)
        return selected

    def output_is_binary(self, output: InferOutput) -> bool:
        """REST: the client decides, as in KServe and Triton: the requested output's
        `binary_data`, else the request's `binary_data_output` (`use_binary_outputs`)."""
        for requested in self.requested_outputs:
            if requested.name == output.name and "binary_data" in requested.parameters:
                return bool(requested.parameters["binary_data"])
        return self.use_binary_outputs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InferResponse):
            return NotImplemented
        fields = ("id", "model_name", "model_version", "outputs", "parameters")
        return all(getattr(self, f) == getattr(other, f) for f in fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"InferResponse(model_name={self.model_name!r}, id={self.id!r}, "
            f"outputs={self.outputs!r}, parameters={self.parameters!r})"
        )

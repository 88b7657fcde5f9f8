"""KServe v2 REST inference bodies: the JSON request (tensors as JSON lists, or after it
in Triton's binary tensor extension) into the core's InputTensors, and the outputs back
as JSON lists or binary data. The structure is checked by a JSON schema (fastjsonschema);
the tensors themselves by the core's one decode path."""

from __future__ import annotations

import json
from dataclasses import dataclass

import fastjsonschema
import numpy as np

from ..core.decode import InputTensor
from ..core.errors import invalid
from ..core.kserve import bytes_elements, classification_strings
from ..core.registry import ServedModel

HEADER_LENGTH = "Inference-Header-Content-Length"
_PARAMETERS = {"type": "object"}
REQUEST_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {
            "binary_data_output": {"type": "boolean"},
            "timeout": {"type": "integer", "minimum": 0}}},
        "inputs": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}, "maxItems": 16},
                "datatype": {"type": "string"},
                "parameters": {"type": "object", "properties": {
                    "binary_data_size": {"type": "integer", "minimum": 0}}},
                "data": {"type": "array"},
            }}},
        "outputs": {"type": "array", "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "parameters": {"type": "object", "properties": {
                    "binary_data": {"type": "boolean"},
                    "classification": {"type": "integer"}}},
            }}},
    },
}
_validate = fastjsonschema.compile(REQUEST_SCHEMA)
validate_index_request = fastjsonschema.compile({"type": "object", "properties": {"ready": {"type": "boolean"}}})


@dataclass(frozen=True)
class InferRequest:
    id: str
    inputs: list[InputTensor]
    outputs: list[tuple[str, int]]  # (name, classification count or 0)
    binary_outputs: dict[str, bool]
    binary_default: bool
    time_left_s: float | None


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary data after it."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise invalid(f"{HEADER_LENGTH}: {header_length[:40]!r} is not an integer") from None
    if not 0 <= length <= len(body):
        raise invalid(f"{HEADER_LENGTH}: {length} is not within the body of {len(body)} bytes")
    return body[:length], body[length:]


def parse_header(header: bytes, validate=None) -> dict:
    """The JSON object of a request body, checked against the inference request schema
    (or `validate`)."""
    try:
        request = json.loads(header)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise invalid(f"request body: not valid JSON ({str(e)[:120]}); expected a KServe v2 inference "
                      "request") from None
    try:
        (validate or _validate)(request)
    except fastjsonschema.JsonSchemaException as e:
        raise invalid(f"request body: {str(e)[:200].replace('data', 'request', 1)}") from None
    return request


def _json_values(data: list, field: str) -> np.ndarray:
    """A JSON data list (flat or nested row-major) as numbers, or a clear refusal."""
    try:
        values = np.asarray(data)
    except (ValueError, OverflowError, TypeError, RecursionError):
        raise invalid(f"{field}: not a list of numbers (ragged nesting or a value too large)") from None
    if values.dtype.kind not in "biuf":
        raise invalid(f"{field}: expected numbers (or true/false for BOOL), got JSON values of another type")
    return values.ravel()


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    header, binary = split_body(body, header_length)
    request = parse_header(header)
    tensors, offset = [], 0
    for i, tensor in enumerate(request["inputs"]):
        field = f"inputs[{i}]"
        size = tensor.get("parameters", {}).get("binary_data_size")
        if size is not None:
            size = int(size)  # JSON Schema's "integer" lets 4.0 through
        common = dict(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"], field=field)
        if size is not None:
            if "data" in tensor:
                raise invalid(f"{field}: both data and parameters.binary_data_size are given; expected only one")
            if offset + size > len(binary):
                raise invalid(f"{field}.parameters.binary_data_size: {size} bytes from offset {offset} exceed the "
                              f"{len(binary)} bytes of binary data after the JSON header")
            tensors.append(InputTensor(**common, data=binary[offset:offset + size],
                                       data_field=f"{field} (binary data)"))
            offset += size
        elif "data" in tensor:
            tensors.append(InputTensor(**common, values=_json_values(tensor["data"], f"{field}.data"),
                                       values_field=f"{field}.data"))
        else:
            raise invalid(f"{field}: neither data nor parameters.binary_data_size is given; expected one")
    if offset != len(binary):
        raise invalid(f"request body: {len(binary) - offset} bytes of binary data are not claimed by any input's "
                      "binary_data_size")
    parameters = request.get("parameters", {})
    outputs = request.get("outputs", [])
    timeout_us = parameters.get("timeout")
    return InferRequest(
        id=request.get("id", ""),
        inputs=tensors,
        outputs=[(o["name"], o.get("parameters", {}).get("classification", 0)) for o in outputs],
        binary_outputs={o["name"]: o["parameters"]["binary_data"] for o in outputs
                        if "binary_data" in o.get("parameters", {})},
        binary_default=parameters.get("binary_data_output", False),
        time_left_s=timeout_us / 1e6 if timeout_us else None,
    )


def encode_response(request: InferRequest, model: ServedModel, outputs: list[tuple[int, int]],
                    results: list[np.ndarray]) -> tuple[bytes, int | None]:
    """The response body and, when binary data follows the JSON, the JSON's length."""
    header: dict = {"model_name": model.name, "model_version": model.version, "outputs": []}
    if request.id:
        header["id"] = request.id
    chunks = []
    for index, k in outputs:
        spec, array = model.signature.outputs[index], results[index]
        binary = request.binary_outputs.get(spec.name, request.binary_default)
        entry: dict = {"name": spec.name}
        if k:
            classifier, k = model.signature.classifier, min(k, array.shape[1])
            labels = model.labels if classifier and spec is classifier.output else None
            texts = classification_strings(array, k, labels)
            entry.update(datatype="BYTES", shape=[len(array), k])
            data = bytes_elements(texts) if binary else texts
        else:
            entry.update(datatype=spec.datatype, shape=list(array.shape))
            data = np.ascontiguousarray(array, spec.dtype).tobytes() if binary else array.ravel().tolist()
        if binary:
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = data
        header["outputs"].append(entry)
    text = json.dumps(header).encode()
    if not chunks:
        return text, None
    return text + b"".join(chunks), len(text)

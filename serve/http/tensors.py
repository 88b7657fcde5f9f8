"""KServe v2 REST inference bodies: the JSON request (tensors as JSON lists, or after it
in Triton's binary tensor extension) into the core's InputTensors, and the outputs back
as JSON lists or binary data. The structure is checked by a JSON schema (fastjsonschema);
the tensors themselves by the core's one decode path.

A tensor's JSON numbers go straight into NumPy: simdjson parses the body, and each input's
`data` array is read as one buffer of doubles or integers (nested lists flattened in C),
never as a Python float per element; the schema sees the request without those arrays.
What simdjson refuses (NaN, Infinity and numbers out of range, which Python's and
rapidjson's JSON write) is read by Python's json instead, so nothing valid there is lost."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import fastjsonschema
import numpy as np
import simdjson

from ..core.errors import invalid
from ..core.records import Deadline, InferRequest, InferResponse, InputTensor, RequestedOutput

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
validate_object = fastjsonschema.compile({"type": "object"})


@dataclass(frozen=True)
class RestInfer:
    """An inference request as the data plane takes it, and how its answer is to be sent."""

    request: InferRequest
    binary_outputs: dict[str, bool]  # output name -> as binary data (else JSON)
    binary_default: bool


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


# simdjson's buffer types per KServe datatype: doubles for floats, 64-bit integers for the rest
# (a value a datatype cannot hold is refused by the core's decode); BOOL goes the Python way.
BUFFER_TYPES = {"FP16": ("d", np.float64), "FP32": ("d", np.float64), "FP64": ("d", np.float64),
                "INT8": ("i", np.int64), "INT16": ("i", np.int64), "INT32": ("i", np.int64),
                "INT64": ("i", np.int64), "UINT8": ("i", np.int64), "UINT16": ("i", np.int64),
                "UINT32": ("i", np.int64), "UINT64": ("u", np.uint64)}


def _loads(text: bytes):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise invalid(f"request body: not valid JSON ({str(e)[:120]}); expected a KServe v2 inference "
                      "request") from None


def _validated(request, validate):
    try:
        validate(request)
    except fastjsonschema.JsonSchemaException as e:
        raise invalid(f"request body: {str(e)[:200].replace('data', 'request', 1)}") from None
    return request


def parse_header(header: bytes, validate=None) -> dict:
    """The JSON object of a small request body (every value as Python), checked against
    `validate` (the inference request schema by default)."""
    return _validated(_loads(header), validate or _validate)


def _python(value):
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


REUSED_PARSER_LIMIT = 4 << 20  # bytes: a parser keeps about twice its largest document resident
_parsers = threading.local()


def _parse(header: bytes):
    """simdjson's document of `header`. A handler thread keeps one parser for bodies up to
    REUSED_PARSER_LIMIT: a fresh one per request allocates its buffers anew, and with the
    server's fixed 1 MiB mmap threshold (serve.process) those are mapped and faulted in
    every time, which doubled the parse of a 64-image JSON request (2.6 to 5.2 ms of CPU).
    So each handler thread holds at most about 8 MiB; larger bodies get a parser of their
    own, freed with the request."""
    if len(header) > REUSED_PARSER_LIMIT:
        return simdjson.Parser().parse(header)
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    try:
        return parser.parse(header)
    except RuntimeError:  # views of its last document still live (a traceback may hold some)
        parser = _parsers.parser = simdjson.Parser()
        return parser.parse(header)


def parse_inference(header: bytes) -> tuple[dict, list]:
    """An inference request's JSON, schema-checked, and beside it each input's `data` as it
    came: a simdjson Array (read into NumPy by json_values) or a list (the Python way)."""
    try:
        document = _parse(header)
    except (ValueError, UnicodeDecodeError):  # NaN, Infinity, 1e999, or not JSON: Python's json says which
        request = _validated(_loads(header), _validate)
        return request, [tensor.get("data") for tensor in request["inputs"]]
    if not isinstance(document, simdjson.Object) or not isinstance(document.get("inputs"), simdjson.Array):
        return _validated(_python(document), _validate), []  # refused by the schema: it needs an inputs array
    # (items() would convert every value to Python; keys() and [] keep simdjson's views)
    request = {key: _python(document[key]) for key in document.keys() if key != "inputs"}
    request["inputs"], arrays = [], []
    for tensor in document["inputs"]:
        if not isinstance(tensor, simdjson.Object):
            request["inputs"].append(_python(tensor))  # refused by the schema
            arrays.append(None)
            continue
        data = tensor.get("data")
        request["inputs"].append({k: [] if k == "data" and isinstance(data, simdjson.Array) else _python(tensor[k])
                                  for k in tensor.keys()})
        arrays.append(data)
    return _validated(request, _validate), arrays


def json_values(data, datatype: str, field: str) -> np.ndarray:
    """A JSON data array (flat or nested row-major) as a flat array of numbers, or a clear refusal."""
    buffer = BUFFER_TYPES.get(datatype)
    if isinstance(data, simdjson.Array):
        if buffer is not None:
            try:
                return np.frombuffer(data.as_buffer(of_type=buffer[0]), buffer[1])
            except (TypeError, ValueError):  # not all of that type (floats for an integer type, say)
                pass
        data = data.as_list()
    try:
        values = np.asarray(data)
    except (ValueError, OverflowError, TypeError, RecursionError):
        raise invalid(f"{field}: not a list of numbers (ragged nesting or a value too large)") from None
    if values.dtype.kind not in "biuf":
        raise invalid(f"{field}: expected numbers (or true/false for BOOL), got JSON values of another type")
    return values.ravel()


def decode_request(body: bytes, header_length: str | None, model: str, version: str,
                   is_active, trace=None) -> RestInfer:
    header, binary = split_body(body, header_length)
    request, arrays = parse_inference(header)
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
            values = json_values(arrays[i], tensor["datatype"], f"{field}.data")
            tensors.append(InputTensor(**common, values=values, values_field=f"{field}.data"))
        else:
            raise invalid(f"{field}: neither data nor parameters.binary_data_size is given; expected one")
    if offset != len(binary):
        raise invalid(f"request body: {len(binary) - offset} bytes of binary data are not claimed by any input's "
                      "binary_data_size")
    parameters = request.get("parameters", {})
    outputs = request.get("outputs", [])
    timeout_us = parameters.get("timeout")
    return RestInfer(
        InferRequest(model, version, request.get("id", ""), tensors,
                     [RequestedOutput(o["name"], o.get("parameters", {}).get("classification", 0)) for o in outputs],
                     Deadline(timeout_us / 1e6 if timeout_us else None, is_active), trace),
        binary_outputs={o["name"]: o["parameters"]["binary_data"] for o in outputs
                        if "binary_data" in o.get("parameters", {})},
        binary_default=parameters.get("binary_data_output", False),
    )


def encode_response(rest: RestInfer, answer: InferResponse) -> tuple[bytes, int | None]:
    """The response body and, when binary data follows the JSON, the JSON's length."""
    header: dict = {"model_name": answer.model_name, "model_version": answer.model_version, "outputs": []}
    if answer.id:
        header["id"] = answer.id
    chunks = []
    for tensor in answer.outputs:
        entry: dict = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if rest.binary_outputs.get(tensor.name, rest.binary_default):
            data = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = tensor.values()
        header["outputs"].append(entry)
    text = json.dumps(header).encode()
    if not chunks:
        return text, None
    return text + b"".join(chunks), len(text)

"""10,000 seeded hostile requests across every RPC of every service the server registers
(both APIs, and grpcio's health and reflection v1alpha and v1), typed mutations and raw
bytes through a generic channel call: never UNKNOWN, INTERNAL or a deadline, no traceback
in the server's log, and the server healthy and exact afterwards."""

from __future__ import annotations

import collections
import io
import random
import shutil
import struct
import time
import zlib
from concurrent import futures

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from PIL import Image
from tritonclient.grpc import service_pb2 as kpb

from bench.server_process import start_server
from serve.gen import predictor_pb2 as pb
from tests.own_models import linear_classifier, two_input_model

CASES = 10_000
SEED = 20261129
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
PREDICTOR = "/zoo.v1.Predictor/"
KSERVE = "/inference.GRPCInferenceService/"
METHODS = [PREDICTOR + m for m in ("Predict", "ListModels", "GetModel")] + [
    KSERVE + m for m in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
                         "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "LogSettings")] + [
    "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]
STREAMING = {"Watch": (False, True), "ServerReflectionInfo": (True, True)}  # (client, server) streaming
SYMBOLS = ["zoo.v1.Predictor", "inference.GRPCInferenceService", "grpc.health.v1.Health", "zoo.v1.Tensor",
           "nope.Nothing", "", "x" * 300, "inference.ModelInferRequest.inputs"]
# The served models' inputs: name -> [(input, datatype, shape with -1 for the batch)]
SIGNATURES = {"lenet5-mnist": [("input", "FP32", [-1, 1, 28, 28])], "fixed1": [("x", "FP32", [1, 1, 8, 8])],
              "pair": [("a", "FP32", [-1, 3]), ("b", "FP32", [-1, 3]), ("n", "INT64", [-1])]}
DATATYPES = ["FP32", "UINT8", "INT64", "FP64", "FP16", "INT8", "BOOL", "BYTES", "", "fp32", "X" * 300]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, 3e38, -1e-45]


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def huge_header(data: bytes, width: int, height: int) -> bytes:
    """A valid PNG whose IHDR claims another size (its CRC fixed, so only the size lies)."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


class Cases:
    """Seeded request generators: (method path, serialized request bytes)."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        rng = np.random.default_rng(seed)
        self.good_png = png(rng.integers(0, 256, (28, 28), dtype=np.uint8))
        self.rgb_png = png(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))

    def model(self) -> str:
        return self.r.choice(list(SIGNATURES) * 3 + ["", "nope", "../etc/passwd", "x" * 200, "lenet5", "\u00e9"])

    def version(self) -> str:
        return self.r.choice(["", "", "", "1", "2", "0", "-1", "x" * 100])

    def dim(self, want: int) -> int:
        r = self.r.random()
        if r < 0.6:
            return self.r.choice([1, 2, 3]) if want == -1 else want
        return self.r.choice([0, -1, -(2**40), 2**31 - 1, 2**40, 2**62, 7, 28, 29])

    def shape(self, declared: list[int]) -> list[int]:
        shape = [self.dim(d) for d in declared]
        r = self.r.random()
        if r < 0.1:
            shape = shape[:-1]
        elif r < 0.2:
            shape = shape + [1]
        elif r < 0.25:
            shape = []
        return shape

    def values(self, count: int, datatype: str) -> np.ndarray:
        dtype = {"FP32": np.float32, "UINT8": np.uint8, "INT64": np.int64, "FP64": np.float64,
                 "FP16": np.float16, "INT8": np.int8, "BOOL": np.bool_}.get(datatype, np.float32)
        x = np.random.default_rng(self.r.randrange(2**32)).standard_normal(count).astype(dtype)
        if dtype in (np.float32, np.float64) and count and self.r.random() < 0.3:
            x[self.r.randrange(count)] = self.r.choice(SPECIAL)
        return x

    def image(self) -> bytes:
        kind = self.r.randrange(7)
        data = self.r.choice([self.good_png, self.rgb_png])
        if kind == 0:
            return data
        if kind == 1:
            return data[: self.r.randrange(len(data))]
        if kind == 2:
            flipped = bytearray(data)
            for _ in range(self.r.randint(1, 8)):
                flipped[self.r.randrange(len(flipped))] ^= 1 << self.r.randrange(8)
            return bytes(flipped)
        if kind == 3:
            return huge_header(data, self.r.choice([5000, 65535, 100000, 2**31 - 1]), self.r.choice([1, 5000, 100000]))
        if kind == 4:
            return self.r.randbytes(self.r.randrange(300))
        if kind == 5:
            return b"\xff\xd8\xff\xe0" + self.r.randbytes(50)
        return b""

    def predict(self) -> bytes:
        request = pb.PredictRequest(model=self.model(), version=self.version(),
                                    top_k=self.r.choice([0, 1, 3, 10, 99, -1, 2**31 - 1, -(2**31)]))
        kind = self.r.random()
        if kind < 0.45:
            declared = SIGNATURES.get(request.model, SIGNATURES["lenet5-mnist"])[0][2]
            shape = self.shape(declared)
            request.tensor.shape.extend(shape)
            request.tensor.dtype = self.r.choice([1, 1, 1, 2, 0, 3, -1, 99])
            count = int(np.prod(shape)) if shape and all(0 <= d <= 4096 for d in shape) else self.r.randrange(100)
            count = min(count, 64 * 784)
            itemsize = 1 if request.tensor.dtype == 2 else 4
            data = self.values(count, "UINT8" if itemsize == 1 else "FP32").tobytes()
            if self.r.random() < 0.2:
                data = data[: self.r.randrange(len(data) + 1)] + self.r.randbytes(self.r.randrange(5))
            request.tensor.data = data
        elif kind < 0.9:
            request.images.images.extend(self.image() for _ in range(self.r.choice([0, 1, 1, 2, 3])))
        return request.SerializeToString()

    def model_infer(self) -> bytes:
        name = self.model()
        request = kpb.ModelInferRequest(model_name=name, model_version=self.version(), id=str(self.r.randrange(99)))
        inputs = list(SIGNATURES.get(name, SIGNATURES["lenet5-mnist"]))
        if self.r.random() < 0.1:
            inputs = inputs[:-1]
        if self.r.random() < 0.1:
            inputs = inputs + [self.r.choice(inputs + [("extra", "FP32", [-1])])]
        use_raw = self.r.random() < 0.6
        for input_name, datatype, declared in inputs:
            if self.r.random() < 0.1:
                input_name = self.r.choice(["", "pixels", "input ", "y"])
            if self.r.random() < 0.2:
                datatype = self.r.choice(DATATYPES)
            shape = self.shape(declared)
            tensor = request.inputs.add(name=input_name, datatype=datatype, shape=shape)
            count = int(np.prod(shape)) if shape and all(0 <= d <= 4096 for d in shape) else self.r.randrange(50)
            count = min(count, 64 * 784)
            if self.r.random() < 0.15:
                count += self.r.choice([-1, 1, 7])
            values = self.values(max(count, 0), datatype)
            if use_raw:
                request.raw_input_contents.append(values.tobytes())
            if not use_raw or self.r.random() < 0.05:  # typed contents (both set, sometimes)
                if datatype == "INT64":
                    tensor.contents.int64_contents.extend(values.astype(np.int64).tolist())
                elif datatype == "UINT8":
                    tensor.contents.uint_contents.extend(self.r.choice([values.astype(np.uint32).tolist(), [300]]))
                elif datatype == "BOOL":
                    tensor.contents.bool_contents.extend(values.astype(bool).tolist())
                else:
                    tensor.contents.fp32_contents.extend(values.astype(np.float32).tolist())
        if self.r.random() < 0.05:
            request.raw_input_contents.append(b"\0" * 8)
        for _ in range(self.r.choice([0, 0, 1, 2])):
            out = request.outputs.add(name=self.r.choice(["logits", "y", "sum", "count", "nope", ""]))
            if self.r.random() < 0.5:
                out.parameters["classification"].int64_param = self.r.choice([0, 1, 3, 10, -1, 2**62])
        return request.SerializeToString()

    def typed(self, method: str) -> bytes:
        name = method.rsplit("/", 1)[1]
        if name == "Predict":
            return self.predict()
        if name == "ModelInfer":
            return self.model_infer()
        if name == "GetModel":
            return pb.GetModelRequest(model=self.model(), version=self.version()).SerializeToString()
        if name in ("ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics"):
            request = getattr(kpb, f"{name}Request")(name=self.model(), version=self.version())
            return request.SerializeToString()
        if name == "RepositoryIndex":
            return kpb.RepositoryIndexRequest(ready=self.r.random() < 0.5).SerializeToString()
        if name in ("Check", "Watch"):
            service = self.r.choice(["", "zoo.v1.Predictor", "inference.GRPCInferenceService", self.model()])
            return health_pb2.HealthCheckRequest(service=service).SerializeToString()
        if name == "ServerReflectionInfo":
            field = self.r.choice(["list_services", "file_containing_symbol", "file_by_filename",
                                   "all_extension_numbers_of_type", None])
            request = reflection_pb2.ServerReflectionRequest(host=self.r.choice(["", "localhost"]))
            if field == "file_by_filename":
                request.file_by_filename = self.r.choice(["serve/gen/predictor.proto", "grpc_service.proto",
                                                          "nope.proto", ""])
            elif field:
                setattr(request, field, self.r.choice(SYMBOLS))
            return request.SerializeToString()
        return b""

    def raw(self, method: str) -> bytes:
        valid = self.typed(method)
        kind = self.r.randrange(5)
        if kind == 0:
            return self.r.randbytes(self.r.randrange(64))
        if kind == 1 and valid:
            return valid[: self.r.randrange(len(valid))]
        if kind == 2 and valid:
            flipped = bytearray(valid)
            for _ in range(self.r.randint(1, 4)):
                flipped[self.r.randrange(len(flipped))] ^= 1 << self.r.randrange(8)
            return bytes(flipped)
        if kind == 3:
            return self.r.choice([bytes.fromhex("0a02fffe"), b"\x01", b"\x0a\xff\xff\xff\xff\x0f", b"\xff" * 10])
        return valid + b"\x9a\x06\x03abc"  # an unknown field, which a parser must skip

    def __iter__(self):
        for _ in range(CASES):
            method = self.r.choice(METHODS)
            yield method, (self.raw(method) if self.r.random() < 0.2 else self.typed(method))


@pytest.fixture(scope="module")
def fuzz_models(models_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-models")
    shutil.copy(models_dir / "lenet5-mnist.onnx", root)
    linear_classifier(root / "fixed1.onnx", batch=1)
    two_input_model(root / "pair.onnx")
    return root


def test_ten_thousand_hostile_requests(fuzz_models, mnist_batch):
    server = start_server(fuzz_models)
    codes: collections.Counter = collections.Counter()
    forbidden = []
    start = time.monotonic()
    try:
        with grpc.insecure_channel(server.address) as channel:
            kinds = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
                     (True, True): channel.stream_stream}
            calls = {m: kinds[STREAMING.get(m.rsplit("/", 1)[1], (False, False))](m)
                     for m in METHODS}  # bytes in, bytes out: no client-side checks

            def send(case):
                method, body = case
                kind = STREAMING.get(method.rsplit("/", 1)[1])
                try:
                    if kind is None:
                        calls[method](body, timeout=10)
                    elif kind == (False, True):  # Watch: its first status, then hang up (it streams for ever)
                        answers = calls[method](body, timeout=10)
                        next(answers)
                        answers.cancel()
                    else:  # reflection: the case's message, once or (by its length) twice, all answers read
                        list(calls[method](iter([body] * (1 + len(body) % 2)), timeout=10))
                    return method, grpc.StatusCode.OK, ""
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.CANCELLED and kind == (False, True):
                        return method, grpc.StatusCode.OK, ""  # our own hang-up after the first status
                    return method, e.code(), e.details() or ""

            with futures.ThreadPoolExecutor(4) as pool:
                for method, code, details in pool.map(send, Cases(SEED)):
                    codes[code.name] += 1
                    if code in FORBIDDEN or "\n" in details:
                        forbidden.append((method, code.name, details[:200]))
            elapsed = time.monotonic() - start
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            _, x, _ = mnist_batch
            request = pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(
                shape=list(x.shape), dtype=pb.DTYPE_FLOAT32, data=x.tobytes()))
            response = pb.PredictResponse.FromString(calls[PREDICTOR + "Predict"](request.SerializeToString(),
                                                                                   timeout=10))
    finally:
        assert server.stop() == 0
    print(f"fuzz: {sum(codes.values())} cases in {elapsed:.1f} s: {dict(codes.most_common())}")
    assert sum(codes.values()) == CASES and not forbidden, forbidden[:10]
    assert "Traceback" not in server.output and "Exception" not in server.output, server.output[-3000:]
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    logits = np.array([p.logits for p in response.predictions], np.float32)
    expected = ort.InferenceSession(str(fuzz_models / "lenet5-mnist.onnx"),
                                    providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]
    assert logits.shape == (64, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)

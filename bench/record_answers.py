"""Record the server's answers to the README walk-through's requests, to compare two commits.

    python bench/record_answers.py --out before.json       # on one commit
    python bench/record_answers.py --out after.json        # on another
    python bench/record_answers.py --compare before.json after.json

Starts a real server (gRPC and HTTP on 127.0.0.1, ports 0) over lenet5-mnist and
lenet5-fashion-mnist exported as the tests export them, sends a fixed list of requests
over both front ends (Predict, ListModels, GetModel, the KServe calls, HTTP infer in JSON
and binary, images raw and multipart, feature maps, the repository index, a few refusals)
and writes each answer's bytes (gRPC: the serialized response or status and message, and
the initial metadata; HTTP: status, content type and body) as hex. Protobuf maps come out in
any order from run to run, so gRPC answers are re-serialized deterministically and JSON
bodies with sorted keys. `--compare` names every answer that differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "serve" / "examples"
TIMEOUT = 10.0


def _response_class(method: str):
    from google.protobuf import descriptor_pool, message_factory
    from tritonclient.grpc import service_pb2  # noqa: F401  (registers the KServe messages)

    from serve.gen import predictor_pb2  # noqa: F401

    service, name = method.strip("/").split("/")
    descriptor = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name).output_type
    return message_factory.GetMessageClass(descriptor)


def _grpc_calls(port: int) -> dict[str, dict]:
    import grpc
    from tritonclient.grpc import service_pb2 as kpb

    from serve.gen import predictor_pb2 as pb

    digit = (EXAMPLES / "digit-7-0.png").read_bytes()
    boot = (EXAMPLES / "fashion-mnist-ankle-boot-0.png").read_bytes()
    x = np.linspace(-1, 2, 2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28)
    calls = {
        "predict-images": ("/zoo.v1.Predictor/Predict", pb.PredictRequest(
            model="lenet5-mnist", images=pb.EncodedImages(images=[digit, boot]), top_k=3)),
        "predict-tensor": ("/zoo.v1.Predictor/Predict", pb.PredictRequest(
            model="lenet5-fashion-mnist", tensor=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=x.shape, data=x.tobytes()),
            top_k=2)),
        "predict-unknown": ("/zoo.v1.Predictor/Predict", pb.PredictRequest(model="nope", top_k=1)),
        "predict-no-input": ("/zoo.v1.Predictor/Predict", pb.PredictRequest(model="lenet5-mnist")),
        "list-models": ("/zoo.v1.Predictor/ListModels", pb.ListModelsRequest()),
        "get-model": ("/zoo.v1.Predictor/GetModel", pb.GetModelRequest(model="lenet5-mnist")),
        "server-live": ("/inference.GRPCInferenceService/ServerLive", kpb.ServerLiveRequest()),
        "server-ready": ("/inference.GRPCInferenceService/ServerReady", kpb.ServerReadyRequest()),
        "model-ready": ("/inference.GRPCInferenceService/ModelReady", kpb.ModelReadyRequest(name="lenet5-mnist")),
        "server-metadata": ("/inference.GRPCInferenceService/ServerMetadata", kpb.ServerMetadataRequest()),
        "model-metadata": ("/inference.GRPCInferenceService/ModelMetadata",
                           kpb.ModelMetadataRequest(name="lenet5-mnist")),
        "model-config": ("/inference.GRPCInferenceService/ModelConfig", kpb.ModelConfigRequest(name="lenet5-mnist")),
        "repository-index": ("/inference.GRPCInferenceService/RepositoryIndex", kpb.RepositoryIndexRequest()),
    }
    infer = kpb.ModelInferRequest(model_name="lenet5-mnist", id="walk-1")
    infer.inputs.add(name="input", datatype="FP32", shape=x.shape)
    infer.raw_input_contents.append(x.tobytes())
    infer.outputs.add(name="logits")
    calls["model-infer-raw"] = ("/inference.GRPCInferenceService/ModelInfer", infer)
    typed = kpb.ModelInferRequest(model_name="lenet5-mnist")
    tensor = typed.inputs.add(name="input", datatype="FP32", shape=x[:1].shape)
    tensor.contents.fp32_contents.extend(x[:1].ravel().tolist())
    out = typed.outputs.add(name="logits")
    out.parameters["classification"].int64_param = 3
    calls["model-infer-typed-classification"] = ("/inference.GRPCInferenceService/ModelInfer", typed)
    bad = kpb.ModelInferRequest(model_name="lenet5-mnist")
    bad.inputs.add(name="input", datatype="FP32", shape=[1, 1, 27, 28])
    bad.raw_input_contents.append(b"\0" * 4 * 27 * 28)
    calls["model-infer-bad-shape"] = ("/inference.GRPCInferenceService/ModelInfer", bad)
    answers = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for name, (method, request) in calls.items():
            response_class = _response_class(method)
            call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=response_class.FromString)
            try:
                response, info = call.with_call(request, timeout=TIMEOUT)
                # deterministic: protobuf maps (metadata, parameters) serialize in any order
                answers[name] = {"code": "OK", "body": response.SerializeToString(deterministic=True).hex(),
                                 "metadata": sorted(f"{k}={v}" for k, v in info.initial_metadata())}
            except grpc.RpcError as e:
                answers[name] = {"code": e.code().name, "message": e.details()}
    return answers


def _http(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            status, content_type, data = response.status, response.headers.get("Content-Type"), response.read()
            extra = {k: response.headers[k] for k in ("Inference-Header-Content-Length", "x-execution-provider")
                     if k in response.headers}
    except urllib.error.HTTPError as e:
        status, content_type, data, extra = e.code, e.headers.get("Content-Type"), e.read(), {}
    if content_type and content_type.startswith("application/json"):
        # canonical: a protobuf map (ModelConfig's parameters) comes out in any order, run to run
        data = json.dumps(json.loads(data), sort_keys=True).encode()
    return {"status": status, "content_type": content_type, "body": data.hex(), "headers": extra}


def _http_calls(port: int) -> dict[str, dict]:
    digit = (EXAMPLES / "digit-7-0.png").read_bytes()
    x = np.linspace(-1, 2, 2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28)
    json_body = json.dumps({"id": "walk-2", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                                         "data": x[:1].ravel().tolist()}]}).encode()
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    boundary = "walkthrough"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
                 "Content-Type: image/png\r\n\r\n").encode() + digit + f"\r\n--{boundary}--\r\n".encode()
    m = "/v2/models/lenet5-mnist"
    return {
        "http-server-metadata": _http(port, "GET", "/v2"),
        "http-live": _http(port, "GET", "/v2/health/live"),
        "http-ready": _http(port, "GET", "/v2/health/ready"),
        "http-model-metadata": _http(port, "GET", m),
        "http-model-ready": _http(port, "GET", f"{m}/ready"),
        "http-config": _http(port, "GET", f"{m}/config"),
        "http-infer-json": _http(port, "POST", f"{m}/infer", json_body),
        "http-infer-binary": _http(port, "POST", f"{m}/infer", header + x.tobytes(),
                                   {"Inference-Header-Content-Length": str(len(header))}),
        "http-infer-classification": _http(port, "POST", f"{m}/infer", json.dumps({
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": x[:1].ravel().tolist()}],
            "outputs": [{"name": "logits", "parameters": {"classification": 2}}]}).encode()),
        "http-predict-raw": _http(port, "POST", f"{m}/predict?top_k=3", digit),
        "http-predict-multipart": _http(port, "POST", f"{m}/predict", multipart,
                                        {"Content-Type": f"multipart/form-data; boundary={boundary}"}),
        "http-features": _http(port, "POST", f"{m}/features", digit),
        "http-repository-index": _http(port, "POST", "/v2/repository/index", b"{}"),
        "http-unknown-model": _http(port, "GET", "/v2/models/nope"),
        "http-bad-body": _http(port, "POST", f"{m}/infer", b"{not json"),
        "http-no-route": _http(port, "GET", "/v3"),
    }


def record() -> dict[str, dict]:
    sys.path.insert(0, str(ROOT))
    from export.exporter import write_unchecked
    from serve.config import GrpcConfig, HttpConfig, ModelsConfig, ServeConfig
    from serve.server import create_server

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("lenet5-mnist", "lenet5-fashion-mnist"):
            write_unchecked(name, Path(tmp))
        server = create_server(ServeConfig(ModelsConfig(Path(tmp)), grpc=GrpcConfig(port=0), http=HttpConfig(port=0)))
        server.start()
        try:
            answers = {**_grpc_calls(server.port("grpc")), **_http_calls(server.port("http"))}
        finally:
            server.stop(grace=1.0)
    return answers


def compare(before: dict, after: dict) -> list[str]:
    return [name for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the answers to this JSON file")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two recordings")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.compare)
        differ = compare(before, after)
        print(f"{len(before)} answers before, {len(after)} after; {len(differ)} differ"
              + (f": {', '.join(differ)}" if differ else ""))
        return 1 if differ else 0
    answers = record()
    text = json.dumps(answers, indent=1, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{len(answers)} answers written to {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

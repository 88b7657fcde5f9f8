"""Seeded fuzzing of the HTTP routes (the HTTP part of the hostile-input issue): malformed
JSON, bad and lying headers, truncated binary tensors, wrong types, huge bodies. Never a
500, always a JSON error, and the server answers correctly afterwards."""

from __future__ import annotations

import http.client
import json
import logging
import random

import numpy as np
import pytest

from serve.core import Limits
from serve.config import HttpConfig
from serve.server import create_server
from tests.serving import TIMEOUT, serve_config

SEED = 20261129
REQUESTS = 300
MAX_BODY = 256 * 1024
INFER = "/v2/models/lenet5-mnist/infer"
PATHS = [INFER, "/v2/models/lenet5-mnist/predict", "/v2/models/lenet5-mnist/features", "/v2/repository/index",
         "/v2/models/lenet5-mnist/versions/1/infer", "/v2/models/x%00y/infer", "/v2/models/" + "a" * 300 + "/infer",
         "/v2/models/lenet5-mnist/explain?layer=conv1&channel=0&y=0&x=0", "/v2/models/lenet5-mnist/architecture"]


@pytest.fixture(scope="module")
def port(models_dir):
    server = create_server(serve_config(models_dir, limits=Limits(max_request_images=16),
                                        http=HttpConfig(port=0, max_body=MAX_BODY)))
    server.start()
    yield server.port("http")
    server.stop(grace=1.0)


def valid_request(rng: random.Random, n: int = 2) -> tuple[bytes, bytes]:
    header = json.dumps({"inputs": [{"name": "input", "shape": [n, 1, 28, 28], "datatype": "FP32",
                                     "parameters": {"binary_data_size": n * 3136}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": rng.random() < 0.5}}]}).encode()
    return header, np.zeros((n, 1, 28, 28), np.float32).tobytes()


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        i = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.4:
            data[i] = rng.randrange(256)
        elif choice < 0.7:
            del data[i:i + rng.randint(1, 40)]
        else:
            data[i:i] = rng.choice([b"{", b"}", b"[", b"\"", b"null", b"-1", b"1e999", b"\xff\xfe", b"[[[[", b"NaN"])
    return bytes(data)


def case(rng: random.Random) -> tuple[str, str, bytes, dict[str, str]]:
    header, binary = valid_request(rng, rng.choice([1, 2, 3]))
    kind = rng.choice(["json", "header_length", "truncated", "types", "huge", "path", "content_type"])
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    body = header + binary
    if kind == "json":
        body = mutate(rng, header)
        headers = {"Content-Type": "application/json"}
    elif kind == "header_length":
        headers["Inference-Header-Content-Length"] = rng.choice(
            ["-1", "0", "abc", "1e3", str(len(body) + rng.randint(1, 10**9)), str(rng.randint(0, len(body))), " 5", ""])
    elif kind == "truncated":
        body = body[:rng.randint(0, len(body) - 1)]
    elif kind == "types":
        body = json.dumps({"inputs": [{"name": rng.choice([1, None, "input", []]),
                                       "shape": rng.choice([[1, 1, 28, 28], ["1"], [-5], [2**63], None, [1] * 40]),
                                       "datatype": rng.choice(["FP32", "BYTES", 7, "UINT8", ""]),
                                       "data": rng.choice([[0.5] * 784, ["x"] * 784, [[1, 2], [3]], {}, [True] * 784])}],
                           "parameters": rng.choice([{}, {"timeout": -1}, {"binary_data_output": "yes"}, []])}).encode()
        headers = {"Content-Type": "application/json"}
    elif kind == "huge":
        body = b"{" + b" " * (MAX_BODY + rng.randint(1, 4096)) + b"}"
    elif kind == "path":
        return rng.choice(["POST", "GET", "PUT", "DELETE"]), rng.choice(PATHS), mutate(rng, body), headers
    else:
        headers["Content-Type"] = rng.choice(["multipart/form-data", "multipart/form-data; boundary=x",
                                              "image/png", "text/plain; charset=klingon", "\x7f"])
        return "POST", rng.choice(PATHS[:3]), body, headers
    return "POST", INFER, body, headers


def send(port: int, method: str, path: str, body: bytes, headers: dict) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers.get("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_fuzzed_requests_never_get_500(port, caplog):
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    for _ in range(REQUESTS):
        method, path, body, headers = case(rng)
        try:
            status, content_type, answer = send(port, method, path, body, headers)
        except (ConnectionError, http.client.HTTPException, ValueError):  # refused by http.client or closed by aiohttp
            continue
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500 or status == 503, (status, method, path, headers, body[:200], answer[:300])
        if status >= 400 and content_type.startswith("application/json"):
            assert "error" in json.loads(answer), answer[:300]
        elif status >= 400:  # refused by aiohttp's HTTP parser itself, before any route: a malformed header
            assert status == 400 and "Content-Type" in headers, (status, headers, answer[:300])
    assert statuses.get(400, 0) > REQUESTS // 4 and statuses.get(413, 0) > 0, statuses
    # aiohttp's parser refusals are one rate-limited warning line, never an ERROR traceback
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records[:3]
    assert any("HTTP: refused a malformed request" in r.getMessage() for r in caplog.records)
    header, binary = valid_request(rng)
    status, _, answer = send(port, "POST", INFER, header + binary,
                          {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, answer

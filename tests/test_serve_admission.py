"""Admission control: with --max-queue-size N, a request that would make more than N wait
for a model is refused at once (RESOURCE_EXHAUSTED, HTTP 429), never left to time out;
what is accepted is answered, and correctly."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from serve.core import Limits
from tests.http_serving import running_both
from tests.serving import TIMEOUT, slow_down

CLIENTS = 32
LONE_REQUESTS = 10


def test_a_full_queue_refuses_at_once_and_what_is_accepted_is_right(models_dir, mnist_batch):
    _, x, _ = mnist_batch  # 64 images: a full batch, each request runs on its own
    want = ort.InferenceSession(str(models_dir / "lenet5-mnist.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    outcomes: list[tuple[str, float, np.ndarray | None]] = []
    lock = threading.Lock()
    with running_both(models_dir, limits=Limits(max_batch=64, max_queue_size=2)) as (server, port, http_port):
        slow_down(server, "lenet5-mnist", 0.3)  # runs take long enough that the clients meet
        together = threading.Barrier(CLIENTS, timeout=TIMEOUT)

        def send():
            client = triton.InferenceServerClient(f"127.0.0.1:{port}")
            tensor = triton.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            together.wait()
            start = time.perf_counter()
            try:
                y = client.infer("lenet5-mnist", [tensor], client_timeout=30).as_numpy("logits")
                outcome = ("OK", time.perf_counter() - start, y)
            except InferenceServerException as e:
                outcome = (e.status(), time.perf_counter() - start, None)
            client.close()
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=send) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # One more over HTTP while the queue is full again: 429, the same message.
        blockers = [threading.Thread(target=send) for _ in range(8)]
        together = threading.Barrier(8, timeout=TIMEOUT)
        for t in blockers:
            t.start()
        time.sleep(0.1)
        # A lone client while the queue is full: the refusal's own time, without 32 client
        # threads contending for this process's GIL with the server.
        lone = triton.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        lone_refusals = []
        for _ in range(LONE_REQUESTS):
            start = time.perf_counter()
            try:
                lone.infer("lenet5-mnist", [tensor], client_timeout=30)
            except InferenceServerException as e:
                if e.status() == "StatusCode.RESOURCE_EXHAUSTED":
                    lone_refusals.append(time.perf_counter() - start)
        lone.close()
        header = (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [64, 1, 28, 28], '
                  b'"parameters": {"binary_data_size": %d}}]}' % x.nbytes)
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/lenet5-mnist/infer",
                                         data=header + x.tobytes(), method="POST",
                                         headers={"Inference-Header-Content-Length": str(len(header))})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                http_status, http_body = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            http_status, http_body = e.code, e.read()
        for t in blockers:
            t.join(60)
        refused_metric = server.plane.metrics.refused.labels("lenet5-mnist", "queue_full")._value.get()
    first = outcomes[:CLIENTS]
    codes = [code for code, _, _ in first]
    refusals = sorted(seconds for code, seconds, _ in first if code == "StatusCode.RESOURCE_EXHAUSTED")
    print(f"{CLIENTS} clients: {codes.count('OK')} answered, {len(refusals)} refused; refusals took "
          f"{1000 * refusals[len(refusals) // 2]:.1f} ms (median), {1000 * refusals[-1]:.1f} ms (slowest)")
    lone_refusals.sort()
    print(f"a lone client meanwhile: {len(lone_refusals)} of {LONE_REQUESTS} refused, in "
          f"{1000 * lone_refusals[len(lone_refusals) // 2]:.1f} ms (median), {1000 * lone_refusals[-1]:.1f} ms (slowest)")
    assert set(codes) == {"OK", "StatusCode.RESOURCE_EXHAUSTED"}, codes  # never a DEADLINE_EXCEEDED
    assert lone_refusals and lone_refusals[-1] < 1.0
    assert refusals[-1] < 1.0  # at once: a run takes 0.3 s, a wait would take several
    for code, _, y in outcomes:
        if code == "OK":
            np.testing.assert_allclose(y, want, rtol=0, atol=1e-5)
    assert http_status in (200, 429) and (http_status == 200 or b"the queue is full" in http_body)
    assert refused_metric >= len(refusals)

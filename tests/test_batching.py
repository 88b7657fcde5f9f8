"""Dynamic batching: coalescing, splitting, cancellation, and throughput-neutral answers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from serve.batching import Batcher
from serve.core import Limits
from serve.gen import predictor_pb2 as pb
from tests.serving import TIMEOUT, predictor_stub, running_server, slow_down


class Recorder:
    """A fake model that sums each image and remembers the batch sizes it was given."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        with self.lock:
            self.sizes.append(len(x))
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True)


def images(n: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + n, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 28, 28), np.float32))


def test_concurrent_requests_are_coalesced_and_split_back():
    model = Recorder(delay=0.01)
    batcher = Batcher(model, max_batch=32, delay_s=0.05)
    results = {}

    def call(i):
        results[i] = batcher.infer(images(1, i), lambda: True, timeout=TIMEOUT)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    batcher.close()
    assert sorted(results) == list(range(16))
    for i, out in results.items():
        assert out.shape == (1, 1) and out[0, 0] == i * 784  # each caller gets its own answer
    assert max(model.sizes) > 1 and sum(model.sizes) == 16


def test_request_larger_than_the_limit_is_split():
    model = Recorder()
    batcher = Batcher(model, max_batch=10, delay_s=0.0)
    out = batcher.infer(images(25), lambda: True, timeout=TIMEOUT)
    batcher.close()
    assert out.shape == (25, 1)
    np.testing.assert_array_equal(out[:, 0], np.arange(25) * 784)
    assert max(model.sizes) <= 10 and sum(model.sizes) == 25


def test_cancelled_request_is_dropped_without_disturbing_others():
    model = Recorder(delay=0.05)
    batcher = Batcher(model, max_batch=64, delay_s=0.05)
    active = {"gone": True}
    gone = batcher.submit(images(4, 100), lambda: not active["gone"])
    kept = batcher.submit(images(3, 0), lambda: True)
    assert kept[0].result(TIMEOUT)[:, 0].tolist() == [0, 784, 1568]
    assert gone[0].cancelled()
    batcher.close()
    assert sum(model.sizes) == 3


def test_closed_batcher_refuses_new_work():
    from serve.errors import RequestError

    batcher = Batcher(Recorder(), max_batch=4, delay_s=0.0)
    batcher.close()
    with pytest.raises(RequestError, match="shutting down"):
        batcher.submit(images(1), lambda: True)


def test_model_failure_reaches_every_caller():
    def broken(x):
        raise RuntimeError("onnxruntime exploded")

    batcher = Batcher(broken, max_batch=8, delay_s=0.0)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.infer(images(2), lambda: True, timeout=TIMEOUT)
    batcher.close()


@pytest.mark.parametrize("max_batch", [0, 64])
def test_server_answers_are_the_same_with_batching_on_and_off(models_dir, mnist_batch, max_batch):
    _, x, _ = mnist_batch
    limits = Limits(max_batch=max_batch, batch_delay_s=0.01)
    answers = {}
    with running_server(models_dir, limits=limits) as (server, port):
        slow_down(server, "lenet5-mnist", 0.05)  # long enough for the other requests to arrive

        def call(i):
            with predictor_stub(port) as stub:
                r = stub.Predict(pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(
                    shape=[1, 1, 28, 28], dtype=pb.DTYPE_FLOAT32, data=x[i : i + 1].tobytes())), timeout=TIMEOUT)
                answers[i] = np.array(r.predictions[0].logits, np.float32)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        sizes = server.core.stats["lenet5-mnist"].batches
    import onnxruntime as ort

    sess = ort.InferenceSession(str(models_dir / "lenet5-mnist.onnx"), providers=["CPUExecutionProvider"])
    expected = sess.run(["logits"], {"input": x[:16]})[0]
    np.testing.assert_allclose(np.stack([answers[i] for i in range(16)]), expected, rtol=0, atol=1e-5)
    if max_batch:
        assert max(sizes) > 1  # 16 concurrent single-image requests shared runs
    else:
        assert set(sizes) == {1}

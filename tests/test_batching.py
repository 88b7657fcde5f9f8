"""Dynamic batching: coalescing, splitting, cancellation, and throughput-neutral answers."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import numpy as np
import pytest

from serve.core.batching import Batcher
from serve.core import Limits
from serve.gen import predictor_pb2 as pb
from tests.serving import TIMEOUT, predictor_stub, running_server, slow_down, wait_until


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


def start(fn, *args) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread


def in_thread(batcher: Batcher, outcome: dict, name: str, x: np.ndarray) -> threading.Thread:
    """batcher.infer(x) in a thread of its own, its answer kept in outcome[name]."""
    return start(lambda: outcome.setdefault(name, batcher.infer(x, lambda: True, timeout=TIMEOUT)))


def occupy(batcher: Batcher, outcome: dict) -> threading.Thread:
    """A lone request that leads (its model is slow), so that the next ones queue."""
    busy = in_thread(batcher, outcome, "busy", images(1))
    wait_until(lambda: batcher._leaders)
    return busy


def occupy_then_queue(batcher: Batcher, outcome: dict, name: str, x: np.ndarray) -> list[threading.Thread]:
    """A busy leader, then a request `name` queued behind it."""
    threads = [occupy(batcher, outcome), in_thread(batcher, outcome, name, x)]
    wait_until(lambda: len(batcher._queue) == 1)
    return threads


def test_lone_request_runs_in_its_own_thread():
    threads = []

    def model(x):
        threads.append(threading.current_thread())
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True)

    batcher = Batcher(model, max_batch=8, delay_s=0.05)
    out = batcher.infer(images(2, 5), lambda: True, timeout=TIMEOUT)
    batcher.close()
    assert out[:, 0].tolist() == [5 * 784, 6 * 784]
    assert threads == [threading.current_thread()]  # no hand-off to another thread


def test_cancelled_request_is_dropped_without_disturbing_others():
    model = Recorder(delay=0.1)
    batcher = Batcher(model, max_batch=64, delay_s=0.0)
    outcome = {}

    def call(name, x, is_active):
        try:
            outcome[name] = batcher.infer(x, is_active, timeout=TIMEOUT)
        except concurrent.futures.CancelledError:
            outcome[name] = "cancelled"

    busy = occupy(batcher, outcome)
    gone = start(call, "gone", images(4, 100), lambda: False)  # its client left while it queued
    kept = start(call, "kept", images(3, 0), lambda: True)
    for t in (busy, gone, kept):
        t.join(TIMEOUT)
    batcher.close()
    assert outcome["gone"] == "cancelled"
    assert outcome["kept"][:, 0].tolist() == [0, 784, 1568]
    assert model.sizes == [1, 3]  # the cancelled images never ran


def test_deadline_while_queued_frees_the_work_and_the_queue_moves_on():
    model = Recorder(delay=0.2)
    batcher = Batcher(model, max_batch=64, delay_s=0.0)
    outcome = {}
    busy = occupy(batcher, outcome)
    with pytest.raises(concurrent.futures.TimeoutError):
        batcher.infer(images(5), lambda: True, timeout=0.02)
    busy.join(TIMEOUT)
    assert batcher.infer(images(2, 3), lambda: True, timeout=TIMEOUT)[:, 0].tolist() == [3 * 784, 4 * 784]
    batcher.close()
    assert model.sizes == [1, 2]  # the timed-out images never ran


def test_full_request_skips_the_queue_and_stops_when_its_client_leaves():
    release = threading.Event()
    sizes = []

    def model(x):
        sizes.append(len(x))
        if len(x) == 1:
            release.wait(TIMEOUT)  # the busy batch holds on until the full request is done
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True)

    batcher = Batcher(model, max_batch=4, delay_s=0.0)
    outcome = {}
    busy = in_thread(batcher, outcome, "busy", images(1))
    wait_until(lambda: sizes == [1])
    full = batcher.infer(images(8, 2), lambda: True, timeout=TIMEOUT)  # ran beside the busy batch
    assert full[:, 0].tolist() == [i * 784 for i in range(2, 10)] and "busy" not in outcome
    checks = iter([True])  # its client leaves after the first chunk
    with pytest.raises(concurrent.futures.CancelledError):
        batcher.infer(images(12), lambda: next(checks, False), timeout=TIMEOUT)
    release.set()
    busy.join(TIMEOUT)
    batcher.close()
    assert sizes == [1, 4, 4, 4]  # the cancelled request's last two chunks never ran


def test_close_finishes_queued_work_then_refuses_new_work():
    from serve.core.errors import RequestError

    model = Recorder(delay=0.05)
    batcher = Batcher(model, max_batch=4, delay_s=0.0)
    outcome = {}
    threads = occupy_then_queue(batcher, outcome, "second", images(3, 5))
    batcher.close()
    for t in threads:
        t.join(TIMEOUT)
    assert outcome["second"][:, 0].tolist() == [5 * 784, 6 * 784, 7 * 784] and model.sizes == [1, 3]
    with pytest.raises(RequestError, match="shutting down"):
        batcher.infer(images(1), lambda: True, timeout=TIMEOUT)


def test_model_failure_reaches_every_caller():
    def broken(x):
        raise RuntimeError("onnxruntime exploded")

    batcher = Batcher(broken, max_batch=8, delay_s=0.0)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.infer(images(2), lambda: True, timeout=TIMEOUT)
    with pytest.raises(RuntimeError, match="exploded"):  # and the batcher still takes requests
        batcher.infer(images(20), lambda: True, timeout=TIMEOUT)
    batcher.close()


def test_batch_waits_for_an_announced_request():
    model = Recorder(delay=0.05)
    batcher = Batcher(model, max_batch=64, delay_s=1.0)
    outcome = {}
    threads = occupy_then_queue(batcher, outcome, "a", images(1, 1))  # the leader is busy for 0.05 s
    with batcher.expecting() as announcement:  # a request still being decoded
        time.sleep(0.1)  # the next leader ("a") is now waiting for it
        outcome["b"] = batcher.infer(images(1, 2), lambda: True, timeout=TIMEOUT, announcement=announcement)
    for t in threads:
        t.join(TIMEOUT)
    batcher.close()
    assert model.sizes == [1, 2]  # the announced request joined the queued one


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
        sizes = server.plane.registry.models["lenet5-mnist"].stats.batches
    import onnxruntime as ort

    sess = ort.InferenceSession(str(models_dir / "lenet5-mnist.onnx"), providers=["CPUExecutionProvider"])
    expected = sess.run(["logits"], {"input": x[:16]})[0]
    np.testing.assert_allclose(np.stack([answers[i] for i in range(16)]), expected, rtol=0, atol=1e-5)
    if max_batch:
        assert max(sizes) > 1  # 16 concurrent single-image requests shared runs
    else:
        assert set(sizes) == {1}


def test_two_instances_run_two_batches_at_once():
    together = threading.Barrier(2, timeout=TIMEOUT)  # passes only with two runs in flight

    def model(x):
        together.wait()
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True)

    batcher = Batcher(model, max_batch=8, delay_s=0.0, instances=2)
    outcome = {}
    for t in [in_thread(batcher, outcome, i, images(1, i)) for i in range(2)]:
        t.join(TIMEOUT)
    batcher.close()
    assert {i: out[0, 0] for i, out in outcome.items()} == {0: 0, 1: 784}


@pytest.mark.parametrize("instances", [1, 2, 3])
def test_many_concurrent_requests_all_answered_and_leaders_released(instances):
    model = Recorder(delay=0.005)
    batcher = Batcher(model, max_batch=8, delay_s=0.001, instances=instances)
    outcome = {}
    threads = [in_thread(batcher, outcome, i, images(1 + i % 3, i)) for i in range(48)]
    for t in threads:
        t.join(TIMEOUT)
    assert len(outcome) == 48
    for i, out in outcome.items():
        assert out[:, 0].tolist() == [(i + j) * 784 for j in range(1 + i % 3)]
    assert max(model.sizes) <= 8 and sum(model.sizes) == sum(1 + i % 3 for i in range(48))
    assert batcher._leaders == 0 and not batcher._queue  # every lead was handed back
    batcher.close()

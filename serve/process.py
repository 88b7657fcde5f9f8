"""A server process's life around its server, the same for the single process
(`python -m serve --workers 1`) and for each worker of several (serve.worker): what stops
the start in one line, the memory settings, the shutdown signals, the log lines that say
what serves, and the drain at the end.
"""

from __future__ import annotations

import ctypes
import logging
import gc
import os
import signal

from .config import ServeConfig
from .core.device import DeviceError
from .core.registry import ModelLoadError

log = logging.getLogger("serve")

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
# What stops the start with one line and no traceback: a --models path that is no models
# directory (exit 2), a device, model, setting or port that will not do (exit 1).
START_UP_FAULTS = (FileNotFoundError, NotADirectoryError, DeviceError, ModelLoadError, ValueError, OSError)
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code_of(fault: Exception) -> int:
    return 2 if isinstance(fault, (FileNotFoundError, NotADirectoryError)) else 1


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def settle() -> None:
    """Once the models have loaded, before serving: freed request memory goes back to the
    system, and what is loaded so far, permanent, stays out of the garbage collector's
    passes."""
    keep_freed_memory_returnable()
    gc.freeze()


def keep_freed_memory_returnable() -> None:
    """glibc raises its mmap threshold each time a large block is freed; after that, decoded
    images come from per-thread heaps and stay resident once freed, so RSS would grow with
    the handler threads rather than with the decoding budget. A fixed threshold keeps every
    block of 1 MiB or more mmapped: freed, it goes back to the system. (Not glibc: nothing.)"""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


def catch_shutdown_signals() -> int:
    """Catch SIGTERM and SIGINT from now on; returns the file descriptor to read the first one from.

    The number comes through signal.set_wakeup_fd: CPython's C-level handler writes it to a
    pipe the moment the signal arrives, whatever the main thread is doing. A Python handler
    alone (setting a threading.Event the main thread waits on) loses a signal that lands
    after the main thread's last check for pending handlers but before it blocks in the
    lock underneath Event.wait(): the handler then never runs and the server ignores SIGTERM.
    On a loaded machine the main thread is often preempted in that gap."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # set_wakeup_fd requires it
    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, lambda signum, frame: None)  # the wakeup fd does the work
    signal.set_wakeup_fd(write_end)
    return read_end


def wait_for_shutdown_signal(read_end: int) -> str:
    """Block until catch_shutdown_signals() has caught a signal; its name."""
    return signal.Signals(os.read(read_end, 1)[0]).name


def drain(server, config: ServeConfig, reason: str) -> int:
    """Drain the server (why: `reason`, a signal's name) and return the exit code, 0. When
    threads are still running a request after --grace (or a front end's library hung),
    they cannot be joined: the process leaves without them, as Triton does after
    --exit-timeout-secs."""
    log.info("%s: draining: refusing new requests, giving those received %.1f s to finish", reason, config.grace)
    stopped = server.stop(config.grace)
    if not stopped.clean:
        log.warning("stopped after --grace %g s: %s cut short%s", config.grace,
                    plural(stopped.cut_short, "inference request"),
                    f", {' and '.join(stopped.left_behind)} shutdown left unfinished" if stopped.left_behind else "")
        logging.shutdown()
        os._exit(0)
    log.info("stopped")
    return 0


def log_models(server) -> None:
    for model in server.plane.registry.all_models():
        if model.ready:
            inputs = ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in model.signature.inputs)
            log.info("model %s version %s: inputs %s, %s, provider %s%s", model.name, model.version, inputs,
                     f"{model.num_classes} class{'' if model.num_classes == 1 else 'es'}" if model.num_classes
                     else "not an image classifier", model.provider, f", {model.warmup}" if model.warmup else "")
        else:
            log.error("model %s version %s NOT READY: %s", model.name, model.version, model.error)


def serving_line(config: ServeConfig, ready: int, models: int, addresses: dict[str, str],
                 metrics_port: int | None, more: str = "") -> str:
    """The line that says the server serves (bench/server_process.py reads its address):
    `addresses` maps a front end to scheme://host:port."""
    limits = config.models.limits
    control = {"none": "", "poll": f"; polling {config.models.models_dir} every {config.models.poll_secs:g} s",
               "explicit": "; models load and unload on request"}[config.models.control_mode]
    batching = f"up to {limits.max_batch} images / {limits.batch_delay_s * 1000:g} ms" if limits.max_batch else "off"
    return (f"serving {plural(ready, 'model')} on {' and '.join(addresses.values())}"
            f"{f', metrics on :{metrics_port}/metrics' if metrics_port else ''} (batching: {batching}{control}); "
            f"{models - ready} not ready{more}")


def log_serving(server, config: ServeConfig) -> None:
    models = server.plane.registry.all_models()
    addresses = {name: f"{f.scheme}://{config.host}:{f.port}" for name, f in server.front_ends.items()}
    log.info("%s", serving_line(config, sum(m.ready for m in models), len(models), addresses, server.metrics_port))
    if "http" in server.front_ends:
        log_http(config.host, server.port("http"))


def log_http(host: str, port: int) -> None:
    log.info("HTTP on http://%s:%d (KServe v2 REST under /v2, playground at /)", host, port)

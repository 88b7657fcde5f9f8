"""python -m serve [--models DIR] [--host 127.0.0.1] [--grpc-port 50051] [--http-port off] ...

Serve every ONNX model in the models directory (flat .onnx files, as `python -m export`
writes them, and the Triton model repository layout) over gRPC (our zoo.v1.Predictor API
and the KServe v2 protocol, with health and reflection) and/or HTTP (KServe v2 REST, images,
the playground), with Prometheus metrics. SIGTERM or Ctrl-C refuses new requests, lets
those already received finish (up to --grace), then exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, GrpcConfig, HttpConfig, ModelsConfig, ServeConfig
from .core.device import DEVICES, DeviceError
from .core.limits import MIB, Limits
from .core.registry import ModelLoadError, ModelRegistry
from .cpus import available_cpus
from .server import create_server

log = logging.getLogger("serve")
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
OFF = "off"
AUTO = "auto"


def port_or_off(text: str) -> int | None:
    """A port number, or None for 'off'."""
    if text.lower() == OFF:
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number or 'off'") from None


def workers_count(text: str) -> int:
    """A number of worker processes, or 'auto': the CPUs this process may use."""
    if text.lower() == AUTO:
        return available_cpus()
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes or 'auto'") from None


def build_parser() -> argparse.ArgumentParser:
    d, grpc_d, http_d, limits = ServeConfig(), GrpcConfig(), HttpConfig(), Limits()
    p = argparse.ArgumentParser(prog="python -m serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--models", default=str(d.models.models_dir),
                   help=f"models directory: .onnx files and/or a Triton model repository (default: {d.models.models_dir})")
    p.add_argument("--model-name", metavar="NAME",
                   help="serve the one model in --models under this name: a single .onnx file (any name, as "
                        "KServe's storage initializer leaves model.onnx in /mnt/models), a model folder "
                        "(1/model.onnx), or a repository of one model; with several, NAME must be one of them")
    p.add_argument("--host", default=d.host, help=f"address every front end binds (default: {d.host}, loopback only)")
    p.add_argument("--grpc-port", "--port", dest="grpc_port", type=port_or_off, default=grpc_d.port,
                   metavar="PORT|off", help=f"gRPC port, 0 for any free one, off for none (default: {grpc_d.port})")
    p.add_argument("--http-port", type=port_or_off, metavar="PORT|off",
                   help="HTTP port (KServe v2 REST under /v2, images at /v2/models/MODEL/predict, the playground "
                        "at /), 0 for any free one, off for none (default: off)")
    p.add_argument("--device", choices=DEVICES, default=d.models.device,
                   help="cpu; cuda (refuses to start without a working CUDA provider); auto (CUDA if it "
                        f"really loads, else CPU, said in the log) (default: {d.models.device})")
    p.add_argument("--max-batch", type=int, default=limits.max_batch,
                   help=f"images per coalesced onnxruntime run; 0 turns dynamic batching off "
                        f"(default: {limits.max_batch})")
    p.add_argument("--batch-delay-ms", type=float, default=limits.batch_delay_s * 1000,
                   help=f"how long a batch waits to fill (default: {limits.batch_delay_s * 1000:g})")
    p.add_argument("--instances", type=int, default=limits.instances,
                   help="batches of one model that run at once, each from the same queue, like "
                        f"Triton's instance_group count (default: {limits.instances})")
    p.add_argument("--max-request-images", type=int, default=limits.max_request_images,
                   help=f"images one request may carry (default: {limits.max_request_images})")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages from this origin (e.g. http://localhost:3000, or *) call the HTTP API; "
                        "repeatable (default: none, CORS off)")
    p.add_argument("--max-decode-mib", type=float, default=limits.max_decode_bytes / MIB,
                   help="MiB one request's images may take decoded, read from their headers before decoding "
                        "(width x height x bytes per pixel, plus the converted copy); more is RESOURCE_EXHAUSTED "
                        f"(default: {limits.max_decode_bytes / MIB:g})")
    p.add_argument("--decode-budget-mib", type=float, default=limits.decode_budget_bytes / MIB,
                   help="MiB all requests together may be decoding at once; a request waits for room within its "
                        f"deadline. With the defaults the server stays under 1 GB RSS "
                        f"(default: {limits.decode_budget_bytes / MIB:g})")
    p.add_argument("--metrics-port", type=port_or_off, metavar="PORT|off",
                   help="serve Prometheus /metrics on this port (default: off)")
    p.add_argument("--tls-cert", help="PEM certificate: serve gRPC over TLS with --tls-key (default: plaintext)")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert (default: none)")
    p.add_argument("--strict", action="store_true",
                   help="refuse to start if any model fails to load (default: serve the healthy ones)")
    p.add_argument("--strict-readiness", choices=("true", "false"), default="true",
                   help="true: ready (health SERVING, ServerReady) only when every model is ready, as Triton; "
                        "false: when at least one is. Never ready with none, nor while draining (default: true)")
    p.add_argument("--grace", type=float, default=d.grace,
                   help=f"seconds in-flight requests get to finish on shutdown (default: {d.grace:g})")
    p.add_argument("--workers", type=workers_count, default=AUTO, metavar="N|auto",
                   help="server processes: N worker processes, each with the models loaded, on the same ports "
                        "(SO_REUSEPORT: the kernel spreads connections), one server to the outside (one readiness, "
                        "one --metrics-port summing them all, a worker that dies replaced); 1: this process "
                        f"alone; auto: the CPUs this process may use, by its affinity and cgroup quota "
                        f"(default: auto, {available_cpus()} here)")
    p.add_argument("--threads", type=int, default=grpc_d.threads,
                   help=f"handler threads of each front end in each process: the cap on requests each serves at "
                        f"once (this was --workers before worker processes) (default: {grpc_d.threads})")
    p.add_argument("--ort-threads", type=int, default=d.models.ort_threads,
                   help="onnxruntime intra-op threads per model; 0: onnxruntime's choice with one worker, the "
                        "CPUs divided by the workers with several, so that they never exceed the CPUs "
                        f"(default: {d.models.ort_threads})")
    return p


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    limits = Limits(args.max_batch, args.batch_delay_ms / 1000, args.max_request_images, args.instances,
                    int(args.max_decode_mib * MIB), int(args.decode_budget_mib * MIB))
    models = ModelsConfig(Path(args.models), args.model_name, args.device, limits, args.strict,
                          args.strict_readiness == "true", args.ort_threads)
    grpc = None if args.grpc_port is None else GrpcConfig(
        args.grpc_port, args.threads, args.tls_cert and Path(args.tls_cert), args.tls_key and Path(args.tls_key))
    http = None if args.http_port is None else HttpConfig(args.http_port, args.threads, tuple(args.cors_origin))
    return ServeConfig(models, args.host, grpc, http, args.metrics_port, args.grace, args.workers)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def keep_freed_memory_returnable() -> None:
    """glibc raises its mmap threshold each time a large block is freed; after that, decoded
    images come from per-thread heaps and stay resident once freed, so RSS would grow with
    the handler threads rather than with the decoding budget. A fixed threshold keeps every
    block of 1 MiB or more mmapped: freed, it goes back to the system. (Not glibc: nothing.)"""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


# What stops the start with one line and no traceback: a --models path that is no models
# directory (exit 2), a device, model, setting or port that will not do (exit 1).
START_UP_FAULTS = (FileNotFoundError, NotADirectoryError, DeviceError, ModelLoadError, ValueError, OSError)


def exit_code_of(fault: Exception) -> int:
    return 2 if isinstance(fault, (FileNotFoundError, NotADirectoryError)) else 1


SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = config_from_args(build_parser().parse_args(argv))
    try:
        config.check()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if config.workers > 1:
        from .supervisor import supervise  # loads no model and no grpc: the workers do

        try:  # a --models path that serves nothing is said at once, before N interpreters start
            ModelRegistry.sources(config.models.models_dir, config.models.model_name)
        except START_UP_FAULTS as e:
            print(f"error: {e}", file=sys.stderr)
            return exit_code_of(e)
        return supervise(config, catch_shutdown_signals())
    try:
        server = create_server(config)
    except START_UP_FAULTS as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code_of(e)
    log_models(server)
    keep_freed_memory_returnable()
    gc.freeze()  # the models and modules loaded so far are permanent: keep them out of collections
    shutdown = catch_shutdown_signals()
    server.start()
    log_serving(server, config)
    log.info("%s: draining: refusing new requests, giving those received %.1f s to finish",
             wait_for_shutdown_signal(shutdown), config.grace)
    server.stop(config.grace)
    log.info("stopped")
    return 0


def log_models(server) -> None:
    for model in server.plane.registry.all_models():
        if model.ready:
            inputs = ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in model.signature.inputs)
            log.info("model %s version %s: inputs %s, %s, provider %s", model.name, model.version, inputs,
                     f"{model.num_classes} class{'' if model.num_classes == 1 else 'es'}" if model.num_classes
                     else "not an image classifier", model.provider)
        else:
            log.error("model %s version %s NOT READY: %s", model.name, model.version, model.error)


def log_serving(server, config: ServeConfig) -> None:
    models = server.plane.registry.all_models()
    ready = sum(m.ready for m in models)
    addresses = " and ".join(f"{f.scheme}://{config.host}:{f.port}" for f in server.front_ends.values())
    limits = config.models.limits
    log.info("serving %s on %s%s (batching: %s); %d not ready", plural(ready, "model"), addresses,
             f", metrics on :{server.metrics_port}/metrics" if server.metrics_port else "",
             f"up to {limits.max_batch} images / {limits.batch_delay_s * 1000:g} ms" if limits.max_batch else "off",
             len(models) - ready)
    if "http" in server.front_ends:
        log.info("HTTP on http://%s:%d (KServe v2 REST under /v2, playground at /)", config.host,
                 server.port("http"))


if __name__ == "__main__":
    sys.exit(main())

"""python -m serve [--models DIR] [--host 127.0.0.1] [--grpc-port 50051] [--http-port off] ...

Serve every ONNX model in the models directory (flat .onnx files, as `python -m export`
writes them, and the Triton model repository layout) over gRPC (our zoo.v1.Predictor API
and the KServe v2 protocol, with health and reflection) and/or HTTP (KServe v2 REST, images,
the playground), with Prometheus metrics. SIGTERM or Ctrl-C refuses new requests, lets
those already received finish (up to --grace), then exits 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, GrpcConfig, HttpConfig, ModelsConfig, ServeConfig, TraceConfig
from .core.control import MODES, startup_sources
from .core.device import DEVICES
from .core.tracing import require_tracing
from .core.limits import MIB, Limits
from .cpus import available_cpus
from .process import (START_UP_FAULTS, catch_shutdown_signals, drain, exit_code_of, log_models, log_serving,
                      settle, wait_for_shutdown_signal)
from .server import control_settings, create_server

log = logging.getLogger("serve")
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


def workers_count(text: str) -> int | str:
    """A number of worker processes, or 'auto' (resolved by resolved_workers)."""
    if text.lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes or 'auto'") from None


def build_parser() -> argparse.ArgumentParser:
    d, grpc_d, limits = ServeConfig(), GrpcConfig(), Limits()
    p = argparse.ArgumentParser(prog="python -m serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--models", default=str(d.models.models_dir),
                   help=f"models directory: .onnx files and/or a Triton model repository (default: {d.models.models_dir})")
    p.add_argument("--model-name", metavar="NAME",
                   help="serve the one model in --models under this name: a single .onnx file (any name, as "
                        "KServe's storage initializer leaves model.onnx in /mnt/models), a model folder "
                        "(1/model.onnx), or a repository of one model; with several, NAME must be one of them")
    p.add_argument("--model-control-mode", choices=MODES, default=d.models.control_mode,
                   help="Triton's: none (the directory's models, fixed); poll (the directory is re-read every "
                        "--repository-poll-secs: new and changed versions load, warm up and take over without a "
                        "restart, removed ones unload); explicit (--load-model at start, then load/unload requests) "
                        f"(default: {d.models.control_mode})")
    p.add_argument("--repository-poll-secs", type=float, default=d.models.poll_secs,
                   help=f"poll: seconds between reads of --models (default: {d.models.poll_secs:g})")
    p.add_argument("--load-model", action="append", default=[], metavar="NAME",
                   help="explicit: a model to load at start; repeatable (default: none)")
    p.add_argument("--no-warmup", action="store_true",
                   help="ready without warm-up runs (default: a version is ready once it has run on zeros at "
                        "batch 1 and at the largest batch, or config.pbtxt's model_warmup samples)")
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
    p.add_argument("--max-queue-size", type=int, default=limits.max_queue_size,
                   help="requests of one model that may wait for a run; one more is refused at once with "
                        "RESOURCE_EXHAUSTED (HTTP 429), as Triton's max_queue_size; config.pbtxt's "
                        "dynamic_batching.default_queue_policy.max_queue_size says it per model "
                        f"(default: {limits.max_queue_size}, no limit)")
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
    p.add_argument("--trace-otlp-endpoint", metavar="URL",
                   help="trace every inference request with OpenTelemetry (spans for decode, queue, inference and "
                        "encode under a server span that continues the client's W3C traceparent) and send them over "
                        "OTLP/HTTP to this collector, e.g. http://localhost:4318 (/v1/traces is added when the URL has "
                        "no path); needs the trace extra. Triton: --trace-config mode=opentelemetry and "
                        "opentelemetry,url=URL (default: off)")
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
                        f"alone; auto: the CPUs this process may use, by its affinity and cgroup quota, and 1 "
                        f"with --model-control-mode explicit (default: auto, {available_cpus()} here)")
    p.add_argument("--threads", type=int, default=grpc_d.threads,
                   help=f"handler threads of each front end in each process: the cap on requests each serves at "
                        f"once (this was --workers before worker processes) (default: {grpc_d.threads})")
    p.add_argument("--ort-threads", type=int, default=d.models.ort_threads,
                   help="onnxruntime intra-op threads per model; 0: onnxruntime's choice with one worker, the "
                        "CPUs divided by the workers with several, so that they never exceed the CPUs "
                        f"(default: {d.models.ort_threads})")
    return p


def resolved_workers(workers: int | str, control_mode: str) -> int:
    """'auto' is the CPUs this process may use, and one process in explicit model control,
    whose load and unload requests would reach one worker of several."""
    if workers != AUTO:
        return workers
    return 1 if control_mode == "explicit" else available_cpus()


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    limits = Limits(args.max_batch, args.batch_delay_ms / 1000, args.max_request_images, args.instances,
                    args.max_queue_size, int(args.max_decode_mib * MIB), int(args.decode_budget_mib * MIB))
    models = ModelsConfig(Path(args.models), args.model_name, args.device, limits, args.strict,
                          args.strict_readiness == "true", args.ort_threads, args.model_control_mode,
                          args.repository_poll_secs, tuple(args.load_model), not args.no_warmup)
    grpc = None if args.grpc_port is None else GrpcConfig(
        args.grpc_port, args.threads, args.tls_cert and Path(args.tls_cert), args.tls_key and Path(args.tls_key))
    http = None if args.http_port is None else HttpConfig(args.http_port, args.threads, tuple(args.cors_origin))
    trace = None if args.trace_otlp_endpoint is None else TraceConfig(args.trace_otlp_endpoint)
    return ServeConfig(models, args.host, grpc, http, args.metrics_port, args.grace, trace,
                       workers=resolved_workers(args.workers, args.model_control_mode))


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

        try:  # what would stop every worker is said at once, before N interpreters start
            startup_sources(control_settings(config.models))
            if config.trace is not None:
                require_tracing()
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
    settle()
    shutdown = catch_shutdown_signals()
    server.start()
    log_serving(server, config)
    return drain(server, config, wait_for_shutdown_signal(shutdown))


if __name__ == "__main__":
    sys.exit(main())

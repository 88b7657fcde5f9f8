"""The server's one typed configuration, built from the command line (serve.__main__) or by
hand, and checked once, before any model loads.

    config = ServeConfig(ModelsConfig(Path("models")), grpc=GrpcConfig(port=0), http=HttpConfig(port=0))
    config.check()                       # ConfigError naming the setting, the value and what is expected
    server = create_server(config)       # serve.server

Importable without grpc or aiohttp, so the command line checks its arguments before either
loads. A front end set to None is off; at least one must be on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .core.control import MODES
from .core.device import DEVICES
from .core.limits import Limits
from .cpus import available_cpus, default_ort_threads

MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # 1,024 float32 images are 3.2 MB (13 MB as JSON); a body over this is refused
HANDLER_THREADS = 32  # per front end: the cap on requests it serves at once


class ConfigError(ValueError):
    """A setting that makes no sense; the message names it."""


@dataclass(frozen=True)
class ModelsConfig:
    """What is served and how it runs: the core's settings."""

    models_dir: Path = Path("models")
    # Serve the one model in models_dir under this name (KServe's storage initializer leaves
    # a single model.onnx in /mnt/models; its runtime passes the InferenceService's name).
    model_name: str | None = None
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    strict: bool = False  # refuse to start when any model fails to load
    # Ready only when every model is (Triton's strict readiness); False: when at least one is.
    strict_readiness: bool = True
    ort_threads: int = 0  # onnxruntime intra-op threads per model (0 = its default)
    # Triton's model control: none (the directory's models, fixed), poll (it is re-read every
    # poll_secs), explicit (load_models at start, then load and unload requests).
    control_mode: str = "none"
    poll_secs: float = 15.0
    load_models: tuple[str, ...] = ()
    warmup: bool = True  # a version is ready only after its warm-up runs


@dataclass(frozen=True)
class GrpcConfig:
    port: int = 50051
    threads: int = HANDLER_THREADS
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = MAX_MESSAGE_BYTES
    reuse_port: bool = False  # SO_REUSEPORT: every worker process listens on the port, the kernel spreads connections


@dataclass(frozen=True)
class HttpConfig:
    port: int = 8000  # Triton's HTTP port
    threads: int = HANDLER_THREADS  # for decoding and inference
    cors_origins: tuple[str, ...] = ()  # none: browsers on other origins are refused
    max_body: int = MAX_MESSAGE_BYTES
    reuse_port: bool = False  # SO_REUSEPORT, as GrpcConfig's


@dataclass(frozen=True)
class WorkerSlot:
    """Which of several worker processes this server is (serve.supervisor starts them)."""

    number: int  # 1 to --workers; a replacement takes the number of the worker it replaces
    # The server's readiness when this worker was spawned: a replacement joins a ready
    # server ready (once its own models are), instead of answering 503 until told.
    fleet_ready: bool = False


@dataclass(frozen=True)
class TraceConfig:
    """OpenTelemetry spans for each inference request (serve.core.tracing), sent over
    OTLP/HTTP to `otlp_endpoint` (a collector's base URL, http://localhost:4318, or the full
    traces URL), or to `exporter`, an SDK SpanExporter of one's own (the in-memory one in tests)."""

    otlp_endpoint: str = ""
    exporter: object | None = None


@dataclass(frozen=True)
class ServeConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    host: str = "127.0.0.1"  # loopback unless told otherwise; every front end binds it
    grpc: GrpcConfig | None = field(default_factory=GrpcConfig)
    http: HttpConfig | None = None
    metrics_port: int | None = None  # Prometheus /metrics; None: off
    grace: float = 10.0  # seconds in-flight requests get to finish on shutdown
    trace: TraceConfig | None = None  # None: no tracing, and the opentelemetry packages never load
    # Server processes: 1 serves in this process; more start serve.supervisor, which runs
    # that many copies of this config, each a worker (`worker` set) on the same ports.
    workers: int = 1
    worker: WorkerSlot | None = None

    def check(self) -> None:
        """ConfigError naming the first setting that makes no sense."""
        models = self.models
        if models.device not in DEVICES:
            raise ConfigError(f"--device {models.device}: expected one of {', '.join(DEVICES)}")
        try:
            models.limits.check()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if models.ort_threads < 0:
            raise ConfigError(f"--ort-threads {models.ort_threads}: expected 0 (onnxruntime's choice) or more")
        if models.control_mode not in MODES:
            raise ConfigError(f"--model-control-mode {models.control_mode}: expected one of {', '.join(MODES)}")
        if not models.poll_secs > 0:
            raise ConfigError(f"--repository-poll-secs {models.poll_secs:g}: expected more than 0 seconds")
        if models.load_models and models.control_mode != "explicit":
            raise ConfigError(f"--load-model {models.load_models[0]}: needs --model-control-mode explicit "
                              f"(with {models.control_mode}, the directory says what is served)")
        if self.grpc is None and self.http is None:
            raise ConfigError("--grpc-port off and --http-port off: at least one front end must serve")
        _check_port("--metrics-port", self.metrics_port)
        if self.grace < 0:
            raise ConfigError(f"--grace {self.grace:g}: expected 0 or more seconds")
        if self.trace is not None and self.trace.exporter is None:
            _check_otlp_endpoint(self.trace.otlp_endpoint)
        self._check_workers()
        if self.grpc is not None:
            _check_port("--grpc-port", self.grpc.port)
            _check_threads("--threads", self.grpc.threads)
            if (self.grpc.tls_cert is None) != (self.grpc.tls_key is None):
                raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if self.http is not None:
            _check_port("--http-port", self.http.port)
            _check_threads("--threads", self.http.threads)


    def _check_workers(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: expected auto or at least 1 process")
        if self.workers > 1 and self.models.control_mode == "explicit":
            raise ConfigError(f"--model-control-mode explicit with --workers {self.workers}: a load or unload request "
                              "would reach one worker process only; expected --workers 1, or poll (every worker "
                              "follows the directory)")
        threads = self.models.ort_threads
        if self.workers > 1 and threads > 1:
            cpus = available_cpus()
            if self.workers * threads > max(cpus, self.workers):
                raise ConfigError(
                    f"--workers {self.workers} x --ort-threads {threads} = {self.workers * threads} onnxruntime "
                    f"threads on {cpus} CPUs: expected at most {cpus} (leave --ort-threads out: each worker "
                    f"then gets {default_ort_threads(self.workers, cpus)})")


def _check_port(option: str, port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"{option} {port}: expected a port from 0 (any free one) to 65535")


def _check_otlp_endpoint(url: str) -> None:
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number, a malformed IPv6 address
        valid = False
    if not valid:
        raise ConfigError(f"--trace-otlp-endpoint {url!r}: expected an http:// or https:// URL of an OTLP/HTTP "
                          "collector, e.g. http://localhost:4318 (or its full traces URL, .../v1/traces)")


def _check_threads(option: str, threads: int) -> None:
    if threads < 1:
        raise ConfigError(f"{option} {threads}: expected at least 1 handler thread")

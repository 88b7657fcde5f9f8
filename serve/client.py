"""python -m serve.client predict MODEL IMAGE [IMAGE ...] [--server HOST:PORT] [--wait S] [--top-k 3]
                               [--keep-polarity] [--keep-framing] [--tls | --root-cert FILE]
python -m serve.client list [--server HOST:PORT] [--wait S] [--tls | --root-cert FILE]

MODEL is a served model name (lenet5-mnist) or a zoo model name, completed with
--dataset (lenet5 -> lenet5-mnist). A server started with --tls-cert takes --tls (its
certificate signed by a CA the system trusts) or --root-cert FILE (the CA, or the
self-signed certificate itself).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# grpc's core logs a failed TLS handshake at INFO on stderr, beside our one-line error;
# a user who wants its log sets GRPC_VERBOSITY themselves. (Read when grpc is imported.)
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402

from zoo.cli import version_text  # noqa: E402
from zoo.preprocess import describe  # noqa: E402

from .gen import predictor_pb2 as pb  # noqa: E402
from .gen import predictor_pb2_grpc as pb_grpc  # noqa: E402

DEFAULT_SERVER = "127.0.0.1:50051"
TIMEOUT_S = 30.0
LABEL_WIDTH = 12


def served_models(stub: pb_grpc.PredictorStub) -> dict[str, pb.ModelInfo]:
    return {m.name: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT_S).models}


def resolve_model(served: dict[str, pb.ModelInfo], name: str, dataset: str) -> pb.ModelInfo:
    if name in served:
        return served[name]
    if f"{name}-{dataset}" in served:
        return served[f"{name}-{dataset}"]
    raise ValueError(f"model {name!r} is not served (nor {name}-{dataset}); served: {', '.join(sorted(served))}")


def cmd_predict(stub: pb_grpc.PredictorStub, args: argparse.Namespace) -> None:
    model = resolve_model(served_models(stub), args.model, args.dataset)
    images = [Path(p).read_bytes() for p in args.images]
    response = stub.Predict(pb.PredictRequest(model=model.name, images=pb.EncodedImages(images=images),
                                              top_k=args.top_k, keep_polarity=args.keep_polarity,
                                              keep_framing=args.keep_framing), timeout=TIMEOUT_S)
    print(f"{response.model} v{response.version} on {response.execution_provider}")
    for path, prediction in zip(args.images, response.predictions):
        print(path)
        done = describe(prediction.inverted, prediction.framed, model.dataset or "mnist")
        if done:
            print(f"  ({'; '.join(done)})")
        index_width = max([1] + [len(str(score.index)) for score in prediction.top_k])
        label_width = max([LABEL_WIDTH] + [len(score.label) for score in prediction.top_k])
        print(f"  {'#':>{index_width}}  {'label':<{label_width}} {'probability':>11}")
        for score in prediction.top_k:
            print(f"  {score.index:>{index_width}}  {score.label:<{label_width}} {score.probability:11.4f}")


def cmd_list(stub: pb_grpc.PredictorStub, args: argparse.Namespace) -> None:
    for m in served_models(stub).values():
        state = f"ready on {m.execution_provider}" if m.ready else f"NOT READY: {m.error}"
        # test_accuracy is 0 in the message when the model's metadata has none: say nothing then
        accuracy = f"test accuracy {100 * m.test_accuracy:.2f}%" if m.ready and "test_accuracy" in m.metadata else ""
        print(f"{m.name:<28} v{m.version}  {state}  {accuracy}".rstrip())


def add_connection_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The connection options: on the main parser with their defaults, and again after the
    subcommand with SUPPRESS (so a value given before the subcommand stays)."""
    def default(value):
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--server", default=default(DEFAULT_SERVER), help=f"server address (default: {DEFAULT_SERVER})")
    p.add_argument("--wait", type=float, default=default(0.0),
                   help="seconds to wait for the server to come up (default: 0, no waiting)")
    p.add_argument("--tls", action="store_true", default=default(False),
                   help="connect over TLS, trusting the system's CAs (default: plaintext)")
    p.add_argument("--root-cert", default=default(None),
                   help="connect over TLS, trusting this PEM certificate: the server's CA, or its self-signed "
                        "certificate (default: none)")


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    if not (args.tls or args.root_cert):
        return grpc.insecure_channel(args.server)
    root = Path(args.root_cert).read_bytes() if args.root_cert else None
    return grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=root))


def connection_hint(e: grpc.RpcError, args: argparse.Namespace) -> str:
    """What to do about a server that could not be reached, from grpc's reason."""
    details = e.details() or ""
    tls = bool(args.tls or args.root_cert)
    if "refused" in details.lower():
        return (f"no server is listening at {args.server}; start one with `python -m serve` (or name another "
                "with --server HOST:PORT; --wait S waits for one that is starting)")
    if not tls and "socket closed" in details.lower():
        return (f"the server at {args.server} closed the connection: if it was started with --tls-cert, add "
                "--tls, or --root-cert FILE for a certificate the system does not trust")
    if tls and "certificate_verify_failed" in details.lower():
        return (f"the certificate of the server at {args.server} is not trusted: give it (or its CA) with "
                "--root-cert FILE")
    if tls and ("wrong_version_number" in details.lower() or "handshake" in details.lower()):
        return f"the server at {args.server} does not speak TLS: leave out --tls and --root-cert"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_text("python -m serve.client"))
    add_connection_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify image files (PNG or JPEG)")
    p.add_argument("model", help="served model name, or a zoo model name completed with --dataset")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--dataset", default="mnist", help="dataset completing a zoo model name (default: mnist)")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--keep-polarity", action="store_true",
                   help="never invert an image on a light background (default: the server inverts it, and says so)")
    p.add_argument("--keep-framing", action="store_true",
                   help="never crop and centre a digit by mass (default: the server frames images not yet "
                        "at the model's size)")
    add_connection_options(p, defaults=False)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("list", help="list the served models")
    add_connection_options(p, defaults=False)
    p.set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    try:
        with open_channel(args) as channel:
            if args.wait:
                try:
                    grpc.channel_ready_future(channel).result(timeout=args.wait)
                except grpc.FutureTimeoutError:
                    raise OSError(f"no server answered at {args.server} within {args.wait:g} s; start one with "
                                  "`python -m serve`") from None
            args.func(pb_grpc.PredictorStub(channel), args)
    except grpc.RpcError as e:
        hint = connection_hint(e, args) if e.code() == grpc.StatusCode.UNAVAILABLE else ""
        print(f"error: {hint}" if hint else f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

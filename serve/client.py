"""python -m serve.client predict MODEL IMAGE [IMAGE ...] [--server HOST:PORT] [--wait S] [--top-k 3]
                               [--keep-polarity] [--keep-framing]
python -m serve.client list [--server HOST:PORT] [--wait S]

MODEL is a served model name (lenet5-mnist) or a zoo model name, completed with
--dataset (lenet5 -> lenet5-mnist).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

from .gen import predictor_pb2 as pb
from .gen import predictor_pb2_grpc as pb_grpc

DEFAULT_SERVER = "127.0.0.1:50051"
TIMEOUT_S = 30.0


def resolve_model(stub: pb_grpc.PredictorStub, name: str, dataset: str) -> str:
    served = {m.name for m in stub.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT_S).models}
    if name in served:
        return name
    if f"{name}-{dataset}" in served:
        return f"{name}-{dataset}"
    raise ValueError(f"model {name!r} is not served (nor {name}-{dataset}); served: {', '.join(sorted(served))}")


def cmd_predict(stub: pb_grpc.PredictorStub, args: argparse.Namespace) -> None:
    model = resolve_model(stub, args.model, args.dataset)
    images = [Path(p).read_bytes() for p in args.images]
    response = stub.Predict(pb.PredictRequest(model=model, images=pb.EncodedImages(images=images),
                                              top_k=args.top_k, keep_polarity=args.keep_polarity,
                                              keep_framing=args.keep_framing), timeout=TIMEOUT_S)
    print(f"{response.model} v{response.version} on {response.execution_provider}")
    for path, prediction in zip(args.images, response.predictions):
        print(path)
        done = [text for flag, text in ((prediction.inverted, "inverted: its background is light, MNIST's is dark"),
                                        (prediction.framed, "cropped and centred by mass in 20 x 20, as MNIST"))
                if flag]
        if done:
            print(f"  ({'; '.join(done)})")
        for score in prediction.top_k:
            print(f"  {score.index}  {score.label:<12} {score.probability:8.4f}")


def cmd_list(stub: pb_grpc.PredictorStub, args: argparse.Namespace) -> None:
    for m in stub.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT_S).models:
        state = f"ready on {m.execution_provider}" if m.ready else f"NOT READY: {m.error}"
        accuracy = f"test accuracy {100 * m.test_accuracy:.2f}%" if m.ready else ""
        print(f"{m.name:<28} v{m.version}  {state}  {accuracy}".rstrip())


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """--server and --wait also after the subcommand (SUPPRESS: a value given before it stays)."""
    p.add_argument("--server", default=argparse.SUPPRESS, help=f"server address (default: {DEFAULT_SERVER})")
    p.add_argument("--wait", type=float, default=argparse.SUPPRESS,
                   help="seconds to wait for the server to come up (default: 0, no waiting)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"server address (default: {DEFAULT_SERVER})")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds to wait for the server to come up (default: 0, no waiting)")
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
    add_connection_options(p)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("list", help="list the served models")
    add_connection_options(p)
    p.set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    try:
        with grpc.insecure_channel(args.server) as channel:
            if args.wait:
                try:
                    grpc.channel_ready_future(channel).result(timeout=args.wait)
                except grpc.FutureTimeoutError:
                    raise OSError(f"no server answered at {args.server} within {args.wait:g} s") from None
            args.func(pb_grpc.PredictorStub(channel), args)
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

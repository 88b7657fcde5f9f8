"""Every call a front end serves, declared once: which of them are inference calls.

An inference call runs a model. It is admitted as it arrives: refused (UNAVAILABLE) once
draining has begun, otherwise counted in `zoo_requests_admitted_total` and run to the end
within the grace period. Every other call (health, metadata, statistics, the page) keeps
answering while the server drains.

Each front end maps each of its methods or routes to one of these (serve.grpc: the
servicer methods' `handler` decorator and the standard services; serve.http: every route),
and tests/test_serve_calls.py checks that nothing registered goes undeclared.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    name: str
    inference: bool = False  # runs a model: admitted on arrival, refused while draining


CALLS: dict[str, Call] = {c.name: c for c in (
    Call("server_live"),
    Call("server_ready"),
    Call("model_ready"),
    Call("server_metadata"),
    Call("model_metadata"),
    Call("model_config"),
    Call("model_statistics"),
    Call("repository_index"),
    Call("repository_load"),  # Triton's model repository extension (explicit model control)
    Call("repository_unload"),
    Call("list_models"),
    Call("model_info"),
    Call("infer", inference=True),
    Call("predict", inference=True),
    Call("features", inference=True),
    Call("explain", inference=True),  # one value of a feature map, and how it was computed
    Call("architecture"),  # the layers at a glance: a run on zeros, no client data
    Call("health"),  # grpc.health.v1
    Call("reflection"),  # gRPC server reflection
    Call("page"),  # the playground's page and static files
)}


def call(name: str) -> Call:
    """The declared call `name`; KeyError naming the valid ones (a front end's typo)."""
    try:
        return CALLS[name]
    except KeyError:
        raise KeyError(f"no call {name!r} is declared in serve/core/calls.py; declared: "
                       f"{', '.join(CALLS)}") from None

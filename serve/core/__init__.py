"""The protocol-neutral serving core. Nothing here imports grpc or sees a request context.

A front end (serve.grpc; serve.http), per request:

    plane.admit(CALLS["infer"])                  # UNAVAILABLE once draining began (inference calls)
    response = plane.infer(InferRequest(...))    # or predict, features, model_metadata, ...

converting its protocol's request into a record of serve.core.records and the answer back,
and turning a RequestError (its `code` is a Code) into its own status, once, at its edge.
`plane.readiness` gives the one readiness rule (server_ready, model_ready) for every
health signal; `plane.metrics` counts what the front end observes.
"""

from .calls import CALLS, Call
from .dataplane import DataPlane
from .errors import Code, RequestError
from .limits import DecodeBudget, Limits
from .ranking import softmax
from .readiness import Readiness

__all__ = ["CALLS", "Call", "Code", "DataPlane", "DecodeBudget", "Limits", "Readiness", "RequestError", "softmax"]

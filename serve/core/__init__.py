"""The protocol-neutral serving core: front ends (serve.grpc, serve.http) decode with
`decode`, infer with `InferenceCore.infer`, ask `Readiness`, and turn `RequestError` into
their own status. Nothing here imports grpc or sees a request context."""

from .errors import Code, RequestError
from .inference import InferenceCore, ModelStats, softmax
from .limits import DecodeBudget, Limits
from .readiness import Readiness

__all__ = ["Code", "DecodeBudget", "InferenceCore", "Limits", "ModelStats", "Readiness", "RequestError", "softmax"]

"""The protocol-neutral serving core. Nothing here imports grpc or sees a request context.

A front end (serve.grpc; serve.http) does, per request:

    core.admit()                                  # UNAVAILABLE once draining began
    model = core.registry.get(name, version)      # NOT_FOUND / UNAVAILABLE
    with core.expecting(model) as announcement:   # lets a gathering batch wait for it
        # Predict-style: model.classifier(), then decode.decode_images(...) or decode_tensor(...)
        # KServe-style: decode.decode_inputs(model, [InputTensor(...)], ...) and resolve_outputs(...)
        outputs = core.infer_all(model, feed, time_left_s=..., is_active=..., announcement=announcement)
        # or logits = core.infer(model, x, ...) for an image classifier's batch

and turns a RequestError (its `code` is a Code) into its own status, once, at its edge.
`core.readiness` gives the one readiness rule (server_ready, model_ready) for every health
signal; `core.metrics` counts what the front end observes.
"""

from .errors import Code, RequestError
from .inference import InferenceCore, ModelStats, softmax
from .limits import DecodeBudget, Limits
from .readiness import Readiness

__all__ = ["Code", "DecodeBudget", "InferenceCore", "Limits", "ModelStats", "Readiness", "RequestError", "softmax"]

"""The protocol-neutral serving core. Nothing here imports grpc or sees a request context.

A front end (serve.grpc; serve.http), per request:

    ticket = plane.admit(CALLS["infer"])         # UNAVAILABLE once draining began (inference calls)
    response = plane.infer(InferRequest(...))    # or predict, features, model_metadata, ...
    ticket.end()                                 # once the call has ended, answered or not

converting its protocol's request into a record of serve.core.records and the answer back,
and turning a RequestError (its `code` is a Code) into its own status, once, at its edge.
`plane.readiness` gives the one readiness rule (server_ready, model_ready) for every
health signal; `plane.metrics` counts what the front end observes.

Importing `serve.core` loads nothing else: its modules load when first named, so a lean
tool (export's Triton config writer, for the batching defaults in serve.core.limits) can
use one without onnxruntime or Pillow.
"""

_EXPORTS = {"CALLS": "calls", "Call": "calls", "DataPlane": "dataplane", "Code": "errors",
            "RequestError": "errors", "DecodeBudget": "limits", "Limits": "limits", "softmax": "ranking",
            "Readiness": "readiness"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'serve.core' has no attribute {name!r}")

"""One readiness rule for every signal a front end gives (gRPC health, KServe ServerReady,
HTTP's /v2/health/ready): live while the process answers; ready by the rule below."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .registry import ModelRegistry, ServedModel


@dataclass
class Readiness:
    registry: ModelRegistry
    # True: ready only when every model it was asked to serve is (Triton's --strict-readiness,
    # its default); False: ready when at least one is. Never while draining; with none, only
    # when that is what it was asked for (ready_with_none).
    strict: bool = True
    draining: threading.Event = field(default_factory=threading.Event)
    # In one worker process of several (serve.supervisor): set while the supervisor says the
    # whole server is ready (every worker has loaded its models; see serve.supervisor).
    # None: this process is the whole server.
    fleet: threading.Event | None = None
    # With explicit model control, serving no model is a state the server is asked to be in.
    ready_with_none: bool = False

    def server_ready(self) -> bool:
        return self.own_ready() and (self.fleet is None or self.fleet.is_set())

    def own_ready(self) -> bool:
        """The rule on this process's own models, whatever the other workers' state."""
        if self.draining.is_set():
            return False
        states = [m.ready for m in self.registry.all_models()]
        if not states:
            return self.ready_with_none
        return all(states) if self.strict else any(states)

    def model_ready(self, model: ServedModel) -> bool:
        return model.ready and not self.draining.is_set()

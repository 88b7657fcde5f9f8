"""Reading deploy/'s manifests, checking them against their schemas offline, and turning a
manifest's container into the command line it would run, for the tests.

Schemas: the KServe kinds against the CRDs in ../shared/kserve (beside the repository, as
.ci/run finds ../shared/data), their openAPIV3Schema closed the way the API server's
pruning treats it (an unknown field is dropped there, reported here); the built-in kinds
with kubernetes-validate's strict schemas, which it ships inside the package."""

from __future__ import annotations

import json
import math
import re
import socket
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
KSERVE_CRDS = REPO.parent / "shared" / "kserve"
KUBERNETES_VERSION = "1.37"  # the newest schemas kubernetes-validate 1.37.0 carries
MANIFESTS = sorted(DEPLOY.glob("*/*.yaml"))
CRD_FILES = {
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
}
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = {"$ref": f"{K8S_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


class DuplicateKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; kubectl refuses them."""


def _mapping_without_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    for key in {k for k in keys if keys.count(k) > 1}:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", node.start_mark)
    return loader.construct_mapping(node, deep)


DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.load_all(Path(path).read_text(), Loader=DuplicateKeyLoader) if doc]


def load_one(path: Path) -> dict:
    (doc,) = load_all(path)
    return doc


def manifest(kind: str, directory: str) -> dict:
    """The one manifest of `kind` in deploy/<directory>/."""
    found = [doc for path in sorted((DEPLOY / directory).glob("*.yaml")) for doc in load_all(path)
             if doc["kind"] == kind]
    assert len(found) == 1, f"deploy/{directory}/ should hold one {kind}, holds {len(found)}"
    return found[0]


# --- schemas ---------------------------------------------------------------------------

def closed(schema):
    """A copy of a CRD's structural schema in which every object with listed properties
    refuses others, as the API server treats it (it prunes unknown fields silently),
    except where the schema keeps unknown fields (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) if k in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not") else v
           for k, v in schema.items() if k != "properties"}
    if "properties" in schema:
        out["properties"] = {name: closed(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@cache
def kubernetes_definitions() -> dict:
    from kubernetes_validate.utils import latest_version, schema_contents

    return schema_contents(f"kubernetes-json-schema/v{latest_version()}-local-strict/_definitions.json",
                           KUBERNETES_VERSION)


@cache
def crd_validator(kind: str):
    """A JSON Schema validator for the KServe kind, from its CRD's stored version, its
    metadata checked as Kubernetes' ObjectMeta (the CRD says only `type: object`)."""
    import jsonschema
    from referencing import Registry, Resource

    # KServe's own files, 2 MB for InferenceService: libyaml's loader reads it in a second.
    crd = yaml.load((KSERVE_CRDS / CRD_FILES[kind]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema = closed(version["schema"]["openAPIV3Schema"])
    group = crd["spec"]["group"]
    schema["properties"]["apiVersion"] = {"enum": [f"{group}/{version['name']}"]}
    schema["properties"]["kind"] = {"enum": [kind]}
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata", "spec"})
    registry = Registry().with_resource(K8S_DEFINITIONS, Resource.from_contents(kubernetes_definitions()))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(doc: dict) -> list[str]:
    """Every way `doc` breaks its kind's schema, each as 'path: message'; [] when valid."""
    if doc.get("kind") in CRD_FILES:
        errors = crd_validator(doc["kind"]).iter_errors(doc)
        return sorted(f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors)
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"]
    return []


# --- containers ------------------------------------------------------------------------

def pod_spec(doc: dict) -> dict:
    """The pod-level spec of a Deployment or a (Cluster)ServingRuntime."""
    return doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]


def only_container(doc: dict) -> dict:
    (container,) = pod_spec(doc)["containers"]
    return container


def cpu_quantity(text: str) -> float:
    """Kubernetes CPU quantities: '2', '1.5', '500m'."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", str(text))
    if not match:
        raise ValueError(f"CPU quantity {text!r}: expected a number of CPUs, or millicores like 500m")
    return float(match[1]) / (1000 if match[2] else 1)


def container_env(container: dict) -> dict[str, str]:
    """The container's env as kubelet sets it: literal values ($(VAR) of earlier ones
    expanded) and the downward API's resourceFieldRef, rounded up as kubelet rounds it."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        ref = var["valueFrom"]["resourceFieldRef"]
        assert ref.get("containerName", container["name"]) == container["name"], ref
        section, resource = ref["resource"].split(".")
        quantity = container["resources"][section][resource]
        env[var["name"]] = str(math.ceil(cpu_quantity(quantity) / cpu_quantity(ref.get("divisor", "1"))))
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env: $$ is a literal $, and an
    unknown variable is left as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Launch:
    """A container's command line made runnable here, and what was changed to make it so."""

    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int] = field(default_factory=dict)  # declared port -> the one used here
    named_ports: dict[str, int] = field(default_factory=dict)  # containerPort name -> declared port

    def port(self, ref) -> int:
        """The port used here for a probe's or Service's port: a number or a port name."""
        return self.ports[self.named_ports[ref] if isinstance(ref, str) else int(ref)]


def launch(doc: dict, *, name: str | None = None, mounts: dict[str, Path], python: str) -> Launch:
    """The exact command and args of `doc`'s container with only what must change here
    changed: KServe's {{.Name}} filled in with `name`; env and $(VAR) as kubelet expands
    them; the image's `python` is `python` (this interpreter); every argument naming a
    mount path names the folder standing in for it; and every port the container declares
    (its ports, its probes', the Prometheus annotation's), each on a free one: this
    machine's ports are shared, a fixed 8080 may be taken, so every declared port is mapped."""
    container = only_container(doc)
    env = container_env(container)
    argv = [expand(a, env) for a in [*container.get("command", []), *container.get("args", [])]]
    if name is not None:
        argv = [a.replace("{{.Name}}", name) for a in argv]
    leftover = [a for a in argv if "{{" in a or "$(" in a]
    assert not leftover, f"arguments left unexpanded: {leftover}"
    assert argv[0] == "python", f"the container runs {argv[0]!r}, expected python -m serve"
    argv[0] = python
    for path, folder in mounts.items():
        argv = [str(folder) + a[len(path):] if a == path or a.startswith(path + "/") else a for a in argv]
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    declared = {p["containerPort"] for p in container.get("ports", [])}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        if port is not None:
            declared.add(named[port] if isinstance(port, str) else int(port))
    metrics = metrics_port(doc)
    if metrics is not None:
        declared.add(metrics)
    ports = {p: free_port() for p in sorted(declared)}
    argv = [with_ports(a, ports) for a in argv]
    return Launch(argv, env, ports, named)


def metrics_port(doc: dict) -> int | None:
    """The port Prometheus is told to scrape: KServe's runtime annotation, or the pod's."""
    port = doc["spec"].get("annotations", {}).get("prometheus.kserve.io/port") or \
        doc["spec"].get("template", {}).get("metadata", {}).get("annotations", {}).get("prometheus.io/port")
    return None if port is None else int(port)


def with_ports(arg: str, ports: dict[int, int]) -> str:
    flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    return f"{flag}{eq}{ports[int(value)]}" if value.isdigit() and int(value) in ports else arg


def containerfile_instructions(path: Path = DEPLOY / "Containerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each line of a Containerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def final_stage(path: Path = DEPLOY / "Containerfile") -> dict[str, list[str]]:
    """The last stage's ENTRYPOINT, CMD (exec form, as JSON), EXPOSE and HEALTHCHECK."""
    instructions = containerfile_instructions(path)
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    stage = dict(instructions[last_from:])
    return {"ENTRYPOINT": json.loads(stage["ENTRYPOINT"]), "CMD": json.loads(stage["CMD"]),
            "EXPOSE": [int(p.split("/")[0]) for p in stage["EXPOSE"].split()],
            "HEALTHCHECK": stage["HEALTHCHECK"], "USER": stage["USER"]}

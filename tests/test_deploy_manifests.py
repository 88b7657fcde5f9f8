"""deploy/'s manifests against their schemas (offline), a misspelt field caught, and the
image, the KServe runtimes and the Kubernetes objects agreeing with one another."""

from __future__ import annotations

import copy
import socket

import pytest
import yaml

from tests.deploy_manifests import (
    CRD_FILES, DEPLOY, KSERVE_CRDS, MANIFESTS, DuplicateKeyLoader, final_stage, load_all, load_one, manifest,
    only_container, schema_errors,
)

needs_crds = pytest.mark.skipif(not KSERVE_CRDS.is_dir(), reason=f"KServe's CRDs are not at {KSERVE_CRDS} "
                                                                 "(CI has ../shared beside the clone)")


def flags(args: list[str]) -> dict[str, str]:
    """`--flag value` pairs of an argument list."""
    return {a: b for a, b in zip(args, args[1:]) if a.startswith("--") and not b.startswith("--")}


def kserve_kind(path) -> bool:
    return any(doc["kind"] in CRD_FILES for doc in load_all(path))


def test_every_manifest_is_found():
    assert {p.relative_to(DEPLOY).as_posix() for p in MANIFESTS} == {
        "kserve/servingruntime.yaml", "kserve/clusterservingruntime.yaml", "kserve/inferenceservice.yaml",
        "kubernetes/deployment.yaml", "kubernetes/service.yaml", "kubernetes/hpa.yaml"}


@pytest.mark.parametrize("path", [pytest.param(p, id=p.relative_to(DEPLOY).as_posix(),
                                               marks=[needs_crds] if kserve_kind(p) else []) for p in MANIFESTS])
def test_manifest_is_valid_against_its_schema(path):
    for doc in load_all(path):
        assert schema_errors(doc) == [], f"{path.name}: {doc['kind']}"


# (file, path to a field, its misspelling): at the top, in metadata, and deep in a
# container, for each kind. The API server would drop each silently.
MISSPELT = [
    ("kserve/servingruntime.yaml", ("spec", "containers", 0, "readinessProbe"), "readinesProbe"),
    ("kserve/servingruntime.yaml", ("spec", "supportedModelFormats", 0, "autoSelect"), "autoselect"),
    ("kserve/clusterservingruntime.yaml", ("metadata", "name"), "nmae"),
    ("kserve/clusterservingruntime.yaml", ("spec", "containers", 0, "livenessProbe", "httpGet", "path"), "paht"),
    ("kserve/inferenceservice.yaml", ("spec", "predictor", "model", "storageUri"), "storageURI"),
    ("kserve/inferenceservice.yaml", ("metadata", "annotations"), "annotation"),
    ("kubernetes/deployment.yaml", ("spec", "template", "spec", "containers", 0, "livenessProbe", "httpGet"),
     "httpget"),
    ("kubernetes/deployment.yaml", ("spec", "template", "spec", "securityContext", "runAsNonRoot"), "runAsNonroot"),
    ("kubernetes/service.yaml", ("spec", "ports", 1, "targetPort"), "targetport"),
    ("kubernetes/hpa.yaml", ("spec", "minReplicas"), "minReplica"),
]


def misspelt(doc: dict, path: tuple, wrong: str) -> dict:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[wrong] = parent.pop(path[-1])
    return doc


@pytest.mark.parametrize("file, path, wrong", [
    pytest.param(f, p, w, id=f"{f}:{w}", marks=[needs_crds] if f.startswith("kserve/") else []) for f, p, w in MISSPELT])
def test_a_misspelt_field_is_reported(file, path, wrong):
    doc = load_one(DEPLOY / file)
    assert schema_errors(doc) == []
    errors = schema_errors(misspelt(doc, path, wrong))
    assert errors and any(f"'{wrong}' was unexpected" in e for e in errors), errors


def test_a_duplicate_key_is_reported():
    """PyYAML alone keeps the second `image:`; kubectl refuses the file."""
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'image'"):
        yaml.load("containers:\n  - name: a\n    image: one\n    image: two\n", Loader=DuplicateKeyLoader)


def test_kubernetes_schemas_need_no_network(monkeypatch):
    """kubernetes-validate carries its schemas: with every connection refused, a valid
    Deployment passes and a misspelt one fails."""
    def no_network(*args, **kwargs):
        raise OSError("the test forbids network access")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    doc = load_one(DEPLOY / "kubernetes" / "deployment.yaml")
    assert schema_errors(doc) == []
    assert schema_errors(misspelt(doc, ("spec", "selector"), "selectr"))


def test_both_runtimes_are_one_runtime():
    namespaced, cluster = manifest("ServingRuntime", "kserve"), manifest("ClusterServingRuntime", "kserve")
    assert namespaced["metadata"]["name"] == cluster["metadata"]["name"]
    assert namespaced["spec"] == cluster["spec"]


def test_runtime_declares_what_kserve_needs():
    runtime = manifest("ServingRuntime", "kserve")
    spec, container = runtime["spec"], only_container(runtime)
    assert any(f["name"] == "onnx" for f in spec["supportedModelFormats"])
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    assert container["name"] == "kserve-container"  # the container KServe merges the predictor's settings into
    assert container["command"] == ["python", "-m", "serve"]
    args = flags(container["args"])
    assert args["--models"] == "/mnt/models"  # where the storage initializer puts storageUri
    assert args["--model-name"] == "{{.Name}}"  # KServe routes /v2/models/<InferenceService name>/...
    assert args["--host"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["ports"][0]["containerPort"] == int(args["--http-port"]) == 8080  # the predictor's port 80
    assert ports["h2c"] == int(args["--grpc-port"])
    probes = {name: container[name]["httpGet"] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/v2/health/live"
    assert {int(p["port"]) for p in probes.values()} == {int(args["--http-port"])}
    assert spec["annotations"]["prometheus.kserve.io/port"] == args["--metrics-port"]
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"


def test_inference_service_runs_on_the_runtime():
    model = manifest("InferenceService", "kserve")["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "onnx"
    assert model["runtime"] == manifest("ServingRuntime", "kserve")["metadata"]["name"]
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"].endswith(".onnx")  # a single file: /mnt/models holds that one model


def test_workers_follow_the_cpu_limit():
    """`--workers` is the container's own CPU limit, through the downward API."""
    for doc in (manifest("Deployment", "kubernetes"), manifest("ServingRuntime", "kserve")):
        container = only_container(doc)
        variable = flags(container["args"])["--workers"]
        (env,) = [e for e in container["env"] if f"$({e['name']})" == variable]
        ref = env["valueFrom"]["resourceFieldRef"]
        assert (ref["containerName"], ref["resource"], ref.get("divisor", "1")) == (container["name"], "limits.cpu", "1")
        assert container["resources"]["limits"]["cpu"] == container["resources"]["requests"]["cpu"]


def test_service_and_autoscaler_point_at_the_deployment():
    deployment, service, hpa = (manifest(k, "kubernetes") for k in ("Deployment", "Service", "HorizontalPodAutoscaler"))
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    container = only_container(deployment)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = flags(container["args"])
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(named)
    assert named["http"] == int(args["--http-port"]) and named["grpc"] == int(args["--grpc-port"])
    assert named["metrics"] == int(args["--metrics-port"]) == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in named
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    assert "cpu" in container["resources"]["requests"]  # CPU utilization is relative to the request


def test_image_and_manifests_agree():
    """The Containerfile's entry point is what every manifest runs, its default arguments
    are the Deployment's (but --workers, which the image leaves to the server's `auto`),
    its ports and user are theirs, and its HEALTHCHECK asks the readiness path."""
    image = final_stage()
    deployment = only_container(manifest("Deployment", "kubernetes"))
    args = deployment["args"]
    i = args.index("--workers")
    assert image["CMD"] == args[:i] + args[i + 2:]
    for doc in (manifest("Deployment", "kubernetes"), manifest("ServingRuntime", "kserve")):
        container = only_container(doc)
        assert container["command"] == image["ENTRYPOINT"]
        assert {p["containerPort"] for p in container.get("ports", [])} <= set(image["EXPOSE"])
        security = {**doc["spec"].get("template", {}).get("spec", {}).get("securityContext", {}),
                    **container.get("securityContext", {})}
        assert security["runAsNonRoot"] is True
        assert image["USER"] == f"{security['runAsUser']}:{security['runAsGroup']}"
    assert f"127.0.0.1:{flags(image['CMD'])['--http-port']}/v2/health/ready" in image["HEALTHCHECK"]

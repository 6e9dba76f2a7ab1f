"""The plugin against the real kubeyard binary, through the official Kubernetes client.

Run from the repository's root (harness/tests/it/pytest_plugin.rs does, in `cargo test`):

    KUBEYARD_BIN=target/debug/kubeyard PYTHONPATH=python/pytest-kubeyard/src \\
        python3 -m pytest -p pytest_kubeyard.plugin -p no:cacheprovider python/pytest-kubeyard/tests

(installed, the plugin loads by itself: drop the `-p pytest_kubeyard.plugin`). The first
tests use this session's cluster; the others run sessions of their own with pytester, to
see the options at work and the cluster stopped when such a session ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any, Dict
from urllib.parse import urlparse

import pytest
from kubernetes import client, config

import pytest_kubeyard
from pytest_kubeyard.plugin import KubeyardCluster, _binary

pytest_plugins = ["pytester"]

NAMESPACE = "default"


def test_every_node_is_ready(request: pytest.FixtureRequest, kubeyard_client: client.ApiClient) -> None:
    nodes = client.CoreV1Api(kubeyard_client).list_node().items
    assert len(nodes) == (request.config.getoption("kubeyard_nodes") or 3)
    for node in nodes:
        ready = [c.status for c in node.status.conditions if c.type == "Ready"]
        assert ready == ["True"], node.metadata.name


def test_the_kubeconfig_is_the_owners_and_loads(kubeyard_cluster: KubeyardCluster, kubeyard_kubeconfig: Path) -> None:
    assert kubeyard_kubeconfig == kubeyard_cluster.kubeconfig
    # It holds the cluster's token: only its owner reads it.
    assert stat.S_IMODE(kubeyard_kubeconfig.stat().st_mode) == 0o600
    # What a test that wants a client of its own does.
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeyard_kubeconfig), client_configuration=configuration)
    assert configuration.host.startswith("https://127.0.0.1:"), configuration.host
    with client.ApiClient(configuration) as own:
        names = [n.metadata.name for n in client.CoreV1Api(own).list_node().items]
    shared = client.CoreV1Api(kubeyard_cluster.api_client).list_node().items
    assert sorted(names) == sorted(n.metadata.name for n in shared)
    assert kubeyard_cluster.process.poll() is None, "up serves until the session ends"


def test_a_configmap_and_a_deployment_are_created_and_roll_out(kubeyard_client: client.ApiClient) -> None:
    core = client.CoreV1Api(kubeyard_client)
    apps = client.AppsV1Api(kubeyard_client)
    name = "pytest-kubeyard"
    core.create_namespaced_config_map(
        NAMESPACE, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"greeting": "hello"})
    )
    assert core.read_namespaced_config_map(name, NAMESPACE).data == {"greeting": "hello"}

    labels = {"app": name}
    container = client.V1Container(
        name="web",
        image="nginx:1.27",
        resources=client.V1ResourceRequirements(requests={"cpu": "100m", "memory": "64Mi"}),
    )
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container])
            ),
        ),
    )
    apps.create_namespaced_deployment(NAMESPACE, deployment)
    # The controllers make the pods, the scheduler binds them, the simulated nodes run them.
    # A new Deployment has no status until the controller manager writes one.
    deadline = time.monotonic() + 60
    while True:
        status = apps.read_namespaced_deployment_status(name, NAMESPACE).status
        if status is not None and (status.available_replicas or 0) == 2:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app={name}").items
    assert len(pods) == 2
    assert all(pod.spec.node_name and pod.status.phase == "Running" for pod in pods), pods

    apps.delete_namespaced_deployment(name, NAMESPACE)
    core.delete_namespaced_config_map(name, NAMESPACE)


# --- Sessions of their own ----------------------------------------------------------------


def _run(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, *args: str
) -> pytest.RunResult:
    """Runs pytest in a process of its own in pytester's folder, with the plugin loaded as
    this session loaded it and this session's kubeyard binary (`args` may override it)."""
    # Installed, the plugin is loaded by its entry point (named "kubeyard") and must not be
    # named again with -p (pytest refuses a module registered twice); from the source tree
    # it is given with -p and found through PYTHONPATH, made absolute here since the inner
    # session runs in another folder.
    plugin = [] if request.config.pluginmanager.has_plugin("kubeyard") else ["-p", "pytest_kubeyard.plugin"]
    source = str(Path(pytest_kubeyard.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])))
    binary = ["--kubeyard-binary", _binary(request.config)]
    return pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", *binary, *args, timeout=240)


MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
            limits:
              memory: 128Mi
"""

# The inner session's test: two nodes, the manifests applied before it runs, and what the
# outer test needs to see the cluster gone afterwards.
INNER_TEST = """\
import json
from kubernetes import client

def test_the_cluster_is_ready_with_the_manifests(kubeyard_cluster, kubeyard_kubeconfig, kubeyard_client):
    core = client.CoreV1Api(kubeyard_client)
    nodes = core.list_node().items
    assert len(nodes) == 2
    assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)
    assert core.read_namespaced_config_map("settings", "default").data == {"greeting": "hello"}
    assert client.AppsV1Api(kubeyard_client).read_namespaced_deployment("web", "default").spec.replicas == 1
    seen = {
        "pid": kubeyard_cluster.process.pid,
        "host": kubeyard_client.configuration.host,
        "kubeconfig": str(kubeyard_kubeconfig),
    }
    with open(SEEN, "w") as file:
        json.dump(seen, file)
"""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_session_runs_its_cluster_with_the_options_and_stops_it_at_its_end(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_path = pytester.path / "seen.json"
    pytester.makefile(".yaml", app=MANIFESTS)
    pytester.makepyfile(test_inner=f"SEEN = {str(seen_path)!r}\n" + INNER_TEST)
    # A relative manifest path is relative to where pytest starts: pytester's folder.
    result = _run(pytester, request, monkeypatch, "--kubeyard-nodes", "2", "--kubeyard-manifests", "app.yaml")
    result.assert_outcomes(passed=1)
    seen: Dict[str, Any] = json.loads(seen_path.read_text())

    # The session is over: `up` was stopped and waited for...
    pid = seen["pid"]
    if _running(pid):
        # Left behind: ended here, so that a failing run leaves no cluster running.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}/cmdline").exists() else b""
        if b"kubeyard" in cmdline:
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"kubeyard up (pid {pid}) still runs after its session ended")
    # ...and its API server no longer answers.
    url = urlparse(seen["host"])
    assert url.hostname and url.port, seen["host"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((url.hostname, url.port), timeout=5).close()
    # Its kubeconfig was written where the plugin said, in the session's temporary folder.
    assert Path(seen["kubeconfig"]).name == "kubeconfig"


def test_up_exiting_before_ready_fails_with_what_it_said(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_inner="def test_uses_it(kubeyard_client):\n    pass\n")
    result = _run(pytester, request, monkeypatch, "--kubeyard-nodes", "0")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*kubeyard up --nodes 0 --kubeconfig-out *` exited with status 2 before the cluster was ready:*",
            "*--nodes: between 1 and*",
        ]
    )


def test_a_missing_binary_is_a_usage_error_only_when_a_test_needs_the_cluster(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = str(pytester.path / "no-such-kubeyard")
    pytester.makepyfile(
        test_inner="def test_plain():\n    pass\n\ndef test_uses_it(kubeyard_kubeconfig):\n    pass\n"
    )
    result = _run(pytester, request, monkeypatch, "--kubeyard-binary", missing)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(
        [f"*the kubeyard binary `{missing}` was not found*--kubeyard-binary PATH*KUBEYARD_BIN*"]
    )

    # Installed, the plugin is in every session of the environment: those that do not use
    # the cluster do not need kubeyard.
    result = _run(pytester, request, monkeypatch, "--kubeyard-binary", missing, "-k", "plain")
    result.assert_outcomes(passed=1, deselected=1)

"""A kubeyard cluster for a pytest session.

``kubeyard up`` runs a whole cluster (API server, scheduler, controller manager and
simulated nodes) in one process, or each component in a Docker container of its own with
``--containers``. It writes a kubeconfig once the cluster is up, applies the manifests it
was given, and then serves until interrupted; on SIGINT (what Ctrl-C sends) it stops, and
with ``--containers`` removes its containers first. This plugin runs it once per session
and hands the tests its kubeconfig and an official ``kubernetes`` client.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

# How long `up` may take until the cluster is ready. In process it boots in about a
# second; with containers it first builds its images and starts one container per
# component, which takes minutes on a slow machine with a cold Docker cache.
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_CONTAINERS_TIMEOUT_SECONDS = 300.0
# How long `up` may take to stop after SIGINT before it is killed: with containers it
# removes them one by one, which a busy Docker engine makes slow.
STOP_GRACE_SECONDS = 60.0
# How often readiness is checked while waiting.
POLL_SECONDS = 0.2
# How much of the log a failure shows: its end, where `up` says what went wrong.
LOG_TAIL_CHARACTERS = 8000

# `up` prints a progress line ("nodes 3/3 ready · pods: ...") to stderr once the manifests
# it was given are applied and its live view starts: until then, the objects may not all
# exist yet. When some could not be applied it says so first, and stays up.
PROGRESS_LINE = re.compile(r"^nodes \d+/\d+ ready", re.MULTILINE)
NOT_APPLIED = "some objects were not applied"


@dataclass
class KubeyardCluster:
    """A running ``kubeyard up``, ready: its nodes Ready and its manifests applied."""

    #: The kubeconfig ``up`` wrote (owner-only: it holds the cluster's token).
    kubeconfig: Path
    #: An official Kubernetes client of that kubeconfig, e.g. ``kubernetes.client.CoreV1Api(api_client)``.
    api_client: k8s.ApiClient
    #: The ``kubeyard up`` process itself.
    process: subprocess.Popen[bytes]
    #: Its standard output and error, together: what was applied, progress, the reason it failed.
    log: Path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubeyard", "a kubeyard cluster for the session (pytest-kubeyard)")
    # Each option can also be set in the ini file, below the command line; the defaults
    # are None so that "not given" can be told from "given as the default".
    group.addoption(
        "--kubeyard-binary",
        metavar="PATH",
        default=None,
        help="the kubeyard binary (default: $KUBEYARD_BIN, else `kubeyard` on the PATH).",
    )
    group.addoption(
        "--kubeyard-nodes",
        metavar="N",
        type=int,
        default=None,
        help="how many simulated nodes `kubeyard up` runs (default: 3).",
    )
    group.addoption(
        "--kubeyard-containers",
        action="store_true",
        default=None,
        help="run each component in a Docker container of its own (`kubeyard up --containers`).",
    )
    group.addoption(
        "--kubeyard-manifests",
        metavar="PATH",
        action="append",
        default=None,
        help="a file or directory of manifests `kubeyard up` applies before the tests run (repeatable).",
    )
    group.addoption(
        "--kubeyard-timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help="how long the cluster may take to be ready (default: 60, 300 with --kubeyard-containers).",
    )
    parser.addini("kubeyard_binary", "the kubeyard binary (below $KUBEYARD_BIN).")
    parser.addini("kubeyard_nodes", "how many simulated nodes `kubeyard up` runs.")
    parser.addini("kubeyard_containers", "run `kubeyard up --containers`.", type="bool", default=False)
    # Relative paths are relative to the ini file (pytest's "paths" type).
    parser.addini("kubeyard_manifests", "manifests `kubeyard up` applies.", type="paths", default=[])
    parser.addini("kubeyard_timeout", "how long the cluster may take to be ready, in seconds.")


def _binary(config: pytest.Config) -> str:
    """The kubeyard binary's absolute path: the option, $KUBEYARD_BIN, the ini, the PATH.

    The environment variable comes before the ini file (as pytest-django's settings do)
    so that a build can point a project's checked-in configuration at its own binary.
    """
    given: Optional[str] = (
        config.getoption("kubeyard_binary")
        or os.environ.get("KUBEYARD_BIN")
        or config.getini("kubeyard_binary")
        or "kubeyard"
    )
    assert given is not None
    candidate = given
    # A relative path with a folder in it is relative to where pytest was started, not to
    # wherever a test has since changed the working directory to.
    if os.sep in candidate and not os.path.isabs(candidate):
        candidate = str(config.invocation_params.dir / candidate)
    found = shutil.which(candidate)
    if found is None:
        raise pytest.UsageError(
            f"pytest-kubeyard: the kubeyard binary `{given}` was not found or is not executable: "
            "build it (`cargo build --release` in the kubeyard repository) and pass "
            "--kubeyard-binary PATH, set KUBEYARD_BIN, or put `kubeyard` on the PATH"
        )
    return os.path.abspath(found)


def _nodes(config: pytest.Config) -> int:
    nodes = config.getoption("kubeyard_nodes")
    if nodes is None:
        ini = config.getini("kubeyard_nodes")
        try:
            nodes = int(ini) if ini else 3
        except ValueError:
            raise pytest.UsageError(f"pytest-kubeyard: kubeyard_nodes = {ini!r} is not a number") from None
    return int(nodes)


def _containers(config: pytest.Config) -> bool:
    return bool(config.getoption("kubeyard_containers") or config.getini("kubeyard_containers"))


def _manifests(config: pytest.Config) -> List[Path]:
    given = config.getoption("kubeyard_manifests")
    if given:
        # Relative to where pytest was started, as any path on a command line.
        return [config.invocation_params.dir / path for path in given]
    return [Path(path) for path in config.getini("kubeyard_manifests")]


def _timeout(config: pytest.Config) -> float:
    timeout = config.getoption("kubeyard_timeout")
    if timeout is None:
        ini = config.getini("kubeyard_timeout")
        if ini:
            try:
                timeout = float(ini)
            except ValueError:
                raise pytest.UsageError(f"pytest-kubeyard: kubeyard_timeout = {ini!r} is not a number") from None
    if timeout is None:
        timeout = DEFAULT_CONTAINERS_TIMEOUT_SECONDS if _containers(config) else DEFAULT_TIMEOUT_SECONDS
    return float(timeout)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A missing binary is a usage error, said once before any test runs.

    Only when a collected test uses the cluster: installed, the plugin is loaded into every
    pytest run of the environment, and the others must not need kubeyard.
    """
    if session.config.option.collectonly:
        return
    if any("kubeyard_cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        _binary(session.config)


def _tail(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no output)"
    if len(text) > LOG_TAIL_CHARACTERS:
        text = "...\n" + text[-LOG_TAIL_CHARACTERS:]
    return text.rstrip() or "(no output)"


def _ready_nodes(api_client: k8s.ApiClient) -> int:
    """How many nodes have the condition Ready=True (what `kubectl get nodes` shows as Ready)."""
    nodes = k8s.CoreV1Api(api_client).list_node(_request_timeout=5)
    return sum(
        1
        for node in nodes.items
        if any(c.type == "Ready" and c.status == "True" for c in ((node.status and node.status.conditions) or []))
    )


def _wait_until_ready(
    process: subprocess.Popen[bytes],
    command: List[str],
    kubeconfig: Path,
    log: Path,
    nodes: int,
    manifests: bool,
    timeout: float,
) -> k8s.ApiClient:
    """Waits until `up` is ready, and returns a client of its kubeconfig; fails the fixture
    when `up` exits first, when a manifest was not applied, or after `timeout` seconds.

    Ready means: the kubeconfig is written (`up` writes it once the API server serves and,
    in process, once every node is Ready; it writes a temporary file and renames it, so a
    file that exists is whole), every node answers Ready through the API, and, with
    manifests, `up` has applied them (its first progress line).
    """
    shown = " ".join(command)
    deadline = time.monotonic() + timeout
    api_client: Optional[k8s.ApiClient] = None
    last_error = "the kubeconfig was not written"
    try:
        while True:
            code = process.poll()
            if code is not None:
                pytest.fail(
                    f"pytest-kubeyard: `{shown}` exited with status {code} before the cluster was ready:\n"
                    f"{_tail(log)}",
                    pytrace=False,
                )
            if kubeconfig.exists():
                if api_client is None:
                    api_client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
                try:
                    ready = _ready_nodes(api_client)
                    last_error = f"{ready} of {nodes} nodes Ready"
                except Exception as error:  # the API server may not answer yet: retried
                    ready = -1
                    last_error = f"listing the nodes failed: {error}"
                if ready >= nodes:
                    if not manifests:
                        return api_client
                    output = log.read_text(errors="replace")
                    if NOT_APPLIED in output:
                        pytest.fail(
                            f"pytest-kubeyard: `{shown}` did not apply every manifest:\n{_tail(log)}",
                            pytrace=False,
                        )
                    if PROGRESS_LINE.search(output):
                        return api_client
                    last_error = "the manifests were not applied yet"
            if time.monotonic() > deadline:
                pytest.fail(
                    f"pytest-kubeyard: `{shown}` was not ready within {timeout:.0f} s ({last_error}):\n{_tail(log)}",
                    pytrace=False,
                )
            time.sleep(POLL_SECONDS)
    except BaseException:
        if api_client is not None:
            api_client.close()
        raise


def _stop(process: subprocess.Popen[bytes]) -> Optional[str]:
    """Stops `up` as Ctrl-C does, so that it removes what it made (its containers); kills it
    when it does not stop in time. Returns what went wrong, if anything."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return (
                f"did not stop within {STOP_GRACE_SECONDS:.0f} s of SIGINT and was killed "
                "(with --containers, `kubeyard down --all` removes the containers it left)"
            )
    else:
        # It ended during the tests: its containers were removed under it, or it failed.
        return f"ended during the tests with status {process.returncode}"
    if process.returncode != 0:
        return f"exited with status {process.returncode} when stopped"
    return None


@pytest.fixture(scope="session")
def kubeyard_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeyardCluster]:
    """A `kubeyard up` cluster for the whole session: started on first use, ready (nodes
    Ready, manifests applied) when the first test using it runs, stopped at session end."""
    config = request.config
    binary = _binary(config)
    nodes = _nodes(config)
    containers = _containers(config)
    manifests = _manifests(config)
    timeout = _timeout(config)
    # A folder of this session's own, so no kubeconfig of an earlier run can be mistaken
    # for this one's, and ~/.kube/kubeyard (up's default) is left alone.
    folder = tmp_path_factory.mktemp("kubeyard")
    kubeconfig = folder / "kubeconfig"
    log = folder / "up.log"
    command = [binary, "up"]
    if containers:
        command.append("--containers")
    command += ["--nodes", str(nodes), "--kubeconfig-out", str(kubeconfig)]
    command += [str(path) for path in manifests]
    # Output to a file, not a pipe: `up` prints a progress line at every change for as long
    # as it runs, and a pipe nobody reads would fill and block it. Standard input closed:
    # `up` reads nothing, and must not take the terminal's.
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    try:
        api_client = _wait_until_ready(process, command, kubeconfig, log, nodes, bool(manifests), timeout)
    except BaseException:
        # Not ready (or interrupted while waiting): stopped all the same, and the reason
        # it was not ready is what is reported, not how it stopped.
        _stop(process)
        raise
    problem: Optional[str]
    try:
        yield KubeyardCluster(kubeconfig=kubeconfig, api_client=api_client, process=process, log=log)
    finally:
        api_client.close()
        problem = _stop(process)
    if problem is not None:
        pytest.fail(f"pytest-kubeyard: `{' '.join(command)}` {problem}:\n{_tail(log)}", pytrace=False)


@pytest.fixture(scope="session")
def kubeyard_kubeconfig(kubeyard_cluster: KubeyardCluster) -> Path:
    """The session's kubeconfig path (for kubectl, `kubernetes.config.load_kube_config`, ...)."""
    return kubeyard_cluster.kubeconfig


@pytest.fixture(scope="session")
def kubeyard_client(kubeyard_cluster: KubeyardCluster) -> k8s.ApiClient:
    """The session's `kubernetes.client.ApiClient`: `CoreV1Api(kubeyard_client)`, `AppsV1Api(...)`, ..."""
    return kubeyard_cluster.api_client

"""The official Kubernetes Python client against a kubeyard API server.

Run by harness/tests/python_client.rs with the server's URL; exits non-zero on the
first thing that does not behave as it does against a real cluster.
"""

import json
import sys
import threading
import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

configuration = client.Configuration()
configuration.host = sys.argv[1]
api = client.ApiClient(configuration)
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)


def reason(call):
    try:
        call()
    except ApiException as error:
        return error.status, json.loads(error.body)["reason"]
    raise AssertionError("expected an API error")


# create, read, conflict, list with a selector
config_map = client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}), data={"k": "v"}
)
created = core.create_namespaced_config_map("default", config_map)
assert created.metadata.uid and created.metadata.resource_version, created
assert reason(lambda: core.create_namespaced_config_map("default", config_map)) == (409, "AlreadyExists")
assert reason(lambda: core.read_namespaced_config_map("missing", "default")) == (404, "NotFound")
listed = core.list_namespaced_config_map("default", label_selector="from=python")
assert [item.metadata.name for item in listed.items] == ["py"], listed

# watch from the list's revision: a patch, then a delete
revision = core.list_namespaced_config_map("default").metadata.resource_version


def change_then_delete():
    time.sleep(0.3)
    core.patch_namespaced_config_map("py", "default", {"data": {"k": "w"}})
    core.delete_namespaced_config_map("py", "default")


threading.Thread(target=change_then_delete).start()
events = []
watcher = watch.Watch()
for event in watcher.stream(
    core.list_namespaced_config_map, "default", resource_version=revision, timeout_seconds=5
):
    events.append((event["type"], event["object"].metadata.name, (event["object"].data or {}).get("k")))
    if event["type"] == "DELETED":
        watcher.stop()
assert events == [("MODIFIED", "py", "w"), ("DELETED", "py", "w")], events

# a Deployment: defaults, patch, scale, delete
deployment = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    },
}
created = apps.create_namespaced_deployment("default", deployment)
assert created.spec.replicas == 1 and created.spec.strategy.type == "RollingUpdate", created.spec
patched = apps.patch_namespaced_deployment(
    "web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}}
)
assert patched.spec.template.spec.containers[0].image == "nginx:1.28"
assert patched.metadata.generation == 2
scaled = apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 4}})
assert scaled.spec.replicas == 4
invalid = dict(deployment, spec=dict(deployment["spec"], replicas=-1), metadata={"name": "bad"})
assert reason(lambda: apps.create_namespaced_deployment("default", invalid)) == (422, "Invalid")
apps.delete_namespaced_deployment("web", "default")
assert reason(lambda: apps.read_namespaced_deployment("web", "default")) == (404, "NotFound")
# binding, as a scheduler written with this client binds: the answer is a Status, which
# the client cannot read as the V1Binding it expects (kubernetes-client/python#547), so
# it is read raw, as such schedulers do.
pod = client.V1Pod(
    metadata=client.V1ObjectMeta(name="bound"),
    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
)
core.create_namespaced_pod("default", pod)


def binding(kind, node):
    return client.V1Binding(
        metadata=client.V1ObjectMeta(name="bound"), target=client.V1ObjectReference(kind=kind, name=node)
    )


try:
    core.create_namespaced_pod_binding("bound", "default", binding("Pod", "node-a"), _preload_content=False)
    raise AssertionError("a binding to a pod is refused")
except ApiException as error:
    # Kubernetes' registry returns ValidatePodBinding's errors unwrapped: a 500, no reason.
    body = json.loads(error.body)
    assert error.status == 500 and "reason" not in body, (error.status, body)
    assert body["message"] == 'target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>"', body
response = core.create_namespaced_pod_binding("bound", "default", binding("Node", "node-a"), _preload_content=False)
assert response.status == 201 and json.loads(response.data)["status"] == "Success", response.data
assert core.read_namespaced_pod("bound", "default").spec.node_name == "node-a"
again = lambda: core.create_namespaced_pod_binding(  # noqa: E731
    "bound", "default", binding("Node", "node-b"), _preload_content=False
)
assert reason(again) == (409, "Conflict")
print("ok")

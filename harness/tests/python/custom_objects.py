"""The official Kubernetes Python client with a CustomResourceDefinition, as operator
authors use it: the CRD through ApiextensionsV1Api, its objects through CustomObjectsApi
(create, get, list, watch, patch, the status subresource, delete).

Run by harness/tests/it/python_client.rs with the server's URL; exits non-zero on the
first thing that does not behave as it does against a real cluster.
"""

import sys
import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

configuration = client.Configuration()
configuration.host = sys.argv[1]
api = client.ApiClient(configuration)
extensions = client.ApiextensionsV1Api(api)
custom = client.CustomObjectsApi(api)

GROUP, VERSION, PLURAL = "example.com", "v1", "widgets"

crd = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "kind": "Widget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                        },
                    }
                },
            }
        ],
    },
}
created = extensions.create_custom_resource_definition(crd)
assert created.spec.names.list_kind == "WidgetList", created.spec.names
established = extensions.read_custom_resource_definition("widgets.example.com")
conditions = {c.type: c.status for c in established.status.conditions}
assert conditions == {"NamesAccepted": "True", "Established": "True"}, conditions

widget = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": "gear"}, "spec": {"size": 3}}
made = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget)
assert made["metadata"]["generation"] == 1, made
try:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget)
    raise AssertionError("a second create must conflict")
except ApiException as error:
    assert error.status == 409, error

events = []
def collect():
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, timeout_seconds=2
    )
    for event in stream:
        events.append((event["type"], event["object"]["metadata"]["name"], event["object"]["spec"]["size"]))

import threading
watcher = threading.Thread(target=collect)
watcher.start()
time.sleep(0.5)
patched = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "gear", {"spec": {"size": 5}})
assert patched["spec"]["size"] == 5 and patched["metadata"]["generation"] == 2, patched
status = custom.patch_namespaced_custom_object_status(
    GROUP, VERSION, "default", PLURAL, "gear", {"status": {"ready": True}}
)
assert status["status"] == {"ready": True} and status["metadata"]["generation"] == 2, status
watcher.join()
assert ("ADDED", "gear", 3) in events and ("MODIFIED", "gear", 5) in events, events

listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
assert listed["kind"] == "WidgetList" and [i["metadata"]["name"] for i in listed["items"]] == ["gear"], listed
custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "gear")
try:
    custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "gear")
    raise AssertionError("deleted")
except ApiException as error:
    assert error.status == 404, error
extensions.delete_custom_resource_definition("widgets.example.com")
print("ok")

"""The official Kubernetes Python client's server-side apply (DynamicClient.server_side_apply),
as deploy tools written in Python use it: an apply creates, a second manager's different
value is a 409 conflict naming the field, and force_conflicts takes it.

Run by harness/tests/it/python_client.rs with the server's URL; exits non-zero on the
first thing that does not behave as it does against a real cluster.
"""

import json
import sys

from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

configuration = client.Configuration()
configuration.host = sys.argv[1]
api = dynamic.DynamicClient(client.ApiClient(configuration))
config_maps = api.resources.get(api_version="v1", kind="ConfigMap")


def body(mode):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": mode}}


made = config_maps.server_side_apply(body=body("fast"), name="settings", namespace="default", field_manager="deployer")
entries = made.metadata.managedFields
assert entries[0].manager == "deployer" and entries[0].operation == "Apply", entries

try:
    config_maps.server_side_apply(body=body("slow"), name="settings", namespace="default", field_manager="other")
    sys.exit("a conflicting apply was accepted")
except ApiException as error:
    assert error.status == 409, error.status
    message = json.loads(error.body)["message"]
    assert message == 'Apply failed with 1 conflict: conflict with "deployer": .data.mode', message

forced = config_maps.server_side_apply(
    body=body("slow"), name="settings", namespace="default", field_manager="other", force_conflicts=True
)
assert forced.data.mode == "slow", forced
print("ok")

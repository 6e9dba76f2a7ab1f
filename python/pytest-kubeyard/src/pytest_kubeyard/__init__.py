"""pytest-kubeyard: a session-scoped kubeyard cluster for pytest.

Installed, pytest loads the plugin by itself (entry point ``kubeyard``); the fixtures are
``kubeyard_cluster``, ``kubeyard_kubeconfig`` and ``kubeyard_client`` (see the README).
"""

from pytest_kubeyard.plugin import KubeyardCluster

__all__ = ["KubeyardCluster"]
__version__ = "0.1.0"

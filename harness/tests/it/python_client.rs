//! The official Kubernetes Python client (`pip install -r harness/tests/python/requirements.txt`;
//! `.ci/run` does) against the API server: create, list, watch, patch, scale, bind, delete, and
//! custom objects of a CRD.

use crate::support;

use std::process::Command;
use support::api::Server;

/// Runs one script of `harness/tests/python/` against a fresh API server; it prints `ok`.
fn run(script: &str) {
    let script = support::workspace().join("harness/tests/python").join(script);
    let import = Command::new("python3").args(["-c", "import kubernetes"]).output().expect("python3 runs");
    assert!(
        import.status.success(),
        "the kubernetes Python package is missing: pip install -r harness/tests/python/requirements.txt"
    );
    let server = Server::start();
    let output = Command::new("python3").arg(&script).arg(&server.url).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
}

#[test]
fn the_python_client_creates_lists_watches_patches_and_deletes() {
    run("client.py");
}

/// A CRD through `ApiextensionsV1Api`, its objects through `CustomObjectsApi`.
#[test]
fn the_python_client_serves_custom_objects() {
    run("custom_objects.py");
}

#[test]
fn the_python_client_applies_server_side() {
    run("server_side_apply.py");
}

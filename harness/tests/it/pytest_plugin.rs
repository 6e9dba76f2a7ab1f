//! The pytest plugin published from this repository (`python/pytest-kubeyard`): its own
//! tests, run with pytest against this build's binary (they start `kubeyard up`, use it
//! through the official Kubernetes Python client and see it stopped at the session's end).
//! `pip install -r harness/tests/python/requirements.txt` installs pytest and the client.

use crate::support;

use std::process::Command;

#[test]
fn the_pytest_plugin_passes_its_tests_against_this_binary() {
    let workspace = support::workspace();
    let import = Command::new("python3").args(["-c", "import kubernetes, pytest"]).output().expect("python3 runs");
    assert!(
        import.status.success(),
        "pytest or the kubernetes Python package is missing: pip install -r harness/tests/python/requirements.txt"
    );
    let output = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "pytest_kubeyard.plugin", "-p", "no:cacheprovider"])
        .arg("python/pytest-kubeyard/tests")
        .current_dir(&workspace)
        // Absolute: the plugin's tests run sessions of their own in other folders.
        .env("PYTHONPATH", workspace.join("python/pytest-kubeyard/src"))
        .env("KUBEYARD_BIN", env!("CARGO_BIN_EXE_kubeyard"))
        // The plugin from this checkout, not a copy installed in the environment (pytest
        // refuses the same plugin twice), and no bytecode left in the source tree.
        .env("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTEST_ADDOPTS")
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "pytest failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

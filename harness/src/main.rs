//! `kubeyard`: lint, plan and test Kubernetes manifests.

fn main() -> std::process::ExitCode {
    kubeyard_harness::cli::main()
}

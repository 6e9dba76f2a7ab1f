//! `kubeyard`: lint, plan and test Kubernetes manifests.

// Parsing allocates many small nodes from several threads at once: mimalloc is markedly
// faster at that than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kubeyard_harness::allocator::tune();
    kubeyard_harness::cli::main()
}

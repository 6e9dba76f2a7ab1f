//! `kubeyard`: lint, plan and test Kubernetes manifests.

// Parsing allocates many small nodes from several threads at once: mimalloc is markedly
// faster at that than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // `kubeyard get pods | head` closes the pipe early: end quietly, as Unix tools do,
    // rather than failing a print.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    kubeyard_harness::cli::main()
}

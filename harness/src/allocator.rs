//! The allocator's settings for a control plane: the `kubeyard` binary and the benches
//! that measure it run on mimalloc, and call [`tune`] first.
//!
//! mimalloc gives freed memory back to the system 1 s after it was last used (its
//! `purge_delay`). A control plane's work comes in waves: 100,000 pods' statuses written,
//! their watch events sent and dropped, then the next wave a second later. Memory given
//! back between waves was taken again at once, each page faulted in and cleared by the
//! kernel: a quarter of the machine's time in a 10,000-Deployment Test (`clear_page_erms`
//! and mimalloc's page search at the top of a perf profile, half a million minor faults in
//! a 3,000-Deployment one). Waiting 10 s keeps what the next wave will use and still gives
//! memory back once the cluster is idle; the peak is the same either way.

/// How long mimalloc keeps freed memory before giving it back, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// mimalloc 3's `mi_option_purge_delay` (`include/mimalloc.h`, between
/// `eager_commit_delay`, 14, and `use_numa_nodes`, 16, which the Rust bindings name); the
/// bindings predate the option's name. A test checks it still reads mimalloc's default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// What mimalloc reads the option from: its name, and the one it had before.
const PURGE_DELAY_VARIABLES: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`], unless the environment sets it
/// (mimalloc reads its options from there, and the user's word stands).
/// Call it at the start of `main`, in a program whose global allocator is mimalloc.
pub fn tune() {
    if PURGE_DELAY_VARIABLES.iter().any(|name| std::env::var_os(name).is_some()) {
        return;
    }
    // SAFETY: `mi_option_set` takes any value for a valid option and only stores it; the
    // option is read at each purge, so setting it after start-up is what mimalloc allows.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        if PURGE_DELAY_VARIABLES.iter().any(|name| std::env::var_os(name).is_some()) {
            return;
        }
        // SAFETY: reads an option's value.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(before, 1_000, "mimalloc 3's default purge delay: is option {PURGE_DELAY} still it?");
        tune();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, PURGE_DELAY_MS);
    }
}

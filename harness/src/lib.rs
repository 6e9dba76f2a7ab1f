//! kubeyard's harness: the `kubeyard` command line over the compiler, and (later) the
//! mini control plane it tests against. The binary is a thin `main` over this library,
//! so tests drive the same code.

pub mod apiserver;
pub mod cli;
pub mod client;
pub mod controllers;
pub mod discover;
pub mod report;
pub mod scheduler;
pub mod snapshot;
pub mod store;

//! kubeyard's harness: the `kubeyard` command line over the compiler, and the mini
//! control plane it tests against. The binary is a thin `main` over this library,
//! so tests drive the same code.

pub mod allocator;
pub mod apiserver;
pub mod cli;
pub mod client;
pub mod clock;
pub mod containers;
pub mod controller_manager;
pub mod controllers;
pub mod controlplane;
pub mod discover;
pub mod dns;
pub mod echo;
pub mod events;
pub mod helm;
pub mod informers;
pub mod kubelet;
pub mod kustomize;
pub mod loadbalancer;
pub mod lsp;
pub mod profile;
pub mod proxy;
pub mod report;
pub mod scheduler;
pub mod snapshot;
pub mod store;
pub mod testing;

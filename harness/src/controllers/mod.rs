//! The controllers of the controller manager: each its own module with a reconcile loop
//! over watched state (kube-runtime's `Controller`), a client of the API server like
//! any other component.

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod replicaset;
pub mod statefulset;
pub mod taint_eviction;

/// Why a reconcile failed: the API said no. The controller retries after a pause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

//! Convergence tests: what a user says should happen to a cluster, proved or shown not to
//! hold. `spec` is the `kubeyard.dev/v1alpha1 Test` format, `cluster` the cluster under
//! test and its Rust API (`Cluster::builder().nodes(3).build().await?`), `expect` the
//! expectations judged against it (`converged` the whole applied set realised), `idle`
//! whether the runtime an in-process cluster runs on has work under way, `requests`
//! the exec and http steps' commands and requests, `command` the command step's local
//! programs, `runner` finds and runs tests, `report` renders their results and `detail`
//! what `--verbose` adds under each step.

pub mod cluster;
pub mod command;
pub mod converged;
pub mod detail;
pub mod expect;
pub mod idle;
pub mod report;
pub mod requests;
pub mod runner;
pub mod shard;
pub mod spec;

pub use cluster::{Builder, Cluster, Error};
pub use expect::{Expectation, Failure};

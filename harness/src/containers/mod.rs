//! The containerized control plane: every component in a container of its own, from
//! images kubeyard builds locally (`image`), on a private Docker network (`cluster`),
//! through the Docker engine's API (`docker`).

pub mod cluster;
pub mod docker;
pub mod image;

pub use cluster::{ClusterSpec, ContainerCluster, NodeSpec};

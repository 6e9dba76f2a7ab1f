//! The controller manager: every controller, each a client of the API server, run side
//! by side until dropped (as `kube-controller-manager` runs its controllers).

use crate::controllers::{self, node_lifecycle};
use tokio::task::JoinSet;

/// Runs every controller until the returned set is dropped.
pub fn start(client: kube::Client, lifecycle: node_lifecycle::Options) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(controllers::deployment::run(client.clone()));
    set.spawn(controllers::replicaset::run(client.clone()));
    set.spawn(controllers::endpoints::run(client.clone()));
    set.spawn(controllers::endpointslice::run(client.clone()));
    set.spawn(controllers::daemonset::run(client.clone()));
    set.spawn(controllers::statefulset::run(client.clone()));
    set.spawn(controllers::job::run(client.clone()));
    set.spawn(controllers::garbage_collector::run(client.clone()));
    set.spawn(controllers::namespace::run(client.clone()));
    set.spawn(controllers::node_lifecycle::run(client.clone(), lifecycle.clone()));
    set.spawn(controllers::taint_eviction::run(client, lifecycle));
    set
}

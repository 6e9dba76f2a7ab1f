//! The controller manager: every controller, each a client of the API server, run side
//! by side until dropped (as `kube-controller-manager` runs its controllers), sharing one
//! set of informers: one watch per kind for all of them.

use crate::controllers::{self, node_lifecycle};
use crate::informers::Informers;
use tokio::task::JoinSet;

/// Runs every controller until the returned set is dropped.
pub fn start(client: kube::Client, lifecycle: node_lifecycle::Options) -> JoinSet<()> {
    let informers = Informers::start(&client);
    let mut set = JoinSet::new();
    macro_rules! spawn {
        ($($controller:ident),*) => {
            $(
                {
                    let (client, informers) = (client.clone(), informers.clone());
                    set.spawn(async move { controllers::$controller::run(client, &informers).await });
                }
            )*
        };
    }
    spawn!(deployment, replicaset, endpoints, endpointslice, daemonset, statefulset, job);
    set.spawn(controllers::garbage_collector::run(client.clone()));
    set.spawn(controllers::namespace::run(client.clone(), lifecycle.clock.clone()));
    set.spawn(controllers::node_lifecycle::run(client.clone(), lifecycle.clone()));
    set.spawn(controllers::taint_eviction::run(client, lifecycle));
    set
}

//! The controller manager: every controller, each a client of the API server, run side
//! by side until dropped (as `kube-controller-manager` runs its controllers), sharing one
//! set of informers: one watch per kind for all of them.

use crate::controllers::{self, node_lifecycle};
use crate::informers::Informers;
use crate::profile::Profile;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Spawns a controller that records into the control plane's profile.
fn spawn_in<F>(set: &mut JoinSet<()>, profile: &Arc<Profile>, controller: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    set.spawn(crate::profile::scope(Arc::clone(profile), controller));
}

/// Runs every controller until the returned set is dropped. `root_ca` (PEM) is what
/// pods are told to trust the API server by (`kube-root-ca.crt`); none when it serves
/// plain HTTP.
pub fn start(
    client: kube::Client,
    lifecycle: node_lifecycle::Options,
    root_ca: Option<String>,
    profile: Arc<Profile>,
) -> JoinSet<()> {
    let informers = Informers::start(&client);
    let mut set = JoinSet::new();
    let clock = &lifecycle.clock;
    // Each with its own client and the shared informers; those that count time (deadlines,
    // `minReadySeconds`) on the control plane's clock.
    macro_rules! spawn {
        ($($run:path $(, $with_clock:ident)?);* $(;)?) => {
            $(
                {
                    let (client, informers) = (client.clone(), informers.clone());
                    $(let $with_clock = clock.clone();)?
                    spawn_in(&mut set, &profile, async move { $run(client, &informers $(, &$with_clock)?).await });
                }
            )*
        };
    }
    spawn!(
        controllers::deployment::run, clock;
        controllers::replicaset::run, clock;
        controllers::replicaset::run_replication_controllers, clock;
        controllers::daemonset::run, clock;
        controllers::statefulset::run, clock;
        controllers::job::run, clock;
        controllers::disruption::run, clock;
        controllers::stale_disruption::run, clock;
        controllers::cronjob::run, clock;
        controllers::pod_gc::run, clock;
        controllers::service_lb::run, clock;
        controllers::hpa::run, clock;
        controllers::resourcequota::run, clock;
        controllers::endpoints::run;
        controllers::endpointslice::run;
        controllers::persistentvolume::run;
    );
    spawn_in(&mut set, &profile, controllers::garbage_collector::run(client.clone()));
    spawn_in(&mut set, &profile, controllers::serviceaccount::run(client.clone()));
    spawn_in(&mut set, &profile, controllers::clusterrole_aggregation::run(client.clone()));
    spawn_in(&mut set, &profile, controllers::root_ca::run(client.clone(), root_ca.unwrap_or_default()));
    spawn_in(&mut set, &profile, controllers::namespace::run(client.clone(), lifecycle.clock.clone()));
    {
        let (client, informers, lifecycle) = (client.clone(), informers.clone(), lifecycle.clone());
        spawn_in(
            &mut set,
            &profile,
            async move { controllers::node_lifecycle::run(client, &informers, lifecycle).await },
        );
    }
    spawn_in(
        &mut set,
        &profile,
        async move { controllers::taint_eviction::run(client, &informers, lifecycle.clock).await },
    );
    set
}

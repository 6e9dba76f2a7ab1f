//! The harness's integration tests, in one binary: one link of the whole dependency tree
//! instead of one per file, which is most of a clean build's time and disk. Each module is
//! one subject; `support` is what they share.

mod support;

mod admission_policies;
mod admission_webhooks;
mod apiserver;
mod apiserver_limits;
mod cli;
mod containers;
mod controlplane;
mod convergence;
mod corpus;
mod crd_versions;
mod crds;
mod deployment;
mod determinism;
mod docs;
mod durability;
mod e2e;
mod endpoints;
mod garbage_collector;
mod graph;
mod helm;
mod kube_rs;
mod kubectl;
mod kubectl_cluster;
mod kustomize;
mod lint_fixtures;
mod live_plans;
mod lsp;
mod namespace;
mod normalize;
mod plan_prediction;
mod plans;
mod pre_commit;
mod pytest_plugin;
mod python_client;
mod replicaset;
mod rule_fixtures;
mod scheduler;
mod secure;
mod server_side_apply;
mod service_accounts;
mod services;
mod store;
mod templates;
mod testcontainers_module;
mod up;
mod user_images;
mod workloads;

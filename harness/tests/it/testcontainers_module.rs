//! The testcontainers-rs module (`testcontainers-kubeyard`): testcontainers starts this
//! build's `kubeyard/kubeyard` image running `kubeyard up`, and kubectl reaches the cluster
//! through the kubeconfig the module hands back. testcontainers-rs 0.28 talks to the
//! Docker 20.10 engine (API 1.41) of these machines.

use kubeyard_harness::containers::docker::Docker;
use kubeyard_harness::containers::image::Image as KubeyardImage;
use std::path::Path;
use std::process::Command;
use testcontainers::runners::AsyncRunner;
use testcontainers_kubeyard::Kubeyard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testcontainers_module_runs_a_cluster_kubectl_reaches() {
    let docker = Docker::connect().await.expect("a Docker engine");
    let image = KubeyardImage::kubeyard(Some(Path::new(env!("CARGO_BIN_EXE_kubeyard")))).expect("the image's files");
    image.ensure(&docker).await.expect("the image builds");
    let tag = image.tag.split_once(':').expect("repository:tag").1;

    let cluster = Kubeyard::default().with_nodes(2).with_tag(tag).start().await.expect("the container starts");
    let kubeconfig = Kubeyard::kubeconfig(&cluster).await.expect("the kubeconfig");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &kubeconfig).unwrap();
    let kubectl = |args: &[&str]| {
        let output =
            Command::new("kubectl").arg("--kubeconfig").arg(file.path()).args(args).output().expect("kubectl runs");
        assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // The nodes are Ready when the kubeconfig is written; the CA and token are checked.
    let ready = kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}"]);
    assert_eq!(ready.split_whitespace().collect::<Vec<_>>(), ["True", "True"], "{ready}");
    assert_eq!(kubectl(&["create", "namespace", "probe"]).trim(), "namespace/probe created");
    let id = cluster.id().to_string();
    cluster.rm().await.expect("the container goes");
    assert!(!docker.exists(&id).await.unwrap_or(true), "the container is removed");
}

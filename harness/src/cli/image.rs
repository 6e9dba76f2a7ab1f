//! `kubeyard image build`: the images of the containerized control plane, built locally
//! (no registry is needed or asked), again only when their content changed; and
//! `kubeyard down`: removing container clusters, what an interrupted run left among them.

use super::Exit;
use super::lint::usage_error;
use crate::containers::cluster::{self, CLUSTER_LABEL};
use crate::containers::docker::Docker;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Build kubeyard/kubeyard (this binary) and kubeyard/etcd (the host's etcd), each
    /// `FROM scratch` with exactly the libraries it loads, unless an image of the same
    /// content exists.
    Build {
        /// The etcd binary to package [default: `etcd` on the PATH; Debian's etcd-server].
        #[arg(long, value_name = "FILE")]
        etcd_binary: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The cluster to remove (its id, as `kubeyard up --containers` printed it).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    cluster: Option<String>,

    /// Remove every kubeyard cluster on this Docker engine.
    #[arg(long)]
    all: bool,
}

pub fn run(args: ImageArgs) -> Exit {
    let ImageCommand::Build { etcd_binary } = args.command;
    let runtime = match super::runtime(false) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    runtime.block_on(async {
        let docker = match Docker::connect().await {
            Ok(docker) => docker,
            Err(error) => return usage_error(&error.to_string()),
        };
        let progress = |message: &str| eprintln!("kubeyard: {message}");
        match cluster::ensure_images(&docker, None, etcd_binary.as_deref(), &progress).await {
            Ok((kubeyard, etcd)) => {
                println!("{}\n{}", kubeyard.tag, etcd.tag);
                Exit::Ok
            }
            Err(error) => usage_error(&error.to_string()),
        }
    })
}

pub fn down(args: DownArgs) -> Exit {
    let runtime = match super::runtime(false) {
        Ok(runtime) => runtime,
        Err(message) => return usage_error(&message),
    };
    runtime.block_on(async {
        let docker = match Docker::connect().await {
            Ok(docker) => docker,
            Err(error) => return usage_error(&error.to_string()),
        };
        let removed = match &args.cluster {
            Some(id) => cluster::remove_by_id(&docker, id).await,
            None => cluster::remove_all(&docker).await,
        };
        match removed {
            Ok(0) if args.all => {
                eprintln!("kubeyard: no clusters (nothing labelled {CLUSTER_LABEL})");
                Exit::Ok
            }
            Ok(0) => usage_error(&format!("no cluster {}", args.cluster.unwrap_or_default())),
            Ok(count) => {
                eprintln!("kubeyard: removed {count} container(s) and their network(s)");
                Exit::Ok
            }
            Err(error) => usage_error(&error.to_string()),
        }
    })
}

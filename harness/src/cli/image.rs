//! `kubeyard image build`: the images of the containerized control plane, built locally
//! (no registry is needed or asked), again only when their content changed; and
//! `kubeyard down`: removing container clusters, what an interrupted run left among them;
//! `--all` only the clusters this user started (on a shared engine, others' are theirs),
//! `--everyone` every one.

use super::Exit;
use super::lint::usage_error;
use crate::containers::cluster::{self, CLUSTER_LABEL, USER_LABEL, Whose};
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
    /// content exists; kubeyard/kubeyard:latest names the kubeyard image built.
    #[command(after_help = super::examples::IMAGE_BUILD)]
    Build {
        /// The etcd binary to package [default: `etcd` on the PATH; Debian's etcd-server].
        #[arg(long, value_name = "FILE")]
        etcd_binary: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The cluster to remove (its id, as `kubeyard up --containers` printed it).
    #[arg(required_unless_present_any = ["all", "everyone"], conflicts_with_all = ["all", "everyone"])]
    cluster: Option<String>,

    /// Remove every kubeyard cluster this user started on this Docker engine.
    #[arg(long, conflicts_with = "everyone")]
    all: bool,

    /// Remove every kubeyard cluster on this Docker engine, whoever started it.
    #[arg(long)]
    everyone: bool,
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
                // `docker run kubeyard/kubeyard lint /src` (a CI system running tools as
                // images) names no version: the build just made is the one it gets.
                if let Err(error) = docker.tag(&kubeyard.tag, "kubeyard/kubeyard", "latest").await {
                    return usage_error(&error.to_string());
                }
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
        let user = cluster::current_user();
        let removed = match (&args.cluster, args.everyone) {
            (Some(id), _) => cluster::remove_by_id(&docker, id).await,
            (None, true) => cluster::remove_all(&docker, &Whose::Everyone).await,
            (None, false) => cluster::remove_all(&docker, &Whose::User(user.clone())).await,
        };
        match removed {
            Ok(0) if args.everyone => {
                eprintln!("kubeyard: no clusters (nothing labelled {CLUSTER_LABEL})");
                Exit::Ok
            }
            Ok(0) if args.all => {
                eprintln!(
                    "kubeyard: no clusters of yours (nothing labelled {CLUSTER_LABEL} and {USER_LABEL}={user}); \
                     --everyone removes others' too"
                );
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

//! `kubeyard pause`: the process of a pod's sandbox container, as Kubernetes' pause
//! image is. The sandbox holds the pod's network namespace (its address on the cluster
//! network) for the pod's containers to join; first it routes the Service range through
//! its node, whose proxy answers for cluster IPs, and opens the pod's `emptyDir` volumes
//! to every user (as the kubelet makes them, `0777`), then it waits to be stopped.

use super::network;
use clap::Args;
use std::net::Ipv4Addr;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PauseArgs {
    /// A route to add first, `CIDR=GATEWAY` (the Service range through the node).
    #[arg(long = "route", value_name = "CIDR=GATEWAY")]
    routes: Vec<String>,

    /// A folder to make writable by anyone (an `emptyDir` volume's root).
    #[arg(long = "open", value_name = "DIR")]
    open: Vec<std::path::PathBuf>,
}

/// `10.96.0.0/12=10.200.0.11`: the destination, its prefix and the gateway.
fn parse_route(text: &str) -> Result<(Ipv4Addr, u8, Ipv4Addr), String> {
    let bad = || format!("--route {text}: expected CIDR=GATEWAY, as in 10.96.0.0/12=10.200.0.11");
    let (cidr, gateway) = text.split_once('=').ok_or_else(bad)?;
    let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
    Ok((address.parse().map_err(|_| bad())?, prefix, gateway.parse().map_err(|_| bad())?))
}

pub fn run(args: PauseArgs) -> ExitCode {
    for text in &args.routes {
        let added = parse_route(text).and_then(|(destination, prefix, gateway)| {
            network::add_route(destination, prefix, gateway).map_err(|e| format!("cannot route {text}: {e}"))
        });
        if let Err(message) = added {
            eprintln!("kubeyard pause: {message}");
            return ExitCode::FAILURE;
        }
    }
    for dir in &args.open {
        use std::os::unix::fs::PermissionsExt;
        if let Err(error) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)) {
            eprintln!("kubeyard pause: cannot open {} to all: {error}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kubeyard pause: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Process 1 of its container: a signal it does not handle would be ignored.
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    });
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_as_cidr_and_gateway() {
        assert_eq!(
            parse_route("10.96.0.0/12=10.200.0.11"),
            Ok((Ipv4Addr::new(10, 96, 0, 0), 12, Ipv4Addr::new(10, 200, 0, 11)))
        );
        assert!(parse_route("10.96.0.0/33=10.200.0.11").is_err());
        assert!(parse_route("10.96.0.0=10.200.0.11").unwrap_err().contains("expected CIDR=GATEWAY"));
        assert!(parse_route("10.96.0.0/12").is_err());
    }
}

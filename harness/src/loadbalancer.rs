//! The load balancer in front of several API servers (`kubeyard loadbalancer`), as kind's
//! HA clusters put HAProxy in TCP mode in front of their control-plane nodes: clients
//! (the kubeconfig, the scheduler, the controller manager, the node agents) know one
//! address, and each connection is passed whole (TLS end to end) to the next backend in
//! turn that takes it. A backend that refuses or does not answer a connection within a
//! second is passed over, and left out for a moment, so clients fail over: a request in
//! flight on a server that dies fails (as it would behind HAProxy), the client's next
//! connection reaches a live one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// How long a connection to a backend may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a backend that failed a connection is left out of the turn (HAProxy's
/// health check interval is 2 s by default).
const LEFT_OUT_FOR: Duration = Duration::from_secs(2);

/// The backends, whose turn is next, and when each last failed.
pub struct Backends {
    addresses: Vec<SocketAddr>,
    next: AtomicUsize,
    failed: std::sync::Mutex<Vec<Option<Instant>>>,
}

impl Backends {
    pub fn new(addresses: Vec<SocketAddr>) -> Backends {
        let failed = std::sync::Mutex::new(vec![None; addresses.len()]);
        Backends { addresses, next: AtomicUsize::new(0), failed }
    }

    /// The backends to try for one connection: from the next in turn, those that did not
    /// fail lately first, then those that did (all may have come back).
    fn order(&self, now: Instant) -> Vec<usize> {
        let count = self.addresses.len();
        if count == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let failed = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let recent = |i: usize| failed[i].is_some_and(|at| now.duration_since(at) < LEFT_OUT_FOR);
        let turn = (0..count).map(|k| (start + k) % count);
        turn.clone().filter(|&i| !recent(i)).chain(turn.filter(|&i| recent(i))).collect()
    }

    fn mark(&self, index: usize, failed: bool) {
        let mut marks = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        marks[index] = failed.then(Instant::now);
    }

    /// A connection to the first backend in `order` that takes one.
    async fn connect(&self) -> Option<TcpStream> {
        for index in self.order(Instant::now()) {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addresses[index])).await {
                Ok(Ok(stream)) => {
                    self.mark(index, false);
                    return Some(stream);
                }
                _ => self.mark(index, true),
            }
        }
        None
    }
}

/// Accepts connections on `listener` for ever, each passed to a backend.
pub async fn serve(listener: TcpListener, backends: Arc<Backends>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            // Out of descriptors for a moment: a later accept may succeed.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let backends = Arc::clone(&backends);
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            // No backend takes it: the client sees its connection closed, and retries.
            if let Some(mut outbound) = backends.connect().await {
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(count: u16) -> Backends {
        Backends::new((0..count).map(|i| SocketAddr::from(([10, 0, 0, 1], 6443 + i))).collect())
    }

    #[test]
    fn connections_go_round_the_backends_in_turn() {
        let backends = backends(3);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..4).map(|_| backends.order(now)[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0]);
        assert_eq!(backends.order(now), [1, 2, 0]);
    }

    #[test]
    fn a_backend_that_failed_lately_is_tried_last_then_again() {
        let backends = backends(2);
        backends.mark(0, true);
        let now = Instant::now();
        assert_eq!(backends.order(now), [1, 0]);
        assert_eq!(backends.order(now), [1, 0]);
        // After a while it takes its turn again.
        assert_eq!(backends.order(now + LEFT_OUT_FOR), [0, 1]);
        assert_eq!(backends.order(now + LEFT_OUT_FOR), [1, 0]);
        backends.mark(0, false);
        assert!(Backends::new(Vec::new()).order(now).is_empty());
    }

    #[tokio::test]
    async fn a_dead_backend_is_passed_over() {
        // One backend listens; the other is a port nothing listens on.
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let backends = Arc::new(Backends::new(vec![dead, live.local_addr().unwrap()]));
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = front.local_addr().unwrap();
        tokio::spawn(serve(front, backends));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = live.accept().await {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = stream.write_all(b"live").await;
                });
            }
        });
        for _ in 0..3 {
            use tokio::io::AsyncReadExt;
            let mut client = TcpStream::connect(address).await.unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert_eq!(answer, "live");
        }
    }
}

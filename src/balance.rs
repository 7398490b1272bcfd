//! A proxy listener's connections spread evenly over the worker runtimes (per-core layout).
//!
//! With SO_REUSEPORT the kernel hashes each connection to one of the listener's sockets by its
//! addresses and ports. With a few dozen long-lived connections (an ingress's keep-alive pool,
//! a load test's) the split is often 13 to 19 or worse, and since a connection never changes
//! runtime, one core then queues requests while the other idles: 10-15 % of throughput lost at
//! saturation, differing from one set of connections to the next. So the worker that accepts a
//! connection keeps it only if no other worker has fewer open; otherwise it hands the socket to
//! the one with the fewest, which adopts it into its own runtime before reading a byte (TLS
//! included). A hand-off costs one wake-up of the other thread, per connection, not per request.
//!
//! The counts are `kratos_gate_open_connections{listener, worker}`: a connection counts for the
//! worker it is placed on from the moment it is placed until it closes.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The open connections of one listener's workers, and how to hand each a connection.
pub struct Balance {
    workers: Vec<Worker>,
}

struct Worker {
    open: Gauge,
    inbox: mpsc::UnboundedSender<Handed>,
}

/// A connection counted for the worker it is placed on, until this is dropped (the connection
/// ends, or a hand-off is never taken up).
#[must_use]
pub struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A connection accepted by one worker for another.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    open: Open,
}

/// One worker's place in a [`Balance`]: what its accept loop asks where a connection goes,
/// and where connections handed to it arrive.
pub struct Seat {
    balance: Arc<Balance>,
    /// This worker's count (also in `balance`).
    open: Gauge,
    inbox: mpsc::UnboundedReceiver<Handed>,
}

impl Balance {
    /// The seats of `gauges.len()` workers; `gauges` count each worker's open connections
    /// (`kratos_gate_open_connections`).
    pub fn seats(gauges: Vec<Gauge>) -> Vec<Seat> {
        let mut workers = Vec::with_capacity(gauges.len());
        let mut inboxes = Vec::with_capacity(gauges.len());
        for open in gauges {
            let (tx, rx) = mpsc::unbounded_channel();
            inboxes.push((open.clone(), rx));
            workers.push(Worker { open, inbox: tx });
        }
        let balance = Arc::new(Balance { workers });
        inboxes
            .into_iter()
            .map(|(open, inbox)| Seat {
                balance: Arc::clone(&balance),
                open,
                inbox,
            })
            .collect()
    }

    /// The worker with the fewest open connections if it has fewer than `mine` (the lowest
    /// such worker on a tie); `None`: the accepting worker keeps the connection.
    fn fewer_than(&self, mine: i64) -> Option<&Worker> {
        self.workers
            .iter()
            .map(|w| (w.open.get(), w))
            .filter(|(n, _)| *n < mine)
            .min_by_key(|(n, _)| *n)
            .map(|(_, w)| w)
    }
}

impl Open {
    fn count(gauge: &Gauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Seat {
    /// A connection this worker accepted: `Some` when it is served here, `None` when it was
    /// handed to a worker with fewer open connections.
    pub fn place(&self, stream: TcpStream, peer: SocketAddr) -> Option<(TcpStream, Open)> {
        let Some(to) = self.balance.fewer_than(self.open.get()) else {
            return Some((stream, Open::count(&self.open)));
        };
        // Out of this runtime's reactor, still non-blocking; the other registers it with its own.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection lost before a hand-off");
                return None;
            }
        };
        let handed = Handed {
            stream,
            peer,
            open: Open::count(&to.open),
        };
        match to.inbox.send(handed) {
            Ok(()) => None,
            // That worker has stopped (shutdown): keep the connection here.
            Err(mpsc::error::SendError(h)) => {
                let open = Open::count(&self.open);
                drop(h.open);
                adopt(h.stream, h.peer).map(|s| (s, open))
            }
        }
    }

    /// The next connection handed to this worker, registered with this runtime. Cancel-safe
    /// (a `select!` branch); pending forever once no connection can come.
    pub async fn handed(&mut self) -> (TcpStream, SocketAddr, Open) {
        loop {
            let Some(h) = self.inbox.recv().await else {
                return std::future::pending().await;
            };
            if let Some(stream) = adopt(h.stream, h.peer) {
                return (stream, h.peer, h.open);
            }
        }
    }
}

fn adopt(stream: std::net::TcpStream, peer: SocketAddr) -> Option<TcpStream> {
    match TcpStream::from_std(stream) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot adopt a handed connection");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn gauges(n: usize) -> Vec<Gauge> {
        (0..n).map(|_| Gauge::default()).collect()
    }

    async fn connected(l: &tokio::net::TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
        let client = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, peer) = l.accept().await.expect("accept");
        (client, server, peer)
    }

    #[test]
    fn the_worker_with_fewest_open_takes_the_connection_and_ties_stay_put() {
        let g = gauges(3);
        let seats = Balance::seats(g.clone());
        let b = &seats[0].balance;
        let index = |w: Option<&Worker>| {
            w.map(|w| {
                b.workers
                    .iter()
                    .position(|x| std::ptr::eq(x, w))
                    .expect("one of them")
            })
        };
        assert_eq!(
            index(b.fewer_than(0)),
            None,
            "all at zero: the accepting worker keeps it"
        );
        g[0].set(2);
        g[1].set(1);
        g[2].set(1);
        assert_eq!(index(b.fewer_than(2)), Some(1), "the lowest of the fewest");
        assert_eq!(index(b.fewer_than(1)), None, "a tie stays put");
        g[1].set(0);
        assert_eq!(index(b.fewer_than(1)), Some(1));
        let open = Open::count(&g[2]);
        assert_eq!(g[2].get(), 2);
        drop(open);
        assert_eq!(g[2].get(), 1);
    }

    /// Connections all accepted by one worker end up split evenly, and a handed connection is
    /// a working socket on the worker that adopts it; counts fall as connections end.
    #[tokio::test]
    async fn connections_accepted_by_one_worker_are_split_evenly_and_stay_usable() {
        let g = gauges(2);
        let mut seats = Balance::seats(g.clone());
        let mut other = seats.pop().expect("seat 1");
        let here = seats.pop().expect("seat 0");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut kept = Vec::new();
        let mut adopted = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..6 {
            let (client, server, peer) = connected(&l).await;
            clients.push(client);
            match here.place(server, peer) {
                Some(k) => kept.push(k),
                None => adopted.push(other.handed().await),
            }
        }
        assert_eq!((kept.len(), adopted.len()), (3, 3));
        assert_eq!((g[0].get(), g[1].get()), (3, 3));

        // The adopted socket carries bytes both ways: client 1 went to the other worker.
        let (mut s, peer, _open) = adopted.remove(0);
        assert_eq!(peer, clients[1].local_addr().expect("client addr"));
        clients[1].write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        s.write_all(b"pong").await.expect("write back");
        clients[1].read_exact(&mut buf).await.expect("read back");
        assert_eq!(&buf, b"pong");
        drop((s, _open));
        assert_eq!(g[1].get(), 2);
        kept.clear();
        assert_eq!(g[0].get(), 0);
    }

    /// A worker that has stopped takes no connection: the one that accepted it serves it,
    /// and the count follows.
    #[tokio::test]
    async fn a_stopped_workers_share_stays_with_the_acceptor() {
        let g = gauges(2);
        let mut seats = Balance::seats(g.clone());
        drop(seats.pop()); // worker 1 stopped: its inbox is gone
        let here = seats.pop().expect("seat 0");
        g[0].set(5);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (_client, server, peer) = connected(&l).await;
        let (_stream, open) = here.place(server, peer).expect("kept here");
        assert_eq!((g[0].get(), g[1].get()), (6, 0));
        drop(open);
        assert_eq!(g[0].get(), 5);
    }
}

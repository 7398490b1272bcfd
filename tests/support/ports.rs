//! Free loopback ports for servers a test starts as separate processes (which cannot be
//! handed a listener). A port is free when chosen; another test may still take it before the
//! process binds it, so callers retry on "Address already in use".

use std::net::TcpListener;

/// `N` distinct free ports: every listener is held until all are chosen, so no port is
/// handed out twice (two listeners of one gateway on one address).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("addr").port())
}

/// One free port.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

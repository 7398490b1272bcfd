//! Captures the gateway's log events (JSON lines) for assertions. Tests using it run on the
//! current-thread runtime (the `#[tokio::test]` default), where every gateway task runs on
//! the test's thread and so sees the thread-local subscriber.
//!
//! tracing caches each call site's interest process-wide: a call site first hit on a thread
//! with no subscriber could be cached as "never", and a capture on another thread would then
//! miss that event. The first capture therefore also installs a global subscriber that
//! listens to everything and writes nowhere, so no call site is ever cached as "never".

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Every captured event as JSON.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Events whose `event` field equals `name` (audit events).
    pub fn audit(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Connections the server ended because of an error (a refused request, a reset).
    /// A gateway in the per-core layout logs this on its worker thread just after the
    /// client saw the connection close: the count is read once it has stayed the same for
    /// 50 ms (at most 2 s).
    pub fn connection_errors(&self) -> usize {
        let count = || {
            self.events()
                .iter()
                .filter(|e| e["message"] == "connection ended with an error")
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut last = count();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let now = count();
            if now == last || std::time::Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a JSON subscriber for the current thread; keep the guard alive for the test.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    static LISTEN_EVERYWHERE: std::sync::Once = std::sync::Once::new();
    LISTEN_EVERYWHERE.call_once(|| {
        let sink = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::sink)
            .finish();
        // Another global subscriber already installed serves as well.
        let _ = tracing::subscriber::set_global_default(sink);
    });
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

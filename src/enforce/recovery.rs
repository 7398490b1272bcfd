//! The addresses recovery codes were requested for, per recovery flow, as submitted through
//! this gateway: the owner of a recovery session whoami will not name.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use uuid::Uuid;

/// Addresses remembered per recovery flow; a flow that was sent codes to more is ambiguous.
const MAX_RECOVERY_ADDRESSES: usize = 2;

/// The addresses recovery codes were requested for, per recovery flow, as the client
/// submitted them through this gateway. Recovery of an identity with a second factor hands
/// out a session that whoami will not attribute (403 `session_aal2_required`); the address
/// the code went to names its owner. Bounded in entries and age; when full, new flows are not
/// remembered (SECURITY.md says what that leaves open).
pub struct RecoveryAddresses {
    map: DashMap<Uuid, RecoveryFlow>,
    capacity: usize,
    ttl: Duration,
}

#[derive(Debug, Clone)]
pub(super) struct RecoveryFlow {
    at: Instant,
    pub(super) addresses: Vec<String>,
    /// Codes were requested for more addresses than are kept.
    pub(super) ambiguous: bool,
}

impl RecoveryAddresses {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        RecoveryAddresses {
            map: DashMap::new(),
            capacity,
            ttl,
        }
    }

    pub(super) fn remember(&self, flow: Uuid, address: &str) {
        let address = address.trim().to_lowercase();
        if !self.map.contains_key(&flow) && self.map.len() >= self.capacity {
            let ttl = self.ttl;
            self.map.retain(|_, f| f.at.elapsed() < ttl);
            if self.map.len() >= self.capacity {
                tracing::warn!(
                    capacity = self.capacity,
                    "recovery flows remembered at capacity; a new flow's address is not kept"
                );
                return;
            }
        }
        let mut entry = self.map.entry(flow).or_insert_with(|| RecoveryFlow {
            at: Instant::now(),
            addresses: Vec::new(),
            ambiguous: false,
        });
        if entry.addresses.contains(&address) {
            return;
        }
        if entry.addresses.len() >= MAX_RECOVERY_ADDRESSES {
            entry.ambiguous = true;
        } else {
            entry.addresses.push(address);
        }
    }

    pub(super) fn get(&self, flow: &Uuid) -> Option<RecoveryFlow> {
        self.map
            .get(flow)
            .filter(|f| f.at.elapsed() < self.ttl)
            .map(|f| f.clone())
    }
}

pub(super) use crate::paths::flow_id;

#[cfg(test)]
mod tests {
    use super::*;
    use http::Uri;

    fn flow(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn recovery_addresses_are_kept_per_flow_normalised_and_deduplicated() {
        let r = RecoveryAddresses::new(10, Duration::from_secs(60));
        r.remember(flow(1), " Listed@Example.COM ");
        r.remember(flow(1), "listed@example.com");
        r.remember(flow(2), "other@example.com");
        let f = r.get(&flow(1)).expect("remembered");
        assert_eq!(f.addresses, vec!["listed@example.com"]);
        assert!(!f.ambiguous);
        assert_eq!(
            r.get(&flow(2)).expect("r").addresses,
            vec!["other@example.com"]
        );
        assert!(r.get(&flow(3)).is_none());
    }

    /// A flow sent codes to more addresses than are kept cannot say whose the session is.
    #[test]
    fn a_flow_with_too_many_addresses_is_ambiguous() {
        let r = RecoveryAddresses::new(10, Duration::from_secs(60));
        for a in ["a@x.example", "b@x.example", "c@x.example"] {
            r.remember(flow(1), a);
        }
        let f = r.get(&flow(1)).expect("remembered");
        assert!(f.ambiguous);
        assert_eq!(f.addresses.len(), MAX_RECOVERY_ADDRESSES);
    }

    /// When full, old flows are kept and new ones are not: flooding cannot make the gateway
    /// forget a flow it already knows.
    #[test]
    fn when_full_new_flows_are_not_remembered_and_known_ones_stay() {
        let r = RecoveryAddresses::new(2, Duration::from_secs(60));
        r.remember(flow(1), "a@x.example");
        r.remember(flow(2), "b@x.example");
        r.remember(flow(3), "c@x.example");
        assert!(r.get(&flow(3)).is_none());
        assert!(r.get(&flow(1)).is_some());
        // A known flow still takes a second address.
        r.remember(flow(1), "d@x.example");
        assert_eq!(r.get(&flow(1)).expect("r").addresses.len(), 2);
    }

    #[test]
    fn expired_flows_are_forgotten_and_make_room() {
        let r = RecoveryAddresses::new(1, Duration::ZERO);
        r.remember(flow(1), "a@x.example");
        assert!(r.get(&flow(1)).is_none());
        r.remember(flow(2), "b@x.example");
        assert_eq!(r.map.len(), 1);
    }

    #[test]
    fn the_flow_id_comes_from_the_query_in_any_uuid_spelling() {
        let uri: Uri = "/self-service/recovery?x=1&flow=5FF66179C2404703B0D8494592CEFFF5"
            .parse()
            .expect("uri");
        assert_eq!(
            flow_id(&uri).map(|u| u.to_string()).as_deref(),
            Some("5ff66179-c240-4703-b0d8-494592cefff5")
        );
        let none: Uri = "/self-service/recovery?flow=nope".parse().expect("uri");
        assert_eq!(flow_id(&none), None);
    }
}

//! Where a connection comes from, as the limits on unauthenticated callers
//! count it, and the cap on connections per such address.
//!
//! An IPv6 client is counted by its /64: that is what one host or one site
//! gets from its provider, so an attacker holding a /64 does not become
//! 2^64 clients.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A client's address as the limits count it: an IPv4 address, or the /64
/// of an IPv6 one (an IPv4 address mapped into IPv6 counts as itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(IpAddr);

impl ClientAddr {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !(u128::from(u64::MAX));
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// A handler takes `Option<ClientAddr>` to learn who called (for the
/// audit log); the server puts it in every request's extensions.
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ClientAddr>().copied())
    }
}

impl ClientAddr {
    /// The address (for IPv6, its /64 prefix), as the audit log records it.
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Open connections per client address, each at most `cap`. Holds an
/// entry only for an address with an open connection, so it never outgrows
/// the server's connection cap.
#[derive(Debug)]
pub struct AddressSlots {
    /// Most connections open at once from one address.
    cap: u32,
    open: Mutex<HashMap<ClientAddr, u32>>,
    /// Connections closed at once for being over the cap, since start.
    refused: AtomicU64,
}

/// One open connection's place in its address's count, given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<AddressSlots>,
    addr: ClientAddr,
}

impl AddressSlots {
    pub fn new(cap: u32) -> Self {
        Self {
            cap,
            open: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes a place for a new connection from `addr`, or counts a refusal
    /// and returns the number refused so far.
    pub fn take(self: &Arc<Self>, addr: ClientAddr) -> Result<Slot, u64> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(addr).or_insert(0);
        if *n >= self.cap {
            return Err(self.refused.fetch_add(1, Ordering::Relaxed) + 1);
        }
        *n += 1;
        Ok(Slot {
            slots: self.clone(),
            addr,
        })
    }

    /// Connections refused for being over the cap, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> ClientAddr {
        ClientAddr::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_itself() {
        assert_eq!(addr("2001:db8:1:2:aaaa::1"), addr("2001:db8:1:2:ffff::9"));
        assert_ne!(addr("2001:db8:1:2::1"), addr("2001:db8:1:3::1"));
        assert_eq!(addr("::ffff:192.0.2.7"), addr("192.0.2.7"));
        assert_ne!(addr("192.0.2.7"), addr("192.0.2.8"));
        assert_eq!(addr("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn an_address_over_the_cap_is_refused_until_one_closes() {
        let slots = Arc::new(AddressSlots::new(3));
        let (a, b) = (addr("192.0.2.1"), addr("192.0.2.2"));
        let mut held: Vec<Slot> = (0..3).map(|_| slots.take(a).unwrap()).collect();
        assert_eq!(slots.take(a).unwrap_err(), 1);
        assert_eq!(slots.take(a).unwrap_err(), 2);
        // Another address is not affected.
        let other = slots.take(b).unwrap();
        held.pop();
        let again = slots.take(a).unwrap();
        assert_eq!(slots.refused(), 2);
        drop((held, again, other));
        assert!(slots.open.lock().unwrap().is_empty());
    }
}

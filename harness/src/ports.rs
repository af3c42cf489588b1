//! Free loopback ports for a run's nodes, leased machine-wide: a registry
//! of `flock`ed files (one per port) that every jetsam run on the machine
//! honours, so parallel runs never take each other's ports, even while a
//! killed node is down. Moved out of `cluster` unchanged.

use crate::cluster::ClusterError;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// Ports are picked below the kernel's ephemeral range (Linux default
/// 32768..60999), so an outgoing connection (a node dialing its peers, a
/// client) can never be handed a port between the moment we release it and
/// the moment its node binds it: with `bind(0)` that race made a node fail to
/// start now and then.
const PORT_MIN: u16 = 10_000;
const PORT_MAX: u16 = 32_767;
/// How many random candidates to try before giving up (most are free).
const PORT_TRIES_MAX: usize = 10_000;

/// Ports held by this process for other jetsam runs on the machine: one
/// `flock`ed file per port in [`port_registry_dir`], held as long as the
/// lease lives (the kernel drops the locks when the process dies, so a
/// killed controller leaves no stale reservation). A node that restarts after
/// a kill binds its port again; without the lease a parallel run could pick
/// that port while the node was down, and the node would fail to start.
#[derive(Debug, Default)]
pub struct PortLease {
    locks: Vec<std::fs::File>,
}

impl PortLease {
    /// How many ports the lease holds in the registry (0 when the registry
    /// folder could not be used).
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }
}

/// The folder of per-port lock files shared by every jetsam run of this machine.
pub fn port_registry_dir() -> PathBuf {
    std::env::temp_dir().join("jetsam-ports")
}

/// Takes the registry lock of `port` without waiting; `None` when another
/// process holds it (or the lock file cannot be opened).
fn lock_port(dir: &Path, port: u16) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{port}.lock")))
        .ok()?;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (rc == 0).then_some(file)
}

/// Reserves `count` distinct free loopback ports below the ephemeral range:
/// a port is taken only if its registry lock is free (another jetsam run
/// holds it otherwise) and it can be bound now. All listeners are held
/// until every port is chosen, so no two are the same, then released for the
/// nodes to bind; the registry locks stay in the returned lease. Falls back
/// to `bind(0)` when the low range is exhausted, and to no registry when its
/// folder cannot be created.
pub fn free_ports(count: usize) -> Result<(Vec<SocketAddr>, PortLease), ClusterError> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let dir = port_registry_dir();
    let registry = std::fs::create_dir_all(&dir).is_ok();
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(count);
    let mut lease = PortLease::default();
    for _ in 0..PORT_TRIES_MAX {
        if listeners.len() == count {
            break;
        }
        let port = rng.gen_range(PORT_MIN..=PORT_MAX);
        let lock = if registry {
            match lock_port(&dir, port) {
                Some(lock) => Some(lock),
                None => continue,
            }
        } else {
            None
        };
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
            lease.locks.extend(lock);
        }
    }
    while listeners.len() < count {
        listeners.push(TcpListener::bind("127.0.0.1:0").map_err(ClusterError::Port)?);
    }
    let ports: Vec<SocketAddr> =
        listeners.iter().map(|l| l.local_addr().map_err(ClusterError::Port)).collect::<Result<_, _>>()?;
    assert_eq!(ports.len(), count);
    assert!(lease.len() <= count, "at most one registry lock per port");
    Ok((ports, lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_loopback_ports_below_the_ephemeral_range() {
        let (ports, lease) = free_ports(40).unwrap();
        assert_eq!(lease.len(), 40, "every port is held in the registry");
        let distinct: std::collections::BTreeSet<u16> = ports.iter().map(|p| p.port()).collect();
        assert_eq!(distinct.len(), 40);
        for p in &ports {
            assert!(p.ip().is_loopback());
            assert!((PORT_MIN..=PORT_MAX).contains(&p.port()), "{p}");
            // Released: the node can bind it.
            drop(TcpListener::bind(p).unwrap());
        }
    }

    #[test]
    fn a_leased_port_is_not_handed_out_again_until_the_lease_is_dropped() {
        let (first, lease) = free_ports(200).unwrap();
        let (second, _other) = free_ports(200).unwrap();
        let a: std::collections::BTreeSet<u16> = first.iter().map(|p| p.port()).collect();
        let b: std::collections::BTreeSet<u16> = second.iter().map(|p| p.port()).collect();
        assert!(a.is_disjoint(&b), "ports leased twice: {:?}", a.intersection(&b).collect::<Vec<_>>());
        // Released: the same port can be locked again.
        let port = first[0].port();
        assert!(lock_port(&port_registry_dir(), port).is_none(), "held while the lease lives");
        drop(lease);
        assert!(lock_port(&port_registry_dir(), port).is_some(), "free once the lease is dropped");
    }
}

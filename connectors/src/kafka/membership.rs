//! A consumer's static group membership id (KIP-345) that survives a crash: a runner restarted
//! on the same host claims the id its predecessor held, and takes its partitions back at once.

use std::io;

/// The most runners of one group on one host that get a default instance id.
const MAX_SLOTS: u32 = 1024;

/// What holds a claimed slot.
#[cfg(target_os = "linux")]
type Claim = std::os::unix::net::UnixListener;
#[cfg(not(target_os = "linux"))]
type Claim = ();

/// A static group membership id claimed by this process, and the claim that keeps another live
/// process of this host from claiming it too.
#[derive(Debug)]
pub struct InstanceId {
    id: String,
    /// Bound while the process lives; the kernel releases it when the process ends, however it
    /// ends (kill -9 included), so a restart finds the slot free again.
    _claim: Option<Claim>,
}

impl InstanceId {
    /// `<hostname>-<n>`, where `n` is the lowest number that no other live process on this host
    /// holds for `group`: a runner restarted after its predecessor died gets the same id back,
    /// and two runners of one group on one host get different ones.
    ///
    /// The claim is an abstract Unix socket (Linux: per network namespace, released by the
    /// kernel with the process); elsewhere every runner gets `<hostname>-0`, and a second runner
    /// of the same group on the host needs an explicit id.
    pub fn claim(group: &str) -> io::Result<InstanceId> {
        let host = hostname();
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            use std::os::unix::net::{SocketAddr, UnixListener};
            for n in 0..MAX_SLOTS {
                let name = format!("gostocks/group-instance/{:016x}/{n}", fnv1a(group));
                let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
                match UnixListener::bind_addr(&addr) {
                    Ok(listener) => {
                        return Ok(InstanceId {
                            id: format!("{host}-{n}"),
                            _claim: Some(listener),
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(io::Error::other(format!(
                "{MAX_SLOTS} runners of group {group} already run on this host: pass --instance-id"
            )))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (group, MAX_SLOTS);
            Ok(InstanceId {
                id: format!("{host}-0"),
                _claim: None,
            })
        }
    }

    /// An id given by the operator (no claim: keeping it unique is theirs).
    pub fn given(id: impl Into<String>) -> InstanceId {
        InstanceId {
            id: id.into(),
            _claim: None,
        }
    }

    /// The id, as `group.instance.id`.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// This host's name, in the characters Kafka allows in an instance id.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// A hash that stays the same across builds (the claim's name must not depend on the binary).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_claim_keeps_its_id_and_a_released_one_is_claimed_again() {
        let group = format!("membership-test-{}", std::process::id());
        let first = InstanceId::claim(&group).expect("claim");
        let second = InstanceId::claim(&group).expect("claim");
        assert_ne!(first.as_str(), second.as_str(), "two live claims differ");
        let id = first.as_str().to_owned();
        assert!(id.ends_with("-0"), "{id}");
        drop(first);
        let again = InstanceId::claim(&group).expect("claim");
        assert_eq!(again.as_str(), id, "the lowest free slot is taken again");
        let other = InstanceId::claim(&format!("{group}-other")).expect("claim");
        assert!(other.as_str().ends_with("-0"), "slots are per group");
    }
}

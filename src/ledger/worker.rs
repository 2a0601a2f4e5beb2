//! Who a worker is (`host:boot:pidns:pid:nonce`) and whether a worker of
//! this machine is gone.

/// This machine's name, for worker ids: `HOSTNAME`, `COMPUTERNAME` (Windows),
/// `/etc/hostname`, else `host`. `env` looks up environment variables.
pub fn host_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("HOSTNAME")
        .or_else(|| env("COMPUTERNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Where a process lives, beyond its host name: the kernel boot and the PID
/// namespace. Two containers may share a host name while their PIDs mean
/// different things; a PID is only checked where both match ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    /// The boot id, dashes removed, first 12 hex digits; `-` when unknown.
    pub boot: String,
    /// The PID namespace's inode; `-` when unknown.
    pub pidns: String,
}

impl Locality {
    /// This process's locality (Linux `/proc`; `-` elsewhere).
    pub fn current() -> Locality {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|s| parse_boot_id(&s));
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|p| parse_pid_ns(&p.to_string_lossy()));
        Locality {
            boot: boot.unwrap_or_else(|| "-".into()),
            pidns: pidns.unwrap_or_else(|| "-".into()),
        }
    }

    /// Whether both parts are known.
    pub(super) fn known(&self) -> bool {
        self.boot != "-" && self.pidns != "-"
    }
}

/// The first 12 hex digits of a boot id (`/proc/sys/kernel/random/boot_id`).
pub fn parse_boot_id(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    (hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex[..12].to_ascii_lowercase())
}

/// The inode of a PID namespace link (`pid:[4026531836]`).
pub fn parse_pid_ns(link: &str) -> Option<String> {
    let inode = link.trim().strip_prefix("pid:[")?.strip_suffix(']')?;
    (!inode.is_empty() && inode.chars().all(|c| c.is_ascii_digit())).then(|| inode.to_string())
}

/// A worker id: `host:boot:pidns:pid:nonce`.
pub fn worker_id(host: &str, here: &Locality, pid: u32) -> String {
    format!(
        "{host}:{}:{}:{pid}:{:04x}",
        here.boot,
        here.pidns,
        fastrand::u16(..)
    )
}

/// A worker id taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct WorkerParts<'a> {
    pub host: &'a str,
    pub here: Locality,
    pub pid: u32,
}

/// The parts of a worker id; `None` for other formats (older ids included).
pub fn worker_parts(worker: &str) -> Option<WorkerParts<'_>> {
    let mut parts = worker.rsplitn(5, ':');
    let nonce = parts.next()?;
    if nonce.len() != 4 || !nonce.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let pid = parts.next()?.parse().ok()?;
    let pidns = parts.next()?.to_string();
    let boot = parts.next()?.to_string();
    let host = parts.next()?;
    Some(WorkerParts {
        host,
        here: Locality { boot, pidns },
        pid,
    })
}

/// Whether `other` is known to be gone: a worker of the same host, boot and
/// PID namespace as `me` whose process no longer exists. Only where liveness
/// can be known (Linux `/proc`, locality known); elsewhere the lease decides.
pub fn worker_gone(me: &str, other: &str) -> bool {
    match (worker_parts(me), worker_parts(other)) {
        (Some(a), Some(b)) => {
            a.host == b.host
                && a.here == b.here
                && a.here.known()
                && process_alive(b.pid) == Some(false)
        }
        _ => false,
    }
}

/// Whether a process of this machine is alive, when that can be known.
fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        Some(std::path::Path::new(&format!("/proc/{pid}")).exists())
    } else {
        None
    }
}

//! `patchward-netd`: the small privileged helper that applies the legacy segment's fence.
//!
//! The appliance daemon never holds `CAP_NET_ADMIN` (DESIGN §5). This helper does, and so
//! it trusts nothing it is sent: it accepts a complete ruleset for `table inet patchward`
//! and nothing else (`validate`, before any `nft` runs), checks it with `nft -c`, and
//! applies it in one `nft -f` batch that deletes and recreates the table, so the kernel
//! has either the old table or the new one. It also reads the table's counters back and
//! shows the applied table. Only root and members of one group (`patchward`) may ask
//! (`peer`, SO_PEERCRED).
//!
//! Wire format: one request per connection, one JSON line each way (`Request`,
//! `Response`). Versioned by the `op`/`status` tags: an unknown field or op is refused.
//!
//! Idempotence: the batch gives the table a comment holding the sha256 of the ruleset
//! text. An `apply` whose text hashes to the comment of the table in the kernel changes
//! nothing and answers `changed: false`; the kernel is the record, so this survives a
//! restart of the helper.

pub mod client;
pub mod nft_cmd;
pub mod peer;
pub mod server;
pub mod validate;

use std::net::IpAddr;

/// Where systemd's `patchward-netd.socket` listens.
pub const DEFAULT_SOCKET: &str = "/run/patchward/netd.sock";
/// The group whose members may use the helper (besides root).
pub const DEFAULT_GROUP: &str = "patchward";
/// A request line longer than this is refused (1,000 hosts x 10 flows render to ~2 MiB).
pub const MAX_REQUEST_BYTES: u64 = 32 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Replace the table with this ruleset (unless it is the one applied).
    Apply { ruleset: String },
    /// The table's named counters and the blocked flows it remembers.
    Counters,
    /// The table as the kernel lists it.
    Show,
}

/// What the helper answers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Applied {
        /// False when the same ruleset was already applied: nothing was done.
        changed: bool,
        sha256: String,
    },
    Counters {
        counters: Vec<Counter>,
        blocked: Vec<BlockedFlow>,
    },
    Table {
        /// None when the table does not exist.
        text: Option<String>,
        /// The hash of the ruleset last applied through the helper, from the table's
        /// comment.
        sha256: Option<String>,
    },
    /// Refused or failed; nothing was changed.
    Error { message: String },
}

/// One named counter of the table (`drop_in_HOST`, `drop_out_HOST`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

/// One refused (source, destination, protocol, port) the `blocked` sets remember.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockedFlow {
    pub source: IpAddr,
    pub destination: IpAddr,
    /// `tcp`, `udp`, `icmp`, ... or the protocol number nft printed.
    pub proto: String,
    /// None for protocols without ports.
    pub port: Option<u16>,
    pub packets: u64,
    pub bytes: u64,
}

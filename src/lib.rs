//! Patchward: an offline-capable patch appliance for a small business site.
//!
//! The appliance mirrors signed patch content, serves it to the site's servers, decides
//! who installs what and when, and keeps an append-only audit trail. This crate holds
//! everything; the two binaries (`patchward`, `patchward-agent`) only parse arguments and
//! call into it.
//!
//! Module map (see ARCHITECTURE.md for the invariants each module keeps):
//!
//! - [`config`]: raw TOML structs, validated into [`config::Config`]; embedded defaults.
//! - [`clock`]: the [`clock::Clock`] trait; all time goes through it.
//! - [`error`]: the crate's error types.
//! - [`db`]: SQLite (WAL, migrations, one writer and pooled readers off the executor).
//! - [`audit`]: the append-only, hash-chained audit log.
//! - [`auth`]: accounts of the admin page: argon2id passwords, roles, sessions, sign-in
//!   throttling, `patchward users`.
//! - [`trust`]: ed25519 keys, DSSE envelopes, feed roles and the trust state (rollback,
//!   freeze, rotation checks); the appliance's OpenPGP key for apt.
//! - [`feed`]: catalog types, `*.pwb` bundles, and the MSP-side `patchward feed` tools.
//! - [`agent`]: the `patchward-agent` side: enrollment, signed check-ins, inventory, and
//!   running jobs (ticket and artifact checks, the `script` and `apt` backends, resuming
//!   after a crash or reboot, a local journal).
//! - [`fleet`]: enrollment tokens, hosts, inventory, the signed agent-request format, and
//!   jobs (state machine, signed tickets, reported events).
//! - [`apt`]: apt repositories per ring: indexes, signed Release, atomic publish, the
//!   release/withdraw boundary the rollout engine calls.
//! - [`deb`]: reading a `.deb`'s control stanza (and its hashes), bounded.
//! - [`policy`]: pure decisions: classes, approvals, rings and gates, windows,
//!   dependencies, SLA, applicability, "why not yet".
//! - [`rollout`]: approvals and rollouts persisted, the scheduler that offers jobs at
//!   check-ins, `explain`, and the apt rings it drives.
//! - [`appliance`]: opening a data directory: keys, database, first-start work.
//! - [`mirror`]: importing bundles, syncing configured sources, status; [`mirror_schedule`]
//!   runs each source's sync on its interval inside the server.
//! - [`server`]: `patchward serve` and `server::run`: start-up, readiness, graceful shutdown.
//! - [`fsutil`]: crash-safe file writes (temp + fsync + rename).
//! - [`suggest`]: "did you mean" for mistyped patch ids and host names.
//! - [`web`]: the HTTP and HTTPS listeners (`web::run`, `web::run_tls`), health and
//!   metrics, the agent API, apt, and the admin page (`web::admin`: guard, sign-in,
//!   layout, assets; pages in `web::admin::pages`).
//! - [`telemetry`]: logging set-up and the Prometheus recorder.
//! - [`timefmt`]: times as people type them (`defer --until`, forms) and read them.
//! - [`timesync`]: is the system clock NTP-synchronised? (warning in the log and for the
//!   dashboard).
//! - [`tls`]: the process's rustls crypto provider (ring), installed before any HTTP client;
//!   `tls::cert`: the HTTPS certificate (generated self-signed, or the operator's).
//! - [`hostinfo`]: host name and local addresses (certificate names, printed URLs).
//! - [`health`]: the `healthcheck` client used by container and systemd health checks.
//!
//! Modules that later work fills (legacy hosts, compliance) are not present until they
//! do something.

pub mod agent;
pub mod appliance;
pub mod apt;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod deb;
pub mod error;
pub mod feed;
pub mod fleet;
pub mod fsutil;
pub mod health;
pub mod hostinfo;
pub mod legacy;
pub mod mirror;
pub mod mirror_schedule;
pub mod policy;
pub mod rollout;
pub mod server;
pub mod store;
pub mod suggest;
pub mod telemetry;
pub mod timefmt;
pub mod timesync;
pub mod tls;
pub mod trust;
pub mod web;

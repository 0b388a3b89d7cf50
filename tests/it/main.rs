//! Integration tests: one test binary (fast to link), modules by area, shared helpers in
//! `support`. Tests start the real binaries on 127.0.0.1:0 and talk to them over HTTP.

mod agent_api;
mod apt_agent;
mod apt_repo;
mod artifacts;
mod audit_cli;
mod bad_input;
mod browser;
mod browser_legacy;
mod browser_legacy_fence;
mod crash;
// The DNS server of `legacy::dns`'s unit tests, for the fence's netns tests.
#[path = "../../src/legacy/dns_testserver.rs"]
#[allow(dead_code)]
mod dns_testserver;
mod dropfolder;
mod feedkit;
mod fleet;
mod http_limits;
mod import;
mod import_crash;
mod import_truth;
mod jobs;
mod legacy_catalog;
mod legacy_daemon_netns;
mod legacy_flows;
mod legacy_monitor_cli;
mod legacy_policy;
mod legacy_registry;
mod legacy_segment;
mod legacy_segment_netns;
mod lifecycle;
mod monitor;
mod monitor_netns;
mod netns;
mod netns_support;
mod rollout;
mod scripts;
mod serve;
mod support;
mod sync;
mod upstream;
mod ux;
mod web_pages;
mod web_security;
mod windows_cli;

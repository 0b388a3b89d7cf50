//! `/hosts`: the host list (search, filters, pages), one host's page (inventory, ring,
//! labels, jobs, why each pending patch is not offered yet), enrollment tokens, and
//! revocation.
//!
//! The list reads a light projection of every host (no inventory), places each in its
//! ring with the policy, filters and pages in memory, and then reads a few inventory
//! fields for the page's rows only: a few milliseconds at 10,000 hosts (BENCHMARKS.md).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use jiff::Timestamp;
use serde::Deserialize;

use super::{Ctx, Flash, PER_PAGE, Pager, ago, done, error_page, internal, query_string, show};
use crate::db::views::{self, HostExtra, JobLine};
use crate::fleet::standing::Standing;
use crate::fleet::{self, FleetError, Labels, POLL_SECONDS, STALE_AFTER_POLLS};
use crate::policy::Policy;
use crate::rollout::engine::{Explanation, Verdict};
use crate::web::AppState;
use crate::web::admin::{AdminViewer, Viewer};

/// A host as the list shows it.
#[derive(Debug, Clone)]
pub(super) struct HostItem {
    pub id: String,
    pub hostname: String,
    /// The ring the policy places it in (what the scheduler uses).
    pub ring: Option<String>,
    pub labels: Labels,
    pub last_seen: Option<Timestamp>,
    pub stale: bool,
    pub failing: bool,
    pub revoked: bool,
}

impl HostItem {
    pub fn state(&self) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.failing {
            "failing"
        } else if self.stale {
            "stale"
        } else {
            "ok"
        }
    }

    pub fn labels_text(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every host, placed in its ring and classified (ok, stale, failing, revoked).
pub(super) fn all_hosts(
    conn: &rusqlite::Connection,
    policy: &Policy,
    now: Timestamp,
) -> Result<Vec<HostItem>, crate::error::DbError> {
    let failing = views::hosts_with_failures(conn)?;
    let stale_after = jiff::SignedDuration::from_secs((POLL_SECONDS * STALE_AFTER_POLLS) as i64);
    let rows = views::host_briefs(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for h in rows {
        let labels: Labels = serde_json::from_str(&h.labels).unwrap_or_default();
        let ring = crate::policy::rings::ring_of(&policy.rings, &h.id, h.ring.as_deref(), &labels)
            .map(|r| r.name.clone());
        let last_seen = h
            .last_seen
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok());
        out.push(HostItem {
            stale: last_seen.is_none_or(|t| now.duration_since(t) > stale_after),
            failing: failing.contains(&h.id),
            revoked: h.revoked_at.is_some(),
            id: h.id,
            hostname: h.hostname,
            ring,
            labels,
            last_seen,
        });
    }
    Ok(out)
}

/// The list's filters, as the search form sends them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HostFilter {
    /// Part of a hostname or id (any case).
    pub q: String,
    pub ring: String,
    /// ok | stale | failing | revoked (default: every host not revoked).
    pub state: String,
    /// `key=value`
    pub label: String,
    pub page: usize,
}

impl HostFilter {
    fn matches(&self, h: &HostItem, needle: &str, label: Option<(&str, &str)>) -> bool {
        if !needle.is_empty()
            && !h.hostname.to_lowercase().contains(needle)
            && !h.id.to_lowercase().contains(needle)
        {
            return false;
        }
        if !self.ring.is_empty() && h.ring.as_deref() != Some(self.ring.as_str()) {
            return false;
        }
        match self.state.as_str() {
            "" | "active" => {
                if h.revoked {
                    return false;
                }
            }
            "all" => {}
            s => {
                if h.state() != s && !(s == "stale" && h.stale && !h.revoked) {
                    return false;
                }
            }
        }
        if let Some((k, v)) = label
            && h.labels.get(k).map(String::as_str) != Some(v)
        {
            return false;
        }
        true
    }

    fn query(&self) -> String {
        query_string(&[
            ("q", &self.q),
            ("ring", &self.ring),
            ("state", &self.state),
            ("label", &self.label),
        ])
    }
}

/// One row of the list, with the inventory fields read for its page.
pub(super) struct ListRow {
    pub host: HostItem,
    pub extra: HostExtra,
    pub seen: String,
}

/// The host list page's data.
pub(super) struct HostList {
    pub rows: Vec<ListRow>,
    pub pager: Pager,
    pub rings: Vec<String>,
    /// Machines that fetched a ring's apt index, agent or not (newest first, at most
    /// [`APT_CLIENTS_SHOWN`]).
    pub apt_clients: Vec<AptClientLine>,
    pub apt_clients_total: usize,
}

/// How many apt clients the Hosts page lists.
const APT_CLIENTS_SHOWN: usize = 200;

/// One apt client on the Hosts page.
pub(super) struct AptClientLine {
    pub ring: String,
    pub address: String,
    pub user_agent: String,
    /// The enrolled host with this address, if one reported it.
    pub host: Option<String>,
    pub requests: i64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Reads one page of the host list.
pub(super) fn load_list(
    conn: &rusqlite::Connection,
    policy: &Policy,
    now: Timestamp,
    f: &HostFilter,
) -> Result<HostList, crate::error::DbError> {
    let needle = f.q.trim().to_lowercase();
    let label = f
        .label
        .trim()
        .split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()));
    let hits: Vec<HostItem> = all_hosts(conn, policy, now)?
        .into_iter()
        .filter(|h| f.matches(h, &needle, label))
        .collect();
    let pager = Pager::new(f.page.max(1), hits.len(), f.query());
    let page: Vec<HostItem> = hits
        .into_iter()
        .skip(pager.offset())
        .take(PER_PAGE)
        .collect();
    let ids: Vec<&str> = page.iter().map(|h| h.id.as_str()).collect();
    let mut extras = views::host_extras(conn, &ids)?;
    let rows = page
        .into_iter()
        .map(|h| ListRow {
            extra: extras.remove(&h.id).unwrap_or_default(),
            seen: h.last_seen.map_or_else(|| "never".into(), |t| ago(now, t)),
            host: h,
        })
        .collect();
    let clients = crate::apt::clients::list(conn)?;
    let apt_clients_total = clients.len();
    let apt_clients = clients
        .into_iter()
        .take(APT_CLIENTS_SHOWN)
        .map(|c| AptClientLine {
            first_seen: super::when(&c.first_seen),
            last_seen: c
                .last_seen
                .parse::<Timestamp>()
                .map_or_else(|_| c.last_seen.clone(), |t| ago(now, t)),
            ring: c.ring,
            address: c.address,
            user_agent: c.user_agent,
            host: c.host,
            requests: c.requests,
        })
        .collect();
    Ok(HostList {
        rows,
        pager,
        rings: policy.ring_names().iter().map(|s| s.to_string()).collect(),
        apt_clients,
        apt_clients_total,
    })
}

#[derive(Template)]
#[template(path = "pages/hosts.html")]
pub(super) struct HostsPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub filter: HostFilter,
    pub list: HostList,
    pub states: &'static [(&'static str, &'static str)],
}

/// The state filter's choices: (value, label).
const STATES: &[(&str, &str)] = &[
    ("", "not revoked"),
    ("ok", "ok"),
    ("stale", "stale"),
    ("failing", "with failed jobs"),
    ("revoked", "revoked"),
    ("all", "all"),
];

/// `GET /hosts`
pub async fn list(
    State(st): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Query(filter): Query<HostFilter>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (policy, now, f) = (ctx.policy.clone(), ctx.now, filter.clone());
    match ctx.db.read(move |c| load_list(c, &policy, now, &f)).await {
        Ok(list) => {
            let flash = Flash::from_headers(&headers);
            show(
                &HostsPage {
                    viewer,
                    nav: "hosts",
                    flash: flash.clone(),
                    filter,
                    list,
                    states: STATES,
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "hosts", e),
    }
}

/// One pending patch's explanation.
pub(super) struct Pending {
    pub key: String,
    pub title: String,
    pub status: &'static str,
    pub sentence: String,
    pub overdue: bool,
}

/// Whether the host must reboot: its own report, or a job of it waiting for the
/// reboot (`reboot_pending`, read through `JobState::standing` like the rollout counts).
#[derive(Debug, Clone, Default)]
pub(super) struct Reboot {
    /// The jobs that wait for the host's reboot.
    pub jobs: Vec<String>,
}

impl Reboot {
    /// `reported`: the inventory's `reboot_required`.
    pub fn required(&self, reported: &bool) -> bool {
        *reported || !self.jobs.is_empty()
    }
}

/// One host's page data.
pub(super) struct HostPage {
    pub detail: fleet::hosts::HostDetail,
    pub reboot: Reboot,
    pub ring: Option<String>,
    pub stale: bool,
    pub jobs: Vec<JobLine>,
    pub pending: Vec<Pending>,
    /// All patches not installed (`pending` holds the first [`PENDING_SHOWN`]).
    pub pending_total: usize,
}

/// How many "why not yet" lines a host's page lists.
const PENDING_SHOWN: usize = 100;

fn status_of(v: &Verdict) -> &'static str {
    match v {
        Verdict::Offer { .. } => "offer",
        Verdict::Job { .. } => "job",
        Verdict::Installed { .. } => "installed",
        Verdict::Blocked { .. } => "blocked",
    }
}

/// Reads one host's page: its detail, jobs, and `explain` for every patch that
/// applies to it and is not installed (the same evaluation as `patchward explain`).
pub(super) fn load_host(
    conn: &rusqlite::Connection,
    db: &std::path::Path,
    policy: &Policy,
    now: Timestamp,
    id: &str,
) -> Result<HostPage, crate::rollout::RolloutError> {
    let detail = fleet::hosts::show(conn, id, now)?;
    let s = &detail.summary;
    let ring = crate::policy::rings::ring_of(&policy.rings, &s.id, s.ring.as_deref(), &s.labels)
        .map(|r| r.name.clone());
    let jobs = views::jobs_of_host(conn, &s.id, 50)?;
    let reboot = Reboot {
        jobs: crate::db::rollout::jobs_of_host(conn, &s.id)?
            .into_iter()
            .filter(|j| Standing::of(&j.state) == Some(Standing::AwaitingReboot))
            .map(|j| j.id)
            .collect(),
    };
    let world = super::world::world(conn, db, policy, now)?;
    let lines: Vec<Explanation> = crate::rollout::engine::explain(&world, policy, &s.id, None, now);
    let mut pending: Vec<Pending> = lines
        .into_iter()
        .filter(|l| !matches!(l.verdict, Verdict::Installed { .. }))
        .map(|l| Pending {
            key: format!("{}:{}", l.feed, l.patch),
            title: l.title,
            status: status_of(&l.verdict),
            overdue: l.sla.as_ref().is_some_and(|s| s.overdue),
            sentence: l.sentence,
        })
        .collect();
    // Offers and running jobs first, then overdue ones; the page lists PENDING_SHOWN.
    pending.sort_by_key(|p| (p.status != "offer" && p.status != "job", !p.overdue));
    let pending_total = pending.len();
    pending.truncate(PENDING_SHOWN);
    Ok(HostPage {
        reboot,
        pending_total,
        stale: s.stale,
        ring,
        jobs,
        pending,
        detail,
    })
}

#[derive(Template)]
#[template(path = "pages/host.html")]
pub(super) struct HostTemplate {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub h: HostPage,
    pub now: Timestamp,
}

impl HostTemplate {
    fn seen(&self) -> String {
        match self
            .h
            .detail
            .summary
            .last_seen
            .as_deref()
            .and_then(|s| s.parse().ok())
        {
            Some(t) => format!("{} ({})", super::when_ts(t), ago(self.now, t)),
            None => "never".into(),
        }
    }
}

fn fleet_status(e: &FleetError) -> StatusCode {
    match e {
        FleetError::NoSuchHost(..) => StatusCode::NOT_FOUND,
        FleetError::Invalid { .. } | FleetError::Ambiguous(..) => StatusCode::BAD_REQUEST,
        FleetError::Revoked(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `GET /hosts/{id}`
pub async fn detail(
    State(st): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (policy, now, path) = (ctx.policy.clone(), ctx.now, ctx.db.path().to_path_buf());
    match ctx
        .db
        .read(move |c| load_host(c, &path, &policy, now, &id))
        .await
    {
        Ok(h) => {
            let flash = Flash::from_headers(&headers);
            show(
                &HostTemplate {
                    viewer,
                    nav: "hosts",
                    flash: flash.clone(),
                    h,
                    now,
                },
                &flash,
            )
        }
        Err(crate::rollout::RolloutError::Fleet(e)) if fleet_status(&e).is_client_error() => {
            error_page(
                viewer,
                "hosts",
                fleet_status(&e),
                "No such host",
                &e.to_string(),
                "/hosts",
            )
        }
        Err(e) => internal(viewer, "hosts", e),
    }
}

/// The revoke form.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    pub reason: String,
    /// The confirmation checkbox ("yes").
    #[serde(default)]
    pub confirm: String,
}

/// `POST /hosts/{id}/revoke`
pub async fn revoke(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = format!("/hosts/{}", super::enc(&id));
    if form.confirm != "yes" || form.reason.trim().is_empty() {
        return error_page(
            viewer,
            "hosts",
            StatusCode::BAD_REQUEST,
            "Host not revoked",
            "To revoke a host, give a reason and tick the confirmation box.",
            &back,
        );
    }
    let (now, actor, reason) = (
        ctx.now,
        super::actor(&viewer),
        form.reason.trim().to_string(),
    );
    let r = ctx
        .db
        .write(move |tx| fleet::hosts::revoke(tx, &id, now, &actor, &reason))
        .await;
    match r {
        Ok(id) => done(
            &back,
            true,
            &format!("Host {id} is revoked; its next request will be refused."),
        ),
        Err(e) if fleet_status(&e).is_client_error() => error_page(
            viewer,
            "hosts",
            fleet_status(&e),
            "Host not revoked",
            &e.to_string(),
            &back,
        ),
        Err(e) => internal(viewer, "hosts", e),
    }
}

/// The enrollment-token form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub ring: String,
    /// `key=value,key=value`
    #[serde(default)]
    pub labels: String,
    /// `30m`, `12h`, `7d`
    #[serde(default)]
    pub expires: String,
    #[serde(default)]
    pub uses: String,
}

#[derive(Template)]
#[template(path = "pages/token_created.html")]
pub(super) struct TokenCreated {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub token: fleet::tokens::CreatedToken,
    pub ring: String,
    pub labels: String,
    pub command: String,
}

/// The host part of the address the page was opened with (the URI's authority over
/// HTTP/2, the `Host` header over HTTP/1.1), without the port, when it is a plain host
/// name or address; else `fallback` (the machine's host name, which the generated
/// certificate names too).
fn host_name(uri: &axum::http::Uri, headers: &HeaderMap, fallback: &str) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().map(|a| format!("[{a}]")),
        None => host.split(':').next().map(str::to_string),
    };
    name.filter(|n| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    })
    .unwrap_or_else(|| fallback.to_string())
}

fn parse_token_form(f: &TokenForm, policy: &Policy) -> Result<fleet::tokens::NewToken, FleetError> {
    let ring = match f.ring.trim() {
        "" => None,
        r if policy.ring_names().contains(&r) => Some(r.to_string()),
        r => {
            return Err(FleetError::Invalid {
                field: "ring".into(),
                reason: format!(
                    "{r:?} is not a configured ring (rings: {})",
                    policy.ring_names().join(", ")
                ),
            });
        }
    };
    let labels = fleet::parse_labels(f.labels.trim())?;
    let expires = if f.expires.trim().is_empty() {
        "7d"
    } else {
        f.expires.trim()
    };
    let expires_in = fleet::tokens::parse_duration(expires)?;
    let uses = if f.uses.trim().is_empty() {
        "1"
    } else {
        f.uses.trim()
    };
    let max_uses: u32 = uses
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| FleetError::Invalid {
            field: "uses".into(),
            reason: format!("{uses:?}: give a whole number from 1 to 10000"),
        })?;
    Ok(fleet::tokens::NewToken {
        ring,
        labels,
        expires_in,
        max_uses,
    })
}

/// `POST /hosts/tokens`: creates a token and shows it, with the enroll command, once.
pub async fn create_token(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let new = match parse_token_form(&form, &ctx.policy) {
        Ok(n) => n,
        Err(e) => {
            return error_page(
                viewer,
                "hosts",
                StatusCode::BAD_REQUEST,
                "No token created",
                &e.to_string(),
                "/hosts#enroll",
            );
        }
    };
    let (now, actor, n) = (ctx.now, super::actor(&viewer), new.clone());
    match ctx
        .db
        .write(move |tx| fleet::tokens::create(tx, now, &actor, &n))
        .await
    {
        Ok(token) => {
            // Agents reach the appliance on its plain HTTP listener (their requests are
            // signed), at the host name this page was opened with.
            let fleet = st.inner.fleet.as_ref();
            let command = format!(
                "patchward-agent enroll --server http://{}:{} --token {} --fingerprint {}",
                host_name(&uri, &headers, &crate::hostinfo::hostname()),
                fleet.map_or(8080, |f| f.http_port),
                token.token,
                fleet
                    .map(|f| f.appliance_key_id.as_str())
                    .unwrap_or_default(),
            );
            let labels = new
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut r = crate::web::admin::render(&TokenCreated {
                viewer,
                nav: "hosts",
                token,
                ring: new.ring.unwrap_or_default(),
                labels,
                command,
            });
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) if matches!(e, FleetError::Invalid { .. }) => error_page(
            viewer,
            "hosts",
            StatusCode::BAD_REQUEST,
            "No token created",
            &e.to_string(),
            "/hosts#enroll",
        ),
        Err(e) => internal(viewer, "hosts", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enroll_command_names_the_host_the_page_was_opened_with() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, v.parse().unwrap());
            host_name(
                &axum::http::Uri::from_static("/hosts/tokens"),
                &m,
                "patchward",
            )
        };
        // HTTP/2: the authority is in the URI, and there is no Host header.
        let uri: axum::http::Uri = "https://appliance.lan:8443/hosts/tokens".parse().unwrap();
        assert_eq!(host_name(&uri, &HeaderMap::new(), "x"), "appliance.lan");
        assert_eq!(h("appliance.lan:8443"), "appliance.lan");
        assert_eq!(h("[fd00::1]:8443"), "[fd00::1]");
        assert_eq!(h("10.0.0.2"), "10.0.0.2");
        // A name that is not a plain host name or address is never echoed into the
        // command: the machine's own name stands in.
        assert_eq!(h("a\"b"), "patchward");
        assert_eq!(h(""), "patchward");
    }

    #[test]
    fn token_form_is_checked_before_anything_is_written() {
        let p = Policy::default();
        let form = |ring: &str, labels: &str, expires: &str, uses: &str| TokenForm {
            ring: ring.into(),
            labels: labels.into(),
            expires: expires.into(),
            uses: uses.into(),
        };
        let ok = parse_token_form(&form("pilot", "site=hq", "", ""), &p).unwrap();
        assert_eq!((ok.ring.as_deref(), ok.max_uses), (Some("pilot"), 1));
        for (f, want) in [
            (form("moon", "", "", ""), "not a configured ring"),
            (form("", "site", "", ""), "labels"),
            (form("", "", "7w", ""), "duration"),
            (form("", "", "", "0"), "uses"),
            (form("", "", "", "lots"), "uses"),
        ] {
            let e = parse_token_form(&f, &p).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}

//! `/audit`: the audit log, filtered by actor, action and date range, newest first, in
//! pages, with the result of verifying the whole hash chain (`audit::verify`, the
//! check behind `patchward audit verify`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Ctx, PER_PAGE, Pager, internal, query_string};
use crate::audit::{AuditEntry, Filter, VerifyReport};
use crate::web::AppState;
use crate::web::admin::Viewer;

/// The filter form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub actor: String,
    /// An action or its start (`patch.` for every patch decision).
    pub action: String,
    /// `YYYY-MM-DD` (UTC), both ends included.
    pub from: String,
    pub until: String,
    pub page: usize,
}

impl AuditQuery {
    fn filter(&self) -> Result<Filter, String> {
        let date = |name: &str, s: &str| -> Result<Option<jiff::civil::Date>, String> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|_| format!("{name}: {s:?} is not a date; use YYYY-MM-DD"))
        };
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let f = Filter {
            actor: text(&self.actor),
            action: text(&self.action),
            from: date("from", &self.from)?,
            until: date("until", &self.until)?,
            subject: None,
        };
        if let (Some(a), Some(b)) = (f.from, f.until)
            && b < a
        {
            return Err(format!("the range ends ({b}) before it starts ({a})"));
        }
        Ok(f)
    }

    fn query(&self) -> String {
        query_string(&[
            ("actor", &self.actor),
            ("action", &self.action),
            ("from", &self.from),
            ("until", &self.until),
        ])
    }
}

/// One entry as shown.
pub(super) struct Line {
    pub e: AuditEntry,
    pub when: String,
    /// The details as `key: value` pairs (values as compact JSON, strings bare).
    pub details: Vec<(String, String)>,
    /// A subject that is a host or a job, as a person reads it (the id on hover).
    pub subject: Option<Subject>,
}

/// A host or job subject by name, with its page.
pub(super) struct Subject {
    pub text: String,
    pub href: String,
}

/// Names a subject that is a host id (its host name) or a job id (the job on its
/// host's name); other subjects (patches, windows, tokens) read as they are.
fn subject(c: &rusqlite::Connection, id: &str) -> Result<Option<Subject>, crate::error::DbError> {
    if let Some(h) = crate::db::fleet::host(c, id)? {
        return Ok(Some(Subject {
            text: h.hostname,
            href: format!("/hosts/{}", super::enc(id)),
        }));
    }
    Ok(crate::db::views::job(c, id)?.map(|j| Subject {
        text: format!("job on {} ({})", j.hostname, j.patch_id),
        href: format!("/jobs/{}", super::enc(id)),
    }))
}

pub(super) fn details(json: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => vec![("details".into(), json.to_string())],
    }
}

#[derive(Template)]
#[template(path = "pages/audit.html")]
pub(super) struct AuditPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub q: AuditQuery,
    pub error: Option<String>,
    pub lines: Vec<Line>,
    pub pager: Pager,
    pub actors: Vec<String>,
    pub verify: VerifyReport,
}

/// `GET /audit`
pub async fn page(
    State(st): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (filter, error) = match q.filter() {
        Ok(f) => (f, None),
        Err(e) => (Filter::default(), Some(e)),
    };
    let page_no = q.page.max(1);
    let r = ctx
        .db
        .read(move |c| {
            let (_, total) = crate::audit::search(c, &filter, 0, 0)?;
            let pager = Pager::new(page_no, total as usize, String::new());
            let (entries, _) =
                crate::audit::search(c, &filter, pager.offset() as u64, PER_PAGE as u32)?;
            let actors = crate::audit::actors(c)?;
            let verify = crate::audit::verify(c)?;
            let subjects = entries
                .iter()
                .map(|e| subject(c, &e.subject))
                .collect::<Result<Vec<_>, _>>()?;
            let entries: Vec<_> = entries.into_iter().zip(subjects).collect();
            Ok::<_, crate::error::AuditError>((entries, pager, actors, verify))
        })
        .await;
    match r {
        Ok((entries, mut pager, actors, verify)) => {
            pager.query = if error.is_some() {
                String::new()
            } else {
                q.query()
            };
            let lines = entries
                .into_iter()
                .map(|(e, subject)| Line {
                    when: super::when(&e.at),
                    details: details(&e.details),
                    subject,
                    e,
                })
                .collect();
            let bad = error.is_some();
            let mut r = crate::web::admin::render(&AuditPage {
                viewer,
                nav: "audit",
                q,
                error,
                lines,
                pager,
                actors,
                verify,
            });
            if bad {
                *r.status_mut() = StatusCode::BAD_REQUEST;
            }
            r
        }
        Err(e) => internal(viewer, "audit", e),
    }
}

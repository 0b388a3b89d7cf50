//! `/jobs/{id}`: one job, so that a failure can be read in the browser: its host (by
//! name), patch and ring, and every state it reached in order with the step behind it,
//! that step's exit, the time, and the end of its output (stdout and stderr as they
//! were written). Linked from the host page, the rollout page's hosts and the
//! dashboard's failures; auditors read it too. Everything is escaped by askama.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Ctx, error_page, internal, show};
use crate::fleet::job_detail::{self, JobDetail};
use crate::web::AppState;
use crate::web::admin::Viewer;

#[derive(Template)]
#[template(path = "pages/job.html")]
pub(super) struct JobPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub d: JobDetail,
    pub excerpt_kib: usize,
}

/// `GET /jobs/{id}`
pub async fn detail(
    State(st): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let wanted = id.clone();
    match ctx.db.read(move |c| job_detail::load(c, &wanted)).await {
        Ok(Some(d)) => show(
            &JobPage {
                viewer,
                nav: "hosts",
                d,
                excerpt_kib: job_detail::EXCERPT / 1024,
            },
            &None,
        ),
        Ok(None) => error_page(
            viewer,
            "hosts",
            StatusCode::NOT_FOUND,
            "No such job",
            &format!("There is no job {id:?}. Jobs are listed on each host's page."),
            "/hosts",
        ),
        Err(e) => internal(viewer, "hosts", e),
    }
}

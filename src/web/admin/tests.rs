//! The guard and the account handlers on a real database with a manual clock, through
//! the router (no sockets).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use jiff::SignedDuration;
use tower::ServiceExt;

use super::{AdminViewer, Viewer, guarded, own_routes};
use crate::auth::{Role, WebSettings, users};
use crate::clock::ManualClock;
use crate::db::{Db, DbOptions};
use crate::web::{AdminState, AppState};

const HOST: &str = "pw.test:8443";
const ORIGIN: &str = "https://pw.test:8443";

struct Fixture {
    _dir: tempfile::TempDir,
    db: Db,
    clock: ManualClock,
    app: Router,
}

async fn whoami(v: Viewer) -> String {
    format!("{} {}", v.user, v.role)
}

async fn admin_only(AdminViewer(v): AdminViewer) -> String {
    format!("done by {}", v.user)
}

fn fixture() -> Fixture {
    crate::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db"), DbOptions::default()).unwrap();
    let clock = ManualClock::new("2026-11-27T10:00:00Z".parse().unwrap());
    let now = clock.now();
    for (name, role) in [
        ("ada", Role::Admin),
        ("aud", Role::Auditor),
        ("new", Role::Admin),
    ] {
        users::add(&db, now, "test", name, role, "a good long password", None).unwrap();
    }
    db.write_blocking(|tx| {
        tx.execute(
            "UPDATE users SET must_change_password = 0 WHERE name != 'new'",
            [],
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap();
    let state = AppState::new(db.clone(), None, None).with_admin(AdminState {
        clock: Arc::new(clock.clone()),
        settings: WebSettings::default(),
        tls_port: 8443,
    });
    let routes = own_routes()
        .route("/t", get(whoami))
        .route("/t-admin", post(admin_only).get(admin_only));
    let app = guarded(routes, state.clone()).with_state(state);
    Fixture {
        _dir: dir,
        db,
        clock,
        app,
    }
}

use crate::clock::Clock;

struct Reply {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

impl Fixture {
    async fn send(&self, req: Request<Body>) -> Reply {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let h = |n: header::HeaderName| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        let (status, location, cookie) = (r.status(), h(header::LOCATION), h(header::SET_COOKIE));
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        Reply {
            status,
            location,
            cookie,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn request(method: &str, path: &str, cookie: Option<&str>) -> axum::http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("__Host-patchward_session={c}"));
        }
        b
    }

    async fn get(&self, path: &str, cookie: &str) -> Reply {
        self.send(
            Self::request("GET", path, Some(cookie))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Signs in; returns the cookie value and the session's CSRF token.
    async fn sign_in(&self, name: &str) -> (String, String) {
        let r = self
            .send(
                Self::request("POST", "/login", None)
                    .header(header::ORIGIN, ORIGIN)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(format!(
                        "name={name}&password=a+good+long+password&next=%2Ft"
                    )))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let cookie = r.cookie.unwrap();
        let token = cookie
            .strip_prefix("__Host-patchward_session=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let csrf = self
            .db
            .read_blocking(|c| {
                c.query_row(
                    "SELECT csrf FROM sessions WHERE token_sha256 = ?1",
                    [crate::auth::session::token_hash(&token)],
                    |r| r.get::<_, String>(0),
                )
                .map_err(crate::error::DbError::from)
            })
            .unwrap();
        (token, csrf)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_when_idle_and_after_the_absolute_limit() {
    let f = fixture();
    let (c, _) = f.sign_in("ada").await;
    assert_eq!(f.get("/t", &c).await.body, "ada admin");
    // Used within 30 minutes: alive; then 30 minutes idle: gone.
    f.clock.advance(SignedDuration::from_mins(29));
    assert_eq!(f.get("/t", &c).await.status, StatusCode::OK);
    f.clock.advance(SignedDuration::from_mins(29));
    assert_eq!(
        f.get("/t", &c).await.status,
        StatusCode::OK,
        "idle time restarts"
    );
    f.clock.advance(SignedDuration::from_mins(30));
    let r = f.get("/t?x=1", &c).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/login?next=/t%3Fx%3D1"));

    // Active every 20 minutes, a session still ends 12 hours after sign-in.
    let (c, _) = f.sign_in("ada").await;
    for _ in 0..(12 * 3 - 1) {
        f.clock.advance(SignedDuration::from_mins(20));
        assert_eq!(f.get("/t", &c).await.status, StatusCode::OK);
    }
    f.clock.advance(SignedDuration::from_mins(20));
    assert_eq!(f.get("/t", &c).await.status, StatusCode::SEE_OTHER);
    // An API path or htmx request gets 401 instead of a redirect.
    let r = f
        .send(
            Fixture::request("GET", "/api/v1/mirror", Some(&c))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_token_origin_and_the_admin_role() {
    let f = fixture();
    let (c, csrf) = f.sign_in("ada").await;
    let post = |origin: Option<&'static str>, token: Option<String>, form: Option<String>| {
        let mut b = Fixture::request("POST", "/t-admin", Some(&c));
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        if let Some(t) = token {
            b = b.header("X-CSRF-Token", t);
        }
        match form {
            Some(body) => b
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        }
    };
    let ok = f.send(post(Some(ORIGIN), Some(csrf.clone()), None)).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (StatusCode::OK, "done by ada")
    );
    let ok = f
        .send(post(Some(ORIGIN), None, Some(format!("a=1&csrf={csrf}"))))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "the form field works too");
    // A multipart upload (streamed, never buffered by the guard) carries the token in
    // its action URL, so it works without JavaScript; a wrong one there is refused.
    let multipart = |uri: String| {
        Fixture::request("POST", &uri, Some(&c))
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
            .body(Body::from("--x--\r\n"))
            .unwrap()
    };
    let ok = f.send(multipart(format!("/t-admin?csrf={csrf}"))).await;
    assert_eq!(ok.status, StatusCode::OK, "the action URL's token works");
    let r = f.send(multipart("/t-admin?csrf=nope".into())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "wrong token in the URL");
    let r = f.send(multipart("/t-admin".into())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "multipart without a token");
    for (origin, token, form, why) in [
        (Some(ORIGIN), None, None, "no token"),
        (Some(ORIGIN), Some("0".repeat(64)), None, "wrong token"),
        (
            Some(ORIGIN),
            None,
            Some("csrf=nope".to_string()),
            "wrong form token",
        ),
        (
            Some("https://evil.example"),
            Some(csrf.clone()),
            None,
            "foreign origin",
        ),
        (None, Some(csrf.clone()), None, "no origin, no referer"),
    ] {
        let r = f.send(post(origin, token, form)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}");
        assert!(r.body.starts_with("Refused:"), "{why}: {}", r.body);
    }
    // Another session's token is not this session's token.
    let (_, other_csrf) = f.sign_in("ada").await;
    let r = f.send(post(Some(ORIGIN), Some(other_csrf), None)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // An auditor: refused centrally on a state change, and by AdminViewer on a read.
    let (ca, csrf_a) = f.sign_in("aud").await;
    assert_eq!(f.get("/t", &ca).await.body, "aud auditor");
    let r = f
        .send(
            Fixture::request("POST", "/t-admin", Some(&ca))
                .header(header::ORIGIN, ORIGIN)
                .header("X-CSRF-Token", csrf_a)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("auditor role"), "{}", r.body);
    assert_eq!(f.get("/t-admin", &ca).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_password_change_allows_only_the_password_page() {
    let f = fixture();
    let (c, csrf) = f.sign_in("new").await;
    let r = f.get("/t", &c).await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/password"))
    );
    let r = f
        .send(
            Fixture::request("POST", "/t-admin", Some(&c))
                .header(header::ORIGIN, ORIGIN)
                .header("X-CSRF-Token", csrf.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = f.get("/password", &c).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("Choose a new password before you continue")
    );
    let r = f
        .send(
            Fixture::request("POST", "/password", Some(&c))
                .header(header::ORIGIN, ORIGIN)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "csrf={csrf}&current=a+good+long+password&new=another+long+one&repeat=another+long+one"
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(f.get("/t", &c).await.body, "new admin");
}

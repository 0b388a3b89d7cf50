//! `/windows`: the maintenance-window sets of the effective policy, which rings and
//! host groups use each, their entries (from the configuration file, read-only here,
//! and those added on this page), and the next openings in local time (the code of
//! `patchward windows next`). Entries are added, changed and removed through
//! `rollout::windows`, which checks them with the configuration's own parser and
//! audits them; the scheduler's policy is refreshed at once.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::Timestamp;

use super::patches::{field, fields};
use super::{Ctx, Flash, done, error_page, internal, show};
use crate::policy::Urgency;
use crate::policy::layer::{Slot, SlotKind};
use crate::policy::windows::{Blackout, Day, Monthly, OneOff, Weekly, Windows};
use crate::rollout::windows::{self as w, LocalOpening, WindowError, WindowInput};
use crate::web::AppState;
use crate::web::admin::{AdminViewer, Viewer};

fn day(d: Day) -> &'static str {
    match d {
        Day::Mon => "Mon",
        Day::Tue => "Tue",
        Day::Wed => "Wed",
        Day::Thu => "Thu",
        Day::Fri => "Fri",
        Day::Sat => "Sat",
        Day::Sun => "Sun",
    }
}

fn nth(n: i8) -> String {
    match n {
        1 => "1st".into(),
        2 => "2nd".into(),
        3 => "3rd".into(),
        -1 => "last".into(),
        n => format!("{n}th"),
    }
}

fn hm(t: jiff::civil::Time) -> String {
    t.strftime("%H:%M").to_string()
}

fn dt(t: jiff::civil::DateTime) -> String {
    t.strftime("%Y-%m-%d %H:%M").to_string()
}

/// An entry in words: "Tue, Thu 22:00 for 4h".
pub(super) fn describe(s: &Slot) -> String {
    match s {
        Slot::Weekly(x) => describe_weekly(x),
        Slot::Monthly(x) => describe_monthly(x),
        Slot::Once(x) => describe_once(x),
        Slot::Blackout(x) => describe_blackout(x),
    }
}

fn describe_weekly(x: &Weekly) -> String {
    let days: Vec<&str> = x.days.iter().map(|d| day(*d)).collect();
    format!(
        "every {} at {} for {:#}",
        days.join(", "),
        hm(x.start),
        x.duration
    )
}

fn describe_monthly(x: &Monthly) -> String {
    let off = match x.offset_days {
        0 => String::new(),
        n if n > 0 => format!(" + {n} days"),
        n => format!(" − {} days", -n),
    };
    format!(
        "{} {} of the month{off}, at {} for {:#}",
        nth(x.nth),
        day(x.weekday),
        hm(x.start),
        x.duration
    )
}

fn describe_once(x: &OneOff) -> String {
    format!("once, {} for {:#}", dt(x.start), x.duration)
}

fn describe_blackout(x: &Blackout) -> String {
    let why = if x.reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", x.reason)
    };
    format!("no installs from {} until {}{why}", dt(x.from), dt(x.until))
}

/// One line of a set's entry list.
pub(super) struct EntryLine {
    pub kind: &'static str,
    pub emergency: bool,
    pub text: String,
    /// Added on this page: (id, by, at); `None`: from the configuration file.
    pub added: Option<(i64, String, String)>,
    /// Why an added entry is left out of the policy.
    pub problem: Option<String>,
}

/// One window set.
pub(super) struct SetView {
    pub name: String,
    pub tz: String,
    pub rings: Vec<String>,
    pub host_groups: Vec<String>,
    pub entries: Vec<EntryLine>,
    pub next: Vec<LocalOpening>,
    pub next_emergency: Vec<LocalOpening>,
}

fn config_entries(ws: &Windows) -> Vec<EntryLine> {
    let line = |kind: SlotKind, emergency: bool, text: String| EntryLine {
        kind: kind.as_str(),
        emergency,
        text,
        added: None,
        problem: None,
    };
    let mut out = Vec::new();
    for (e, list) in [
        (false, (&ws.weekly, &ws.monthly, &ws.once)),
        (
            true,
            (
                &ws.emergency.weekly,
                &ws.emergency.monthly,
                &ws.emergency.once,
            ),
        ),
    ] {
        out.extend(
            list.0
                .iter()
                .map(|x| line(SlotKind::Weekly, e, describe_weekly(x))),
        );
        out.extend(
            list.1
                .iter()
                .map(|x| line(SlotKind::Monthly, e, describe_monthly(x))),
        );
        out.extend(
            list.2
                .iter()
                .map(|x| line(SlotKind::Once, e, describe_once(x))),
        );
    }
    out.extend(
        ws.blackout
            .iter()
            .map(|x| line(SlotKind::Blackout, false, describe_blackout(x))),
    );
    out
}

/// Every set of the effective policy with its entries and next openings.
pub(super) fn load(
    conn: &rusqlite::Connection,
    base: &crate::policy::Policy,
    now: Timestamp,
) -> Result<Vec<SetView>, crate::error::DbError> {
    let layered = w::effective(conn, base)?;
    let p = &layered.policy;
    let mut out = Vec::new();
    for (name, ws) in &p.windows {
        let mut entries = base
            .windows
            .get(name)
            .map(|b| config_entries(&b.windows))
            .unwrap_or_default();
        for e in layered.entries.iter().filter(|e| &e.row.window_set == name) {
            let text = SlotKind::parse(&e.row.kind)
                .and_then(|k| Slot::parse(k, &e.row.spec).ok())
                .map_or_else(|| e.row.spec.clone(), |s| describe(&s));
            entries.push(EntryLine {
                kind: SlotKind::parse(&e.row.kind).map_or("?", SlotKind::as_str),
                emergency: e.row.emergency,
                text,
                added: Some((
                    e.row.id,
                    e.row.updated_by.clone(),
                    super::when(&e.row.updated_at),
                )),
                problem: e.problem.clone(),
            });
        }
        let has_emergency = {
            let em = &ws.windows.emergency;
            !(em.weekly.is_empty() && em.monthly.is_empty() && em.once.is_empty())
        };
        out.push(SetView {
            name: name.clone(),
            tz: ws.windows.tz.clone(),
            rings: p
                .rings
                .iter()
                .filter(|r| &r.windows == name)
                .map(|r| r.name.clone())
                .collect(),
            host_groups: p
                .host_windows
                .iter()
                .filter(|h| &h.windows == name)
                .map(|h| {
                    h.labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .collect(),
            entries,
            next: w::next_local(ws, now, 5, Urgency::Normal),
            next_emergency: if has_emergency {
                w::next_local(ws, now, 3, Urgency::Expedited)
            } else {
                vec![]
            },
        });
    }
    // Entries whose set no longer exists (removed from the configuration).
    let orphans: Vec<EntryLine> = layered
        .entries
        .iter()
        .filter(|e| !p.windows.contains_key(&e.row.window_set))
        .map(|e| EntryLine {
            kind: SlotKind::parse(&e.row.kind).map_or("?", SlotKind::as_str),
            emergency: e.row.emergency,
            text: format!("set {:?}: {}", e.row.window_set, e.row.spec),
            added: Some((
                e.row.id,
                e.row.updated_by.clone(),
                super::when(&e.row.updated_at),
            )),
            problem: e.problem.clone(),
        })
        .collect();
    if !orphans.is_empty() {
        out.push(SetView {
            name: "(sets no longer configured)".into(),
            tz: String::new(),
            rings: vec![],
            host_groups: vec![],
            entries: orphans,
            next: vec![],
            next_emergency: vec![],
        });
    }
    Ok(out)
}

/// The form's values (also used to fill in the edit form).
#[derive(Debug, Clone, Default)]
pub(super) struct FormValues {
    pub input: WindowInput,
}

impl FormValues {
    pub fn has_day(&self, d: &str) -> bool {
        self.input.days.iter().any(|x| x == d)
    }

    fn from_slot(set: &str, emergency: bool, s: &Slot) -> FormValues {
        let mut i = WindowInput {
            set: set.into(),
            kind: s.kind().as_str().into(),
            emergency,
            ..Default::default()
        };
        match s {
            Slot::Weekly(x) => {
                i.days = x.days.iter().map(|d| day(*d).to_lowercase()).collect();
                i.start = hm(x.start);
                i.duration = format!("{:#}", x.duration);
            }
            Slot::Monthly(x) => {
                i.nth = x.nth.to_string();
                i.weekday = day(x.weekday).to_lowercase();
                i.offset_days = x.offset_days.to_string();
                i.start = hm(x.start);
                i.duration = format!("{:#}", x.duration);
            }
            Slot::Once(x) => {
                i.start = x.start.strftime("%Y-%m-%dT%H:%M").to_string();
                i.duration = format!("{:#}", x.duration);
            }
            Slot::Blackout(x) => {
                i.from = x.from.strftime("%Y-%m-%dT%H:%M").to_string();
                i.until = x.until.strftime("%Y-%m-%dT%H:%M").to_string();
                i.note = x.reason.clone();
            }
        }
        FormValues { input: i }
    }
}

fn input_of(form: &[(String, String)]) -> WindowInput {
    WindowInput {
        set: field(form, "set").into(),
        kind: field(form, "kind").into(),
        emergency: matches!(field(form, "emergency"), "true" | "on" | "yes"),
        days: fields(form, "days")
            .into_iter()
            .map(str::to_string)
            .collect(),
        start: field(form, "start").into(),
        duration: field(form, "duration").into(),
        nth: field(form, "nth").into(),
        weekday: field(form, "weekday").into(),
        offset_days: field(form, "offset_days").into(),
        from: field(form, "from").into(),
        until: field(form, "until").into(),
        note: field(form, "note").into(),
    }
}

pub(super) const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The monthly slot's `nth` choices: (value, label).
pub(super) const NTHS: &[(&str, &str)] = &[
    ("1", "1st"),
    ("2", "2nd"),
    ("3", "3rd"),
    ("4", "4th"),
    ("-1", "last"),
];

#[derive(Template)]
#[template(path = "pages/windows.html")]
pub(super) struct WindowsPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub sets: Vec<SetView>,
    pub set_names: Vec<String>,
    pub f: FormValues,
    pub days: [&'static str; 7],
    pub nths: &'static [(&'static str, &'static str)],
}

/// `GET /windows`
pub async fn list(State(st): State<AppState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let base = ctx.scheduler().base.clone();
    let now = ctx.now;
    match ctx.db.read(move |c| load(c, &base, now)).await {
        Ok(sets) => {
            let flash = Flash::from_headers(&headers);
            let set_names = ctx.policy.windows.keys().cloned().collect();
            show(
                &WindowsPage {
                    viewer,
                    nav: "windows",
                    flash: flash.clone(),
                    sets,
                    set_names,
                    f: FormValues::default(),
                    days: DAYS,
                    nths: NTHS,
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "windows", e),
    }
}

fn window_status(e: &WindowError) -> StatusCode {
    match e {
        WindowError::Invalid { .. } | WindowError::Policy(_) => StatusCode::BAD_REQUEST,
        WindowError::NoSuchEntry(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// After a change: the scheduler's policy follows at once.
async fn refresh(ctx: &Ctx) {
    let st = ctx.st.clone();
    let r = ctx
        .db
        .read(move |c| match st.inner.fleet.as_ref() {
            Some(f) => f.scheduler.refresh(c),
            None => Ok(()),
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot refresh the policy; the minute tick will retry");
    }
}

fn refused(viewer: Viewer, e: &WindowError, back: &str) -> Response {
    if window_status(e).is_client_error() {
        error_page(
            viewer,
            "windows",
            window_status(e),
            "Window not saved",
            &e.to_string(),
            back,
        )
    } else {
        internal(viewer, "windows", e)
    }
}

/// `POST /windows`: adds an entry.
pub async fn add(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let input = input_of(&form);
    let reason = field(&form, "reason").to_string();
    let (base, now, actor) = (ctx.scheduler().base.clone(), ctx.now, super::actor(&viewer));
    let i = input.clone();
    match ctx
        .db
        .write(move |tx| w::add(tx, now, &base, &i, &actor, &reason))
        .await
    {
        Ok(id) => {
            refresh(&ctx).await;
            let next = ctx
                .scheduler()
                .policy()
                .windows
                .get(input.set.trim())
                .and_then(|ws| {
                    w::next_local(ws, ctx.now, 1, Urgency::Normal)
                        .into_iter()
                        .next()
                });
            let mut text = format!("Window entry {id} added to the set {}.", input.set.trim());
            if let Some(o) = next {
                text.push_str(&format!(
                    " The set's next opening: {} → {}.",
                    o.start, o.end
                ));
            }
            done(
                &format!("/windows#set-{}", super::enc(input.set.trim())),
                true,
                &text,
            )
        }
        Err(e) => refused(viewer, &e, "/windows#add"),
    }
}

#[derive(Template)]
#[template(path = "pages/window_edit.html")]
pub(super) struct EditPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub id: i64,
    pub set_names: Vec<String>,
    pub f: FormValues,
    pub days: [&'static str; 7],
    pub nths: &'static [(&'static str, &'static str)],
    pub text: String,
}

/// `GET /windows/{id}`: the edit form of an entry added on this page.
pub async fn edit(State(st): State<AppState>, viewer: Viewer, Path(id): Path<i64>) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let row = match ctx.db.read(move |c| crate::db::windows::entry(c, id)).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refused(viewer, &WindowError::NoSuchEntry(id), "/windows");
        }
        Err(e) => return internal(viewer, "windows", e),
    };
    let slot = SlotKind::parse(&row.kind).and_then(|k| Slot::parse(k, &row.spec).ok());
    let (f, text) = match &slot {
        Some(s) => (
            FormValues::from_slot(&row.window_set, row.emergency, s),
            describe(s),
        ),
        None => (FormValues::default(), row.spec.clone()),
    };
    crate::web::admin::render(&EditPage {
        viewer,
        nav: "windows",
        id,
        set_names: ctx.policy.windows.keys().cloned().collect(),
        f,
        days: DAYS,
        nths: NTHS,
        text,
    })
}

/// `POST /windows/{id}`: replaces an entry.
pub async fn change(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<i64>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let input = input_of(&form);
    let reason = field(&form, "reason").to_string();
    let (base, now, actor) = (ctx.scheduler().base.clone(), ctx.now, super::actor(&viewer));
    match ctx
        .db
        .write(move |tx| w::change(tx, now, &base, id, &input, &actor, &reason))
        .await
    {
        Ok(()) => {
            refresh(&ctx).await;
            done("/windows", true, &format!("Window entry {id} changed."))
        }
        Err(e) => refused(viewer, &e, &format!("/windows/{id}")),
    }
}

/// `POST /windows/{id}/remove`
pub async fn remove(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<i64>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let reason = field(&form, "reason").to_string();
    let (now, actor) = (ctx.now, super::actor(&viewer));
    match ctx
        .db
        .write(move |tx| w::remove(tx, now, id, &actor, &reason))
        .await
    {
        Ok(()) => {
            refresh(&ctx).await;
            done("/windows", true, &format!("Window entry {id} removed."))
        }
        Err(e) => refused(viewer, &e, "/windows"),
    }
}

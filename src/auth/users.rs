//! Account operations shared by the CLI (`patchward users ...`, `init`, first start) and
//! the web page (sign-in, password change, sign-out everywhere). Every change is
//! audited in the transaction that makes it.
//!
//! Password hashing and checking are CPU-heavy: these functions are blocking and the web
//! layer calls them on the blocking pool. They hash before they open a write
//! transaction, so the database's one writer never waits on argon2.

use jiff::Timestamp;

use super::password;
use super::session::{self, SessionRules, millis};
use super::throttle::{self, ThrottleRules};
use super::{AuthError, Role};
use crate::audit::{self, NewEntry};
use crate::db::Db;
use crate::db::users::{self as q, UserRow};

/// The account created at first start.
pub const FIRST_ADMIN: &str = "admin";

/// Longest account name.
pub const MAX_NAME: usize = 64;

/// Checks an account name: 1-64 characters, no control characters, no surrounding
/// spaces. Anything else is allowed (it is always shown escaped).
pub fn validate_name(name: &str) -> Result<(), AuthError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(AuthError::Invalid(format!(
            "a user name has 1 to {MAX_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err(AuthError::Invalid(
            "a user name must not contain control characters or start or end with a space".into(),
        ));
    }
    Ok(())
}

fn ts(now: Timestamp) -> String {
    now.to_string()
}

fn audit_entry(
    tx: &rusqlite::Transaction<'_>,
    now: Timestamp,
    actor: &str,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> Result<(), AuthError> {
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action,
            subject,
            details,
        },
    )?;
    Ok(())
}

fn with_reason(mut details: serde_json::Value, reason: Option<&str>) -> serde_json::Value {
    if let Some(r) = reason.filter(|r| !r.trim().is_empty()) {
        details["reason"] = r.into();
    }
    details
}

/// A generated password for the first admin account and its argon2id hash, made ahead
/// of [`ensure_first_admin_with`] (the hash is most of a first start's CPU time, so
/// `Appliance::init` computes it on another thread while it generates the keys).
pub struct FirstAdminPassword {
    password: String,
    hash: String,
}

impl std::fmt::Debug for FirstAdminPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FirstAdminPassword(..)")
    }
}

impl FirstAdminPassword {
    /// Generates the password and hashes it ([`password::hash_generated`]: a random
    /// password valid until the first sign-in gets the light cost).
    pub fn generate() -> Result<Self, AuthError> {
        let password = password::generate();
        let hash = password::hash_generated(&password).map_err(AuthError::Hash)?;
        Ok(FirstAdminPassword { password, hash })
    }
}

/// At first start (no account at all): creates `admin` with a generated password that
/// must be changed at first sign-in, and returns that password so it can be shown once.
/// `None` when accounts exist already.
pub fn ensure_first_admin(db: &Db, now: Timestamp) -> Result<Option<String>, AuthError> {
    ensure_first_admin_with(db, now, None)
}

/// [`ensure_first_admin`] with a password made beforehand; without one (`None`), or when
/// accounts exist already, it behaves the same (and the prepared password is dropped).
pub fn ensure_first_admin_with(
    db: &Db,
    now: Timestamp,
    prepared: Option<FirstAdminPassword>,
) -> Result<Option<String>, AuthError> {
    if db.read_blocking(q::count_users)? > 0 {
        return Ok(None);
    }
    let FirstAdminPassword { password: pw, hash } = match prepared {
        Some(p) => p,
        None => FirstAdminPassword::generate()?,
    };
    db.write_blocking(|tx| {
        // Another process may have won the race since the read above.
        if q::count_users(tx)? > 0 {
            return Ok(None);
        }
        q::insert_user(tx, FIRST_ADMIN, &hash, Role::Admin, true, &ts(now))?;
        audit_entry(
            tx,
            now,
            "system",
            "user.created",
            FIRST_ADMIN,
            serde_json::json!({ "role": "admin", "reason": "first start", "must_change_password": true }),
        )?;
        Ok(Some(pw))
    })
}

/// Creates an account whose password must be changed at first sign-in.
pub fn add(
    db: &Db,
    now: Timestamp,
    actor: &str,
    name: &str,
    role: Role,
    password: &str,
    reason: Option<&str>,
) -> Result<UserRow, AuthError> {
    validate_name(name)?;
    password::check_new(password).map_err(AuthError::Invalid)?;
    let hash = password::hash(password).map_err(AuthError::Hash)?;
    db.write_blocking(|tx| {
        let Some(id) = q::insert_user(tx, name, &hash, role, true, &ts(now))? else {
            return Err(AuthError::Exists(name.to_owned()));
        };
        audit_entry(
            tx,
            now,
            actor,
            "user.created",
            name,
            with_reason(
                serde_json::json!({ "role": role.as_str(), "must_change_password": true }),
                reason,
            ),
        )?;
        q::user_by_id(tx, id)?.ok_or_else(|| AuthError::NoSuchUser(name.to_owned()))
    })
}

/// Sets an account's password by an administrator (`users passwd`): it must be changed
/// at the next sign-in, and the account's sessions end.
pub fn set_password(
    db: &Db,
    now: Timestamp,
    actor: &str,
    name: &str,
    password: &str,
    reason: Option<&str>,
) -> Result<UserRow, AuthError> {
    password::check_new(password).map_err(AuthError::Invalid)?;
    let hash = password::hash(password).map_err(AuthError::Hash)?;
    db.write_blocking(|tx| {
        let user = q::user_by_name(tx, name)?.ok_or_else(|| AuthError::NoSuchUser(name.into()))?;
        q::set_password(tx, user.id, &hash, true, &ts(now))?;
        let ended = q::delete_user_sessions(tx, user.id, None)?;
        audit_entry(
            tx,
            now,
            actor,
            "user.password_set",
            name,
            with_reason(
                serde_json::json!({ "must_change_password": true, "sessions_ended": ended }),
                reason,
            ),
        )?;
        Ok(q::user_by_id(tx, user.id)?.unwrap_or(user))
    })
}

/// Disables (or enables again) an account; disabling ends its sessions.
pub fn set_disabled(
    db: &Db,
    now: Timestamp,
    actor: &str,
    name: &str,
    disabled: bool,
    reason: Option<&str>,
) -> Result<usize, AuthError> {
    db.write_blocking(|tx| {
        let user = q::user_by_name(tx, name)?.ok_or_else(|| AuthError::NoSuchUser(name.into()))?;
        q::set_disabled(tx, user.id, disabled, &ts(now))?;
        let ended = if disabled {
            q::delete_user_sessions(tx, user.id, None)?
        } else {
            0
        };
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        audit_entry(
            tx,
            now,
            actor,
            action,
            name,
            with_reason(serde_json::json!({ "sessions_ended": ended }), reason),
        )?;
        Ok(ended)
    })
}

pub fn list(db: &Db) -> Result<Vec<UserRow>, AuthError> {
    Ok(db.read_blocking(q::list_users)?)
}

/// A successful sign-in: the cookie's token (shown to nobody else) and the session's
/// CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    pub user: String,
    pub must_change_password: bool,
}

/// The outcome of a sign-in attempt.
#[derive(Debug, Clone)]
pub enum SignIn {
    Ok(Session),
    /// Wrong name, wrong password or disabled account: indistinguishable on purpose.
    Refused,
    /// Too many recent failures for this name or address; the password was not checked.
    Throttled {
        until: Timestamp,
    },
}

/// The name as recorded for throttling (bounded; longer names cannot exist anyway).
fn throttle_key(name: &str) -> &str {
    match name.char_indices().nth(MAX_NAME + 1) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

fn until(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
}

/// Checks throttling, then the password; on success opens a session. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn sign_in(
    db: &Db,
    now: Timestamp,
    sessions: &SessionRules,
    rules: &ThrottleRules,
    name: &str,
    password: &str,
    address: &str,
    user_agent: Option<&str>,
) -> Result<SignIn, AuthError> {
    let now_ms = millis(now);
    let key = throttle_key(name);
    let (by_user, by_addr) =
        db.read_blocking(|c| q::failures_since(c, key, address, rules.since(now_ms)))?;
    if let Some(u) = throttle::check(now_ms, &by_user, &by_addr, rules) {
        return Ok(SignIn::Throttled { until: until(u) });
    }
    let cred = db.read_blocking(|c| q::credentials(c, name))?;
    let ok = match &cred {
        Some((_, disabled, hash)) => password::verify(hash, password) && !disabled,
        None => {
            // Same work as for a real account, so timing does not tell names apart.
            password::verify(password::dummy_hash(), password);
            false
        }
    };
    let Some((user_id, ..)) = cred.filter(|_| ok) else {
        record_failure(db, now, rules, key, address)?;
        return Ok(SignIn::Refused);
    };
    let (token, token_hash) = session::new_token();
    let csrf = session::new_csrf();
    db.write_blocking(|tx| {
        q::clear_failures(tx, key)?;
        q::delete_expired_sessions(
            tx,
            now_ms - sessions.idle.as_millis() as i64,
            now_ms - sessions.absolute.as_millis() as i64,
        )?;
        q::insert_session(tx, &token_hash, user_id, now_ms, &csrf, user_agent)?;
        let user = q::user_by_id(tx, user_id)?.ok_or_else(|| AuthError::NoSuchUser(name.into()))?;
        audit_entry(
            tx,
            now,
            &format!("web:{}", user.name),
            "user.signed_in",
            &user.name,
            serde_json::json!({ "address": address }),
        )?;
        Ok(SignIn::Ok(Session {
            token,
            csrf,
            user: user.name,
            must_change_password: user.must_change_password,
        }))
    })
}

/// Records a failed password check; audits the failure that starts a lockout.
fn record_failure(
    db: &Db,
    now: Timestamp,
    rules: &ThrottleRules,
    key: &str,
    address: &str,
) -> Result<(), AuthError> {
    let now_ms = millis(now);
    db.write_blocking(|tx| {
        q::insert_failure(tx, now_ms, key, address)?;
        q::prune_failures(tx, now_ms - 2 * rules.window.as_millis() as i64)?;
        let (by_user, by_addr) = q::failures_since(tx, key, address, rules.since(now_ms))?;
        if let Some(u) = throttle::check(now_ms, &by_user, &by_addr, rules) {
            audit_entry(
                tx,
                now,
                "system",
                "user.sign_in_locked",
                key,
                serde_json::json!({
                    "address": address,
                    "until": until(u).to_string(),
                    "account_failures": by_user.len(),
                    "address_failures": by_addr.len(),
                }),
            )?;
        }
        Ok(())
    })
}

/// A signed-in account changes its own password: the current one is checked (failures
/// count towards the sign-in throttle), the new one must be acceptable and different.
/// The account's other sessions end; `keep` (the session making the change) stays.
#[allow(clippy::too_many_arguments)]
pub fn change_own_password(
    db: &Db,
    now: Timestamp,
    rules: &ThrottleRules,
    user: &str,
    current: &str,
    new: &str,
    repeat: &str,
    keep: &str,
    address: &str,
) -> Result<(), AuthError> {
    if new != repeat {
        return Err(AuthError::Invalid(
            "The new password and its repetition differ.".into(),
        ));
    }
    password::check_new(new).map_err(AuthError::Invalid)?;
    let now_ms = millis(now);
    let (by_user, by_addr) =
        db.read_blocking(|c| q::failures_since(c, user, address, rules.since(now_ms)))?;
    if let Some(u) = throttle::check(now_ms, &by_user, &by_addr, rules) {
        return Err(AuthError::Throttled { until: until(u) });
    }
    let cred = db.read_blocking(|c| q::credentials(c, user))?;
    let Some((id, false, hash)) = cred else {
        return Err(AuthError::NoSuchUser(user.into()));
    };
    if !password::verify(&hash, current) {
        record_failure(db, now, rules, user, address)?;
        return Err(AuthError::WrongPassword);
    }
    if new == current {
        return Err(AuthError::Invalid(
            "Choose a new password that differs from the current one.".into(),
        ));
    }
    let new_hash = password::hash(new).map_err(AuthError::Hash)?;
    db.write_blocking(|tx| {
        q::set_password(tx, id, &new_hash, false, &ts(now))?;
        let ended = q::delete_user_sessions(tx, id, Some(keep))?;
        audit_entry(
            tx,
            now,
            &format!("web:{user}"),
            "user.password_changed",
            user,
            serde_json::json!({ "other_sessions_ended": ended }),
        )
    })
}

/// Ends one session (sign-out).
pub fn sign_out(db: &Db, token_hash: &str) -> Result<(), AuthError> {
    db.write_blocking(|tx| q::delete_session(tx, token_hash).map(|_| ()))?;
    Ok(())
}

/// Ends every session of the account ("sign out everywhere"); audited.
pub fn sign_out_everywhere(db: &Db, now: Timestamp, user: &str) -> Result<usize, AuthError> {
    db.write_blocking(|tx| {
        let u = q::user_by_name(tx, user)?.ok_or_else(|| AuthError::NoSuchUser(user.into()))?;
        let n = q::delete_user_sessions(tx, u.id, None)?;
        audit_entry(
            tx,
            now,
            &format!("web:{user}"),
            "user.signed_out_everywhere",
            user,
            serde_json::json!({ "sessions_ended": n }),
        )?;
        Ok(n)
    })
}

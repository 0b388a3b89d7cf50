//! Accounts of the admin page: users and roles, password hashing, sessions, sign-in
//! throttling. Queries are in `db::users`; the web layer is `web::admin`.

mod role;

pub use role::Role;

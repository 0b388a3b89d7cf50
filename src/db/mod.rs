//! The SQLite state database: opening, pragmas, migrations, and the access discipline.
//!
//! One writer connection (behind a mutex) and a small pool of reader connections, all in
//! WAL mode, so readers never block the writer and the admin CLI can work on the same
//! file while the server runs. Every write is one `BEGIN IMMEDIATE` transaction: the
//! write lock is taken up front, so two processes never both read a stale "last row" and
//! then race (the audit chain depends on this). Async callers go through
//! [`Db::read`]/[`Db::write`], which run the closure on tokio's blocking pool: database
//! work never runs on the async executor.

pub mod feeds;
pub mod fleet;
pub mod int;
pub mod jobs;
pub mod legacy;
pub mod legacy_monitor;
pub mod legacy_registry;
pub mod legacy_segment;
pub mod legacy_timeline;
mod migrations;
pub mod rollout;
pub mod users;
pub mod views;
pub mod windows;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::DbError;

pub use migrations::schema_version;

/// Options for opening the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub busy_timeout: Duration,
    pub readers: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            readers: 4,
        }
    }
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    opts: DbOptions,
    // std Mutex: held only inside blocking closures, never across an await.
    writer: Mutex<Connection>,
    // Idle reader connections; a reader is taken, used, and put back.
    readers: Mutex<Vec<Connection>>,
    /// At most `opts.readers` async reads at once: the rest wait here, on the
    /// executor, instead of each taking a blocking thread and opening a connection of
    /// its own (which costs a schema parse). Without the bound, a burst of check-ins
    /// made more threads and connections, which made the burst last longer.
    read_permits: Arc<tokio::sync::Semaphore>,
    /// One async write at a time reaches the blocking pool; the others queue here
    /// rather than as threads blocked on the writer's mutex.
    write_permit: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn configure(conn: &Connection, busy: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy)?;
    // WAL: readers and one writer at once, across processes. synchronous=FULL: a
    // committed transaction survives power loss too, not only a killed process.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database at `path` and migrates it to the latest
    /// schema. Refuses a database written by a newer binary.
    pub fn open(path: &Path, opts: DbOptions) -> Result<Db, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            cause: source,
        };
        let existed = path.exists();
        let mut writer = Connection::open(path).map_err(open_err)?;
        if !existed {
            // The database holds credentials and tokens: owner only. SQLite gives the
            // -wal and -shm files the same mode as the main file.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| DbError::Worker(format!("cannot restrict {}: {e}", path.display())))?;
        }
        configure(&writer, opts.busy_timeout).map_err(open_err)?;
        migrations::migrate(&mut writer, path)?;
        let db = Db {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                read_permits: Arc::new(tokio::sync::Semaphore::new(opts.readers.max(1))),
                write_permit: Arc::new(tokio::sync::Semaphore::new(1)),
                opts,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        };
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn open_reader(&self) -> Result<Connection, DbError> {
        let conn = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| DbError::Open {
            path: self.inner.path.clone(),
            cause: source,
        })?;
        conn.busy_timeout(self.inner.opts.busy_timeout)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }

    /// Runs `f` in one write transaction (BEGIN IMMEDIATE), committing if it returns Ok.
    /// Blocking: call from a blocking context (CLI, or inside [`Db::write`]).
    pub fn write_blocking<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let mut conn = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| E::from(DbError::Sqlite(e)))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| E::from(DbError::Sqlite(e)))?;
        Ok(out)
    }

    /// Runs `f` on a reader connection (a consistent snapshot for its duration when `f`
    /// opens a transaction). Blocking.
    pub fn read_blocking<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader().map_err(E::from)?,
        };
        let out = f(&conn);
        let mut pool = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.inner.opts.readers {
            pool.push(conn);
        }
        out
    }

    /// [`Db::write_blocking`] on tokio's blocking pool.
    pub async fn write<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let permit = self.inner.write_permit.clone().acquire_owned().await;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the transaction ends, even if the caller stops waiting.
            let _permit = permit;
            db.write_blocking(f)
        })
        .await
        .map_err(|e| E::from(DbError::Worker(e.to_string())))?
    }

    /// [`Db::read_blocking`] on tokio's blocking pool.
    pub async fn read<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let permit = self.inner.read_permits.clone().acquire_owned().await;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            db.read_blocking(f)
        })
        .await
        .map_err(|e| E::from(DbError::Worker(e.to_string())))?
    }

    /// A cheap liveness check used by `/healthz` and the systemd watchdog: the file can
    /// be read and the schema is the one this binary expects.
    pub async fn check(&self) -> Result<(), DbError> {
        self.read(|c| {
            let v = schema_version(c)?;
            if v != migrations::LATEST {
                return Err(DbError::Worker(format!(
                    "schema version {v}, expected {}",
                    migrations::LATEST
                )));
            }
            Ok(())
        })
        .await
    }

    /// Full integrity check (`PRAGMA integrity_check`); returns SQLite's findings, empty
    /// when the file is sound.
    pub fn integrity_problems(&self) -> Result<Vec<String>, DbError> {
        self.read_blocking(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check")?;
            let rows: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_reads_are_bounded_by_the_pool_and_reuse_its_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let opts = DbOptions {
            readers: 2,
            ..DbOptions::default()
        };
        let db = Db::open(&dir.path().join("t.db"), opts).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..12 {
                let (db, now, max) = (db.clone(), now.clone(), max.clone());
                tasks.push(tokio::spawn(async move {
                    db.read(move |c| {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        now.fetch_sub(1, Ordering::SeqCst);
                        c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                            .map_err(DbError::from)
                    })
                    .await
                }));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap().unwrap(), 1);
            }
        });
        assert_eq!(max.load(Ordering::SeqCst), 2, "reads at once");
        // No connection was opened beyond the pool's two.
        assert_eq!(db.inner.readers.lock().unwrap().len(), 2);
    }

    #[test]
    fn open_migrate_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let db = Db::open(&p, DbOptions::default()).unwrap();
        let mode: String = db
            .read_blocking(|c| {
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(DbError::from)
            })
            .unwrap();
        assert_eq!(mode, "wal");
        db.write_blocking(|tx| {
            tx.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')", [])
                .map_err(DbError::from)
        })
        .unwrap();
        drop(db);
        let db = Db::open(&p, DbOptions::default()).unwrap();
        let v: String = db
            .read_blocking(|c| {
                c.query_row("SELECT value FROM meta WHERE key='k'", [], |r| r.get(0))
                    .map_err(DbError::from)
            })
            .unwrap();
        assert_eq!(v, "v");
        assert!(db.integrity_problems().unwrap().is_empty());
    }

    #[test]
    fn failed_closure_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), DbOptions::default()).unwrap();
        let r: Result<(), DbError> = db.write_blocking(|tx| {
            tx.execute("INSERT INTO meta(key, value) VALUES ('a', 'b')", [])?;
            Err(DbError::Worker("boom".into()))
        });
        assert!(r.is_err());
        let n: i64 = db
            .read_blocking(|c| {
                c.query_row("SELECT count(*) FROM meta WHERE key='a'", [], |r| r.get(0))
                    .map_err(DbError::from)
            })
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        drop(Db::open(&p, DbOptions::default()).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        let e = Db::open(&p, DbOptions::default()).unwrap_err().to_string();
        assert!(e.contains("newer than this binary knows"), "{e}");
    }
}

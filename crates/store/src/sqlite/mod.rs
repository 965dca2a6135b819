//! The embedded store: one SQLite file (`sqlite:PATH`), no server.
//!
//! Writes go through one writer thread that commits them in groups (`writer`); reads go to a
//! small pool of read connections on tokio's blocking pool (`read`); the schema and its
//! migrations are data (`schema`). The file is in WAL mode: readers never wait for the writer,
//! and with `synchronous=NORMAL` (the default) a commit survives the process being killed but
//! not a power cut or an OS crash; `?sync=full` (`Synchronous::Full`) survives both, at the cost
//! of a sync per group commit. See `docs/durability.md`.

mod read;
mod schema;
mod write;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::metrics::counted;
use crate::{
    BoxFuture, Claim, Definition, Entry, EventRecord, Micros, NewRun, NodeRecord, Reopen,
    RunFilter, RunRecord, Store, StoreError,
};
use read::Readers;
use writer::{Request, Writer};

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How far a commit of the SQLite store is made durable (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous=NORMAL`: a commit survives the process being killed, not a power cut or an
    /// OS crash (the last commits may be lost, the file stays consistent). The default.
    #[default]
    Normal,
    /// `synchronous=FULL` (`?sync=full`): a commit survives a power cut or an OS crash too.
    Full,
}

/// How to open a SQLite store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Its durability setting.
    pub sync: Synchronous,
}

impl SqliteOptions {
    /// The options with `sync`.
    pub fn with_sync(sync: Synchronous) -> SqliteOptions {
        SqliteOptions { sync }
    }
}

/// The SQLite store. Open several on one file (in one process or several) and they share it
/// safely: each waits for the others' write transactions (`busy_timeout`, 30 s).
pub struct SqliteStore {
    location: String,
    writer: Writer,
    readers: Arc<Readers>,
    /// Wakes a claimer of this handle when it queued or handed back a run (another process's
    /// are found by polling: SQLite has no notifications).
    work: tokio::sync::Notify,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating it if it does not exist (or is empty)
    /// and applying the migrations it lacks. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotAStore`] for a file that is not a Braid store,
    /// [`StoreError::NewerVersion`] for one made by a newer Braid (both leave the file as it
    /// was), [`StoreError::Unreachable`] when the file cannot be opened.
    pub async fn open(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        let loc = location.clone();
        let opened = tokio::task::spawn_blocking(move || open_writer(&path, &loc, options))
            .await
            .map_err(|e| StoreError::Database {
                location: location.clone(),
                detail: format!("opening stopped: {e}"),
            })?;
        let (conn, path) = opened?;
        let writer = Writer::start(conn, location.clone())?;
        Ok(SqliteStore {
            readers: Arc::new(Readers::new(path, location.clone())),
            location,
            writer,
            work: tokio::sync::Notify::new(),
        })
    }

    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.with(read).await
    }
}

/// Opens, checks and migrates the write connection (blocking).
fn open_writer(
    path: &Path,
    location: &str,
    options: SqliteOptions,
) -> Result<(Connection, PathBuf), StoreError> {
    schema::sniff(path, location)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| schema::opening(location, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| schema::opening(location, &e))?;
    schema::prepare(&mut conn, location)?;
    let sync = match options.sync {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .and_then(|()| conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024))
        .map_err(|e| schema::opening(location, &e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok((conn, path.to_path_buf()))
}

/// Maps a database error on `conn` to a [`StoreError::Database`].
fn database(conn: &Connection) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Database {
        location: conn.path().unwrap_or_default().to_owned(),
        detail: e.to_string(),
    }
}

/// Maps a record that cannot be read back to a [`StoreError::Corrupt`].
fn corrupt(conn: &Connection) -> impl Fn(String) -> StoreError + '_ {
    move |detail| StoreError::Corrupt {
        location: conn.path().unwrap_or_default().to_owned(),
        detail,
    }
}

impl Store for SqliteStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn put_definition<'a>(&'a self, def: &'a Definition) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(
            self.writer
                .call(|reply| Request::PutDefinition(def.clone(), reply)),
        )
    }

    fn definition<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>> {
        let fingerprint = fingerprint.to_owned();
        Box::pin(self.read(move |c| read::definition(c, &fingerprint)))
    }

    fn create_run<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(
            self.writer
                .call(|reply| Request::CreateRun(run.clone(), false, reply)),
        )
    }

    fn submit<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.writer
                .call(|reply| Request::CreateRun(run.clone(), true, reply))
                .await?;
            self.work.notify_one();
            Ok(())
        })
    }

    fn claim<'a>(
        &'a self,
        replica: &'a str,
        max: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<Claim>, StoreError>> {
        Box::pin(
            self.writer
                .call(move |reply| Request::Claim(replica.to_owned(), max, ttl, reply)),
        )
    }

    fn heartbeat<'a>(
        &'a self,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Claim>>, StoreError>> {
        Box::pin(
            self.writer
                .call(move |reply| Request::Heartbeat(replica.to_owned(), reply)),
        )
    }

    fn release<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let n = self
                .writer
                .call(move |reply| Request::Release(replica.to_owned(), reply))
                .await?;
            if n > 0 {
                self.work.notify_one();
            }
            Ok(n)
        })
    }

    fn wait_for_work(&self, timeout: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            Ok(tokio::time::timeout(timeout, self.work.notified())
                .await
                .is_ok())
        })
    }

    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            counted(
                self.writer
                    .call(|reply| Request::Append(entries, reply))
                    .await,
            )
        })
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunRecord>, StoreError>> {
        let id = id.to_owned();
        Box::pin(self.read(move |c| read::run(c, &id)))
    }

    fn nodes<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Vec<NodeRecord>, StoreError>> {
        let run = run.to_owned();
        Box::pin(self.read(move |c| read::nodes(c, &run)))
    }

    fn events<'a>(
        &'a self,
        run: &'a str,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventRecord>, StoreError>> {
        let run = run.to_owned();
        Box::pin(self.read(move |c| read::events(c, &run, from, limit)))
    }

    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        let filter = filter.clone();
        Box::pin(self.read(move |c| read::list_runs(c, &filter)))
    }

    fn reopen<'a>(&'a self, reopen: &'a Reopen) -> BoxFuture<'a, Result<RunRecord, StoreError>> {
        Box::pin(async move {
            counted(
                self.writer
                    .call(|reply| Request::Reopen(reopen.clone(), reply))
                    .await,
            )
        })
    }

    fn gc(&self, ended_before: Micros) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(
            self.writer
                .call(move |reply| Request::Gc(ended_before, reply)),
        )
    }
}

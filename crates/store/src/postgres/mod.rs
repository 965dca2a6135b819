//! The shared store: a PostgreSQL database (`postgres://USER@HOST/DB`), for several processes or
//! replicas. A small set of connections: one writer task that commits writes in groups
//! (`writer`), a few connections shared by reads (`conn::Pool`). The store lives in the
//! connection's current schema (`schema`); a URL's password never appears in a message or in
//! [`Store::location`].
//!
//! Durability is the server's: a commit is on disk when `synchronous_commit` is `on` (its
//! default); see `docs/durability.md`.

mod batch;
mod chunk;
mod conn;
mod lease;
mod notify;
mod read;
mod schema;
mod write;
mod writer;

use std::time::Duration;

use tokio_postgres::Config;

use crate::metrics::counted;
use crate::target::redact;
use crate::{
    BoxFuture, Claim, Definition, Entry, EventRecord, Micros, NewRun, NodeRecord, Reopen,
    RunFilter, RunRecord, Store, StoreError,
};
use conn::{Conn, Pool};
use writer::{Request, Writer};

/// How many connections reads share.
const READERS: usize = 2;

/// The server-side limit on a session idle inside a transaction (see `connect`): well past a
/// batch's gap between its round trips, and within the recovery target (lease + 5 s).
const IDLE_IN_TRANSACTION: &str = "-c idle_in_transaction_session_timeout=5000";

/// The PostgreSQL store.
pub struct PostgresStore {
    location: String,
    writer: Writer,
    readers: Pool,
    /// The `LISTEN` connection of `wait_for_work`, opened at its first call.
    wakeup: notify::Wakeup,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `url` names (libpq's URL form; `options=-c search_path=NAME`
    /// puts the store in schema `NAME`, which must exist), creating the store's tables if the
    /// schema is empty and applying the migrations it lacks. Must be called within a tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadUrl`] for a URL the driver cannot read; [`StoreError::Unreachable`] when
    /// no server answers within 5 s; [`StoreError::NotAStore`] for a schema holding another
    /// program's tables and [`StoreError::NewerVersion`] for a newer store (both write nothing).
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let location = redact(url);
        let mut config: Config = url.parse().map_err(|_| StoreError::BadUrl {
            url: location.clone(),
            hint: " (the PostgreSQL driver cannot read it)".to_owned(),
        })?;
        config.connect_timeout(conn::CONNECT_TIMEOUT);
        // A writer stopped between a batch's two round trips (SIGSTOP, a long pause, a network
        // cut) holds its runs' row locks in an open transaction, and claimers skip locked rows:
        // its runs would never be recovered while it is stopped. The server ends such a session
        // (and its locks) after this long idle in a transaction; a batch's round trips are
        // milliseconds apart.
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {IDLE_IN_TRANSACTION}"),
            _ => IDLE_IN_TRANSACTION.to_owned(),
        };
        config.options(&options);
        let mut first = Conn::open(&config, &location).await?;
        schema::prepare(&mut first.client, &location).await?;
        Ok(PostgresStore {
            writer: Writer::start(first, config.clone(), location.clone()),
            readers: Pool::new(config.clone(), location.clone(), READERS),
            wakeup: notify::Wakeup::new(config, location.clone()),
            location,
        })
    }
}

impl Store for PostgresStore {
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
        Box::pin(async move {
            let conn = self.readers.get().await?;
            read::definition(&conn, &self.location, fingerprint).await
        })
    }

    fn create_run<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(
            self.writer
                .call(|reply| Request::CreateRun(run.clone(), false, reply)),
        )
    }

    fn submit<'a>(&'a self, run: &'a NewRun) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(
            self.writer
                .call(|reply| Request::CreateRun(run.clone(), true, reply)),
        )
    }

    fn claim<'a>(
        &'a self,
        replica: &'a str,
        max: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<Claim>, StoreError>> {
        Box::pin(async move {
            let conn = self.readers.get().await?;
            lease::claim(&conn, &self.location, replica, max, ttl).await
        })
    }

    fn heartbeat<'a>(
        &'a self,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Claim>>, StoreError>> {
        Box::pin(async move {
            let conn = self.readers.get().await?;
            lease::heartbeat(&conn, &self.location, replica).await
        })
    }

    fn release<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let conn = self.readers.get().await?;
            lease::release(&conn, &self.location, replica).await
        })
    }

    fn wait_for_work(&self, timeout: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.wakeup.wait(timeout))
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
        Box::pin(async move {
            let conn = self.readers.get().await?;
            read::run(&conn, &self.location, id).await
        })
    }

    fn nodes<'a>(&'a self, run: &'a str) -> BoxFuture<'a, Result<Vec<NodeRecord>, StoreError>> {
        Box::pin(async move {
            let conn = self.readers.get().await?;
            read::nodes(&conn, &self.location, run).await
        })
    }

    fn events<'a>(
        &'a self,
        run: &'a str,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventRecord>, StoreError>> {
        Box::pin(async move {
            let conn = self.readers.get().await?;
            read::events(&conn, &self.location, run, from, limit).await
        })
    }

    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            let conn = self.readers.get().await?;
            read::list_runs(&conn, &self.location, filter).await
        })
    }

    fn reopen<'a>(&'a self, reopen: &'a Reopen) -> BoxFuture<'a, Result<RunRecord, StoreError>> {
        Box::pin(async move {
            let mut reopen = reopen.clone();
            if let Some(take) = reopen.take.take() {
                // Taken first, in a statement of its own (the writer's batches know no owners):
                // from then on no other replica claims the run, and the reopen that follows is
                // fenced with the new epoch. When the take finds the run in none of the states
                // (or at another epoch), the reopen below says why.
                let conn = self.readers.get().await?;
                let taken = lease::take(
                    &conn,
                    &self.location,
                    &reopen.run,
                    &take,
                    &reopen.from,
                    reopen.epoch,
                )
                .await?;
                match taken {
                    Some(epoch) => reopen.epoch = Some(epoch),
                    None => {
                        let found = read::run(&conn, &self.location, &reopen.run).await?;
                        return counted(Err(match found {
                            None => StoreError::UnknownRun {
                                run: reopen.run.clone(),
                            },
                            Some(r) => match reopen.epoch {
                                Some(e) if e != r.epoch => crate::codec::fenced(&r.id, e, r.epoch),
                                _ => crate::codec::wrong_state(&r.id, r.state, &reopen.from),
                            },
                        }));
                    }
                }
            }
            counted(
                self.writer
                    .call(|reply| Request::Reopen(reopen, reply))
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

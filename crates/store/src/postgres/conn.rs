//! Connections to the server: made with a bounded timeout (a closed port or a dead host is
//! [`StoreError::Unreachable`] within seconds, never a hang), each driven by a task that ends
//! with it, and remade when the server went away. Errors are mapped here, once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::StoreError;

/// How long connecting may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection: the client and the task that drives its socket (stopped with it).
pub(super) struct Conn {
    pub(super) client: Client,
    driver: JoinHandle<()>,
    /// Statements prepared on this connection, by their SQL.
    statements: Mutex<HashMap<&'static str, Statement>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    /// Connects, within [`CONNECT_TIMEOUT`].
    pub(super) async fn open(config: &Config, location: &str) -> Result<Conn, StoreError> {
        let unreachable = |detail: String| StoreError::Unreachable {
            location: location.to_owned(),
            detail,
        };
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| match e.as_db_error() {
                // The server answered and refused (a missing database, a bad password).
                Some(db) => StoreError::Database {
                    location: location.to_owned(),
                    detail: db.message().to_owned(),
                },
                None => unreachable(e.to_string()),
            })?;
        let driver = tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the client then
            // reports every query as closed.
            let _ = connection.await;
        });
        Ok(Conn {
            client,
            driver,
            statements: Mutex::new(HashMap::new()),
        })
    }

    /// `sql` prepared on this connection (once).
    pub(super) async fn statement(
        &self,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        let cached = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sql)
            .cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sql, statement.clone());
        Ok(statement)
    }
}

/// A few connections shared by readers: each query takes the next (a client pipelines the
/// queries of concurrent callers), and one found closed is remade.
pub(super) struct Pool {
    config: Config,
    location: String,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Pool {
    pub(super) fn new(config: Config, location: String, size: usize) -> Pool {
        Pool {
            config,
            location,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A live connection.
    pub(super) async fn get(&self) -> Result<Arc<Conn>, StoreError> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.slots.len();
        let current = self.slots[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(conn) = current.filter(|c| !c.client.is_closed()) {
            return Ok(conn);
        }
        let conn = Arc::new(Conn::open(&self.config, &self.location).await?);
        *self.slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&conn));
        Ok(conn)
    }
}

/// Maps a driver error: a connection gone is [`StoreError::Unreachable`], anything else the
/// server's message as [`StoreError::Database`].
pub(super) fn error(location: &str, e: &tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() && e.to_string().contains("connection") {
        return StoreError::Unreachable {
            location: location.to_owned(),
            detail: e.to_string(),
        };
    }
    StoreError::Database {
        location: location.to_owned(),
        detail: match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        },
    }
}

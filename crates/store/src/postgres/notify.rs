//! Wake-ups for claimers: a connection of its own that `LISTEN`s on `braid_queue`, opened at
//! the first [`Wakeup::wait`] and remade when lost. A submission or a release sends `NOTIFY`
//! (with the store's schema as payload; another schema's are ignored) in its transaction, so
//! the notification arrives once it committed. A notification that arrives while nobody waits
//! is kept (one), so a claimer that was busy claiming does not miss it; while the connection is
//! down notifications are lost, which the claimer's polling (the wait's timeout) covers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use super::conn::{self, CONNECT_TIMEOUT};
use crate::StoreError;

/// A listening connection and the task that reads its notifications.
struct Listening {
    client: Client,
    driver: JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

pub(super) struct Wakeup {
    config: Config,
    location: String,
    listening: Mutex<Option<Arc<Listening>>>,
    notify: Arc<Notify>,
}

impl Wakeup {
    pub(super) fn new(config: Config, location: String) -> Wakeup {
        Wakeup {
            config,
            location,
            listening: Mutex::new(None),
            notify: Arc::new(Notify::new()),
        }
    }

    /// Waits for a notification of this store's schema, at most `timeout`; `true` when one came.
    ///
    /// # Cancel safety
    ///
    /// Dropping it loses nothing: a notification is kept for the next wait.
    pub(super) async fn wait(&self, timeout: Duration) -> Result<bool, StoreError> {
        let current = self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if current.is_none_or(|l| l.client.is_closed()) {
            let listening = Arc::new(self.listen().await?);
            *self
                .listening
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(listening);
        }
        Ok(tokio::time::timeout(timeout, self.notify.notified())
            .await
            .is_ok())
    }

    async fn listen(&self) -> Result<Listening, StoreError> {
        let unreachable = |detail: String| StoreError::Unreachable {
            location: self.location.clone(),
            detail,
        };
        let (client, mut connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(NoTls))
                .await
                .map_err(|_| {
                    unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
                })?
                .map_err(|e| unreachable(e.to_string()))?;
        let (schema_tx, schema_rx) = tokio::sync::oneshot::channel::<String>();
        let notify = Arc::clone(&self.notify);
        let driver = tokio::spawn(async move {
            // The connection must be polled for the queries below to complete, so the schema
            // to filter on arrives once they have.
            let mut schema_rx = schema_rx;
            let mut schema: Option<String> = None;
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                if schema.is_none() {
                    schema = schema_rx.try_recv().ok();
                }
                match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if schema.as_deref().is_none_or(|s| s == n.payload()) {
                            notify.notify_one();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        });
        let listening = Listening { client, driver };
        let db = |e: tokio_postgres::Error| conn::error(&self.location, &e);
        let schema: Option<String> = listening
            .client
            .query_one("SELECT current_schema()::text", &[])
            .await
            .map_err(db)?
            .get(0);
        let _ = schema_tx.send(schema.unwrap_or_default());
        listening
            .client
            .batch_execute("LISTEN braid_queue")
            .await
            .map_err(db)?;
        Ok(listening)
    }
}

//! When to rescan the workflow directory: a file-system watcher (`notify`), a polling interval
//! for file systems and mounts whose change events are unreliable (network mounts, some
//! container volumes, editors that replace files), and explicit triggers ([`Reloader`]: SIGHUP
//! in `braid serve`). Triggers within the debounce window are folded into one rescan, so an
//! editor's burst of writes (or a `git checkout`) compiles each file once.

use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// How the directory is watched.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Rescan at least this often, events or not (`None`: only on events and triggers).
    pub poll_interval: Option<Duration>,
    /// Wait this long after a change for more before rescanning.
    pub debounce: Duration,
    /// Use the file system's change events (`notify`); the polling still runs beside it.
    pub events: bool,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            poll_interval: Some(Duration::from_secs(2)),
            debounce: Duration::from_millis(150),
            events: true,
        }
    }
}

/// Asks the service to rescan its directory now (what SIGHUP does). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloader(mpsc::Sender<()>);

impl Reloader {
    /// Requests a rescan; several requests before it happens make one.
    pub fn reload(&self) {
        // Full: a rescan is already requested.
        let _ = self.0.try_send(());
    }
}

/// The trigger channel: capacity one, since a pending trigger already covers every later one.
pub(crate) fn channel() -> (Reloader, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel(1);
    (Reloader(tx), rx)
}

/// Rescans `registry` on every trigger, event and poll until `stop`.
///
/// # Cancel safety
///
/// Stops between rescans; a rescan under way (on a blocking thread) finishes and swaps its
/// catalog in.
pub(crate) async fn watch(
    registry: Arc<Registry>,
    config: ReloadConfig,
    reloader: Reloader,
    mut triggers: mpsc::Receiver<()>,
    stop: CancellationToken,
) {
    // Kept alive for as long as this loop runs; dropping it stops the events.
    let _watcher = config
        .events
        .then(|| events(&registry, &reloader))
        .flatten();
    let mut poll = config.poll_interval.map(|every| {
        let mut i = tokio::time::interval(every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        let polled = async {
            match &mut poll {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = triggers.recv() => {
                tokio::time::sleep(config.debounce).await;
                while triggers.try_recv().is_ok() {}
            }
            () = polled => {}
        }
        let r = registry.clone();
        match tokio::task::spawn_blocking(move || r.rescan()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(dir = %registry.dir().display(), error = %e, "cannot read the workflow directory; the loaded workflows keep serving")
            }
            Err(e) => {
                tracing::error!(error = %e, "the rescan panicked; the loaded workflows keep serving")
            }
        }
    }
}

/// A watcher that triggers a rescan on any change under the directory, or `None` (logged)
/// where the platform offers none: polling then carries the reloads alone.
fn events(registry: &Registry, reloader: &Reloader) -> Option<notify::RecommendedWatcher> {
    let trigger = reloader.clone();
    let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            trigger.reload();
        }
    });
    let mut watcher = match made {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "no file-system events; reloading by polling only");
            return None;
        }
    };
    if let Err(e) = watcher.watch(registry.dir(), notify::RecursiveMode::Recursive) {
        tracing::warn!(dir = %registry.dir().display(), error = %e, "cannot watch the workflow directory; reloading by polling only");
        return None;
    }
    Some(watcher)
}

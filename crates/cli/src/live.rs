//! Watching a run: a live view while it executes, and a record of every attempt for the
//! timeline outputs.
//!
//! On a terminal the view is one line per node (pending, running with elapsed time, retrying,
//! done, skipped, failed, waiting for an answer), redrawn in place ten times a second and erased when the run ends (the
//! summary replaces it). When stderr is not a terminal, each event is one plain log line instead.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use braid::{Event, EventReceiver, FailureKind, NodeStatus, Plan};

/// How the live view is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Display {
    /// Redraw one line per node in place.
    Terminal {
        /// ANSI colours.
        color: bool,
    },
    /// One plain line per event.
    Lines,
    /// Nothing.
    Quiet,
}

/// One attempt of a node, as seen in the event stream.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// When it started, from the run's start.
    pub start: Duration,
    /// When it ended.
    pub end: Option<Duration>,
    /// Why it failed, if it failed and was retried.
    pub failure: Option<(FailureKind, String)>,
}

/// What happened to each node, in canonical order.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    index: HashMap<Arc<str>, usize>,
    /// Per node: its attempts.
    pub attempts: Vec<Vec<Attempt>>,
    /// Per node: its final status and when it was reached.
    pub finished: Vec<Option<(NodeStatus, Duration)>>,
    /// The latest offset seen.
    now: Duration,
}

impl Recorder {
    pub(crate) fn new(plan: &Plan) -> Self {
        let n = plan.nodes().len();
        Recorder {
            index: plan
                .nodes()
                .iter()
                .enumerate()
                .map(|(i, node)| (node.name.clone(), i))
                .collect(),
            attempts: vec![Vec::new(); n],
            finished: vec![None; n],
            now: Duration::ZERO,
        }
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::NodeStarted { node, at, .. } => {
                self.now = self.now.max(*at);
                if let Some(&i) = self.index.get(node) {
                    self.attempts[i].push(Attempt {
                        start: *at,
                        end: None,
                        failure: None,
                    });
                }
            }
            Event::NodeRetrying {
                node,
                failure,
                message,
                at,
                ..
            } => {
                self.now = self.now.max(*at);
                if let Some(a) = self
                    .index
                    .get(node)
                    .and_then(|&i| self.attempts[i].last_mut())
                {
                    a.end = Some(*at);
                    a.failure = Some((*failure, message.clone()));
                }
            }
            Event::NodeFinished { node, status, at } => {
                self.now = self.now.max(*at);
                if let Some(&i) = self.index.get(node) {
                    if let Some(a) = self.attempts[i].last_mut().filter(|a| a.end.is_none()) {
                        a.end = Some(*at);
                    }
                    self.finished[i] = Some((*status, *at));
                }
            }
            _ => {}
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn line_for(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted { workflow, nodes } => {
            format!("[  0.00s] {workflow}: started ({nodes} nodes)")
        }
        Event::NodeStarted { node, attempt, at } if *attempt > 1 => {
            format!("[{:>7}] {node}: attempt {attempt} started", secs(*at))
        }
        Event::NodeStarted { node, at, .. } => format!("[{:>7}] {node}: started", secs(*at)),
        Event::NodeRetrying {
            node,
            attempt,
            failure,
            message,
            delay,
            at,
        } => format!(
            "[{:>7}] {node}: attempt {attempt} failed ({failure}: {message}); retrying in {}",
            secs(*at),
            secs(*delay)
        ),
        Event::NodeFinished { node, status, at } => {
            format!("[{:>7}] {node}: {}", secs(*at), status.as_str())
        }
        Event::RunFinished { status, wall_time } => {
            format!("[{:>7}] run {}", secs(*wall_time), status.as_str())
        }
        _ => return None,
    })
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

fn render(plan: &Plan, rec: &Recorder, now: Duration, color: bool) -> String {
    let width = plan.nodes().iter().map(|n| n.name.len()).max().unwrap_or(4);
    let mut out = String::new();
    for (i, node) in plan.nodes().iter().enumerate() {
        let attempts = &rec.attempts[i];
        let state = match (rec.finished[i], attempts.last()) {
            (Some((status, at)), _) => {
                let took = attempts
                    .first()
                    .map(|a| at.saturating_sub(a.start))
                    .unwrap_or_default();
                let code = match status {
                    NodeStatus::Succeeded => "32",
                    NodeStatus::FellBack | NodeStatus::Skipped => "33",
                    NodeStatus::Waiting => "35",
                    _ => "31",
                };
                let text = match status {
                    NodeStatus::Succeeded => format!("succeeded in {}", secs(took)),
                    NodeStatus::FellBack => format!("fell back after {}", secs(took)),
                    NodeStatus::Waiting => "waiting for an answer".to_owned(),
                    other => other.as_str().to_owned(),
                };
                paint(color, code, &text)
            }
            (None, Some(a)) if a.end.is_some() => {
                let why = a
                    .failure
                    .as_ref()
                    .map(|(k, _)| k.as_str())
                    .unwrap_or("failed");
                paint(
                    color,
                    "33",
                    &format!("retrying after attempt {} ({why})", attempts.len()),
                )
            }
            (None, Some(a)) => {
                let attempt = if attempts.len() > 1 {
                    format!(" (attempt {})", attempts.len())
                } else {
                    String::new()
                };
                paint(
                    color,
                    "36",
                    &format!("running {}{attempt}", secs(now.saturating_sub(a.start))),
                )
            }
            (None, None) => paint(color, "2", "pending"),
        };
        let _ = writeln!(out, "  {:<width$}  {state}", node.name);
    }
    out
}

/// Consumes a run's events until the run ends, showing them as `display` says, and returns the
/// record of every attempt.
pub(crate) async fn watch(plan: Arc<Plan>, mut rx: EventReceiver, display: Display) -> Recorder {
    let mut rec = Recorder::new(&plan);
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut drawn = 0usize;
    let mut stderr = std::io::stderr();
    let terminal = matches!(display, Display::Terminal { .. });
    let color = matches!(display, Display::Terminal { color: true });
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                if display == Display::Lines
                    && let Some(line) = line_for(&event) {
                        crate::output::err(&format!("{line}\n"));
                    }
                rec.apply(&event);
            }
            _ = ticker.tick(), if terminal => {
                let text = render(&plan, &rec, started.elapsed(), color);
                let mut frame = String::new();
                if drawn > 0 {
                    let _ = write!(frame, "\x1b[{drawn}A");
                }
                for line in text.lines() {
                    let _ = writeln!(frame, "\x1b[2K{line}");
                }
                drawn = text.lines().count();
                let _ = stderr.write_all(frame.as_bytes());
                let _ = stderr.flush();
            }
        }
    }
    if terminal && drawn > 0 {
        let mut frame = format!("\x1b[{drawn}A");
        for _ in 0..drawn {
            frame.push_str("\x1b[2K\n");
        }
        let _ = write!(frame, "\x1b[{drawn}A");
        let _ = stderr.write_all(frame.as_bytes());
        let _ = stderr.flush();
    }
    rec
}

//! A run's timeline, for people: Chrome trace-event JSON (opens in Perfetto or chrome://tracing)
//! and a self-contained HTML Gantt chart (one bar per attempt, retries and backoff visible, the
//! critical path highlighted) that opens in any browser without a network.

use std::fmt::Write as _;
use std::time::Duration;

use braid::{NodeStatus, RunReport};
use serde_json::{Value, json};

use crate::live::Recorder;

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Chrome trace-event JSON: one thread (row) per node, one complete event per attempt.
pub(crate) fn chrome_trace(report: &RunReport, rec: &Recorder) -> Value {
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": format!("braid: {} ({})", report.workflow, report.mode) }
    })];
    events.push(json!({
        "name": report.workflow, "cat": "run", "ph": "X", "pid": 1, "tid": 0, "ts": 0,
        "dur": us(report.wall_time),
        "args": { "status": report.status.as_str(), "speedup": report.speedup, "critical_path": report.critical_path }
    }));
    events.push(
        json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": { "name": "run" } }),
    );
    for (i, node) in report.nodes.iter().enumerate() {
        let tid = i + 1;
        events.push(json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": node.name } }));
        events.push(json!({ "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": { "sort_index": tid } }));
        let attempts = rec.attempts.get(i).map(Vec::as_slice).unwrap_or_default();
        for (a, attempt) in attempts.iter().enumerate() {
            let end = attempt.end.or(node.end).unwrap_or(attempt.start);
            let last = a + 1 == attempts.len();
            let outcome = match (&attempt.failure, last) {
                (Some((kind, _)), _) => kind.as_str(),
                (None, true) => node.status.as_str(),
                (None, false) => "failed",
            };
            let mut args = json!({ "attempt": a + 1, "kind": node.kind, "outcome": outcome });
            if let Some((_, message)) = &attempt.failure {
                args["error"] = json!(message);
            } else if let (true, Some(f)) = (last, &node.failure) {
                args["error"] = json!(f.message);
            }
            events.push(json!({
                "name": if attempts.len() > 1 { format!("{} #{}", node.name, a + 1) } else { node.name.to_string() },
                "cat": "node", "ph": "X", "pid": 1, "tid": tid,
                "ts": us(attempt.start), "dur": us(end.saturating_sub(attempt.start)), "args": args
            }));
        }
        if matches!(node.status, NodeStatus::Skipped | NodeStatus::Waiting) {
            let mut event = json!({
                "name": format!("{} ({})", node.name, node.status.as_str()), "cat": "node",
                "ph": "i", "s": "t", "pid": 1, "tid": tid, "ts": us(node.start.unwrap_or_default())
            });
            if let Some(prompt) = &node.prompt {
                event["args"] = json!({ "prompt": prompt });
            }
            events.push(event);
        }
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The time axis of a run lasting `total` ms: ticks from 0 at a round step (1, 2 or 5 times a
/// power of ten, the smallest that cuts the run into at most six steps), labelled in ms, or in seconds once
/// the step is a second or more.
fn ticks(total: f64) -> Vec<(f64, String)> {
    if total.is_nan() || total <= 0.0 {
        return vec![(0.0, "0 ms".to_owned())];
    }
    let rough = total / 6.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * power);
    let seconds = step >= 1000.0;
    let decimals = |unit: f64| {
        let digits = -(step / unit).log10().floor();
        if digits > 0.0 { digits as usize } else { 0 }
    };
    let mut out = Vec::new();
    let mut i = 0.0f64;
    loop {
        let at = i * step;
        if at > total * (1.0 + 1e-9) {
            break;
        }
        let label = if seconds {
            format!("{:.*} s", decimals(1000.0), at / 1000.0)
        } else {
            format!("{:.*} ms", decimals(1.0), at)
        };
        out.push((at, label));
        i += 1.0;
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: #59636e; margin: 0 0 20px; }
.chart { display: grid; grid-template-columns: max-content 1fr; gap: 6px 12px; align-items: center; max-width: 1100px; }
.label { font-family: ui-monospace, monospace; white-space: nowrap; }
.label.crit { font-weight: 700; }
.label.crit::after { content: " ★"; color: #bf8700; }
.track { position: relative; height: 22px; background: #f6f8fa; border-radius: 4px; }
.track.crit { outline: 2px solid #bf8700; }
.bar { position: absolute; top: 3px; height: 16px; border-radius: 3px; min-width: 2px; }
.succeeded { background: #2da44e; } .fell_back { background: #d4a72c; } .failed { background: #cf222e; }
.cancelled { background: #8c959f; } .attempt-failed { background: #ff8182; }
.backoff { background: repeating-linear-gradient(45deg, #d0d7de 0 4px, transparent 4px 8px); }
.skipped { color: #59636e; font-style: italic; position: absolute; left: 6px; top: 2px; font-size: 12px; }
.waiting { position: absolute; top: 2px; height: 18px; border-left: 3px solid #8250df; padding-left: 4px; color: #8250df; font-size: 12px; white-space: nowrap; }
.axis { position: relative; height: 18px; font-size: 11px; color: #59636e; }
.tick { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px; margin-right: 4px; }
table { border-collapse: collapse; margin-top: 24px; font-size: 13px; }
td, th { padding: 3px 10px; border-bottom: 1px solid #d0d7de; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"#;

/// A self-contained HTML Gantt chart of the run.
pub(crate) fn html(report: &RunReport, rec: &Recorder) -> String {
    let total = report.wall_time.as_secs_f64().max(1e-6);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / total;
    let saved = if report.node_time_sum.is_zero() {
        0.0
    } else {
        100.0 * (1.0 - report.wall_time.as_secs_f64() / report.node_time_sum.as_secs_f64())
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>braid: {name}</title><style>{STYLE}</style></head><body>\n",
        name = esc(&report.workflow)
    );
    let _ = writeln!(
        out,
        "<h1>{} — {} in {} ms ({})</h1>",
        esc(&report.workflow),
        report.status.as_str(),
        ms(report.wall_time),
        report.mode
    );
    let _ = writeln!(
        out,
        "<p class=\"sub\">The nodes took {} ms in all: {:.2}× faster than one at a time ({:.1}% saved). Critical path: <b>{}</b>.</p>",
        ms(report.node_time_sum),
        report.speedup,
        saved.max(0.0),
        esc(&report.critical_path.join(" → "))
    );
    if let Some(e) = &report.error {
        let _ = writeln!(
            out,
            "<p class=\"sub\" style=\"color:#cf222e\">{}</p>",
            esc(&e.to_string())
        );
    }
    out.push_str("<p class=\"legend\"><span><i class=\"succeeded\"></i>succeeded</span><span><i class=\"attempt-failed\"></i>failed attempt</span><span><i class=\"backoff\"></i>backoff</span><span><i class=\"fell_back\"></i>fell back</span><span><i class=\"failed\"></i>failed</span><span><i class=\"cancelled\"></i>cancelled</span><span style=\"color:#8250df\">▍waiting for an answer</span><span>★ critical path</span></p>\n");
    out.push_str("<div class=\"chart\">\n<div></div><div class=\"axis\">");
    let total = report.wall_time.as_secs_f64() * 1000.0;
    for (at, label) in ticks(total) {
        let left = if total > 0.0 { at / total * 100.0 } else { 0.0 };
        // The first label starts at its tick, one near the right edge ends at it.
        let shift = if at == 0.0 {
            "none"
        } else if left > 92.0 {
            "translateX(-100%)"
        } else {
            "translateX(-50%)"
        };
        let _ = write!(
            out,
            "<span class=\"tick\" style=\"left:{left:.2}%;transform:{shift}\">{label}</span>"
        );
    }
    out.push_str("</div>\n");
    for (i, node) in report.nodes.iter().enumerate() {
        let crit = if report.critical_path.contains(&node.name) {
            " crit"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<div class=\"label{crit}\" title=\"{}\">{}</div><div class=\"track{crit}\" data-node=\"{}\">",
            esc(&node.kind),
            esc(&node.name),
            esc(&node.name)
        );
        let attempts = rec.attempts.get(i).map(Vec::as_slice).unwrap_or_default();
        let mut previous_end: Option<Duration> = None;
        for (a, attempt) in attempts.iter().enumerate() {
            if let Some(prev) = previous_end.filter(|p| attempt.start > *p) {
                let _ = write!(
                    out,
                    "<div class=\"bar backoff\" style=\"left:{:.3}%;width:{:.3}%\" title=\"backoff {} ms\"></div>",
                    pct(prev),
                    pct(attempt.start - prev),
                    ms(attempt.start - prev)
                );
            }
            let end = attempt.end.or(node.end).unwrap_or(attempt.start);
            let last = a + 1 == attempts.len();
            let class = if attempt.failure.is_some() || !last {
                "attempt-failed"
            } else {
                node.status.as_str()
            };
            let mut title = format!(
                "{} attempt {}: {}–{} ms",
                node.name,
                a + 1,
                ms(attempt.start),
                ms(end)
            );
            if let Some((kind, message)) = &attempt.failure {
                let _ = write!(title, " ({kind}: {message})");
            } else if let (true, Some(f)) = (last, &node.failure) {
                let _ = write!(title, " ({}: {})", f.kind, f.message);
            }
            let _ = write!(
                out,
                "<div class=\"bar {class}\" data-attempt=\"{}\" style=\"left:{:.3}%;width:{:.3}%\" title=\"{}\"></div>",
                a + 1,
                pct(attempt.start),
                pct(end.saturating_sub(attempt.start)),
                esc(&title)
            );
            previous_end = Some(end);
        }
        if node.status == NodeStatus::Waiting {
            let _ = write!(
                out,
                "<span class=\"waiting\" style=\"left:{:.3}%\" title=\"{}\">waiting for an answer</span>",
                pct(node.start.unwrap_or_default()).min(80.0),
                esc(node.prompt.as_deref().unwrap_or_default())
            );
        } else if node.status == NodeStatus::Skipped {
            out.push_str("<span class=\"skipped\">skipped</span>");
        } else if node.status == NodeStatus::NotStarted {
            out.push_str("<span class=\"skipped\">not started</span>");
        }
        out.push_str("</div>\n");
    }
    out.push_str("</div>\n<table><tr><th>node</th><th>kind</th><th>status</th><th>attempts</th><th>start ms</th><th>end ms</th><th>duration ms</th><th>failure or prompt</th></tr>\n");
    for node in &report.nodes {
        let failure = match (&node.failure, &node.prompt) {
            (Some(f), _) => format!("{}: {}", f.kind, f.message),
            (None, Some(prompt)) => format!("asks: {prompt}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&node.name),
            esc(&node.kind),
            node.status.as_str(),
            node.attempts,
            node.start.map(ms).unwrap_or_default(),
            node.end.map(ms).unwrap_or_default(),
            ms(node.duration()),
            esc(&failure)
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::ticks;

    fn labels(total: f64) -> Vec<String> {
        ticks(total).into_iter().map(|(_, l)| l).collect()
    }

    #[test]
    fn axis_ticks_fall_on_round_steps() {
        assert_eq!(
            labels(2654.0),
            ["0 ms", "500 ms", "1000 ms", "1500 ms", "2000 ms", "2500 ms"]
        );
        assert_eq!(
            labels(1000.0),
            ["0 ms", "200 ms", "400 ms", "600 ms", "800 ms", "1000 ms"]
        );
        assert_eq!(labels(73_500.0), ["0 s", "20 s", "40 s", "60 s"]);
        assert_eq!(labels(9_000.0), ["0 s", "2 s", "4 s", "6 s", "8 s"]);
        assert_eq!(labels(0.37), ["0.0 ms", "0.1 ms", "0.2 ms", "0.3 ms"]);
        assert_eq!(labels(0.0), ["0 ms"]);
        let t = ticks(2654.0);
        assert_eq!(t[1].0, 500.0);
    }
}

//! A run's events, packed: a row of `braid_events` holds a chunk of consecutive events,
//! `(run, first_seq, n, events)`, the events as lines of compact JSON, one per event:
//! `[at,kind,node,attempt,data]`. A PostgreSQL row costs 28 bytes of header and line pointer and
//! a 28-byte index entry before any data, more than a small event itself; a chunk pays that once
//! for up to [`CHUNK_BYTES`] of events. An append extends the run's last chunk while it has room
//! (an `UPDATE` that leaves the key alone, so usually a HOT update), then starts new ones; a
//! chunk stays below the size at which PostgreSQL would move it out of line (2 kB).
//!
//! A chunk's events are numbered `first_seq`, `first_seq + 1`, … (its lines, in order), so the
//! sequence is gapless by construction; the writer checks each appended event's `seq` against
//! the run's next, `first_seq + n` of its last chunk, under the run's row lock.

use crate::EventRecord;
use crate::codec;

/// A chunk is extended, or a new one filled, up to this many bytes of lines (a single larger
/// event makes a chunk of its own).
pub(super) const CHUNK_BYTES: usize = 1536;

/// Appends `event`'s line to `out`: `[at,kind,node,attempt]`, and `data` as a fifth element
/// when there is any (so `None` and `Some(null)` stay apart).
pub(super) fn push_line(out: &mut String, event: &EventRecord) {
    let head = (
        event.at,
        codec::event_kind_code(event.kind),
        &event.node,
        event.attempt,
    );
    // Numbers, strings and JSON values always serialize; compact JSON has no raw newline, so
    // the newline ends the line.
    let text = match &event.data {
        None => serde_json::to_string(&head),
        Some(data) => serde_json::to_string(&(head.0, head.1, head.2, head.3, data)),
    };
    out.push_str(&text.unwrap_or_default());
    out.push('\n');
}

/// The events of the chunk that starts at `first_seq`, from `from` on, until `out` holds
/// `room`.
pub(super) fn decode(
    first_seq: u64,
    text: &str,
    from: u64,
    room: usize,
    out: &mut Vec<EventRecord>,
) -> Result<(), String> {
    for (i, line) in text.lines().enumerate() {
        let seq = first_seq + i as u64;
        if seq < from {
            continue;
        }
        if out.len() >= room {
            break;
        }
        let bad = |what: &str| format!("event {seq}: {what}");
        let fields: Vec<serde_json::Value> =
            serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        if !(4..=5).contains(&fields.len()) {
            return Err(bad("not 4 or 5 fields"));
        }
        let mut fields = fields.into_iter();
        let mut next = || fields.next().unwrap_or_default();
        let at = next().as_i64().ok_or_else(|| bad("its time"))?;
        let kind = next().as_i64().ok_or_else(|| bad("its kind"))?;
        let node = match next() {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            _ => return Err(bad("its node")),
        };
        let attempt = match next() {
            serde_json::Value::Null => None,
            v => Some(codec::unsigned(
                v.as_i64().ok_or_else(|| bad("its attempt"))?,
                "an attempt",
            )?),
        };
        let data = fields.next();
        out.push(EventRecord {
            seq,
            at,
            kind: codec::event_kind(kind)?,
            node,
            attempt,
            data,
        });
    }
    Ok(())
}

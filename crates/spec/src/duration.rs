//! Durations as written in a workflow file: `800ms`, `2s`, `1.5s`, `1m30s`, `1h`.
//!
//! The file keeps them as strings (so an error can point at the text the user wrote); the compiler
//! and every kind parse them with [`parse_duration`] (through `braid_core::registry::duration_param`),
//! the one parser.
//!
//! One grammar, two forms: the parser, and the schema's [`DURATION_PATTERN`] that editors and CI
//! check files with. The units are listed once, in `UNITS`; a test here derives the pattern's
//! unit alternation from that list, and a test in the compiler (`duration_grammar`) checks, with the
//! regex engine the schema is validated with, that the pattern and the parser accept exactly the
//! same strings, for every string of up to six characters over the characters the grammar tells
//! apart. The parser refuses one thing more: a duration too long for a `Duration` (`1e300h` cannot
//! be written, but `99999999999999999999h` can), which the compiler reports as an invalid duration.

use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The JSON Schema pattern of a duration: one or more groups of a number (digits, optionally a
/// fraction) and a unit. [`parse_duration`] accepts exactly these strings, short of overflow.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// A duration as written in the file, such as `800ms` or `1m30s`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct DurationSpec(pub String);

impl DurationSpec {
    /// Parses the duration.
    ///
    /// # Errors
    ///
    /// When the text is not one or more `<number><unit>` groups with unit `ms`, `s`, `m` or `h`.
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and a unit (`ms`, `s`, `m`, `h`), repeated: `800ms`, `2s`, `1.5s`, `1m30s`.",
            "examples": ["100ms", "2s", "1m30s"]
        })
    }
}

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    /// What is wrong, lowercase.
    pub message: String,
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DurationError {}

/// The units, in the order the pattern lists them, with their length in seconds.
const UNITS: [(&str, f64); 4] = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// Parses `800ms`, `2s`, `1.5s`, `1m30s`, `1h`.
///
/// # Errors
///
/// When the text is empty, has a group without a number or unit, an unknown unit, or overflows.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |message: String| DurationError { message };
    if text.is_empty() {
        return Err(err("empty duration".to_owned()));
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total = Duration::ZERO;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &text[start..i];
        if number.is_empty() {
            return Err(err(format!("expected a number at `{}`", &text[start..])));
        }
        let value: f64 = number
            .parse()
            .ok()
            .filter(|_| !number.starts_with('.') && !number.ends_with('.'))
            .ok_or_else(|| err(format!("`{number}` is not a number")))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &text[unit_start..i];
        let seconds_per_unit = match UNITS.iter().find(|(name, _)| *name == unit) {
            Some(&(_, seconds)) => seconds,
            None if unit.is_empty() => {
                return Err(err(format!(
                    "`{number}` has no unit; write `{number}ms` or `{number}s`"
                )));
            }
            None => {
                return Err(err(format!(
                    "unknown unit `{unit}`; use `ms`, `s`, `m` or `h`"
                )));
            }
        };
        let part = Duration::try_from_secs_f64(value * seconds_per_unit)
            .map_err(|_| err(format!("`{text}` is too long")))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| err(format!("`{text}` is too long")))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("800ms"), Ok(Duration::from_millis(800)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_the_pattern_rejects() {
        for bad in ["", "5", "5 s", "ms", "5sec", "1.s", ".5s", "-1s", "1e3ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn the_pattern_lists_the_parsers_units() {
        let units: Vec<&str> = UNITS.iter().map(|(name, _)| *name).collect();
        let expected = format!(r"^([0-9]+(\.[0-9]+)?({}))+$", units.join("|"));
        assert_eq!(DURATION_PATTERN, expected);
        // The error message names the same units.
        let e = parse_duration("1d").unwrap_err();
        assert_eq!(e.message, "unknown unit `d`; use `ms`, `s`, `m` or `h`");
    }

    #[test]
    fn unit_missing_says_how_to_fix() {
        let e = parse_duration("500").unwrap_err();
        assert_eq!(e.message, "`500` has no unit; write `500ms` or `500s`");
    }
}

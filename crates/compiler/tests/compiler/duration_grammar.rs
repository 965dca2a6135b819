//! The duration grammar exists once: the schema's pattern and the parser accept the same strings.
//!
//! Checked exhaustively, with the regex engine the schema is validated with (`jsonschema`'s, the
//! one `braid validate` uses), over every string of up to six characters drawn from the
//! characters the grammar tells apart: digits, the dot, the unit letters, another letter, and
//! another character. Values that short cannot overflow, so the parser's one extra refusal (a
//! duration too long for a `Duration`) does not arise; it is checked apart below.

use braid_spec::{DURATION_PATTERN, parse_duration};
use serde_json::json;

const ALPHABET: [char; 8] = ['0', '1', '.', 'm', 's', 'h', 'x', '-'];
const MAX_LEN: usize = 6;

#[test]
fn pattern_and_parser_accept_the_same_strings() {
    let pattern =
        jsonschema::draft7::new(&json!({ "type": "string", "pattern": DURATION_PATTERN }))
            .expect("the duration pattern compiles");
    let mut checked = 0usize;
    let mut accepted = 0usize;
    let mut text = String::with_capacity(MAX_LEN);
    // Every string over ALPHABET of length 0..=MAX_LEN, counted in base ALPHABET.len().
    for len in 0..=MAX_LEN {
        let total = ALPHABET.len().pow(len as u32);
        for mut n in 0..total {
            text.clear();
            for _ in 0..len {
                text.push(ALPHABET[n % ALPHABET.len()]);
                n /= ALPHABET.len();
            }
            let by_pattern = pattern.is_valid(&json!(text));
            let by_parser = parse_duration(&text).is_ok();
            assert_eq!(
                by_pattern, by_parser,
                "{text:?}: the pattern says {by_pattern}, the parser {by_parser}"
            );
            checked += 1;
            accepted += usize::from(by_parser);
        }
    }
    assert_eq!(checked, 299_593);
    assert!(accepted > 1000, "only {accepted} durations accepted");
}

#[test]
fn only_overflow_separates_them() {
    let pattern =
        jsonschema::draft7::new(&json!({ "type": "string", "pattern": DURATION_PATTERN }))
            .expect("the duration pattern compiles");
    let huge = "99999999999999999999h";
    assert!(pattern.is_valid(&json!(huge)));
    let e = parse_duration(huge).expect_err("too long for a Duration");
    assert_eq!(e.message, format!("`{huge}` is too long"));
}

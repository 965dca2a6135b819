//! The fixture corpus: `tests/fixtures/invalid/<code>[-variant].yaml` must produce a diagnostic
//! with that code, and its rendered diagnostics must match the committed snapshot;
//! `tests/fixtures/valid/*.yaml` and `workflows/*.yaml` must compile without errors.
//!
//! A fixture may name further codes it must produce on a line `# expect: code code ...`.

use std::collections::BTreeSet;
use std::sync::Arc;

use braid_compiler::{Code, Compilation, Severity};

use crate::common::{compile, compiler, yaml_files};

const INVALID: &str = "tests/fixtures/invalid";
const VALID: &str = "tests/fixtures/valid";

/// Codes no file can produce (`io`, `internal`) or that need a generated input (`too-large`, see
/// `limits`).
const NOT_FROM_FIXTURES: &[Code] = &[Code::Io, Code::Internal, Code::TooLarge];

/// Codes that are warnings: their fixtures compile to a plan, with the warning.
const WARNINGS: &[Code] = &[Code::UnusedFallback, Code::ShellTemplate];

/// The code a fixture's file name starts with (the longest match, so `invalid-default-*` is not
/// read as some shorter code).
fn code_of(file: &str) -> Option<Code> {
    let stem = file.strip_suffix(".yaml")?;
    Code::ALL
        .iter()
        .copied()
        .filter(|c| stem == c.as_str() || stem.starts_with(&format!("{}-", c.as_str())))
        .max_by_key(|c| c.as_str().len())
}

/// The codes a fixture lists on its `# expect:` line.
fn expected_extra(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect:"))
        .flat_map(|l| l.split_whitespace().map(str::to_owned))
        .collect()
}

#[test]
fn invalid_fixtures_report_their_code_and_match_their_snapshot() {
    let compiler = compiler();
    let files = yaml_files(INVALID);
    assert!(files.len() >= 35, "only {} invalid fixtures", files.len());
    let mut problems = Vec::new();
    for (file, text) in &files {
        // Compiled at its real path, so that the workflow files it names resolve.
        let at = crate::common::workspace().join(INVALID).join(file);
        let c = compile(&compiler, &at.to_string_lossy(), text);
        let path = format!("{INVALID}/{file}");
        let rendered = braid_compiler::render::human(&path, text, &c.diagnostics, false);
        insta::with_settings!({
            snapshot_path => "../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => path.as_str(),
        }, {
            insta::assert_snapshot!(file.trim_end_matches(".yaml"), rendered);
        });
        problems.extend(check_invalid(file, text, &c));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What is wrong with an invalid fixture's diagnostics, beyond its snapshot.
fn check_invalid(file: &str, text: &str, c: &Compilation) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(code) = code_of(file) else {
        return vec![format!(
            "{file}: the name does not start with a diagnostic code"
        )];
    };
    let codes: BTreeSet<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    for want in std::iter::once(code.as_str().to_owned()).chain(expected_extra(text)) {
        if !codes.contains(want.as_str()) {
            problems.push(format!("{file}: expected `{want}`, got {codes:?}"));
        }
    }
    if WARNINGS.contains(&code) {
        if c.diagnostics
            .iter()
            .any(|d| d.code == code && d.severity != Severity::Warning)
        {
            problems.push(format!("{file}: `{code}` must be a warning"));
        }
    } else if !c.has_errors() || c.plan.is_some() {
        problems.push(format!("{file}: compiled without errors"));
    }
    for d in &c.diagnostics {
        if d.span().start.line == 0 {
            problems.push(format!(
                "{file}: `{}` has no position: {}",
                d.code, d.message
            ));
        }
        if d.help.is_none() {
            problems.push(format!(
                "{file}: `{}` has no help line: {}",
                d.code, d.message
            ));
        }
    }
    problems
}

#[test]
fn every_code_has_a_fixture() {
    let covered: BTreeSet<Code> = yaml_files(INVALID)
        .iter()
        .filter_map(|(f, _)| code_of(f))
        .collect();
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| !NOT_FROM_FIXTURES.contains(c) && !covered.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "no fixture in {INVALID} for: {missing:?}"
    );
}

#[test]
fn every_snapshot_has_a_fixture() {
    let fixtures: BTreeSet<String> = yaml_files(INVALID)
        .into_iter()
        .map(|(f, _)| f.replace(".yaml", ".snap"))
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let orphans: Vec<String> = std::fs::read_dir(&dir)
        .expect("the snapshots directory")
        .map(|e| e.expect("a directory entry"))
        // `fuzz/` holds the snapshots of `tests/fixtures/fuzz/` (see the `fuzz` module).
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !fixtures.contains(name))
        .collect();
    assert!(
        orphans.is_empty(),
        "snapshots without a fixture (delete them): {orphans:?}"
    );
}

#[test]
fn invalid_fixtures_start_with_a_comment_saying_what_is_wrong() {
    for (file, text) in yaml_files(INVALID) {
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("# ") && first.len() > 10,
            "{file}: first line should say what is wrong"
        );
    }
}

fn assert_compiles_cleanly(dir: &str, schema_comment: Option<&str>) -> usize {
    let compiler = compiler();
    let files = yaml_files(dir);
    for (file, text) in &files {
        if let Some(comment) = schema_comment {
            assert!(
                text.starts_with(comment),
                "{dir}/{file}: the first line should be `{comment}`"
            );
        }
        let c = compile(&compiler, file, text);
        let rendered = braid_compiler::render::human(file, text, &c.diagnostics, false);
        assert!(c.diagnostics.is_empty(), "{dir}/{file}:\n{rendered}");
        assert!(c.plan.is_some(), "{dir}/{file}: no plan");
    }
    files.len()
}

#[test]
fn valid_fixtures_compile_without_diagnostics() {
    let n = assert_compiles_cleanly(
        VALID,
        Some("# yaml-language-server: $schema=../../../schemas/workflow.schema.json\n"),
    );
    assert!(n >= 5, "only {n} valid fixtures");
}

#[test]
fn example_workflows_compile_without_diagnostics() {
    let n = assert_compiles_cleanly(
        "workflows",
        Some("# yaml-language-server: $schema=../schemas/workflow.schema.json\n"),
    );
    assert!(n >= 1, "no workflow in workflows/");
}

#[test]
fn fixture_names_map_to_codes() {
    assert_eq!(
        code_of("invalid-default-input.yaml"),
        Some(Code::InvalidDefault)
    );
    assert_eq!(code_of("cycle.yaml"), Some(Code::Cycle));
    assert_eq!(
        code_of("unknown-need-and-more.yaml"),
        Some(Code::UnknownNeed)
    );
    assert_eq!(code_of("cyclet.yaml"), None);
    assert_eq!(
        expected_extra("# a\n# expect: cycle self-need\n"),
        ["cycle", "self-need"]
    );
}

/// Every key and every enum-like value of a loaded document, gathered recursively.
fn collect(value: &serde_json::Value, keys: &mut BTreeSet<String>, strings: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                keys.insert(k.clone());
                collect(v, keys, strings);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, keys, strings)),
        serde_json::Value::String(s) => {
            strings.insert(s.clone());
        }
        _ => {}
    }
}

#[test]
fn valid_fixtures_exercise_every_field_and_value() {
    let (mut keys, mut strings) = (BTreeSet::new(), BTreeSet::new());
    for (file, text) in yaml_files(VALID) {
        let (doc, _) = braid_compiler::load::load(&text, Default::default())
            .unwrap_or_else(|_| panic!("{file} loads"));
        collect(&doc.value, &mut keys, &mut strings);
    }
    // The format itself and the kinds these fixtures are about; each other kind's own tests cover
    // its parameters.
    let mut registry = braid_core::Registry::new();
    registry
        .register_kind(Arc::new(braid_nodes::mock::MockKind))
        .register_kind(Arc::new(braid_nodes::transform::TransformKind))
        .register_kind(Arc::new(braid_nodes::noop::NoopKind));
    let schema = braid_compiler::workflow_schema(&registry);
    let mut missing = Vec::new();
    let definitions = schema["definitions"]
        .as_object()
        .expect("the schema has definitions");
    let root = std::iter::once(("Workflow", &schema));
    for (def, body) in root.chain(definitions.iter().map(|(k, v)| (k.as_str(), v))) {
        for field in body
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flat_map(|p| p.keys())
        {
            if !keys.contains(field) {
                missing.push(format!("field `{def}.{field}`"));
            }
        }
        // Enums are `oneOf` constants: every value must be used somewhere.
        for value in body
            .get("oneOf")
            .and_then(|o| o.as_array())
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("const"))
        {
            let value = value.as_str().expect("string constants");
            if !strings.contains(value) {
                missing.push(format!("value `{value}` of `{def}`"));
            }
        }
    }
    for reducer in braid_nodes::builtin_registry().reducer_names() {
        if !strings.contains(reducer) {
            missing.push(format!("reducer `{reducer}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "no valid fixture uses: {}",
        missing.join(", ")
    );
}

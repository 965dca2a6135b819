//! What fuzzing found stays found: every file in `tests/fixtures/fuzz/` (inputs that once crashed
//! the compiler) gets located diagnostics and no panic at all, and its rendered diagnostics match
//! a snapshot. Around the first of them (issue 17: a `when` with an extra `}}` made the template
//! engine panic), every place an expression or template is compiled is tried with stray and
//! unbalanced delimiters, fixed and random (proptest).

use braid_compiler::{Code, Compilation, Compiler, Source};
use proptest::prelude::*;

use crate::common::{compiler, panics_in, workspace, yaml_files};

const FUZZ: &str = "tests/fixtures/fuzz";

/// Compiles `source`, requiring no panic (even a caught one) and no `internal` diagnostic.
fn compile_cleanly(compiler: &Compiler, source: &Source) -> Result<Compilation, String> {
    let (c, panics) = panics_in(|| compiler.compile(source));
    let rendered = braid_compiler::render::human(&source.name, &source.text, &c.diagnostics, false);
    if panics > 0 {
        return Err(format!("{}: {panics} panic(s)\n{rendered}", source.name));
    }
    if c.diagnostics.iter().any(|d| d.code == Code::Internal) {
        return Err(format!(
            "{}: an internal diagnostic\n{rendered}",
            source.name
        ));
    }
    if c.has_errors() == c.plan.is_some() {
        return Err(format!(
            "{}: a plan must exist exactly when there is no error\n{rendered}",
            source.name
        ));
    }
    Ok(c)
}

/// The codes a fixture names on its `# expect:` lines.
fn expected(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect:"))
        .flat_map(str::split_whitespace)
        .collect()
}

#[test]
fn fuzz_fixtures_get_located_diagnostics_and_never_panic() {
    let compiler = compiler();
    let files = yaml_files(FUZZ);
    assert!(!files.is_empty(), "no fixture in {FUZZ}");
    let mut problems = Vec::new();
    for (file, text) in &files {
        let path = format!("{FUZZ}/{file}");
        if !text.starts_with("# ") {
            problems.push(format!("{path}: the first line should say what crashed"));
        }
        let c = match compile_cleanly(&compiler, &Source::new(path.clone(), text.as_str())) {
            Ok(c) => c,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        for want in expected(text) {
            if !c.diagnostics.iter().any(|d| d.code.as_str() == want) {
                problems.push(format!("{path}: expected `{want}`"));
            }
        }
        for d in &c.diagnostics {
            if d.span().start.line == 0 || d.help.is_none() {
                problems.push(format!(
                    "{path}: `{}` needs a position and a help line: {}",
                    d.code, d.message
                ));
            }
        }
        let rendered = braid_compiler::render::human(&path, text, &c.diagnostics, false);
        insta::with_settings!({
            snapshot_path => "../snapshots/fuzz",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => path.as_str(),
        }, {
            insta::assert_snapshot!(file.trim_end_matches(".yaml"), rendered);
        });
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_fuzz_snapshot_has_a_fixture() {
    let dir = workspace().join("crates/compiler/tests/snapshots/fuzz");
    let fixtures: Vec<String> = yaml_files(FUZZ)
        .into_iter()
        .map(|(f, _)| f.replace(".yaml", ".snap"))
        .collect();
    for entry in std::fs::read_dir(dir).expect("the fuzz snapshots directory") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            fixtures.iter().any(|f| *f == name),
            "snapshot without a fixture (delete it): {name}"
        );
    }
}

/// A workflow with one `noop` node whose `when` is `when` (YAML-quoted).
fn with_when(when: &str) -> String {
    format!(
        "version: 1\nname: w\ninputs:\n  a: {{ type: boolean, default: true }}\nnodes:\n  n:\n    kind: noop\n    when: {}\n",
        serde_json::to_string(when).expect("a string serializes")
    )
}

#[test]
fn a_stray_closing_brace_in_a_when_is_an_expression_syntax_error_where_it_is() {
    let compiler = compiler();
    // (when, the column the error points at, in the quoted `when` on line 8)
    for (when, column) in [
        ("a }}}", 14),
        ("a }} ", 14),
        ("a }} and a", 14),
        ("a -}}x", 14),
        ("(a) }}}}", 16),
        ("a == '}}' }}}", 22),
    ] {
        let source = Source::new("w.yaml", with_when(when));
        let c = compile_cleanly(&compiler, &source).unwrap_or_else(|p| panic!("{p}"));
        let d = c
            .diagnostics
            .iter()
            .find(|d| d.code == Code::ExpressionSyntax)
            .unwrap_or_else(|| panic!("`{when}`: {:?}", c.diagnostics));
        let at = d.span().start;
        assert_eq!((at.line, at.column), (8, column), "`{when}`: {}", d.message);
    }
}

/// A file in `tests/fixtures/fuzz/` (so that a workflow file it names resolves), not on disk.
fn beside_the_fixtures(name: &str, text: &str) -> Source {
    let path = workspace().join(FUZZ).join(name);
    Source::new(path.display().to_string(), text)
}

#[test]
fn a_sub_workflow_whose_when_has_a_stray_brace_is_reported_not_a_panic() {
    let compiler = compiler();
    let parent = "version: 1\nname: parent\nnodes:\n  sub:\n    kind: workflow\n    with: { path: when-extra-closing-braces.yaml }\n";
    let mapped = "version: 1\nname: mapped\nstate:\n  out: { reducer: replace }\nnodes:\n  each:\n    kind: map\n    writes: [out]\n    with:\n      over: [1, 2]\n      into: out\n      node: { kind: workflow, with: { path: when-extra-closing-braces.yaml } }\n";
    for (name, text) in [("parent.yaml", parent), ("mapped.yaml", mapped)] {
        let c = compile_cleanly(&compiler, &beside_the_fixtures(name, text))
            .unwrap_or_else(|p| panic!("{p}"));
        let d = c
            .diagnostics
            .iter()
            .find(|d| d.code == Code::InvalidParams)
            .unwrap_or_else(|| panic!("{name}: {:?}", c.diagnostics));
        // The sub-workflow's own error, with its position, is quoted.
        assert!(
            d.message.contains("when-extra-closing-braces.yaml:11:13: node `n`'s `when` does not compile: syntax error"),
            "{name}: {}",
            d.message
        );
    }
}

#[test]
fn parameters_compiled_as_expressions_or_templates_take_stray_braces() {
    let compiler = compiler();
    for output in [
        "{{ inputs.a }}}",
        "{{ inputs.a }} }}",
        "{{ inputs.a -}}}",
        "{{{{ inputs.a }}",
        "{{ (inputs.a }}",
        "{% if inputs.a %}}}{% endif %}",
        "{{ {'x': 1}}}",
    ] {
        let text = format!(
            "version: 1\nname: t\ninputs:\n  a: {{ type: boolean, default: true }}\nstate:\n  out: {{ reducer: replace }}\nnodes:\n  t:\n    kind: transform\n    writes: [out]\n    with: {{ output: {{ out: {} }} }}\n",
            serde_json::to_string(output).expect("a string serializes")
        );
        compile_cleanly(&compiler, &Source::new("t.yaml", text)).unwrap_or_else(|p| panic!("{p}"));
    }
}

/// Pieces of expressions and templates: names, operators and every delimiter, balanced or not.
const PIECES: &[&str] = &[
    "inputs", "state", ".", "a", "x", " ", "}}", "{{", "}", "{", "(", ")", "[", "]", "'", "\"",
    "-", "+", "|", "length", "and", "not", "==", "%}", "{%", "#}", "{#", "~", "\\", "0", ",", ":",
    "if", "endif", "for", "in", "endfor", "raw", "endraw", "-}}", "{{-", "\n",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(PIECES).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any `when` and any template, raw or inside `{{ }}`, compiles to a plan or diagnostics:
    /// no panic, even a caught one, and no `internal` diagnostic.
    #[test]
    fn random_whens_and_templates_never_panic_the_compiler(when in text(), template in text()) {
        static COMPILER: std::sync::LazyLock<Compiler> = std::sync::LazyLock::new(compiler);
        let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let text = format!(
            "version: 1\nname: p\ninputs:\n  a: {{ type: boolean, default: true }}\nstate:\n  out: {{ reducer: replace }}\nnodes:\n  t:\n    kind: transform\n    when: {}\n    writes: [out]\n    with:\n      output:\n        out: {}\n  u:\n    kind: transform\n    writes: [out]\n    needs: [t]\n    with:\n      output:\n        out: {}\n",
            quoted(&when),
            quoted(&template),
            quoted(&format!("{{{{ {template} }}}}")),
        );
        let result = compile_cleanly(&COMPILER, &Source::new("p.yaml", text));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}

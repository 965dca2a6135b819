//! Bad input of any kind gets diagnostics, never a panic: mutated variants of every valid fixture
//! and example workflow are compiled, and each must either compile or explain why not.
//!
//! The mutations are deterministic (no random seed to reproduce): truncation at many points,
//! swapped neighbouring characters, replaced characters, deleted and duplicated lines.
//!
//! The compiler catches panics and reports them as `internal` diagnostics, so "never a panic"
//! is checked by counting panics (`panics_in`) and refusing `internal` diagnostics.

use braid_compiler::Code;

use crate::common::{compile, compiler, panics_in, yaml_files};

/// Characters that change YAML structure when dropped in anywhere.
const NASTY: &[char] = &[
    ':', '-', '[', '{', '}', ']', '"', '\'', '&', '*', '!', '|', '>', '#', '%', '\t', '\n', ' ',
    '0', 'é',
];

fn mutations(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let lines: Vec<&str> = text.lines().collect();
    let n = chars.len();
    let step = (n / 100).max(1);
    let mut out = Vec::new();
    for cut in (0..n).step_by(step) {
        out.push(chars[..cut].iter().collect());
    }
    for (k, i) in (1..n).step_by(step).enumerate() {
        let mut swapped = chars.clone();
        swapped.swap(i - 1, i);
        out.push(swapped.into_iter().collect());
        let mut replaced = chars.clone();
        replaced[i] = NASTY[k % NASTY.len()];
        out.push(replaced.into_iter().collect());
    }
    for i in 0..lines.len() {
        let mut deleted = lines.clone();
        deleted.remove(i);
        out.push(deleted.join("\n"));
        let mut doubled = lines.clone();
        doubled.insert(i, lines[i]);
        out.push(doubled.join("\n"));
        let mut dedented = lines.clone();
        let trimmed = lines[i].trim_start();
        dedented[i] = trimmed;
        out.push(dedented.join("\n"));
    }
    out
}

#[test]
fn mutated_workflows_never_panic() {
    let compiler = compiler();
    let mut sources = yaml_files("tests/fixtures/valid");
    sources.extend(yaml_files("workflows"));
    assert!(!sources.is_empty());
    let mut total = 0;
    let mut rejected = 0;
    for (file, text) in &sources {
        let variants = mutations(text);
        assert!(
            variants.len() >= 200,
            "{file}: only {} variants",
            variants.len()
        );
        for (i, variant) in variants.iter().enumerate() {
            let ((errors, plan, internal), panics) = panics_in(|| {
                let c = compile(&compiler, file, variant);
                // Rendering must not panic either, whatever the spans.
                let _ = braid_compiler::render::human(file, variant, &c.diagnostics, true);
                let _ = braid_compiler::render::github(file, &c.diagnostics);
                let internal = c.diagnostics.iter().any(|d| d.code == Code::Internal);
                (c.has_errors(), c.plan.is_some(), internal)
            });
            assert!(
                panics == 0 && !internal,
                "{file}: variant {i} panicked:\n{variant}"
            );
            assert!(
                errors != plan,
                "{file}: variant {i}: a plan must exist exactly when there is no error"
            );
            total += 1;
            rejected += usize::from(errors);
        }
    }
    assert!(
        rejected > total / 2,
        "only {rejected} of {total} variants were rejected: the mutations are too weak"
    );
}

//! Stable-toolchain smoke of the fuzz target (yaml/fuzz, nightly): arbitrary text and mutated
//! manifests through `deputy_yaml::parse` never reach a parser panic (the guard would turn one
//! into an error naming it, which fails here), and what is read, written back, reads back as
//! the same documents.

use deputy_yaml::{parse, write_json, write_yaml, Format, Node};
use proptest::prelude::*;

/// The manifests of the inject fixtures: the seeds the mutations start from.
fn seeds() -> Vec<String> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../webhook/tests/fixtures/inject");
    let mut seeds: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".in."))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "the inject fixtures are the seeds");
    seeds
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let stream = match parse(text) {
        Ok(stream) => stream,
        Err(error) => {
            prop_assert!(
                !error.message.contains("the YAML parser failed"),
                "the parser panicked on {text:?}: {error}"
            );
            return Ok(());
        }
    };
    let mut out = String::new();
    match stream.format {
        Format::Yaml => write_yaml(&stream.documents, &mut out),
        Format::Json => write_json(&stream.documents, &mut out),
    }
    let again =
        parse(&out).map_err(|e| TestCaseError::fail(format!("{e} in our output {out:?}")))?;
    let kept: Vec<&Node> = stream
        .documents
        .iter()
        .filter(|d| **d != Node::Null)
        .collect();
    let back: Vec<&Node> = again
        .documents
        .iter()
        .filter(|d| **d != Node::Null)
        .collect();
    prop_assert_eq!(kept, back, "written as {:?}", out);
    Ok(())
}

/// A seed with a few bytes changed (each replaced, dropped or doubled), kept valid UTF-8.
fn mutated() -> impl Strategy<Value = String> {
    let seeds = seeds();
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..6),
    )
        .prop_map(move |(seed, edits)| {
            let mut chars: Vec<char> = seeds[seed].chars().collect();
            for (at, kind, c) in edits {
                if chars.is_empty() {
                    break;
                }
                let at = at.index(chars.len());
                match kind {
                    0 => chars[at] = c,
                    1 => {
                        chars.remove(at);
                    }
                    _ => chars.insert(at, chars[at]),
                }
            }
            chars.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn yaml_ish_text_never_panics_and_round_trips(
        text in "[-a-z0-9 :#'\"\\\\.,{}*&!|>%@`?~_+=<\\[\\]\t\n\r]{0,80}"
    ) {
        check(&text)?;
    }

    #[test]
    fn mutated_manifests_never_panic_and_round_trip(text in mutated()) {
        check(&text)?;
    }
}

/// The inputs fuzzing found libyaml-safer panicking on (each avoided before parsing now).
#[test]
fn the_inputs_fuzzing_found_are_read_without_a_panic() {
    for text in [
        "args: |\n  '",
        "{\n  \"k\": \"v\n\",!?!*,8\n  \"ki\n",
        "spec:\n[[!,\r[)[\n",
        "~[\n!!'n,am.INF\nu\n \n!'niam\n\n\n\n\napnd",
        "{[!!,%!,x]}",
        "l: {\n yes: {!,\n }\n}\n",
    ] {
        if let Err(error) = parse(text) {
            assert!(
                !error.message.contains("the YAML parser failed"),
                "{text:?}: {error}"
            );
        }
    }
}

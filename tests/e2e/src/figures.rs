//! Measured figures as data. A test records each figure it measures as one JSON object, one per
//! line, appended to the file that `E2E_FIGURES` names (`harness.sh test` points it into the run's
//! log directory and prints its summary from that file), and prints it as `TOPIC: TEXT` lines too.
//!
//! A line of the file:
//!
//! ```json
//! {"topic": "outage", "test": "outage::webhook_down_...",
//!  "text": "outage-1 admitted unmutated in 4.2ms",
//!  "values": {"pod": "outage-1", "dry_run": true, "admitted_s": 0.0042}}
//! ```
//!
//! `topic` names the kind of figure (`deletion`, `rotation`, `bench`, ...); `test` is the test
//! that measured it (the name libtest gives the test's thread; null elsewhere); `text` is the human
//! sentence (several lines for a table); `values` holds the same figures as numbers and names,
//! each key saying its unit (`_s` seconds, `_ms` milliseconds; no suffix: a count).

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

/// The environment variable naming the file figures are appended to; unset, they are only printed.
pub const ENV: &str = "E2E_FIGURES";

/// Records one figure: prints each line of `text` as `topic: line` (to the test's captured
/// output) and, with [`ENV`] set, appends `{"topic", "test", "text", "values"}` to that file.
///
/// Panics when the file cannot be written: a figure the summary silently lacks would be worse.
pub fn record(topic: &str, text: &str, values: Value) {
    for line in text.lines() {
        eprintln!("{topic}: {line}");
    }
    if let Some(path) = std::env::var_os(ENV) {
        append(Path::new(&path), topic, text, values).unwrap_or_else(|e| {
            panic!(
                "cannot append a figure to {ENV}={}: {e}",
                Path::new(&path).display()
            )
        });
    }
}

fn append(path: &Path, topic: &str, text: &str, values: Value) -> std::io::Result<()> {
    let figure = json!({
        "topic": topic,
        "test": std::thread::current().name(),
        "text": text,
        "values": values,
    });
    // One write of a whole line to a file opened for appending: the lines of tests that run at
    // the same time do not interleave.
    let line = format!("{figure}\n");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_figure_is_one_json_line_with_its_topic_text_and_values() {
        let path =
            std::env::temp_dir().join(format!("deputy-e2e-figures-{}.jsonl", crate::unique()));
        append(
            &path,
            "bench",
            "| le | n |\n| 0.1 ms | 3 |",
            json!({"pods": 3}),
        )
        .unwrap();
        append(
            &path,
            "outage",
            "outage-0 admitted",
            json!({"admitted_s": 0.5}),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["topic"], "bench");
        assert_eq!(lines[0]["text"], "| le | n |\n| 0.1 ms | 3 |");
        assert_eq!(lines[0]["values"]["pods"], 3);
        assert_eq!(lines[1]["values"]["admitted_s"], 0.5);
        // libtest runs each test on a thread named after it.
        assert_eq!(
            lines[1]["test"],
            "figures::tests::each_figure_is_one_json_line_with_its_topic_text_and_values"
        );
    }
}

//! Any bytes, cut into chunks as they may arrive → the line reader, the request and the reply
//! parsers the servers (the library's and `run`'s) and the client use: no panic, no line
//! longer than the protocol allows, `terminate` recognised only as itself, and every reply read
//! is written back to a line that reads as the same reply.
#![no_main]

use deputy_agent::protocol::{LineBuffer, Reply, Request, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte says where to cut the rest into chunks.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut lines = LineBuffer::default();
    for chunk in rest.chunks(usize::from(cut).max(1)) {
        lines.push(chunk);
        loop {
            match lines.next_line() {
                Ok(Some(line)) => {
                    assert!(line.len() < MAX_LINE && !line.contains(&b'\n'));
                    // The protocol tolerates trailing `\r` and spaces, nothing else.
                    let mut trimmed = &line[..];
                    while let [rest @ .., b'\r' | b' '] = trimmed {
                        trimmed = rest;
                    }
                    assert_eq!(
                        Request::parse(&line).is_ok(),
                        trimmed == b"terminate",
                        "{line:?}"
                    );
                    if let Some(reply) = Reply::parse(&line) {
                        let written = reply.to_string();
                        let again = Reply::parse(written.trim_end_matches('\n').as_bytes());
                        assert_eq!(again.as_ref(), Some(&reply), "{written:?}");
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
});

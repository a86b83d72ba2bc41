//! Any bytes → `deputy_yaml::parse` must not panic (the release build aborts on a panic); what
//! it reads, written back in the same format, reads back as the same documents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(stream) = deputy_yaml::parse(text) else {
        return;
    };
    let mut out = String::new();
    match stream.format {
        deputy_yaml::Format::Yaml => deputy_yaml::write_yaml(&stream.documents, &mut out),
        deputy_yaml::Format::Json => deputy_yaml::write_json(&stream.documents, &mut out),
    }
    let again = deputy_yaml::parse(&out).expect("what we write reads back");
    let kept: Vec<_> = stream
        .documents
        .iter()
        .filter(|d| **d != deputy_yaml::Node::Null)
        .collect();
    let back: Vec<_> = again
        .documents
        .iter()
        .filter(|d| **d != deputy_yaml::Node::Null)
        .collect();
    assert_eq!(kept, back, "{out}");
});

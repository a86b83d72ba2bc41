//! Any body → `admission::review` must not panic; an accepted body always answers allowed with
//! the request's uid, and any patch it returns applies to the request's object.
#![no_main]

use deputy_webhook::admission::review;
use deputy_webhook::config::InjectionConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let config = InjectionConfig {
        agent_image: "registry.example/deputy-agent:fuzz".into(),
        ..InjectionConfig::default()
    };
    if let Ok((answer, outcome)) = review(body, &config) {
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["uid"], outcome.uid.as_str());
    }
});

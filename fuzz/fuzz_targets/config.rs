//! Fuzzes the configuration loader (YAML/JSON, LNM custom resources): any text gives a
//! configuration or an error, never a panic; a configuration compiles to an allowlist.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lnm_policy::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(loaded) = Config::parse(text, "fuzz.yaml") {
        let _ = loaded.config.allowlist();
        let _ = loaded.config.effective_listeners();
    }
});

//! Config parsing from arbitrary text: `config::from_toml_str` must never panic, and an error is
//! reported as one-line messages (the CLI prints each as `pcsync: error: <line>`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = pcsync::config::from_toml_str(text, "fuzz.toml", Some(Default::default())) {
        for line in e.lines() {
            assert!(!line.is_empty());
            assert!(!line.contains('\n'), "multi-line error: {line:?}");
        }
    }
});

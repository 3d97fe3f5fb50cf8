//! The quick start as users run it: `purdue-demo` (feature `sim`) passes every expectation.

use std::process::Command;

const DEMO: &str = env!("CARGO_BIN_EXE_purdue-demo");

#[test]
fn purdue_demo_passes() {
    let out = Command::new(DEMO).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every expectation held"), "{stdout}");
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
}

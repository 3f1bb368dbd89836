//! `make demo`'s program, run the way `DEMO_ONESHOT=1 make demo` runs it: it must
//! answer the three example calls with 200 and exit 0.

use std::process::Command;

#[test]
fn the_demo_answers_three_providers() {
    // Port 0: the demo binds whatever port is free at that moment. A port picked here
    // and bound seconds later could meanwhile be any test's outgoing connection.
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .env("DEMO_ONESHOT", "1")
        .env("DEMO_PORT", "0")
        .env_remove("DARKSKY_KEY")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("HTTP 200").count(), 3, "{stdout}");
    for provider in ["\"darksky\"", "\"openweathermap\"", "\"here\""] {
        assert!(stdout.contains(provider), "{stdout}");
    }
    assert!(stdout.contains("0 upstream"), "the examples were cache hits: {stdout}");
}

//! `make demo`'s program, run the way `DEMO_ONESHOT=1 make demo` runs it: it must
//! answer the three example calls with 200 and exit 0, and show the article-style
//! SDK function: every invoke a call to AWS without the sidecar, one call in all with it.

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
    let line = |route: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(route))
            .unwrap_or_else(|| panic!("no line for the SDK function {route}: {stdout}"))
    };
    let direct = line("straight to AWS");
    assert!(
        direct.contains("20 invokes, 20 answered the secret, 20 upstream GetSecretValue, SDK call p50"),
        "{direct}"
    );
    let sidecar = line("through the sidecar");
    assert!(
        sidecar.contains("AWS_ENDPOINT_URL_SECRETS_MANAGER=http://localhost:"),
        "{sidecar}"
    );
    assert!(
        sidecar.contains("20 invokes, 20 answered the secret, 1 upstream GetSecretValue, SDK call p50"),
        "{sidecar}"
    );
}

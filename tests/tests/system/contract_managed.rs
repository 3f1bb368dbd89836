//! The emulator's contract tests for Lambda Managed Instances (the Lambda contract,
//! "Platforms beyond on-demand"), as `contract.rs` does for on demand: each check is a
//! function over what the emulator and the probes recorded, run against the correct
//! emulator (must pass) and against a deliberately wrong one (must fail).

use std::time::Duration;

use bytes::Bytes;
use harness::emulator::{FunctionConfig, Mode, Outcome, Quirks, ShutdownReason, Trace, TraceEvent};
use harness::net;
use harness::probes::{position, Probe, ProbeBins, ProbeEnv};
use serde_json::{json, Value};

const BINS: ProbeBins = ProbeBins {
    extension: env!("CARGO_BIN_EXE_probe-extension"),
    runtime: env!("CARGO_BIN_EXE_probe-runtime"),
};

type R = anyhow::Result<()>;

async fn environment(
    exts: &[Probe<'_>],
    runtime_env: &[(&str, &str)],
    cfg: impl FnOnce(FunctionConfig) -> FunctionConfig,
) -> anyhow::Result<ProbeEnv> {
    ProbeEnv::start(BINS, exts, runtime_env, cfg).await
}

// ---- Managed Instances: registration for INVOKE is refused -----------------------

fn check_shutdown_only(trace: &[TraceEvent], lines: &[Value], probe: &str) -> Result<(), String> {
    let first = lines
        .iter()
        .find(|l| l["what"] == "register")
        .ok_or("no registration")?;
    let refusal = json!({"errorMessage": "INVOKE: ErrorInvalidEventType", "errorType": "Extension.InvalidEventType"});
    if first["status"] != 403 || first["body"] != refusal {
        return Err(format!(
            "INVOKE registration answered {} {}",
            first["status"], first["body"]
        ));
    }
    let registered: Vec<&Vec<String>> = trace
        .iter()
        .filter_map(|t| match &t.what {
            Trace::Registered { name, events, .. } if name == probe => Some(events),
            _ => None,
        })
        .collect();
    if registered != [&vec!["SHUTDOWN".to_owned()]] {
        return Err(format!("{probe} registered for {registered:?}"));
    }
    if position(trace, |t| matches!(t, Trace::InvokeToExtension { .. })).is_some() {
        return Err("an extension got INVOKE".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_refuse_invoke_registration() -> R {
    let exts: &[Probe] = &[(
        "picky",
        &[("PROBE_EVENTS", "INVOKE,SHUTDOWN"), ("PROBE_RETRY_EVENTS", "SHUTDOWN")],
    )];
    let mode = Mode::managed_instances(2);
    let good = environment(exts, &[], |c| c.mode(mode)).await?;
    let out = good.emulator.invoke("{}").await;
    assert!(matches!(out.outcome, Outcome::Response(_)), "{:?}", out.outcome);
    let report = good.emulator.shutdown(ShutdownReason::Spindown).await;
    let trace = good.emulator.trace();
    assert_eq!(check_shutdown_only(&trace, &good.lines("picky"), "picky"), Ok(()));
    // SHUTDOWN still reaches it, after the runtime is gone, and it leaves by itself.
    let shutdown = good.line("picky", "shutdown").unwrap_or_default();
    assert_eq!(shutdown["reason"], "spindown");
    let runtime_gone = position(
        &trace,
        |t| matches!(t, Trace::ProcessExited { name, .. } if name == "runtime"),
    );
    let sent = position(&trace, |t| matches!(t, Trace::ShutdownToExtension { .. }));
    assert!(runtime_gone.is_some() && runtime_gone < sent, "{trace:?}");
    assert!(report.killed.is_empty(), "{report:?}");

    let wrong = environment(exts, &[], |c| {
        c.mode(mode).quirks(Quirks::with(|q| q.managed_accepts_invoke = true))
    })
    .await?;
    wrong.emulator.invoke("{}").await;
    wrong.emulator.settle().await;
    assert!(check_shutdown_only(&wrong.emulator.trace(), &wrong.lines("picky"), "picky").is_err());
    Ok(())
}

// ---- Managed Instances: up to N invokes at once ---------------------------------

/// The most invocations the runtime held at once.
fn max_in_flight(trace: &[TraceEvent]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for t in trace {
        match t.what {
            Trace::InvokeToRuntime { .. } => {
                now += 1;
                max = max.max(now);
            }
            Trace::RuntimeAnswered { .. } => now = now.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_run_invokes_at_once() -> R {
    let exts: &[Probe] = &[("quiet", &[("PROBE_EVENTS", "SHUTDOWN")])];
    // Each invoke takes a second: N of them overlap, the N+1th waits for a slot.
    let runtime: &[(&str, &str)] = &[("PROBE_RUNTIME_SLEEP_MS", "1000")];
    let mode = Mode::managed_instances(3);
    for wrong in [false, true] {
        let env = environment(exts, runtime, |c| {
            c.mode(mode)
                .timeout(Duration::from_secs(10))
                .quirks(Quirks::with(|q| q.managed_one_at_a_time = wrong))
        })
        .await?;
        env.emulator.init().await.map_err(anyhow::Error::msg)?;
        let payloads = (0..4).map(|i| Bytes::from(format!("{{\"n\":{i}}}"))).collect();
        let outs = env.emulator.invoke_all(payloads).await;
        assert!(
            outs.iter().all(|o| matches!(o.outcome, Outcome::Response(_))),
            "{outs:?}"
        );
        let in_flight = max_in_flight(&env.emulator.trace());
        if wrong {
            assert_ne!(in_flight, 3, "one at a time must fail the check");
            continue;
        }
        assert_eq!(in_flight, 3, "N at once, never more");
        assert_eq!(env.emulator.reports().len(), 4);
    }
    Ok(())
}

// ---- Managed Instances: never frozen; an extension's early exit crashes it --------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_never_freeze() -> R {
    let exts: &[Probe] = &[("ticker", &[("PROBE_EVENTS", "SHUTDOWN"), ("PROBE_TICK_MS", "20")])];
    for wrong in [false, true] {
        let env = environment(exts, &[], |c| {
            c.mode(Mode::managed_instances(2))
                .quirks(Quirks::with(|q| q.managed_freezes = wrong))
        })
        .await?;
        env.emulator
            .idle(Duration::from_secs(1))
            .await
            .map_err(anyhow::Error::msg)?;
        let ticks = env.ticks_while_idle("ticker").map_err(anyhow::Error::msg)?;
        let frozen = env.emulator.trace().iter().any(|t| t.what == Trace::Frozen);
        let check = if ticks >= 5 && !frozen {
            Ok(())
        } else {
            Err(format!("{ticks} ticks, frozen: {frozen}"))
        };
        assert_eq!(check.is_ok(), !wrong, "{check:?}");
    }
    Ok(())
}

fn check_crashed(trace: &[TraceEvent], probe: &str) -> Result<(), String> {
    trace
        .iter()
        .find_map(|t| match &t.what {
            Trace::Failure { why } if why.contains("Extension.Crash") && why.contains(probe) => Some(()),
            _ => None,
        })
        .ok_or_else(|| "the early exit did not fail the environment".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_crash_on_an_early_exit() -> R {
    let exts: &[Probe] = &[(
        "quitter",
        &[("PROBE_EVENTS", "SHUTDOWN"), ("PROBE_EXIT_AFTER_MS", "300")],
    )];
    for wrong in [false, true] {
        let env = environment(exts, &[], |c| {
            c.mode(Mode::managed_instances(2))
                .quirks(Quirks::with(|q| q.ignore_extension_failures = wrong))
        })
        .await?;
        // It may exit during init (init fails) or after: either way the environment fails.
        let _ = env.emulator.init().await;
        net::poll(Duration::from_secs(10), "the quitter's exit 0", || {
            let exited = env
                .emulator
                .trace()
                .iter()
                .any(|t| matches!(&t.what, Trace::ProcessExited { name, code: Some(0) } if name == "quitter"));
            async move { exited.then_some(()) }
        })
        .await?;
        assert_eq!(check_crashed(&env.emulator.trace(), "quitter").is_ok(), !wrong);
    }
    Ok(())
}

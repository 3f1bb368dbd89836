//! The emulator's contract tests: one per line of the "Contract tests" section of
//! the Lambda contract. Each check is a function over what the emulator and the
//! probes recorded; each test runs it against the correct emulator (must pass) and
//! against a deliberately wrong setting or a misbehaving probe (must fail), so every
//! check is shown able to fail. The rules that differ by platform are checked in
//! `contract_modes.rs`.

use std::time::Duration;

use harness::emulator::{Emulator, FunctionConfig, Outcome, Phase, Quirks, ShutdownReason, Trace, TraceEvent};
use harness::probes::{position, probe_lines, Probe, ProbeBins, ProbeEnv};
use serde_json::Value;

const BINS: ProbeBins = ProbeBins {
    extension: env!("CARGO_BIN_EXE_probe-extension"),
    runtime: env!("CARGO_BIN_EXE_probe-runtime"),
};

type R = anyhow::Result<()>;

/// An emulator over probe extensions `exts` (name, settings) and the probe runtime.
async fn environment(
    exts: &[Probe<'_>],
    runtime_env: &[(&str, &str)],
    cfg: impl FnOnce(FunctionConfig) -> FunctionConfig,
) -> anyhow::Result<ProbeEnv> {
    ProbeEnv::start(BINS, exts, runtime_env, cfg).await
}

// ---- 1. registration happens before the runtime starts -------------------------

/// Every started extension made its registration (accepted or refused) before the
/// runtime started.
fn check_registered_before_runtime(trace: &[TraceEvent]) -> Result<(), String> {
    let runtime = position(trace, |t| *t == Trace::RuntimeStarted).ok_or("runtime never started")?;
    for started in trace.iter().filter_map(|t| match &t.what {
        Trace::ExtensionStarted { name } => Some(name),
        _ => None,
    }) {
        let attempted = trace[..runtime].iter().any(|t| match &t.what {
            Trace::Registered { name, .. } | Trace::RegistrationRefused { name, .. } => name == started,
            _ => false,
        });
        if !attempted {
            return Err(format!("{started} had not registered when the runtime started"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_happens_before_the_runtime_starts() -> R {
    let exts: &[(&str, &[(&str, &str)])] = &[("fast", &[]), ("slow", &[("PROBE_REGISTER_DELAY_MS", "300")])];
    let good = environment(exts, &[], |c| c).await?;
    good.emulator.init().await.map_err(anyhow::Error::msg)?;
    assert_eq!(check_registered_before_runtime(&good.emulator.trace()), Ok(()));

    let wrong = environment(exts, &[], |c| {
        c.quirks(Quirks {
            runtime_before_registration: true,
            ..Quirks::default()
        })
    })
    .await?;
    wrong.emulator.init().await.map_err(anyhow::Error::msg)?;
    assert!(check_registered_before_runtime(&wrong.emulator.trace()).is_err());
    Ok(())
}

// ---- 1b. the 11th or a late registration is refused -----------------------------

fn check_refusals(trace: &[TraceEvent]) -> Result<(), String> {
    let registered = trace
        .iter()
        .filter(|t| matches!(t.what, Trace::Registered { .. }))
        .count();
    if registered > 10 {
        return Err(format!("{registered} extensions registered"));
    }
    if let Some(t) = trace
        .iter()
        .find(|t| matches!(&t.what, Trace::Registered { name, .. } if name == "late-internal"))
    {
        return Err(format!("late registration accepted: {:?}", t.what));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_and_late_registrations_are_refused() -> R {
    let names: Vec<String> = (1..=11).map(|i| format!("ext{i:02}")).collect();
    let exts: Vec<(&str, &[(&str, &str)])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    // The runtime registers an internal extension 150 ms after it started polling,
    // while it works on an invoke (300 ms), so the registration is late.
    let runtime: &[(&str, &str)] = &[
        ("PROBE_RUNTIME_LATE_REGISTER_MS", "150"),
        ("PROBE_RUNTIME_SLEEP_MS", "300"),
    ];

    let good = environment(&exts, runtime, |c| c).await?;
    let out = good.emulator.invoke("{}").await;
    assert!(matches!(out.outcome, Outcome::Response(_)), "{:?}", out.outcome);
    good.emulator
        .logs()
        .wait_for(Duration::from_secs(5), |l| l.contains("late_register"))
        .await?;
    let trace = good.emulator.trace();
    assert_eq!(check_refusals(&trace), Ok(()));
    let refused: Vec<(String, u16)> = trace
        .iter()
        .filter_map(|t| match &t.what {
            Trace::RegistrationRefused { name, status, .. } => Some((name.clone(), *status)),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().any(|(n, s)| n == "late-internal" && *s == 403),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|(n, s)| n.starts_with("ext") && *s == 400),
        "{refused:?}"
    );

    let wrong = environment(&exts, runtime, |c| {
        c.quirks(Quirks {
            max_extensions: 11,
            late_registration: true,
            ..Quirks::default()
        })
    })
    .await?;
    wrong.emulator.invoke("{}").await;
    wrong
        .emulator
        .logs()
        .wait_for(Duration::from_secs(5), |l| l.contains("late_register"))
        .await?;
    assert!(check_refusals(&wrong.emulator.trace()).is_err());
    Ok(())
}

// ---- 2. the extension sees INVOKE before the runtime's next returns, same deadline ----

fn check_invoke_order(trace: &[TraceEvent], ext_lines: &[Value], rt_lines: &[Value]) -> Result<(), String> {
    let to_ext =
        position(trace, |t| matches!(t, Trace::InvokeToExtension { .. })).ok_or("no INVOKE to the extension")?;
    let to_rt = position(trace, |t| matches!(t, Trace::InvokeToRuntime { .. })).ok_or("no invoke to the runtime")?;
    if to_ext > to_rt {
        return Err("the runtime's next returned before the extension got INVOKE".into());
    }
    let ext_deadline = ext_lines
        .iter()
        .find(|l| l["what"] == "invoke")
        .map(|l| l["deadline_ms"].clone());
    let rt_deadline = rt_lines
        .iter()
        .find(|l| l["what"] == "invoke")
        .map(|l| l["deadline_ms"].clone());
    match (ext_deadline, rt_deadline) {
        (Some(a), Some(b)) if a == b && a.as_u64().is_some_and(|d| d > 0) => Ok(()),
        (a, b) => Err(format!("deadlines differ: extension {a:?}, runtime {b:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_get_invoke_first_with_the_same_deadline() -> R {
    let exts: &[(&str, &[(&str, &str)])] = &[("watcher", &[])];
    let good = environment(exts, &[], |c| c).await?;
    good.emulator.invoke("{}").await;
    good.emulator.settle().await;
    let (e, r) = (
        probe_lines(&good.emulator, "watcher"),
        probe_lines(&good.emulator, "runtime"),
    );
    assert_eq!(check_invoke_order(&good.emulator.trace(), &e, &r), Ok(()));

    for quirks in [
        Quirks {
            runtime_first: true,
            ..Quirks::default()
        },
        Quirks {
            extension_deadline_skew_ms: 1000,
            ..Quirks::default()
        },
    ] {
        let wrong = environment(exts, &[], |c| c.quirks(quirks.clone())).await?;
        wrong.emulator.invoke("{}").await;
        wrong.emulator.settle().await;
        let (e, r) = (
            probe_lines(&wrong.emulator, "watcher"),
            probe_lines(&wrong.emulator, "runtime"),
        );
        assert!(
            check_invoke_order(&wrong.emulator.trace(), &e, &r).is_err(),
            "{quirks:?}"
        );
    }
    Ok(())
}

// ---- 3. invoke N+1 waits until every extension called next after invoke N --------

fn check_held(trace: &[TraceEvent], ext: &str) -> Result<(), String> {
    let runtime_invokes: Vec<usize> = trace
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.what, Trace::InvokeToRuntime { .. }))
        .map(|(i, _)| i)
        .collect();
    for pair in runtime_invokes.windows(2) {
        let (first, second) = (pair[0], pair[1]);
        let back = trace[first..second]
            .iter()
            .any(|t| matches!(&t.what, Trace::ExtensionNext { name } if name == ext));
        if !back {
            return Err(format!("invoke started before {ext} returned to next"));
        }
    }
    let delivered = trace
        .iter()
        .filter(|t| matches!(&t.what, Trace::InvokeToExtension { name, .. } if name == ext))
        .count();
    if delivered != runtime_invokes.len() {
        return Err(format!("{ext} got {delivered} of {} INVOKEs", runtime_invokes.len()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_invoke_waits_for_every_extension() -> R {
    let exts: &[(&str, &[(&str, &str)])] = &[("slowpoke", &[("PROBE_INVOKE_HOLD_MS", "300")])];
    let good = environment(exts, &[], |c| c).await?;
    for _ in 0..3 {
        good.emulator.invoke("{}").await;
    }
    good.emulator.settle().await;
    assert_eq!(check_held(&good.emulator.trace(), "slowpoke"), Ok(()));
    let overhead = good
        .emulator
        .reports()
        .iter()
        .map(|r| r.extension_overhead)
        .min()
        .unwrap_or_default();
    assert!(
        overhead >= Duration::from_millis(250),
        "REPORT counts the extension's time: {overhead:?}"
    );

    let wrong = environment(exts, &[], |c| {
        c.quirks(Quirks {
            no_hold: true,
            ..Quirks::default()
        })
    })
    .await?;
    for _ in 0..3 {
        wrong.emulator.invoke("{}").await;
    }
    assert!(check_held(&wrong.emulator.trace(), "slowpoke").is_err());
    Ok(())
}

// ---- 4. processes are frozen between invokes -----------------------------------

/// Ticks the probe printed while the environment was frozen (with a 50 ms margin
/// for a tick already on its way when the stop arrived).
fn ticks_while_idle(trace: &[TraceEvent], lines: &[Value]) -> Result<usize, String> {
    let frozen = trace
        .iter()
        .find(|t| t.what == Trace::Frozen)
        .ok_or("never frozen")?
        .epoch_ms;
    let thawed = trace
        .iter()
        .find(|t| t.what == Trace::Thawed)
        .ok_or("never thawed")?
        .epoch_ms;
    Ok(lines
        .iter()
        .filter(|l| l["what"] == "tick")
        .filter_map(|l| l["epoch_ms"].as_u64())
        .filter(|&t| t > frozen + 50 && t < thawed)
        .count())
}

fn idle_marks(trace: &[TraceEvent]) -> (u64, u64) {
    let init = trace
        .iter()
        .find(|t| t.what == Trace::InitDone)
        .map_or(0, |t| t.epoch_ms);
    let next = trace
        .iter()
        .find(|t| matches!(t.what, Trace::InvokeToRuntime { .. }))
        .map_or(0, |t| t.epoch_ms);
    (init, next)
}

/// Ticks the probe `name` printed after `after_ms` (epoch milliseconds).
fn ticks_after(emulator: &Emulator, name: &str, after_ms: u64) -> usize {
    probe_lines(emulator, name)
        .iter()
        .filter(|l| l["what"] == "tick" && l["epoch_ms"].as_u64().is_some_and(|t| t > after_ms))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_are_frozen_between_invokes() -> R {
    let exts: &[(&str, &[(&str, &str)])] = &[("ticker", &[("PROBE_TICK_MS", "20")])];
    let good = environment(exts, &[], |c| c).await?;
    let wrong = environment(exts, &[], |c| c.freeze(false)).await?;
    good.emulator.init().await.map_err(anyhow::Error::msg)?;
    wrong.emulator.init().await.map_err(anyhow::Error::msg)?;
    // Both idle until the unfrozen ticker has ticked ten times since the good
    // environment froze (and since its own init): an idle time in which a running
    // timer demonstrably ticks, on this machine at its current load.
    let frozen = good
        .emulator
        .trace()
        .iter()
        .find(|t| t.what == Trace::Frozen)
        .map(|t| t.epoch_ms)
        .ok_or_else(|| anyhow::anyhow!("the good environment never froze"))?;
    let since = frozen.max(idle_marks(&wrong.emulator.trace()).0) + 50;
    harness::net::poll(Duration::from_secs(30), "ten ticks of the unfrozen ticker", || {
        let ticks = ticks_after(&wrong.emulator, "ticker", since);
        async move { (ticks >= 10).then_some(()) }
    })
    .await?;
    good.emulator.invoke("{}").await;
    good.emulator.settle().await;
    let frozen_ticks = ticks_while_idle(&good.emulator.trace(), &probe_lines(&good.emulator, "ticker"));
    assert_eq!(frozen_ticks, Ok(0));

    wrong.emulator.invoke("{}").await;
    wrong.emulator.settle().await;
    // Without freezing there is no Frozen mark: count ticks between init and invoke.
    let (from, to) = idle_marks(&wrong.emulator.trace());
    let ticks = probe_lines(&wrong.emulator, "ticker")
        .iter()
        .filter_map(|l| (l["what"] == "tick").then(|| l["epoch_ms"].as_u64()).flatten())
        .filter(|&t| t > from + 50 && t < to)
        .count();
    assert!(ticks > 5, "a timer runs when nothing freezes it: {ticks} ticks");
    assert!(
        ticks_while_idle(&wrong.emulator.trace(), &[]).is_err(),
        "the check needs freeze marks"
    );
    Ok(())
}

// ---- 5. SHUTDOWN carries a deadline 2 s ahead; an extension alive after it is killed ----

fn check_shutdown(
    lines: &[Value],
    trace: &[TraceEvent],
    report: &harness::emulator::ShutdownReport,
    stubborn: &str,
) -> Result<(), String> {
    let shutdown = lines
        .iter()
        .find(|l| l["what"] == "shutdown")
        .ok_or("no SHUTDOWN seen")?;
    // Measured from when the emulator sent the event, not when the probe read it (a
    // loaded machine may take a while to schedule the probe).
    let sent = trace
        .iter()
        .find(|t| matches!(t.what, Trace::ShutdownToExtension { .. }))
        .ok_or("no SHUTDOWN sent")?
        .epoch_ms as i64;
    let ahead = shutdown["deadline_ms"].as_i64().unwrap_or(0) - sent;
    if !(1800..=2100).contains(&ahead) {
        return Err(format!("deadline {ahead} ms ahead"));
    }
    if !report.alive_after_deadline.is_empty() {
        return Err(format!("alive after the deadline: {:?}", report.alive_after_deadline));
    }
    if !report.killed.iter().any(|k| k == stubborn) {
        return Err(format!("{stubborn} was not killed"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_is_two_seconds_then_kill() -> R {
    let exts: &[(&str, &[(&str, &str)])] = &[("polite", &[]), ("stubborn", &[("PROBE_IGNORE_SHUTDOWN", "1")])];
    let good = environment(exts, &[], |c| c).await?;
    good.emulator.invoke("{}").await;
    let report = good.emulator.shutdown(ShutdownReason::Spindown).await;
    let (polite, trace) = (probe_lines(&good.emulator, "polite"), good.emulator.trace());
    assert_eq!(check_shutdown(&polite, &trace, &report, "stubborn"), Ok(()));
    // The polite probe exits on SHUTDOWN: by itself (a time is recorded), before the
    // deadline, and is not killed.
    let polite = report
        .extensions
        .iter()
        .find(|(n, _)| n == "polite")
        .and_then(|(_, d)| *d);
    assert!(
        polite.is_some() && !report.killed.iter().any(|k| k == "polite"),
        "{report:?}"
    );

    for quirks in [
        Quirks {
            shutdown_deadline: Duration::from_millis(500),
            ..Quirks::default()
        },
        Quirks {
            no_kill: true,
            ..Quirks::default()
        },
    ] {
        let wrong = environment(exts, &[], |c| c.quirks(quirks.clone())).await?;
        wrong.emulator.invoke("{}").await;
        let report = wrong.emulator.shutdown(ShutdownReason::Spindown).await;
        let (polite, trace) = (probe_lines(&wrong.emulator, "polite"), wrong.emulator.trace());
        assert!(
            check_shutdown(&polite, &trace, &report, "stubborn").is_err(),
            "{quirks:?}"
        );
    }
    Ok(())
}

// ---- 6. an extension that crashes or posts init/error fails the environment --------

fn check_failed(outcome: &Outcome, phase: Phase, trace: &[TraceEvent]) -> Result<(), String> {
    let failed = trace.iter().any(|t| matches!(t.what, Trace::Failure { .. }));
    if !failed || phase != Phase::Failed {
        return Err(format!("environment not failed: phase {phase:?}, outcome {outcome:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_or_init_error_extension_fails_the_environment() -> R {
    for (probe, settings) in [
        ("init-error", &[("PROBE_INIT_ERROR", "1")][..]),
        ("crasher", &[("PROBE_CRASH_ON_INVOKE", "1")][..]),
    ] {
        let exts: &[(&str, &[(&str, &str)])] = &[(probe, settings)];
        let good = environment(exts, &[], |c| c).await?;
        let out = good.emulator.invoke("{}").await;
        good.emulator.settle().await;
        let result = check_failed(&out.outcome, good.emulator.phase(), &good.emulator.trace());
        assert_eq!(result, Ok(()), "{probe}");
        if probe == "init-error" {
            assert!(
                matches!(&out.outcome, Outcome::Failed(why) if why.contains("init/error")),
                "{:?}",
                out.outcome
            );
        }

        let wrong = environment(exts, &[], |c| {
            c.quirks(Quirks {
                ignore_extension_failures: true,
                ..Quirks::default()
            })
        })
        .await?;
        let out = wrong.emulator.invoke("{}").await;
        wrong.emulator.settle().await;
        assert!(
            check_failed(&out.outcome, wrong.emulator.phase(), &wrong.emulator.trace()).is_err(),
            "{probe}"
        );
    }
    Ok(())
}

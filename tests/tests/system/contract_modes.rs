//! The emulator's contract tests for the platforms beyond on demand (the Lambda
//! contract, "Platforms beyond on-demand"), as `contract.rs` does for the rest: each
//! check is a function over what the emulator and the probes recorded, run against
//! the correct emulator (must pass) and against a deliberately wrong one (must fail).
//! Here: what every mode shares (its environment; a `next` after SHUTDOWN reported),
//! provisioned concurrency and SnapStart; Managed Instances are in `contract_managed.rs`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use harness::emulator::{
    credentials, Emulator, Form, FunctionConfig, Mode, Outcome, Place, Quirks, ShutdownReason, ShutdownReport,
    SnapshotReport, Trace, TraceEvent,
};
use harness::net::{self, HttpClient, Server};
use harness::probes::{position, Probe, ProbeBins, ProbeEnv};
use http_body_util::Full;
use hyper::service::service_fn;
use serde_json::Value;

const BINS: ProbeBins = ProbeBins {
    extension: env!("CARGO_BIN_EXE_probe-extension"),
    runtime: env!("CARGO_BIN_EXE_probe-runtime"),
};
const MODES: [Mode; 4] = [
    Mode::OnDemand,
    Mode::Provisioned,
    Mode::SnapStart,
    Mode::ManagedInstances { max_concurrency: 2 },
];

type R = anyhow::Result<()>;

async fn environment(
    exts: &[Probe<'_>],
    runtime_env: &[(&str, &str)],
    cfg: impl FnOnce(FunctionConfig) -> FunctionConfig,
) -> anyhow::Result<ProbeEnv> {
    ProbeEnv::start(BINS, exts, runtime_env, cfg).await
}

// ---- every mode: AWS_LAMBDA_INITIALIZATION_TYPE, credentials, concurrency ------

fn check_env(mode: Mode, ext: &Value, rt: &Value, creds: Option<&Value>, api: &str) -> Result<(), String> {
    for (who, env) in [("extension", ext), ("runtime", rt)] {
        if env["initialization_type"] != mode.initialization_type() {
            return Err(format!("{who} sees initialization type {}", env["initialization_type"]));
        }
        let snap = mode == Mode::SnapStart;
        let keys = [&env["session_token"], &env["access_key_id"], &env["secret_access_key"]];
        if keys.iter().any(|k| **k != !snap) || env["container_token"] != snap {
            return Err(format!("{who} has the wrong credentials for {mode}: {env}"));
        }
        let uri = snap.then(|| format!("http://{api}{}", credentials::PATH));
        if env["container_credentials_uri"].as_str() != uri.as_deref() {
            return Err(format!("{who}: credentials URI {}", env["container_credentials_uri"]));
        }
    }
    let concurrency = mode.is_managed().then(|| mode.max_concurrency().to_string());
    if rt["max_concurrency"].as_str().map(str::to_owned) != concurrency || !ext["max_concurrency"].is_null() {
        return Err(format!(
            "max concurrency: runtime {}, extension {}",
            rt["max_concurrency"], ext["max_concurrency"]
        ));
    }
    if mode == Mode::SnapStart {
        let c = creds.ok_or("the extension got no container credentials")?;
        let fresh = c["expiration"]
            .as_str()
            .is_some_and(|e| e > credentials::rfc3339(harness::emulator::epoch_ms()).as_str());
        if c["status"] != 200 || c["access_key_id"] != "ASIATESTSNAP" || c["token"] != true || !fresh {
            return Err(format!("container credentials: {c}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_sets_its_environment() -> R {
    for mode in MODES {
        let events = if mode.is_managed() {
            "SHUTDOWN"
        } else {
            "INVOKE,SHUTDOWN"
        };
        let exts: &[Probe] = &[("envy", &[("PROBE_EVENTS", events)])];
        for wrong in [false, true] {
            let env = environment(exts, &[], |c| {
                c.mode(mode)
                    .credentials("ASIATESTSNAP", "test-secret", "test-token")
                    .quirks(Quirks::with(|q| q.legacy_env = wrong))
            })
            .await?;
            env.emulator.init().await.map_err(anyhow::Error::msg)?;
            let (ext, rt) = (env.line("envy", "env"), env.line("runtime", "env"));
            let (ext, rt) = (ext.unwrap_or_default(), rt.unwrap_or_default());
            let creds = env.line("envy", "credentials");
            let result = check_env(mode, &ext, &rt, creds.as_ref(), &env.emulator.runtime_api());
            if wrong {
                assert!(result.is_err(), "{mode}: the legacy environment passed");
                continue;
            }
            assert_eq!(result, Ok(()), "{mode}");
            if mode == Mode::SnapStart {
                // Only the environment's token gets credentials; the raw token, no Bearer.
                let url = format!("http://{}{}", env.emulator.runtime_api(), credentials::PATH);
                let token = env.emulator.config().container_token.clone();
                let http = HttpClient::new();
                for (auth, status) in [
                    ("wrong", 404),
                    (format!("Bearer {token}").as_str(), 404),
                    (token.as_str(), 200),
                ] {
                    assert_eq!(http.get(&url, &[("Authorization", auth)]).await?.status, status);
                }
            }
        }
    }
    Ok(())
}

// ---- provisioned concurrency: the idle spell after init is frozen ------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_environments_idle_frozen() -> R {
    let exts: &[Probe] = &[("ticker", &[("PROBE_TICK_MS", "20")])];
    for wrong in [false, true] {
        let env = environment(exts, &[], |c| c.mode(Mode::Provisioned).freeze(!wrong)).await?;
        let init = env
            .emulator
            .idle(Duration::from_secs(1))
            .await
            .map_err(anyhow::Error::msg)?;
        assert!(init.is_some(), "the idle spell follows an init");
        let out = env.emulator.invoke("{}").await;
        assert!(
            matches!(out.outcome, Outcome::Response(_)) && out.init.is_none(),
            "{out:?}"
        );
        let ticks = env.ticks_while_idle("ticker").map_err(anyhow::Error::msg)?;
        assert_eq!(ticks == 0, !wrong, "{ticks} ticks while idle");
    }
    Ok(())
}

// ---- SnapStart: the snapshot carries what was fetched during INIT ---------------

/// A stand-in for Secrets Manager answering every GET with `value`; stops when dropped.
async fn secret_source(value: &str) -> anyhow::Result<Server> {
    let value = Bytes::from(value.to_owned());
    let service = service_fn(move |_req| {
        let body = Full::new(value.clone());
        async move { Ok::<_, Infallible>(http::Response::new(body)) }
    });
    net::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?, service)
}

/// The value (number 0) held in memory by `holder` and written (base64) to `/tmp` by
/// `writer` is found; nothing is found in `careful` (which fetches only after the
/// restore), in the runtime, or of value 1 (never fetched by anyone).
fn check_snapshot(report: &SnapshotReport) -> Result<(), String> {
    let in_memory_of = |probe: &str| {
        report.in_memory().iter().any(|f| {
            matches!(&f.place, Place::Memory { process, .. } if process.starts_with(&format!("{probe} (")))
                && f.value == 0
                && f.form == Form::Plain
        })
    };
    if !in_memory_of("holder") {
        return Err(format!("the value held in memory was not found: {report:?}"));
    }
    let written = report
        .in_files()
        .iter()
        .any(|f| matches!(&f.place, Place::File { path } if path.ends_with("writer-held")) && f.form == Form::Base64);
    if !written {
        return Err(format!("the value written to /tmp was not found: {report:?}"));
    }
    let stray = report.findings.iter().find(|f| {
        f.value != 0
            || matches!(&f.place, Place::Memory { process, .. }
                if process.starts_with("careful (") || process.starts_with("runtime ("))
    });
    stray.map_or(Ok(()), |f| Err(format!("found where nothing was held: {f}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_snapshots_find_values_fetched_during_init() -> R {
    let value = format!("planted-{}", uuid::Uuid::new_v4().simple());
    let never = format!("never-fetched-{}", uuid::Uuid::new_v4().simple());
    let source = secret_source(&value).await?;
    let url = format!("http://127.0.0.1:{}/secret", source.port());
    let exts: &[Probe] = &[
        ("careful", &[("PROBE_FETCH_URL", &url), ("PROBE_FETCH_AT", "invoke")]),
        ("holder", &[("PROBE_FETCH_URL", &url)]),
        ("writer", &[("PROBE_FETCH_URL", &url), ("PROBE_HOLD", "tmp")]),
    ];
    for wrong in [false, true] {
        let env = environment(exts, &[], |c| {
            c.mode(Mode::SnapStart)
                .quirks(Quirks::with(|q| q.blind_snapshot = wrong))
        })
        .await?;
        let report = env
            .emulator
            .snapshot(&[&value, &never])
            .await
            .map_err(anyhow::Error::msg)?;
        if wrong {
            assert!(check_snapshot(&report).is_err(), "a blind snapshot passed");
            continue;
        }
        assert_eq!(check_snapshot(&report), Ok(()));
        assert!(
            report.processes.len() >= 4 && report.processes.iter().all(|p| p.mappings > 0),
            "{report:?}"
        );
        let traced = env.emulator.trace().into_iter().find_map(|t| match t.what {
            Trace::Snapshot { findings } => Some(findings),
            _ => None,
        });
        assert_eq!(traced.as_ref(), Some(&report.findings));
        // After the restore the careful probe fetches, so its clean memory was no accident.
        env.emulator
            .restore(Duration::from_millis(100))
            .await
            .map_err(anyhow::Error::msg)?;
        let out = env.emulator.invoke("{}").await;
        assert!(matches!(out.outcome, Outcome::Response(_)), "{:?}", out.outcome);
        env.emulator.settle().await;
        assert!(env.line("careful", "fetched").is_some(), "careful never fetched");
        let logs = env.emulator.logs().lines().join("\n");
        assert!(
            !logs.contains(&value) && !format!("{report:?}").contains(&value),
            "a value reached the logs"
        );
    }
    Ok(())
}

// ---- SnapStart: restore/next is answered at the restore; extensions get nothing -----

fn check_restore(trace: &[TraceEvent], restored_line: Option<&Value>, pause: Duration) -> Result<(), String> {
    let at = |pred: fn(&Trace) -> bool| position(trace, pred).ok_or("missing from the trace");
    let snapshot = at(|t| matches!(t, Trace::Snapshot { .. }))?;
    let restored = at(|t| *t == Trace::Restored)?;
    let released = at(|t| *t == Trace::RestoreToRuntime)?;
    let invoked = at(|t| matches!(t, Trace::InvokeToExtension { .. }))?;
    if !(at(|t| *t == Trace::RuntimeRestoreNext)? < snapshot && snapshot < restored && restored < released) {
        return Err("restore/next was answered before the restore".into());
    }
    if trace[snapshot..invoked]
        .iter()
        .any(|t| matches!(t.what, Trace::ExtensionNext { .. }))
    {
        return Err("an extension got an event at the restore".into());
    }
    if trace[restored].epoch_ms - trace[snapshot].epoch_ms < pause.as_millis() as u64 {
        return Err("no pause between snapshot and restore".into());
    }
    match restored_line.and_then(|l| l["epoch_ms"].as_u64()) {
        Some(t) if t >= trace[restored].epoch_ms => Ok(()),
        other => Err(format!("the runtime's restore/next returned at {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_restores_through_restore_next() -> R {
    let exts: &[Probe] = &[("watcher", &[])];
    let runtime: &[(&str, &str)] = &[("PROBE_RUNTIME_RESTORE", "1")];
    let pause = Duration::from_millis(300);
    for wrong in [false, true] {
        let env = environment(exts, runtime, |c| {
            c.mode(Mode::SnapStart)
                .quirks(Quirks::with(|q| q.restore_next_at_once = wrong))
        })
        .await?;
        env.emulator
            .snapshot(&[] as &[&str])
            .await
            .map_err(anyhow::Error::msg)?;
        env.emulator.restore(pause).await.map_err(anyhow::Error::msg)?;
        let out = env.emulator.invoke("{}").await;
        assert!(matches!(out.outcome, Outcome::Response(_)), "{:?}", out.outcome);
        env.emulator.settle().await;
        let result = check_restore(&env.emulator.trace(), env.line("runtime", "restored").as_ref(), pause);
        assert_eq!(result.is_ok(), !wrong, "{result:?}");
    }
    Ok(())
}

// ---- every mode: a next after SHUTDOWN is reported -----------------------------

fn check_next_after_shutdown(emulator: &Emulator, report: &ShutdownReport, probe: &str) -> Result<(), String> {
    let named = |names: &[String]| names.iter().any(|n| n == probe);
    if !named(&report.next_after_shutdown) || !named(&emulator.next_after_shutdown()) {
        return Err(format!("{probe}'s next after SHUTDOWN went unreported"));
    }
    let logged = emulator.logs().lines().iter().any(|l| {
        l.contains(&format!("{probe} ("))
            && l.contains("failed to transition to EXITED: State transition is not allowed (current state: Ready)")
    });
    logged
        .then_some(())
        .ok_or_else(|| "no EXITED transition failure logged".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_after_shutdown_is_reported_in_every_mode() -> R {
    let mut runs = tokio::task::JoinSet::new();
    for mode in MODES {
        runs.spawn(async move {
            let events = if mode.is_managed() {
                "SHUTDOWN"
            } else {
                "INVOKE,SHUTDOWN"
            };
            let exts: &[Probe] = &[(
                "lingerer",
                &[("PROBE_EVENTS", events), ("PROBE_NEXT_AFTER_SHUTDOWN", "1")],
            )];
            let mut results = Vec::new();
            for wrong in [false, true] {
                let env = environment(exts, &[], |c| {
                    c.mode(mode)
                        .quirks(Quirks::with(|q| q.ignore_next_after_shutdown = wrong))
                })
                .await?;
                let out = env.emulator.invoke("{}").await;
                anyhow::ensure!(matches!(out.outcome, Outcome::Response(_)), "{mode}: {:?}", out.outcome);
                let report = env.emulator.shutdown(ShutdownReason::Spindown).await;
                anyhow::ensure!(report.killed.is_empty(), "{mode}: it exits by itself: {report:?}");
                results.push((
                    mode,
                    wrong,
                    check_next_after_shutdown(&env.emulator, &report, "lingerer"),
                ));
            }
            anyhow::Ok(results)
        });
    }
    while let Some(run) = runs.join_next().await {
        for (mode, wrong, result) in run?? {
            assert_eq!(result.is_ok(), !wrong, "{mode}, wrong emulator: {wrong}: {result:?}");
        }
    }
    Ok(())
}

//! The emulator's contract tests for tenant isolation and the Telemetry API (the
//! emulator's documentation, "Tenant isolation and the Telemetry API"), as
//! `contract.rs` does for the lifecycle: each check is a function over what the
//! emulator and the probes recorded, run against the correct emulator (must pass) and
//! against a deliberately wrong one, a quirk that breaks the rule (must fail).

use std::time::Duration;

use harness::emulator::gateway::serve_rie;
use harness::emulator::{FunctionConfig, Invoked, Outcome, Quirks, ShutdownReason, Trace, TraceEvent};
use harness::net::HttpClient;
use harness::probes::{position, Probe, ProbeBins, ProbeEnv};
use serde_json::{json, Value};

const BINS: ProbeBins = ProbeBins {
    extension: env!("CARGO_BIN_EXE_probe-extension"),
    runtime: env!("CARGO_BIN_EXE_probe-runtime"),
};

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(10);

async fn environment(
    exts: &[Probe<'_>],
    cfg: impl FnOnce(FunctionConfig) -> FunctionConfig,
) -> anyhow::Result<ProbeEnv> {
    ProbeEnv::start(BINS, exts, &[], cfg).await
}

fn tenant_mode(quirks: Quirks) -> impl FnOnce(FunctionConfig) -> FunctionConfig {
    move |c| c.tenant_isolation().quirks(quirks)
}

fn answered(out: &Invoked) {
    assert!(matches!(out.outcome, Outcome::Response(_)), "{:?}", out.outcome);
}

/// The line probe `probe` printed with `what` for the invoke `request_id`.
fn invoke_line(env: &ProbeEnv, probe: &str, request_id: &str) -> Result<Value, String> {
    env.lines(probe)
        .into_iter()
        .find(|l| l["what"] == "invoke" && l["request_id"] == request_id)
        .ok_or_else(|| format!("{probe} printed no invoke line for {request_id}"))
}

/// Every telemetry event the probe `probe` received, as (type, record).
fn telemetry_events(env: &ProbeEnv, probe: &str) -> Vec<(String, Value)> {
    env.lines(probe)
        .into_iter()
        .filter(|l| l["what"] == "telemetry")
        .flat_map(|l| {
            let types: Vec<String> = l["types"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| t.as_str().unwrap_or_default().to_owned())
                .collect();
            let records = l["records"].as_array().cloned().unwrap_or_default();
            types.into_iter().zip(records).collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until the probe's `telemetry_wait` line for `request_id` (it got the
/// invoke's `platform.runtimeDone`, or gave up after 2 s).
async fn telemetry_waited(env: &ProbeEnv, request_id: &str) -> R {
    let id = request_id.to_owned();
    env.emulator
        .logs()
        .wait_for(WAIT, |l| l.contains("\"telemetry_wait\"") && l.contains(&id))
        .await?;
    // The listener prints a batch before it answers; the emulator records the
    // delivery once answered.
    env.emulator
        .wait_for_trace(WAIT, |t| match t {
            Trace::TelemetryDelivered { types, request_ids, .. } => types
                .iter()
                .zip(request_ids)
                .any(|(t, r)| t == "platform.runtimeDone" && *r == id),
            _ => false,
        })
        .await?;
    Ok(())
}

// ---- the runtime sees its tenant; an extension's INVOKE names none ---------------

fn check_runtime_tenant(runtime_invoke: &Value, tenant: &str) -> Result<(), String> {
    match runtime_invoke["tenant"].as_str() {
        Some(t) if t == tenant => Ok(()),
        _ => Err(format!(
            "the runtime saw tenant {} for {tenant}",
            runtime_invoke["tenant"]
        )),
    }
}

fn check_extension_event_without_tenant(extension_invoke: &Value) -> Result<(), String> {
    match &extension_invoke["tenant_id"] {
        Value::Null => Ok(()),
        t => Err(format!("the extension's INVOKE named tenant {t}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_sees_its_tenant_and_an_extensions_invoke_does_not() -> R {
    let exts: &[Probe] = &[("watcher", &[])];
    let good = environment(exts, tenant_mode(Quirks::default())).await?;
    // The tenant is not known during init: an environment inited ahead has none.
    good.emulator.init().await.map_err(anyhow::Error::msg)?;
    assert_eq!(good.emulator.tenant(), None);
    let out = good.emulator.invoke_for_tenant("org/team:a", "{}").await;
    answered(&out);
    good.emulator.settle().await;
    assert_eq!(good.emulator.tenant().as_deref(), Some("org/team:a"));
    let runtime = invoke_line(&good, "runtime", &out.request_id).map_err(anyhow::Error::msg)?;
    let extension = invoke_line(&good, "watcher", &out.request_id).map_err(anyhow::Error::msg)?;
    assert_eq!(check_runtime_tenant(&runtime, "org/team:a"), Ok(()));
    assert_eq!(check_extension_event_without_tenant(&extension), Ok(()));

    let no_header = environment(exts, tenant_mode(Quirks::with(|q| q.tenant_header_missing = true))).await?;
    let out = no_header.emulator.invoke_for_tenant("a", "{}").await;
    answered(&out);
    no_header.emulator.settle().await;
    let runtime = invoke_line(&no_header, "runtime", &out.request_id).map_err(anyhow::Error::msg)?;
    assert!(check_runtime_tenant(&runtime, "a").is_err());

    let leaky = environment(exts, tenant_mode(Quirks::with(|q| q.tenant_in_extension_event = true))).await?;
    let out = leaky.emulator.invoke_for_tenant("a", "{}").await;
    answered(&out);
    leaky.emulator.settle().await;
    let extension = invoke_line(&leaky, "watcher", &out.request_id).map_err(anyhow::Error::msg)?;
    assert!(check_extension_event_without_tenant(&extension).is_err());
    Ok(())
}

// ---- a telemetry subscriber gets platform.start with the tenant ------------------

const LISTENER: Probe = (
    "listener",
    &[("PROBE_TELEMETRY", "platform"), ("PROBE_TELEMETRY_WAIT", "1")],
);

/// The subscription was accepted; the invoke's `platform.start` and
/// `platform.runtimeDone` carry its request id and tenant; `platform.start` reached
/// the listener only after the extension's INVOKE (buffered delivery).
fn check_platform_start(env: &ProbeEnv, trace: &[TraceEvent], request_id: &str, tenant: &str) -> Result<(), String> {
    let subscribed = env.line("listener", "telemetry_subscribe").ok_or("no subscription")?;
    if subscribed["status"] != 200 || subscribed["body"] != "OK" {
        return Err(format!("subscription answered {subscribed}"));
    }
    let events = telemetry_events(env, "listener");
    let find = |kind: &str| {
        events
            .iter()
            .find(|(t, r)| t == kind && r["requestId"] == request_id)
            .map(|(_, r)| r.clone())
            .ok_or_else(|| format!("no {kind} for {request_id}: {events:?}"))
    };
    let start = find("platform.start")?;
    if start["tenantId"] != tenant || start["version"] != "$LATEST" {
        return Err(format!("platform.start was {start}"));
    }
    let done = find("platform.runtimeDone")?;
    if done["tenantId"] != tenant || done["status"] != "success" {
        return Err(format!("platform.runtimeDone was {done}"));
    }
    let invoked = position(
        trace,
        |t| matches!(t, Trace::InvokeToExtension { request_id: r, .. } if r == request_id),
    );
    let delivered = position(trace, |t| match t {
        Trace::TelemetryDelivered { types, request_ids, .. } => types
            .iter()
            .zip(request_ids)
            .any(|(t, r)| t == "platform.start" && r == request_id),
        _ => false,
    });
    match (invoked, delivered) {
        (Some(i), Some(d)) if i < d => Ok(()),
        _ => Err(format!(
            "INVOKE at {invoked:?}, platform.start delivered at {delivered:?}"
        )),
    }
}

fn check_platform_report(env: &ProbeEnv, request_id: &str, tenant: &str) -> Result<(), String> {
    let events = telemetry_events(env, "listener");
    let (_, report) = events
        .iter()
        .find(|(t, r)| t == "platform.report" && r["requestId"] == request_id)
        .ok_or_else(|| format!("no platform.report for {request_id}"))?;
    let metrics = &report["metrics"];
    let complete = ["durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB"]
        .iter()
        .all(|m| metrics[m].is_number());
    if report["status"] != "success" || report["tenantId"] != tenant || !complete {
        return Err(format!("platform.report was {report}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetry_subscriber_gets_platform_start_with_the_tenant() -> R {
    for wrong in [false, true] {
        let env = environment(
            &[LISTENER],
            tenant_mode(Quirks::with(|q| q.telemetry_drops_tenant = wrong)),
        )
        .await?;
        let first = env.emulator.invoke_for_tenant("tenant-a", "{}").await;
        answered(&first);
        telemetry_waited(&env, &first.request_id).await?;
        let check = check_platform_start(&env, &env.emulator.trace(), &first.request_id, "tenant-a");
        if wrong {
            assert!(check.is_err(), "a record without its tenant must fail the check");
            continue;
        }
        assert_eq!(check, Ok(()));
        // The first invoke's platform.report goes out once everyone is back in
        // `next`, and reaches the (then frozen) listener at the next thaw, before
        // anything of the second invoke.
        let second = env.emulator.invoke_for_tenant("tenant-a", "{}").await;
        answered(&second);
        telemetry_waited(&env, &second.request_id).await?;
        assert_eq!(check_platform_report(&env, &first.request_id, "tenant-a"), Ok(()));
        assert!(second.init.is_none(), "the same tenant reuses the warm environment");
    }
    Ok(())
}

// ---- the Telemetry API closes at the end of init ---------------------------------

fn check_subscription_closed(subscribed: &Value) -> Result<(), String> {
    let closed = json!({
        "errorMessage": "Telemetry API subscription is closed already",
        "errorType": "Telemetry.SubscriptionClosed",
    });
    if subscribed["status"] == 403 && subscribed["body"] == closed {
        Ok(())
    } else {
        Err(format!("a subscription after init answered {subscribed}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetry_subscription_after_init_is_refused() -> R {
    let late: Probe = (
        "listener",
        &[("PROBE_TELEMETRY", "platform"), ("PROBE_TELEMETRY_AT", "invoke")],
    );
    for wrong in [false, true] {
        let env = environment(&[late], |c| {
            c.quirks(Quirks::with(|q| q.telemetry_open_after_init = wrong))
        })
        .await?;
        answered(&env.emulator.invoke("{}").await);
        env.emulator
            .logs()
            .wait_for(WAIT, |l| l.contains("\"telemetry_subscribe\""))
            .await?;
        let subscribed = env.line("listener", "telemetry_subscribe").unwrap_or_default();
        assert_eq!(check_subscription_closed(&subscribed).is_ok(), !wrong, "{subscribed}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classic_emulators_telemetry_stub_answers_not_supported() -> R {
    let env = environment(&[LISTENER], |c| c.telemetry_stub()).await?;
    env.emulator.init().await.map_err(anyhow::Error::msg)?;
    let subscribed = env.line("listener", "telemetry_subscribe").unwrap_or_default();
    let stub = json!({"errorMessage": "Telemetry API is not supported", "errorType": "Telemetry.NotSupported"});
    assert_eq!(subscribed["status"], 202, "{subscribed}");
    assert_eq!(subscribed["body"], stub);
    let trace = env.emulator.trace();
    assert!(position(&trace, |t| matches!(t, Trace::TelemetrySubscribed { .. })).is_none());
    Ok(())
}

// ---- two tenants never share an environment ---------------------------------------

/// Which environment (counted by `InitDone`) served each invoke, and which tenant
/// asked for it: no environment may serve two tenants.
fn check_one_tenant_per_environment(trace: &[TraceEvent], invokes: &[(&str, &Invoked)]) -> Result<(), String> {
    let mut served: Vec<(usize, &str)> = Vec::new();
    for (tenant, out) in invokes {
        let at = position(
            trace,
            |t| matches!(t, Trace::InvokeToRuntime { request_id, .. } if *request_id == out.request_id),
        )
        .ok_or_else(|| format!("{} never reached the runtime", out.request_id))?;
        let environment = trace[..at].iter().filter(|t| t.what == Trace::InitDone).count();
        if let Some((_, other)) = served.iter().find(|(e, t)| *e == environment && t != tenant) {
            return Err(format!("environment {environment} served {other} and {tenant}"));
        }
        served.push((environment, tenant));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_never_share_an_environment() -> R {
    let exts: &[Probe] = &[("watcher", &[])];
    for wrong in [false, true] {
        let env = environment(exts, tenant_mode(Quirks::with(|q| q.tenants_share_environment = wrong))).await?;
        let mut invokes = Vec::new();
        for tenant in ["a", "a", "b", "a"] {
            let out = env.emulator.invoke_for_tenant(tenant, "{}").await;
            answered(&out);
            invokes.push((tenant, out));
        }
        env.emulator.settle().await;
        let trace = env.emulator.trace();
        let pairs: Vec<(&str, &Invoked)> = invokes.iter().map(|(t, o)| (*t, o)).collect();
        let check = check_one_tenant_per_environment(&trace, &pairs);
        if wrong {
            assert!(check.is_err(), "a shared environment must fail the check");
            continue;
        }
        assert_eq!(check, Ok(()));
        let cold: Vec<bool> = invokes.iter().map(|(_, o)| o.init.is_some()).collect();
        assert_eq!(
            cold,
            [true, false, true, true],
            "the same tenant reuses the warm environment"
        );
        // The other tenant's environment ended the normal way, with a spindown.
        let spindowns = trace
            .iter()
            .filter(|t| {
                matches!(
                    &t.what,
                    Trace::ShutdownToExtension {
                        reason: ShutdownReason::Spindown,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(spindowns, 2, "{trace:?}");
        assert_eq!(env.emulator.tenant().as_deref(), Some("a"));
        for (tenant, out) in &invokes {
            let runtime = invoke_line(&env, "runtime", &out.request_id).map_err(anyhow::Error::msg)?;
            assert_eq!(check_runtime_tenant(&runtime, tenant), Ok(()));
        }
    }
    Ok(())
}

// ---- an invoke without a (valid) tenant is refused ---------------------------------

/// Refused, with no environment touched (nothing started).
fn check_refused(trace: &[TraceEvent], out: &Invoked) -> Result<(), String> {
    if !matches!(out.outcome, Outcome::Rejected { .. }) {
        return Err(format!("the invoke ended {:?}", out.outcome));
    }
    match position(trace, |t| {
        matches!(t, Trace::ExtensionStarted { .. } | Trace::RuntimeStarted)
    }) {
        Some(_) => Err("an environment was started".into()),
        None => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoke_without_a_tenant_is_refused_in_tenant_isolation_mode() -> R {
    let exts: &[Probe] = &[("watcher", &[])];
    let good = environment(exts, tenant_mode(Quirks::default())).await?;
    let without = good.emulator.invoke("{}").await;
    assert_eq!(check_refused(&good.emulator.trace(), &without), Ok(()));
    for bad in ["", "a;b", &"x".repeat(257)] {
        let out = good.emulator.invoke_for_tenant(bad, "{}").await;
        assert_eq!(check_refused(&good.emulator.trace(), &out), Ok(()), "{bad:?}");
    }
    // The RIE-compatible endpoint reads the tenant from X-Amz-Tenant-Id.
    let door = serve_rie(good.emulator.clone(), "127.0.0.1:0".parse()?).await?;
    let url = door.url("/2015-03-31/functions/function/invocations");
    let http = HttpClient::new();
    let post = |headers: &'static [(&'static str, &'static str)]| {
        let (http, url) = (http.clone(), url.clone());
        async move { http.send(http::Method::POST, &url, headers, "{}".into()).await }
    };
    let refused = post(&[]).await?;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["errorType"], "InvalidParameterValueException");
    let served = post(&[("X-Amz-Tenant-Id", "tenant-b")]).await?;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.json()["payload"], json!({}));
    good.emulator.settle().await;
    assert_eq!(good.emulator.tenant().as_deref(), Some("tenant-b"));

    let lax = environment(exts, tenant_mode(Quirks::with(|q| q.tenant_optional = true))).await?;
    let without = lax.emulator.invoke("{}").await;
    assert!(check_refused(&lax.emulator.trace(), &without).is_err());
    Ok(())
}

// ---- outside tenant isolation no tenant appears anywhere ---------------------------

fn check_no_tenant(env: &ProbeEnv, request_id: &str) -> Result<(), String> {
    let runtime = invoke_line(env, "runtime", request_id)?;
    if !runtime["tenant"].is_null() {
        return Err(format!("the runtime got a tenant header: {runtime}"));
    }
    check_extension_event_without_tenant(&invoke_line(env, "listener", request_id)?)?;
    let events = telemetry_events(env, "listener");
    if events.is_empty() {
        return Err("no telemetry arrived".into());
    }
    match events.iter().find(|(_, r)| r.get("tenantId").is_some()) {
        Some((t, r)) => Err(format!("{t} had a tenantId: {r}")),
        None => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_tenant_isolation_no_tenant_appears() -> R {
    for wrong in [false, true] {
        let env = environment(&[LISTENER], |c| {
            c.quirks(Quirks::with(|q| q.tenant_id_not_omitted = wrong))
        })
        .await?;
        let out = env.emulator.invoke("{}").await;
        answered(&out);
        telemetry_waited(&env, &out.request_id).await?;
        let check = check_no_tenant(&env, &out.request_id);
        assert_eq!(check.is_ok(), !wrong, "{check:?}");
        // A tenant id for a function without tenant isolation is refused.
        let tenanted = env.emulator.invoke_for_tenant("a", "{}").await;
        assert!(
            matches!(tenanted.outcome, Outcome::Rejected { .. }),
            "{:?}",
            tenanted.outcome
        );
    }
    Ok(())
}

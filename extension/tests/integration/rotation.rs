//! Rotation under load (reliability suite 2): about 1,000 requests per second on one
//! key while its value is rotated several times: no errors, each new value visible
//! once a refresh-ahead pass that began after the rotation has finished (at once
//! with `refreshNow`), and the AWSPENDING / AWSPREVIOUS selectors answer what Secrets
//! Manager holds. `SOAK=1` rotates 30 times. How long a rotation takes to show is
//! printed as a figure; the timer's schedule is checked by paused-clock unit tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::moto::Moto;
use harness::sidecar::SidecarBuilder;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");
const TTL: Duration = Duration::from_secs(2);

type R = anyhow::Result<()>;

/// Refresh-ahead passes that succeeded, from `/metrics`.
async fn refreshes(sc: &harness::sidecar::Sidecar) -> anyhow::Result<u64> {
    let text = sc.get("/metrics").await?.text();
    text.lines()
        .find_map(|l| l.strip_prefix("secrets_sidecar_refreshes_total{result=\"ok\"} "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no refresh counter in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request() -> R {
    let rotations = if std::env::var_os("SOAK").is_some() { 30 } else { 3 };
    let moto = Moto::start().await?;
    moto.create_secret("rotating", "v0").await?;
    let sc = Arc::new(
        SidecarBuilder::new(BIN)
            .endpoint(&moto.endpoint())
            .var("SECRETS_MANAGER_TTL", "2")
            .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:rotating")
            .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
            .spawn()
            .await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // When each value was first seen by the load.
    let first_seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let workers: Vec<_> = (0..10)
        .map(|_| {
            let (sc, stop, ok, errors, seen) =
                (sc.clone(), stop.clone(), ok.clone(), errors.clone(), first_seen.clone());
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    match sc.get("/secretsmanager/get?secretId=rotating").await {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, SeqCst);
                            let v = r.json()["SecretString"].as_str().unwrap_or("").to_owned();
                            seen.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .entry(v)
                                .or_insert_with(Instant::now);
                        }
                        _ => {
                            errors.fetch_add(1, SeqCst);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(8)).await;
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut delays = Vec::new();
    for k in 1..=rotations {
        let value = format!("v{k}");
        let rotated = Instant::now();
        moto.put_secret_value("rotating", &value).await?;
        // The first refresh counted from here may have fetched before the rotation;
        // the second began after the first ended, so it fetched the new value. The
        // bound is generous: the timer refreshes every 0.75 TTL.
        let before = refreshes(&sc).await?;
        harness::net::poll(TTL * 10, "two refresh-ahead passes after the rotation", || {
            let sc = sc.clone();
            async move { refreshes(&sc).await.ok().filter(|n| *n >= before + 2) }
        })
        .await?;
        // Visible to the load (a request every 8 ms per worker) without anyone asking
        // for a refresh.
        let seen = harness::net::poll(Duration::from_secs(10), "the rotated value under load", || {
            let seen = first_seen.clone();
            let value = value.clone();
            async move {
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&value)
                    .copied()
            }
        })
        .await?;
        delays.push(seen.saturating_duration_since(rotated));
    }
    // refreshNow shows a rotation at once.
    moto.put_secret_value("rotating", "v-forced").await?;
    let forced = sc.get("/secretsmanager/get?secretId=rotating&refreshNow=true").await?;
    assert_eq!(forced.json()["SecretString"], "v-forced");

    stop.store(true, SeqCst);
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, errors) = (ok.load(SeqCst), errors.load(SeqCst));
    let worst = delays.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{rotations} rotations under {:.0} req/s ({ok} answered, {errors} errors); slowest rotation visible after {worst:?} (TTL {TTL:?})",
        (ok + errors) as f64 / elapsed
    );
    assert_eq!(errors, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_stages_answer_what_aws_holds() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("staged", "first").await?;
    let current_id = moto.put_secret_value("staged", "second").await?;
    let pending_id = moto
        .put_secret_value_staged("staged", "pending", &["AWSPENDING"])
        .await?;
    let sc = SidecarBuilder::new(BIN).endpoint(&moto.endpoint()).spawn().await?;
    let get = |q: &str| {
        let url = format!("/secretsmanager/get?secretId=staged{q}");
        let sc = &sc;
        async move { sc.get(&url).await }
    };
    let current = get("").await?;
    assert_eq!(
        (
            current.json()["SecretString"].as_str(),
            current.json()["VersionId"].as_str()
        ),
        (Some("second"), Some(current_id.as_str()))
    );
    let previous = get("&versionStage=AWSPREVIOUS").await?;
    assert_eq!(previous.json()["SecretString"], "first");
    let pending = get("&versionStage=AWSPENDING").await?;
    assert_eq!(
        (
            pending.json()["SecretString"].as_str(),
            pending.json()["VersionId"].as_str()
        ),
        (Some("pending"), Some(pending_id.as_str()))
    );
    assert!(pending.json()["VersionStages"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == "AWSPENDING")));
    let by_id = get(&format!("&versionId={pending_id}")).await?;
    assert_eq!(by_id.json()["SecretString"], "pending");
    let missing = get("&versionStage=NOSUCHSTAGE").await?;
    assert_eq!(missing.status, 404, "{}", missing.text());
    Ok(())
}

//! Section 3 — A cold key under concurrency: N requests at once for one uncached key; upstream
//! calls counted at the fault proxy. Without single-flight each request would make
//! its own call (the baseline: N).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use harness::moto::Moto;
use harness::proxy::{Fault, FaultProxy};
use harness::sidecar::SidecarBuilder;

use crate::report::{verdict, Table};
use crate::Tools;

pub async fn run(tools: &Tools, smoke: bool) -> Result<String> {
    let moto = Moto::start().await?;
    moto.create_secret("bench/burst", "value").await?;
    let sizes: &[usize] = if smoke { &[50] } else { &[50, 500] };
    let mut t = Table::new(&[
        "concurrent requests",
        "answered 200",
        "upstream calls",
        "without single-flight",
        "target",
        "",
    ]);
    for &n in sizes {
        let proxy = FaultProxy::start(moto.port).await?;
        // The first call takes 300 ms, so every request arrives while it is in flight.
        proxy.inject(
            Some("GetSecretValue"),
            Fault::Latency(Duration::from_millis(300)),
            Some(1),
        );
        let sc = Arc::new(
            SidecarBuilder::new(&tools.sidecar)
                .endpoint(&proxy.endpoint())
                .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
                .var("SECRETS_SIDECAR_MAX_CLIENT_CONNECTIONS", "2048")
                .spawn()
                .await?,
        );
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let sc = sc.clone();
                tokio::spawn(async move { sc.get("/secretsmanager/get?secretId=bench/burst").await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            if task.await?.is_ok_and(|r| r.status == 200) {
                ok += 1;
            }
        }
        let calls = proxy.count("GetSecretValue");
        t.row(vec![
            n.to_string(),
            ok.to_string(),
            calls.to_string(),
            n.to_string(),
            "1".into(),
            verdict(calls == 1 && ok == n).into(),
        ]);
    }
    Ok(format!(
        "{}\nEach size runs against a fresh sidecar (empty cache); the first GetSecretValue is held 300 ms at the fault proxy so all requests overlap it. Requests are concurrent keep-alive connections from one client (`SECRETS_SIDECAR_MAX_CLIENT_CONNECTIONS=2048` so none is refused).\n",
        t.render()
    ))
}

//! A hostile function in tenant `acme`'s environment: 10,000 crafted ids aimed at
//! tenant `globex`'s secret and parameter (path tricks, URL-encoding in every
//! degree, ARNs of every shape, case and unicode look-alikes, stray parameters),
//! through both doors: the extension API's two paths and SSM's
//! `/aws/reference/secretsmanager/` form, and the AWS SDK for Rust's signed calls
//! (GetSecretValue, BatchGetSecretValue, GetParameter). The other tenant's values
//! carry a marker; the function reports, per answer, whether its body held it.
//! None may. The same detector in globex's own environment finds the marker, so
//! it is shown able to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::emulator::Outcome;
use harness::moto::ParamType;
use harness::world::{Function, World, WorldConfig};
use serde_json::{json, Value};

type R = anyhow::Result<()>;

/// In both of globex's values, and in nothing else.
const MARKER: &str = "LEAK-7f3a9c";
const CRAFTED: usize = 10_000;
/// Ids per invoke: well inside the invoke's payload and time limits.
const PER_INVOKE: usize = 1_000;

/// A deterministic sequence (the run is the same every time).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every spelling of globex's secret we could think of, before encoding.
fn secret_spellings(arn: &str) -> Vec<String> {
    let name = "tenants/globex/db";
    let partial = arn.rsplit_once('-').map_or(arn, |(base, _)| base).to_owned();
    let suffix = arn.rsplit_once('-').map_or("", |(_, s)| s).to_owned();
    let mut v = vec![
        name.to_owned(),
        arn.to_owned(),
        partial.clone(),
        format!("{partial}-AbCdEf"),
        arn.replace("us-east-1", "eu-west-1"),
        arn.replace("123456789012", "210987654321"),
        arn.replace("arn:aws:", "arn:aws-cn:"),
        arn.to_uppercase(),
        format!("{partial}-{}", suffix.to_lowercase()),
        format!("{arn}/"),
        format!("{name}/"),
        format!("/{name}"),
        "tenants//globex/db".into(),
        "tenants/./globex/db".into(),
        "tenants/globex/./db".into(),
        "tenants/globex//db".into(),
        "./tenants/globex/db".into(),
        "tenants/acme/../globex/db".into(),
        "tenants/acme/../../tenants/globex/db".into(),
        "tenants/acme/db/../../globex/db".into(),
        "tenants/acme/%2e%2e/globex/db".into(),
        "tenants/acme%2F..%2Fglobex/db".into(),
        "tenants/GLOBEX/db".into(),
        "Tenants/globex/db".into(),
        "tenants/Globex/db".into(),
        "tenants/globex/DB".into(),
        "tenants/globex/db ".into(),
        " tenants/globex/db".into(),
        "tenants/globex/db\t".into(),
        "tenants/globex/db\n".into(),
        "tenants/globex\u{0}/db".into(),
        "tenants/\u{ff47}lobex/db".into(),               // fullwidth g
        "tenants/gl\u{043e}bex/db".into(),               // Cyrillic o
        "tenants/globex\u{2215}db".into(),               // division slash
        "tenants\u{ff0f}globex\u{ff0f}db".into(),        // fullwidth solidus
        "tenants/globex\u{200b}/db".into(),              // zero-width space
        "tenants/globe\u{0301}x/db".into(),              // combining accent
        "tenants/acme\u{2024}\u{2024}/globex/db".into(), // one-dot leaders
        "tenants/acme/\u{2025}/globex/db".into(),        // two-dot leader
        "tenants/acme/db\u{0}tenants/globex/db".into(),
        "tenants/*/db".into(),
        "tenants/%/db".into(),
        "tenants/glob*/db".into(),
        "tenants/acme/db,tenants/globex/db".into(),
        "tenants/acme/db tenants/globex/db".into(),
        format!("{name}?versionStage=AWSCURRENT"),
        format!("{name}#"),
    ];
    v.sort();
    v.dedup();
    v
}

/// Every spelling of globex's parameter.
fn parameter_spellings() -> Vec<String> {
    let name = "/tenants/globex/key";
    vec![
        name.to_owned(),
        format!("{name}:1"),
        format!("{name}:AWSCURRENT"),
        format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}"),
        format!("arn:aws:ssm:eu-west-1:123456789012:parameter{name}"),
        "/tenants/acme/../globex/key".into(),
        "//tenants/globex/key".into(),
        "/tenants//globex/key".into(),
        "/tenants/globex/key/".into(),
        "/Tenants/globex/key".into(),
        "/tenants/GLOBEX/key".into(),
        "/tenants/\u{ff47}lobex/key".into(),
        "/tenants/globex\u{2215}key".into(),
        "tenants/globex/key".into(),
        "/aws/reference/secretsmanager/tenants/globex/db".into(),
        "/aws/reference/secretsmanager/tenants/acme/../globex/db".into(),
    ]
}

/// `text` percent-encoded: every byte, reserved bytes only, a seeded subset, twice,
/// or not at all (what the HTTP client sends as is).
fn encodings(text: &str, rng: &mut Lcg) -> Vec<String> {
    let every: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
    let lower: String = text.bytes().map(|b| format!("%{b:02x}")).collect();
    let reserved: String = text
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let some: String = text
        .bytes()
        .map(|b| {
            if rng.below(2) == 0 || !b.is_ascii_graphic() || b"&#%+?".contains(&b) {
                format!("%{b:02X}")
            } else {
                (b as char).to_string()
            }
        })
        .collect();
    let twice = reserved.replace('%', "%25");
    let plus = reserved.replace("%20", "+");
    vec![every, lower, reserved, some, twice, plus]
}

/// The crafted requests: paths for the extension API, calls for the SDK route.
fn crafted(secret_arn: &str) -> (Vec<String>, Vec<Value>) {
    let mut rng = Lcg(0x5eed_7e4a_4715);
    let secrets = secret_spellings(secret_arn);
    let parameters = parameter_spellings();
    let extras = [
        "",
        "&versionStage=AWSCURRENT",
        "&versionStage=AWSPREVIOUS",
        "&versionId=00000000-0000-0000-0000-000000000000",
        "&secretId=tenants/acme/db",
        "&roleArn=arn:aws:iam::123456789012:role/tenant-globex",
    ];
    let mut paths = BTreeSet::new();
    // Round after round of seeded encodings and extras until the count is reached.
    'fill: for _round in 0..64 {
        for id in &secrets {
            for enc in encodings(id, &mut rng) {
                let extra = extras[rng.below(extras.len())];
                for path in [
                    format!("/secretsmanager/get?secretId={enc}{extra}"),
                    format!("/secretsmanager/{enc}"),
                    format!("/secretsmanager/get?{extra}&secretId={enc}"),
                    format!(
                        "/systemsmanager/parameters/get?name=%2Faws%2Freference%2Fsecretsmanager%2F{enc}&withDecryption=true"
                    ),
                ] {
                    paths.insert(path);
                }
            }
        }
        for name in &parameters {
            for enc in encodings(name, &mut rng) {
                let decrypt = ["true", "false", "TRUE"][rng.below(3)];
                paths.insert(format!(
                    "/systemsmanager/parameters/get?name={enc}&withDecryption={decrypt}"
                ));
                paths.insert(format!(
                    "/systemsmanager/parameters/get?withDecryption=true&name={enc}&version=1"
                ));
            }
        }
        // Mutations: a seeded character of a seeded spelling changed case, doubled,
        // or replaced by a look-alike.
        for _ in 0..200 {
            let id: Vec<char> = secrets[rng.below(secrets.len())].chars().collect();
            let at = rng.below(id.len().max(1));
            let mut m = id.clone();
            match rng.below(4) {
                0 => m[at] = m[at].to_ascii_uppercase(),
                1 => m.insert(at, m[at]),
                2 => m[at] = ['\u{2044}', '\u{29f8}', '\u{ff0e}', '\u{0430}', '\u{0435}'][rng.below(5)],
                _ => m.insert(at, '/'),
            }
            let m: String = m.into_iter().collect();
            let enc = encodings(&m, &mut rng).swap_remove(rng.below(6));
            paths.insert(format!("/secretsmanager/get?secretId={enc}"));
            if paths.len() >= CRAFTED {
                break 'fill;
            }
        }
        if paths.len() >= CRAFTED - 1_000 {
            break;
        }
    }
    let mut paths: Vec<String> = paths.into_iter().collect();
    paths.truncate(CRAFTED - 1_000);
    // The SDK route: ids as the SDK sends them (in a JSON body, no URL decoding).
    let mut calls = Vec::new();
    let mut k = 0;
    while calls.len() < 1_000 {
        let id = &secrets[k % secrets.len()];
        let name = &parameters[k % parameters.len()];
        match k % 3 {
            0 => calls.push(json!({ "op": "GetSecretValue", "id": id })),
            1 => {
                let ids: Vec<&String> = (0..4).map(|_| &secrets[rng.below(secrets.len())]).collect();
                calls.push(json!({ "op": "BatchGetSecretValue", "ids": ids }));
            }
            _ => calls.push(json!({ "op": "GetParameter", "id": name })),
        }
        k += 1;
    }
    (paths, calls)
}

async fn world() -> anyhow::Result<(World, String)> {
    let world = World::start(
        WorldConfig {
            function: Function::Probe(Vec::new()),
            tenant_isolation: true,
            timeout: Duration::from_secs(120),
            ..WorldConfig::default()
        }
        .env(
            "SECRETS_SIDECAR_PREFETCH",
            "secretsmanager:tenants/{tenant}/db ssm:/tenants/{tenant}/key",
        ),
    )
    .await?;
    let moto = &world.moto;
    moto.create_secret("tenants/acme/db", "acme-own-db").await?;
    moto.put_parameter("/tenants/acme/key", "acme-own-key", ParamType::SecureString)
        .await?;
    let arn = moto
        .create_secret("tenants/globex/db", &format!("{MARKER}-globex-db"))
        .await?;
    moto.put_parameter(
        "/tenants/globex/key",
        &format!("{MARKER}-globex-key"),
        ParamType::SecureString,
    )
    .await?;
    Ok((world, arn))
}

fn answers(outcome: &Outcome, field: &str) -> anyhow::Result<Vec<Value>> {
    let Outcome::Response(body) = outcome else {
        anyhow::bail!("the invoke failed: {outcome:?}");
    };
    let v: Value = serde_json::from_slice(body)?;
    Ok(v[field].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_crafted_ids_get_no_value_of_another_tenant() -> R {
    let (world, arn) = world().await?;
    let (paths, calls) = crafted(&arn);
    assert_eq!(paths.len() + calls.len(), CRAFTED);

    // The function's own values are served (the environment works).
    let own = json!({
        "fetch_many": ["/secretsmanager/get?secretId=tenants/acme/db"],
        "sdk_many": [{ "op": "GetParameter", "id": "/tenants/acme/key" }],
        "needle": "acme-own",
    });
    let invoked = world.emulator.invoke_for_tenant("acme", own.to_string()).await;
    assert_eq!(
        answers(&invoked.outcome, "many")?[0]["has_needle"],
        true,
        "{:?}",
        invoked.outcome
    );
    assert_eq!(answers(&invoked.outcome, "sdk_many")?[0]["has_needle"], true);

    let mut statuses = BTreeMap::<String, usize>::new();
    let mut leaks = Vec::new();
    for chunk in paths.chunks(PER_INVOKE) {
        let payload = json!({ "fetch_many": chunk, "needle": MARKER });
        let invoked = world.emulator.invoke_for_tenant("acme", payload.to_string()).await;
        let got = answers(&invoked.outcome, "many")?;
        assert_eq!(got.len(), chunk.len(), "every crafted path answered");
        for (path, a) in chunk.iter().zip(&got) {
            *statuses.entry(format!("extension API {}", a["status"])).or_default() += 1;
            if a["has_needle"] != false {
                leaks.push(format!("{path}: {a}"));
            }
        }
    }
    for chunk in calls.chunks(PER_INVOKE) {
        let payload = json!({ "sdk_many": chunk, "needle": MARKER });
        let invoked = world.emulator.invoke_for_tenant("acme", payload.to_string()).await;
        let got = answers(&invoked.outcome, "sdk_many")?;
        assert_eq!(got.len(), chunk.len(), "every crafted call answered");
        for (call, a) in chunk.iter().zip(&got) {
            let code = a["code"].as_str().unwrap_or("");
            let op = call["op"].as_str().unwrap_or("");
            match code.strip_prefix("ok errors=") {
                // A batch answers per id: each id's error counted on its own.
                Some(errors) => {
                    for e in errors.split('|').filter(|e| !e.is_empty()) {
                        *statuses.entry(format!("SDK {op} item {e}")).or_default() += 1;
                    }
                }
                None => *statuses.entry(format!("SDK {op} {code}")).or_default() += 1,
            }
            if a["has_needle"] != false {
                leaks.push(format!("{call}: {a}"));
            }
        }
    }
    eprintln!(
        "hostile ids: {} crafted, answers {statuses:#?}",
        paths.len() + calls.len()
    );
    assert_eq!(
        world.emulator.tenant().as_deref(),
        Some("acme"),
        "one environment throughout"
    );
    assert!(leaks.is_empty(), "{} values of another tenant: {leaks:#?}", leaks.len());

    // The detector itself: in globex's environment the same marker is found.
    let theirs = json!({
        "fetch_many": ["/secretsmanager/get?secretId=tenants/globex/db"],
        "sdk_many": [{ "op": "GetParameter", "id": "/tenants/globex/key" }],
        "needle": MARKER,
    });
    let invoked = world.emulator.invoke_for_tenant("globex", theirs.to_string()).await;
    assert_eq!(
        answers(&invoked.outcome, "many")?[0]["has_needle"],
        true,
        "{:?}",
        invoked.outcome
    );
    assert_eq!(answers(&invoked.outcome, "sdk_many")?[0]["has_needle"], true);
    Ok(())
}

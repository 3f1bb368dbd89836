//! Configuration parsing: defaults, ranges, every error named, nothing echoed.

use super::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn errors_of(pairs: &[(&str, &str)]) -> Vec<ConfigError> {
    Config::from_env(&env(pairs)).expect_err("config should be rejected").0
}

#[test]
fn defaults_match_aws_extension() {
    let c = Config::from_env(&env(&[])).expect("empty env is valid");
    assert!(c.cache_enabled);
    assert_eq!(c.cache_size, 1000);
    assert_eq!(c.http_port, 2773);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.max_connections.get(), 3);
    assert_eq!(c.secrets_manager.ttl, Duration::from_secs(300));
    assert_eq!(c.ssm.ttl, Duration::from_secs(300));
    assert_eq!(c.secrets_manager.timeout, None);
    assert!(c.prefetch.is_empty() && c.required.is_empty() && c.allow.is_none());
}

#[test]
fn ttl_beyond_aws_cap_is_accepted_up_to_a_day() {
    let c = Config::from_env(&env(&[(vars::SM_TTL, "3600"), (vars::SSM_TTL, "86400")])).expect("valid");
    assert_eq!(c.secrets_manager.ttl, Duration::from_secs(3600));
    assert_eq!(c.ssm.ttl, MAX_TTL);
    let errs = errors_of(&[(vars::SM_TTL, "86401")]);
    assert_eq!(errs[0].var, vars::SM_TTL);
    assert!(errs[0].problem.contains("0 to 86400"), "{}", errs[0].problem);
}

#[test]
fn every_invalid_variable_is_named_with_its_range() {
    let errs = errors_of(&[
        (vars::HTTP_PORT, "0"),
        (vars::CACHE_SIZE, "-1"),
        (vars::CACHE_ENABLED, "yes"),
        (vars::MAX_CONNECTIONS, "0"),
        (vars::SSM_TIMEOUT, "ten"),
        (vars::REFRESH_AHEAD, "1.5"),
        (vars::LOG_LEVEL, "loud"),
        (vars::INIT_TIMEOUT, "20000"),
    ]);
    let named: Vec<&str> = errs.iter().map(|e| e.var).collect();
    for var in [
        vars::HTTP_PORT,
        vars::CACHE_SIZE,
        vars::CACHE_ENABLED,
        vars::MAX_CONNECTIONS,
        vars::SSM_TIMEOUT,
        vars::REFRESH_AHEAD,
        vars::LOG_LEVEL,
        vars::INIT_TIMEOUT,
    ] {
        assert!(named.contains(&var), "{var} missing from {named:?}");
    }
    let port = errs.iter().find(|e| e.var == vars::HTTP_PORT).expect("port error");
    assert!(port.problem.contains("1 to 65535"));
}

#[test]
fn error_message_never_echoes_the_value() {
    let errs = errors_of(&[(vars::HTTP_PORT, "s3cr3t-looking-value")]);
    let text = ConfigErrors(errs).to_string();
    assert!(!text.contains("s3cr3t"), "{text}");
}

#[test]
fn empty_and_padded_values() {
    let c = Config::from_env(&env(&[(vars::HTTP_PORT, ""), (vars::SM_TTL, " 60 ")])).expect("valid");
    assert_eq!(c.http_port, DEFAULT_HTTP_PORT);
    assert_eq!(c.secrets_manager.ttl, Duration::from_secs(60));
}

#[test]
fn zero_timeout_means_sdk_default() {
    let c = Config::from_env(&env(&[(vars::SM_TIMEOUT, "0"), (vars::SSM_TIMEOUT, "1500")])).expect("valid");
    assert_eq!(c.secrets_manager.timeout, None);
    assert_eq!(c.ssm.timeout, Some(Duration::from_millis(1500)));
}

#[test]
fn lambda_log_level_is_the_fallback() {
    let c = Config::from_env(&env(&[(vars::LAMBDA_LOG_LEVEL, "DEBUG")])).expect("valid");
    assert_eq!(c.log_level, LogLevel::Debug);
    let c = Config::from_env(&env(&[(vars::LAMBDA_LOG_LEVEL, "DEBUG"), (vars::LOG_LEVEL, "none")])).expect("valid");
    assert_eq!(c.log_level, LogLevel::None);
    let c = Config::from_env(&env(&[(vars::LAMBDA_LOG_FORMAT, "JSON")])).expect("valid");
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn prefetch_needs_a_cache() {
    let errs = errors_of(&[(vars::PREFETCH, "secretsmanager:db"), (vars::SM_TTL, "0")]);
    assert_eq!(errs[0].var, vars::PREFETCH);
    let errs = errors_of(&[(vars::REQUIRED, "ssm:/x"), (vars::CACHE_ENABLED, "false")]);
    assert_eq!(errs[0].var, vars::REQUIRED);
    // The other source may still be cached.
    let c = Config::from_env(&env(&[(vars::PREFETCH, "ssm:/x"), (vars::SM_TTL, "0")])).expect("valid");
    let cache = c.cache_settings();
    assert!(cache.caches(Source::Ssm) && !cache.caches(Source::SecretsManager));
}

#[test]
fn prefetch_outside_the_allowlist_is_rejected() {
    let errs = errors_of(&[
        (vars::PREFETCH, "secretsmanager:other"),
        (vars::ALLOW, "secretsmanager:app/*"),
    ]);
    assert_eq!(errs[0].var, vars::PREFETCH);
    assert!(errs[0].problem.contains("not permitted"));
}

#[test]
fn startup_refs_merge_prefetch_and_required() {
    let c = Config::from_env(&env(&[
        (vars::PREFETCH, "secretsmanager:a, ssm:/b"),
        (vars::REQUIRED, "ssm:/b secretsmanager:c"),
    ]))
    .expect("valid");
    let all: Vec<String> = c.startup_refs().iter().map(ToString::to_string).collect();
    assert_eq!(all, ["secretsmanager:a", "ssm:/b", "secretsmanager:c"]);
}

#[test]
fn env_and_file_mappings_are_validated_and_prefetched() {
    let c = Config::from_env(&env(&[
        (
            vars::ENV,
            "DATABASE_URL=secretsmanager:app/db#url STRIPE_KEY=ssm:/app/stripe",
        ),
        (vars::FILES, "/tmp/secrets/db.json=secretsmanager:app/db"),
        (vars::PREFETCH, "ssm:/other"),
        (vars::EMF, "true"),
    ]))
    .expect("valid");
    assert!(c.emf);
    assert_eq!(c.env_mappings.len(), 2);
    assert_eq!(c.files.len(), 1);
    let refs: Vec<String> = c.startup_refs().iter().map(ToString::to_string).collect();
    assert_eq!(refs, ["ssm:/other", "secretsmanager:app/db", "ssm:/app/stripe"]);
    // An uncached source is not prefetched (the wrapper's request fetches it).
    let c = Config::from_env(&env(&[(vars::ENV, "K=ssm:/app/stripe"), (vars::SSM_TTL, "0")])).expect("valid");
    assert!(c.startup_refs().is_empty());
    assert!(
        !Config::from_env(&env(&[])).expect("valid").emf,
        "EMF is off by default"
    );

    let errs = errors_of(&[
        (vars::ENV, "AWS_SESSION_TOKEN=ssm:/x"),
        (vars::FILES, "/etc/passwd=ssm:/x"),
        (vars::EMF, "yes"),
    ]);
    let vars_named: Vec<&str> = errs.iter().map(|e| e.var).collect();
    assert_eq!(vars_named, [vars::ENV, vars::FILES, vars::EMF]);
    let errs = errors_of(&[(vars::ENV, "K=ssm:/secret/x"), (vars::ALLOW, "ssm:/app/*")]);
    assert_eq!(errs[0].var, vars::ENV);
    assert!(errs[0].problem.contains("ssm:/secret/x"), "{}", errs[0].problem);
}

#[test]
fn roles_carry_the_external_id_and_a_session_name_naming_the_function() {
    let c = Config::from_env(&env(&[])).expect("valid");
    assert_eq!(c.roles.external_id, None);
    assert_eq!(c.roles.session_name, "secrets-sidecar", "standalone");
    let c = Config::from_env(&env(&[
        (vars::ROLE_EXTERNAL_ID, "team-7:prod/reader"),
        (vars::LAMBDA_FUNCTION_NAME, "weather-api"),
    ]))
    .expect("valid");
    assert_eq!(c.roles.external_id.as_deref(), Some("team-7:prod/reader"));
    assert_eq!(c.roles.session_name, "weather-api");
    assert_eq!(c.backend_settings().roles, c.roles);
    assert!(
        !format!("{:?}", c.roles).contains("team-7"),
        "Debug hides the external id"
    );
    // STS's characters and length, whatever the environment says.
    let long = "f".repeat(100);
    let c = Config::from_env(&env(&[(vars::LAMBDA_FUNCTION_NAME, &long)])).expect("valid");
    assert_eq!(c.roles.session_name.len(), 64);
    let c = Config::from_env(&env(&[(vars::LAMBDA_FUNCTION_NAME, "my fn/v2")])).expect("valid");
    assert_eq!(c.roles.session_name, "my-fn-v2");
    let c = Config::from_env(&env(&[(vars::LAMBDA_FUNCTION_NAME, "f")])).expect("valid");
    assert_eq!(c.roles.session_name, "secrets-sidecar", "STS wants two characters");
}

#[test]
fn an_external_id_sts_would_refuse_is_an_error_that_does_not_echo_it() {
    for bad in ["x", "has space", "semi;colon", &"e".repeat(1225)] {
        let errs = errors_of(&[(vars::ROLE_EXTERNAL_ID, bad)]);
        assert_eq!(errs[0].var, vars::ROLE_EXTERNAL_ID, "{bad}");
        assert!(!errs[0].problem.contains(bad), "{}", errs[0].problem);
    }
}

/// An [`Env`] that answers from a map and remembers every name it was asked for:
/// what `Config` really reads, whatever the `vars` list says.
struct Recording {
    values: HashMap<String, String>,
    asked: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Env for Recording {
    fn get(&self, name: &str) -> Result<Option<String>, NotUnicode> {
        self.asked.borrow_mut().insert(name.to_owned());
        Ok(self.values.get(name).cloned())
    }
}

/// Every variable `Config::from_env` asks for, over configurations that reach each
/// conditional read: nothing set (fallbacks such as `AWS_LAMBDA_LOG_LEVEL` are read
/// only when the primary is unset), everything set, and mappings with an allowlist
/// (the consistency checks).
fn variables_config_reads() -> std::collections::BTreeSet<String> {
    let configurations: [&[(&str, &str)]; 3] = [
        &[],
        &[
            (vars::CACHE_ENABLED, "true"),
            (vars::CACHE_SIZE, "10"),
            (vars::HTTP_PORT, "2774"),
            (vars::LOG_LEVEL, "debug"),
            (vars::LAMBDA_LOG_FORMAT, "JSON"),
            (vars::MAX_CONNECTIONS, "4"),
            (vars::SM_TTL, "60"),
            (vars::SSM_TTL, "60"),
            (vars::SM_TIMEOUT, "1000"),
            (vars::SSM_TIMEOUT, "1000"),
            (vars::PREFETCH, "secretsmanager:app/db"),
            (vars::REQUIRED, "ssm:/app/key"),
            (vars::ALLOW, "app/* /app/*"),
            (vars::MAX_STALE, "60"),
            (vars::REFRESH_AHEAD, "0.5"),
            (vars::INIT_TIMEOUT, "1000"),
            (vars::MAX_CLIENT_CONNECTIONS, "10"),
            (vars::REFRESH_NOW_INTERVAL, "10"),
            (vars::NEGATIVE_TTL, "1"),
            (vars::FLEET_SPREAD, "off"),
            (vars::ROLE_EXTERNAL_ID, "team-7"),
            (vars::LAMBDA_FUNCTION_NAME, "weather"),
            (vars::ENV, "DB=secretsmanager:app/db"),
            (vars::FILES, "/tmp/db.json=secretsmanager:app/db"),
            (vars::EMF, "true"),
        ],
        &[
            (vars::LAMBDA_LOG_LEVEL, "DEBUG"),
            (vars::ENV, "DB=secretsmanager:other/db"),
            (vars::FILES, "/tmp/x=ssm:/other/x"),
            (vars::ALLOW, "app/*"),
        ],
    ];
    let mut asked = std::collections::BTreeSet::new();
    for values in configurations {
        let env = Recording {
            values: env(values),
            asked: Default::default(),
        };
        // Valid or not, every read happens: errors are collected, never short-circuited.
        let _ = Config::from_env(&env);
        asked.extend(env.asked.into_inner());
    }
    asked
}

/// The `` `NAME` `` in the first column of each row of the marked table in
/// docs/configuration.md (between `<!-- config:variables -->` and its closing marker).
fn variables_documented(page: &str) -> Result<Vec<String>, String> {
    let (open, close) = ("<!-- config:variables -->", "<!-- /config:variables -->");
    let start = page.find(open).ok_or(format!("{open} missing"))? + open.len();
    let end = start + page[start..].find(close).ok_or(format!("{close} missing"))?;
    let mut names = Vec::new();
    for line in page[start..end].lines().map(str::trim).filter(|l| l.starts_with('|')) {
        let first = line.trim_matches('|').split('|').next().unwrap_or("").trim();
        if first.chars().all(|c| c == '-' || c == ':' || c == ' ') || first == "variable" {
            continue; // the separator and the header
        }
        let name = first
            .strip_prefix('`')
            .and_then(|n| n.strip_suffix('`'))
            .filter(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .ok_or(format!("first column is not one `NAME`: {line}"))?;
        names.push(name.to_owned());
    }
    Ok(names)
}

/// The documented set and the set `Config` reads, compared both ways.
fn drift(read: &std::collections::BTreeSet<String>, page: &str) -> Result<(), String> {
    let documented = variables_documented(page)?;
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in &documented {
        if !seen.insert(name.clone()) {
            problems.push(format!("{name} is listed twice"));
        }
        if !read.contains(name) {
            problems.push(format!("{name} is documented but Config does not read it"));
        }
    }
    for name in read.iter().filter(|n| !seen.contains(*n)) {
        problems.push(format!(
            "{name} is read by Config but missing from docs/configuration.md"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn the_configuration_reference_lists_exactly_what_config_reads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let read = variables_config_reads();
    assert!(read.len() > 20, "the recording saw too little: {read:?}");
    if let Err(problems) = drift(&read, &page) {
        panic!("docs/configuration.md and Config disagree:\n{problems}");
    }
}

#[test]
fn the_drift_check_catches_a_missing_and_an_extra_row() {
    let read: std::collections::BTreeSet<String> = ["A_VAR", "B_VAR"].map(String::from).into();
    let page = |rows: &str| {
        format!("<!-- config:variables -->\n| variable | default |\n| --- | --- |\n{rows}<!-- /config:variables -->\n")
    };
    assert!(drift(&read, &page("| `A_VAR` | 1 |\n| `B_VAR` | 2 |\n")).is_ok());
    let missing = drift(&read, &page("| `A_VAR` | 1 |\n")).expect_err("B_VAR is missing");
    assert!(missing.contains("B_VAR is read by Config"), "{missing}");
    let extra = drift(&read, &page("| `A_VAR` | 1 |\n| `B_VAR` | 2 |\n| `C_VAR` | 3 |\n")).expect_err("C_VAR is extra");
    assert!(extra.contains("C_VAR is documented"), "{extra}");
    assert!(drift(&read, "no table").is_err(), "an unmarked page fails");
    assert!(
        drift(&read, &page("| A_VAR, B_VAR | 1 |\n")).is_err(),
        "one name per row"
    );
}

#[test]
fn the_byte_budget_follows_the_function_memory_unless_set() {
    let budget = |pairs: &[(&str, &str)]| Config::from_env(&env(pairs)).expect("valid").cache_bytes;
    assert_eq!(budget(&[]), 64 << 20, "standalone: a fixed default");
    assert_eq!(budget(&[(vars::LAMBDA_MEMORY_SIZE, "128")]), 8 << 20);
    assert_eq!(budget(&[(vars::LAMBDA_MEMORY_SIZE, "1024")]), 64 << 20);
    assert_eq!(budget(&[(vars::LAMBDA_MEMORY_SIZE, "10240")]), 256 << 20, "capped");
    assert_eq!(
        budget(&[(vars::LAMBDA_MEMORY_SIZE, "1")]),
        64 << 10,
        "at least one largest secret"
    );
    let set = [(vars::LAMBDA_MEMORY_SIZE, "128"), (vars::CACHE_BYTES, "32MiB")];
    assert_eq!(budget(&set), 32 << 20, "the override wins");
    assert_eq!(budget(&[(vars::CACHE_BYTES, "100000")]), 100_000);
    assert_eq!(budget(&[(vars::CACHE_BYTES, "64 kib")]), 64 << 10);
    assert_eq!(budget(&[(vars::CACHE_BYTES, "2GiB")]), 2 << 30);
}

#[test]
fn a_function_with_less_than_a_vcpu_runs_one_thread_unless_told_otherwise() {
    let threads = |pairs: &[(&str, &str)], platform| {
        let c = Config::from_env(&env(pairs)).expect("valid");
        // The rule itself, with the machine's CPUs held at 4 so the test says the same anywhere.
        c.worker_threads
            .unwrap_or_else(|| default_worker_threads(platform, c.function_memory_mb, 4))
    };
    let small = [(vars::LAMBDA_MEMORY_SIZE, "128")];
    assert_eq!(threads(&small, Platform::OnDemand), 1);
    assert_eq!(threads(&small, Platform::Provisioned), 1);
    assert_eq!(threads(&small, Platform::SnapStart), 1);
    assert_eq!(threads(&[(vars::LAMBDA_MEMORY_SIZE, "1768")], Platform::OnDemand), 1);
    assert_eq!(
        threads(&[(vars::LAMBDA_MEMORY_SIZE, "1769")], Platform::OnDemand),
        2,
        "one whole vCPU"
    );
    assert_eq!(
        threads(&small, Platform::ManagedInstances),
        2,
        "whole vCPUs, many invokes"
    );
    assert_eq!(threads(&[], Platform::Standalone), 2);
    assert_eq!(
        default_worker_threads(Platform::Standalone, None, 1),
        1,
        "never more than the CPUs"
    );
    assert_eq!(
        default_worker_threads(Platform::OnDemand, None, 8),
        2,
        "at most two by default"
    );
    let set = [(vars::LAMBDA_MEMORY_SIZE, "128"), (vars::WORKER_THREADS, "3")];
    assert_eq!(threads(&set, Platform::OnDemand), 3, "the variable wins");
    assert_eq!(threads(&[(vars::WORKER_THREADS, "1")], Platform::Standalone), 1);
    for bad in ["0", "65", "two", "-1"] {
        let errs = errors_of(&[(vars::WORKER_THREADS, bad)]);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert_eq!(errs[0].var, vars::WORKER_THREADS);
        assert!(
            errs[0].problem.contains("1") && errs[0].problem.contains("64"),
            "{}",
            errs[0].problem
        );
    }
}

#[test]
fn a_bad_byte_budget_or_memory_size_is_named_with_its_range() {
    for bad in ["0", "1000", "8MB", "-1", "1.5MiB", "MiB", "99999999999GiB"] {
        let errs = errors_of(&[(vars::CACHE_BYTES, bad)]);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert_eq!(errs[0].var, vars::CACHE_BYTES);
        assert!(errs[0].problem.contains("KiB, MiB or GiB"), "{}", errs[0].problem);
        if bad.len() > 4 {
            assert!(!errs[0].problem.contains(bad), "the value is not echoed");
        }
    }
    let errs = errors_of(&[(vars::LAMBDA_MEMORY_SIZE, "lots")]);
    assert_eq!(errs[0].var, vars::LAMBDA_MEMORY_SIZE);
}

#[test]
fn the_tenant_role_needs_a_template_to_say_which_secrets_are_the_tenants() {
    let role = "arn:aws:iam::111122223333:role/tenant-{tenant}";
    let c = Config::from_env(&env(&[
        (vars::PREFETCH, "secretsmanager:tenants/{tenant}/db"),
        (vars::TENANT_ROLE, role),
        (vars::TENANT_TAG_KEY, "TenantId"),
    ]))
    .expect("valid");
    let r = c.tenant_role.expect("a tenant role");
    assert_eq!(r.tag_key(), "TenantId");
    let c = Config::from_env(&env(&[
        (vars::ALLOW, "secretsmanager:tenants/{tenant}/*"),
        (vars::TENANT_ROLE, "arn:aws:iam::111122223333:role/tenants"),
    ]))
    .expect("one role for all tenants, keyed on the tag");
    assert_eq!(c.tenant_role.expect("role").tag_key(), "tenant", "the default key");

    for (pairs, var, want) in [
        (
            vec![(vars::TENANT_ROLE, role)],
            vars::TENANT_ROLE,
            "no {tenant} template",
        ),
        (
            vec![
                (vars::ALLOW, "role:arn:aws:iam::1:role/t-{tenant}"),
                (vars::TENANT_ROLE, role),
            ],
            vars::TENANT_ROLE,
            "no {tenant} template",
        ),
        (
            vec![
                (vars::PREFETCH, "secretsmanager:t/{tenant}"),
                (vars::TENANT_ROLE, "arn:aws:iam::{tenant}:role/r"),
            ],
            vars::TENANT_ROLE,
            "12-digit",
        ),
        (
            vec![
                (vars::PREFETCH, "secretsmanager:t/{tenant}"),
                (vars::TENANT_ROLE, role),
                (vars::TENANT_TAG_KEY, "aws:x"),
            ],
            vars::TENANT_TAG_KEY,
            "reserved",
        ),
        (
            vec![(vars::TENANT_TAG_KEY, "tenant")],
            vars::TENANT_TAG_KEY,
            "only with",
        ),
    ] {
        let errs = errors_of(&pairs);
        let e = errs
            .iter()
            .find(|e| e.var == var)
            .unwrap_or_else(|| panic!("{pairs:?}: {errs:?}"));
        assert!(e.problem.contains(want), "{pairs:?}: {}", e.problem);
    }
}

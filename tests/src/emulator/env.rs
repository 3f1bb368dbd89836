//! Lambda's environment variables for the runtime and (a reduced set) for extensions,
//! as each mode sets them:
//!
//! - every mode: `AWS_LAMBDA_INITIALIZATION_TYPE` ([`Mode::initialization_type`]) for
//!   runtime and extensions;
//! - SnapStart: no `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//!   instead `AWS_CONTAINER_CREDENTIALS_FULL_URI` (the emulator's
//!   `/2021-04-23/credentials`) and `AWS_CONTAINER_AUTHORIZATION_TOKEN`; `TMPDIR` is the
//!   environment's own `/tmp`, which the snapshot scans;
//! - Managed Instances (as AWS's emulator, `rapidcore/env/environment.go`):
//!   `AWS_LAMBDA_MAX_CONCURRENCY` for the runtime only, `/var/lang` paths, and the
//!   function's variables may not override Lambda's own or start with `_`.

use std::path::Path;

use super::config::{FunctionConfig, Runtime};
use super::modes::Mode;

/// Variables the runtime sees and extensions do not.
const RUNTIME_ONLY: &[&str] = &[
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "AWS_LAMBDA_MAX_CONCURRENCY",
];

/// Lambda's own variables that a function's configuration may override on Managed
/// Instances (every other reserved one is dropped from the function's variables).
const OVERRIDABLE: &[&str] = &[
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "LANG",
    "LD_LIBRARY_PATH",
    "PATH",
    "TZ",
];

/// Where the environment's services are: the Runtime API (`host:port`), the log
/// stream, and the environment's `/tmp`.
pub struct Place<'a> {
    pub runtime_api: &'a str,
    pub stream: &'a str,
    pub tmp: &'a Path,
}

/// The container credentials endpoint on the Runtime API's port (as in AWS's emulator).
pub fn credentials_uri(runtime_api: &str) -> String {
    format!("http://{runtime_api}/2021-04-23/credentials")
}

/// The runtime's environment: Lambda's reserved variables, then the function's own.
pub fn runtime_env(cfg: &FunctionConfig, place: &Place) -> Vec<(String, String)> {
    let legacy = cfg.quirks.legacy_env;
    let mode = cfg.mode;
    let task_root = cfg
        .bootstrap
        .parent()
        .unwrap_or_else(|| Path::new("/var/task"))
        .display()
        .to_string();
    let runtime_dir = "/var/runtime".to_owned();
    let (lang_bin, lang_lib) = if mode.is_managed() && !legacy {
        ("/var/lang/bin:", "/var/lang/lib:")
    } else {
        ("", "")
    };
    let mut env: Vec<(String, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), place.runtime_api.into()),
        ("_HANDLER".into(), cfg.handler.clone()),
        ("AWS_REGION".into(), cfg.region.clone()),
        ("AWS_DEFAULT_REGION".into(), cfg.region.clone()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), cfg.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), cfg.memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
    ];
    if !legacy {
        env.push((
            "AWS_LAMBDA_INITIALIZATION_TYPE".into(),
            mode.initialization_type().into(),
        ));
    }
    env.extend([
        ("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/{}", cfg.name)),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), place.stream.into()),
    ]);
    if mode == Mode::SnapStart && !legacy {
        env.extend([
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                credentials_uri(place.runtime_api),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), cfg.container_token.clone()),
            ("TMPDIR".into(), place.tmp.display().to_string()),
        ]);
    } else {
        env.extend([
            ("AWS_ACCESS_KEY_ID".into(), cfg.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), cfg.secret_access_key.clone()),
            ("AWS_SESSION_TOKEN".into(), cfg.session_token.clone()),
        ]);
    }
    if mode.is_managed() && !legacy {
        env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), mode.max_concurrency().to_string()));
    }
    if let Runtime::Managed { id, .. } = &cfg.runtime {
        env.push(("AWS_EXECUTION_ENV".into(), format!("AWS_Lambda_{id}")));
    }
    env.extend([
        ("LAMBDA_TASK_ROOT".into(), task_root.clone()),
        ("LAMBDA_RUNTIME_DIR".into(), runtime_dir.clone()),
        ("TZ".into(), ":UTC".into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        (
            "PATH".into(),
            format!("{lang_bin}/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
        ),
        (
            "LD_LIBRARY_PATH".into(),
            format!("{lang_lib}/lib64:/usr/lib64:{runtime_dir}:{runtime_dir}/lib:{task_root}:{task_root}/lib:/opt/lib"),
        ),
    ]);
    let reserved: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in &cfg.env {
        if mode.is_managed() && !legacy && !customer_may_set(k, &reserved) {
            continue;
        }
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Managed Instances: whether a function variable survives (AWS's emulator drops
/// `_`-prefixed ones and Lambda's own, except the overridable few).
fn customer_may_set(key: &str, reserved: &[String]) -> bool {
    !key.starts_with('_') && (!reserved.iter().any(|r| r == key) || OVERRIDABLE.contains(&key))
}

/// The extensions' environment: the runtime's minus the runtime-only variables.
pub fn extension_env(cfg: &FunctionConfig, place: &Place) -> Vec<(String, String)> {
    runtime_env(cfg, place)
        .into_iter()
        .filter(|(k, _)| !RUNTIME_ONLY.contains(&k.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place<'static> {
        Place {
            runtime_api: "127.0.0.1:9001",
            stream: "s",
            tmp: Path::new("/tmp/env"),
        }
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn has(env: &[(String, String)], k: &str) -> bool {
        get(env, k).is_some()
    }

    #[test]
    fn extensions_get_the_reduced_set() {
        let cfg = FunctionConfig::new("f", "/task/bootstrap").env("CUSTOM", "1");
        let place = place();
        let rt = runtime_env(&cfg, &place);
        let ext = extension_env(&cfg, &place);
        for k in [
            "_HANDLER",
            "LAMBDA_TASK_ROOT",
            "LAMBDA_RUNTIME_DIR",
            "AWS_LAMBDA_LOG_GROUP_NAME",
        ] {
            assert!(has(&rt, k) && !has(&ext, k), "{k}");
        }
        for k in [
            "AWS_LAMBDA_RUNTIME_API",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "CUSTOM",
            "AWS_LAMBDA_FUNCTION_NAME",
        ] {
            assert!(has(&rt, k) && has(&ext, k), "{k}");
        }
        let api = rt
            .iter()
            .find(|(k, _)| k == "AWS_LAMBDA_RUNTIME_API")
            .map(|(_, v)| v.as_str());
        assert_eq!(api, Some("127.0.0.1:9001"), "host:port, no scheme");
    }

    #[test]
    fn each_mode_sets_its_variables() {
        let place = place();
        for mode in [
            Mode::OnDemand,
            Mode::Provisioned,
            Mode::SnapStart,
            Mode::managed_instances(3),
        ] {
            let cfg = FunctionConfig::new("f", "/task/bootstrap").mode(mode);
            let (rt, ext) = (runtime_env(&cfg, &place), extension_env(&cfg, &place));
            for env in [&rt, &ext] {
                assert_eq!(
                    get(env, "AWS_LAMBDA_INITIALIZATION_TYPE"),
                    Some(mode.initialization_type())
                );
                let snap = mode == Mode::SnapStart;
                assert_eq!(has(env, "AWS_SESSION_TOKEN"), !snap, "{mode}");
                assert_eq!(has(env, "AWS_ACCESS_KEY_ID"), !snap, "{mode}");
                assert_eq!(get(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN").is_some(), snap, "{mode}");
                assert_eq!(
                    get(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
                    snap.then_some("http://127.0.0.1:9001/2021-04-23/credentials")
                );
                assert!(!has(&ext, "AWS_LAMBDA_MAX_CONCURRENCY"));
            }
            let concurrency = get(&rt, "AWS_LAMBDA_MAX_CONCURRENCY");
            assert_eq!(concurrency, mode.is_managed().then_some("3"), "{mode}");
        }
    }

    #[test]
    fn managed_instances_keep_lambdas_own_variables() {
        let cfg = FunctionConfig::new("f", "/task/bootstrap")
            .mode(Mode::managed_instances(2))
            .env("AWS_LAMBDA_MAX_CONCURRENCY", "99")
            .env("_PRIVATE", "1")
            .env("AWS_LAMBDA_LOG_LEVEL", "debug")
            .env("CUSTOM", "1");
        let rt = runtime_env(&cfg, &place());
        assert_eq!(get(&rt, "AWS_LAMBDA_MAX_CONCURRENCY"), Some("2"));
        assert!(!has(&rt, "_PRIVATE"));
        assert_eq!(get(&rt, "AWS_LAMBDA_LOG_LEVEL"), Some("debug"));
        assert_eq!(get(&rt, "CUSTOM"), Some("1"));
        // On demand the function's configuration is taken as it is (today's behaviour).
        let cfg = FunctionConfig::new("f", "/task/bootstrap").env("_PRIVATE", "1");
        assert!(has(&runtime_env(&cfg, &place()), "_PRIVATE"));
    }
}

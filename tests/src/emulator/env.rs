//! Lambda's environment variables for the runtime and (a reduced set) for extensions.

use std::path::Path;

use super::config::FunctionConfig;

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
];

/// The runtime's environment: Lambda's reserved variables, then the function's own.
pub fn runtime_env(cfg: &FunctionConfig, runtime_api: &str, stream: &str) -> Vec<(String, String)> {
    let task_root = cfg
        .bootstrap
        .parent()
        .unwrap_or_else(|| Path::new("/var/task"))
        .display()
        .to_string();
    let runtime_dir = "/var/runtime".to_owned();
    let mut env: Vec<(String, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), runtime_api.into()),
        ("_HANDLER".into(), cfg.handler.clone()),
        ("AWS_REGION".into(), cfg.region.clone()),
        ("AWS_DEFAULT_REGION".into(), cfg.region.clone()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), cfg.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), cfg.memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/{}", cfg.name)),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), stream.into()),
        ("AWS_ACCESS_KEY_ID".into(), cfg.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), cfg.secret_access_key.clone()),
        ("AWS_SESSION_TOKEN".into(), cfg.session_token.clone()),
        ("LAMBDA_TASK_ROOT".into(), task_root.clone()),
        ("LAMBDA_RUNTIME_DIR".into(), runtime_dir.clone()),
        ("TZ".into(), ":UTC".into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        ("PATH".into(), "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
        (
            "LD_LIBRARY_PATH".into(),
            format!("/lib64:/usr/lib64:{runtime_dir}:{runtime_dir}/lib:{task_root}:{task_root}/lib:/opt/lib"),
        ),
    ];
    for (k, v) in &cfg.env {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// The extensions' environment: the runtime's minus the runtime-only variables.
pub fn extension_env(cfg: &FunctionConfig, runtime_api: &str, stream: &str) -> Vec<(String, String)> {
    runtime_env(cfg, runtime_api, stream)
        .into_iter()
        .filter(|(k, _)| !RUNTIME_ONLY.contains(&k.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_get_the_reduced_set() {
        let cfg = FunctionConfig::new("f", "/task/bootstrap").env("CUSTOM", "1");
        let rt = runtime_env(&cfg, "127.0.0.1:9001", "s");
        let ext = extension_env(&cfg, "127.0.0.1:9001", "s");
        let has = |env: &[(String, String)], k: &str| env.iter().any(|(key, _)| key == k);
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
}

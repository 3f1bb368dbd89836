//! Names of every variable we read, so tests and docs cannot drift from the code.

pub const CACHE_ENABLED: &str = "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED";
pub const CACHE_SIZE: &str = "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE";
pub const CACHE_BYTES: &str = "SECRETS_SIDECAR_CACHE_BYTES";
pub const HTTP_PORT: &str = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT";
pub const LOG_LEVEL: &str = "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL";
pub const MAX_CONNECTIONS: &str = "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS";
pub const SM_TTL: &str = "SECRETS_MANAGER_TTL";
pub const SSM_TTL: &str = "SSM_PARAMETER_STORE_TTL";
pub const SM_TIMEOUT: &str = "SECRETS_MANAGER_TIMEOUT_MILLIS";
pub const SSM_TIMEOUT: &str = "SSM_PARAMETER_STORE_TIMEOUT_MILLIS";
pub const PREFETCH: &str = "SECRETS_SIDECAR_PREFETCH";
pub const ALLOW: &str = "SECRETS_SIDECAR_ALLOW";
pub const REQUIRED: &str = "SECRETS_SIDECAR_REQUIRED";
pub const MAX_STALE: &str = "SECRETS_SIDECAR_MAX_STALE";
pub const REFRESH_AHEAD: &str = "SECRETS_SIDECAR_REFRESH_AHEAD";
pub const INIT_TIMEOUT: &str = "SECRETS_SIDECAR_INIT_TIMEOUT_MILLIS";
pub const MAX_CLIENT_CONNECTIONS: &str = "SECRETS_SIDECAR_MAX_CLIENT_CONNECTIONS";
pub const REFRESH_NOW_INTERVAL: &str = "SECRETS_SIDECAR_REFRESH_NOW_INTERVAL_MILLIS";
pub const NEGATIVE_TTL: &str = "SECRETS_SIDECAR_NEGATIVE_TTL";
pub const FLEET_SPREAD: &str = "SECRETS_SIDECAR_FLEET_SPREAD";
pub const ROLE_EXTERNAL_ID: &str = "SECRETS_SIDECAR_ROLE_EXTERNAL_ID";
pub const TOKEN: &str = "SECRETS_SIDECAR_TOKEN";
pub const ENV: &str = "SECRETS_SIDECAR_ENV";
pub const FILES: &str = "SECRETS_SIDECAR_FILES";
pub const EXEC_WRAPPER_NEXT: &str = "SECRETS_SIDECAR_EXEC_WRAPPER_NEXT";
pub const EMF: &str = "SECRETS_SIDECAR_EMF";
pub const LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
pub const LAMBDA_LOG_FORMAT: &str = "AWS_LAMBDA_LOG_FORMAT";
/// Names the STS session of an assumed role.
pub const LAMBDA_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// Set: Lambda mode (`host:port` of the runtime API); unset: standalone.
pub const LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
/// Which Lambda platform (`on-demand` when unset).
pub const LAMBDA_INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
/// The function's memory in MB, which sizes the cache's default byte budget.
pub const LAMBDA_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

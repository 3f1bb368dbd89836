//! What an execution environment is made of: the function, its layer's extensions,
//! its configuration, the platform it runs on ([`Mode`]), and (for contract tests
//! only) deliberate deviations from Lambda's behaviour that show each contract test
//! can fail.

use std::path::PathBuf;
use std::time::Duration;

use super::modes::Mode;

/// Which runtime the function uses, which decides how its process starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// An OS-only runtime (`provided.al2023`): Lambda runs the task root's
    /// `bootstrap` as it is and ignores `AWS_LAMBDA_EXEC_WRAPPER`.
    Custom,
    /// A managed runtime (`nodejs20.x`, `python3.11`, …): its bootstrap starts
    /// `command` (the language's interpreter and Lambda's runtime client), through
    /// `AWS_LAMBDA_EXEC_WRAPPER` when the function sets one, with the command line
    /// as the wrapper's arguments. `bootstrap` then only names the task root.
    Managed { id: String, command: Vec<String> },
}

#[derive(Clone, Debug)]
pub struct FunctionConfig {
    pub name: String,
    /// The runtime executable (`bootstrap` in the task root); for a managed
    /// runtime, a file in the task root.
    pub bootstrap: PathBuf,
    pub runtime: Runtime,
    /// A layer-like `extensions/` folder: every executable in it is started.
    pub extensions_dir: Option<PathBuf>,
    /// The function configuration's environment variables.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub region: String,
    pub handler: String,
    pub account_id: String,
    /// Freeze processes between invokes (SIGSTOP/SIGCONT). Off only for debugging.
    /// Managed Instances never freeze, whatever this says.
    pub freeze: bool,
    /// The platform: on demand unless a test says otherwise.
    pub mode: Mode,
    /// Overrides the mode's init limit ([`Mode::init_limit`]).
    pub init_timeout: Option<Duration>,
    /// The role's credentials: in the environment as `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or (SnapStart) served by the
    /// container credentials endpoint.
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// SnapStart's `AWS_CONTAINER_AUTHORIZATION_TOKEN` (a UUID, as Lambda's).
    pub container_token: String,
    /// SnapStart: the test may rotate the credentials the container credentials
    /// endpoint hands out (`Emulator::rotate_credentials`). Off by default.
    pub rotating_credentials: bool,
    /// Tenant isolation (`TenancyConfig.TenantIsolationMode = PER_TENANT`): every
    /// invoke names a tenant (`Emulator::invoke_for_tenant`), an environment serves
    /// the tenant of its first invoke for its whole life, and the runtime's `next`
    /// carries `Lambda-Runtime-Aws-Tenant-Id`. Off by default.
    pub tenant_isolation: bool,
    /// The classic Runtime Interface Emulator's Telemetry API: a stub answering every
    /// subscription 202 `Telemetry.NotSupported` (and delivering nothing). Off by
    /// default: the Telemetry API is served as Lambda serves it (`telemetry.rs`).
    pub telemetry_stub: bool,
    pub quirks: Quirks,
}

impl FunctionConfig {
    pub fn new(name: &str, bootstrap: impl Into<PathBuf>) -> Self {
        FunctionConfig {
            name: name.to_owned(),
            bootstrap: bootstrap.into(),
            runtime: Runtime::Custom,
            extensions_dir: None,
            env: Vec::new(),
            timeout: Duration::from_secs(3),
            memory_mb: 128,
            region: "us-east-1".to_owned(),
            handler: "bootstrap".to_owned(),
            account_id: "123456789012".to_owned(),
            freeze: true,
            mode: Mode::OnDemand,
            init_timeout: None,
            access_key_id: "ASIALOCALEMULATOR".to_owned(),
            secret_access_key: "local-emulator-secret-key".to_owned(),
            session_token: format!("local-emulator-session-{}", uuid::Uuid::new_v4().simple()),
            container_token: uuid::Uuid::new_v4().to_string(),
            rotating_credentials: false,
            tenant_isolation: false,
            telemetry_stub: false,
            quirks: Quirks::default(),
        }
    }

    pub fn extensions(mut self, dir: impl Into<PathBuf>) -> Self {
        self.extensions_dir = Some(dir.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A managed runtime `id` (e.g. `nodejs20.x`) starting `command`.
    pub fn managed_runtime(mut self, id: &str, command: &[&str]) -> Self {
        self.runtime = Runtime::Managed {
            id: id.to_owned(),
            command: command.iter().map(|c| (*c).to_owned()).collect(),
        };
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn freeze(mut self, on: bool) -> Self {
        self.freeze = on;
        self
    }

    pub fn quirks(mut self, q: Quirks) -> Self {
        self.quirks = q;
        self
    }

    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The role's credentials (moto accepts any; a test may want fixed ones).
    pub fn credentials(mut self, access_key_id: &str, secret_access_key: &str, session_token: &str) -> Self {
        self.access_key_id = access_key_id.to_owned();
        self.secret_access_key = secret_access_key.to_owned();
        self.session_token = session_token.to_owned();
        self
    }

    /// Lets the test rotate the credentials of the container credentials endpoint
    /// (SnapStart; `credentials.rs`).
    pub fn rotating_credentials(mut self) -> Self {
        self.rotating_credentials = true;
        self
    }

    /// Turns tenant isolation on (`PER_TENANT`).
    pub fn tenant_isolation(mut self) -> Self {
        self.tenant_isolation = true;
        self
    }

    /// Serves the classic emulator's Telemetry API stub instead of the Telemetry API.
    pub fn telemetry_stub(mut self) -> Self {
        self.telemetry_stub = true;
        self
    }

    /// How long init may take: the override, or the mode's limit.
    pub fn init_limit(&self) -> Duration {
        self.init_timeout.unwrap_or_else(|| self.mode.init_limit(self.timeout))
    }

    /// Whether processes are frozen between invokes in this configuration.
    pub fn freezes(&self) -> bool {
        self.freeze && (self.mode.freezes() || self.quirks.managed_freezes)
    }

    /// How many invokes may be in flight at once.
    pub fn max_concurrency(&self) -> usize {
        if self.quirks.managed_one_at_a_time {
            1
        } else {
            self.mode.max_concurrency()
        }
    }

    pub fn function_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}

/// Deliberately wrong behaviours. Lambda does none of these; each contract test
/// turns one on to show that its check catches the violation.
#[derive(Clone, Debug)]
pub struct Quirks {
    /// Start the runtime without waiting for the extensions to register.
    pub runtime_before_registration: bool,
    /// Accept registrations after the runtime's first `next`.
    pub late_registration: bool,
    /// How many extensions may register (Lambda: 10).
    pub max_extensions: usize,
    /// Release the runtime's event before the extensions' INVOKE.
    pub runtime_first: bool,
    /// Added to the deadline sent to extensions.
    pub extension_deadline_skew_ms: i64,
    /// Start invoke N+1 without waiting for the extensions' `next`.
    pub no_hold: bool,
    /// SHUTDOWN deadline, from delivery (Lambda: 2000 ms).
    pub shutdown_deadline: Duration,
    /// Leave extensions alive past the SHUTDOWN deadline.
    pub no_kill: bool,
    /// Ignore init/error, exit/error and crashed extensions.
    pub ignore_extension_failures: bool,
    /// Let an extension call `next` after its SHUTDOWN unremarked (Lambda's own
    /// emulator notices: "failed to transition to EXITED").
    pub ignore_next_after_shutdown: bool,
    /// The classic emulator's environment in every mode: no
    /// `AWS_LAMBDA_INITIALIZATION_TYPE`, the session token instead of container
    /// credentials, no `AWS_LAMBDA_MAX_CONCURRENCY`.
    pub legacy_env: bool,
    /// Managed Instances: accept registrations for INVOKE (Lambda: 403).
    pub managed_accepts_invoke: bool,
    /// Managed Instances: one invoke at a time (Lambda: `AWS_LAMBDA_MAX_CONCURRENCY`).
    pub managed_one_at_a_time: bool,
    /// Managed Instances: freeze between invokes as on demand (Lambda never does).
    pub managed_freezes: bool,
    /// SnapStart: take the snapshot without looking into memory or `/tmp`.
    pub blind_snapshot: bool,
    /// SnapStart: answer `restore/next` at once instead of at the restore.
    pub restore_next_at_once: bool,
    /// Tenant isolation: accept an invoke without a tenant (Lambda refuses it).
    pub tenant_optional: bool,
    /// Tenant isolation: let a warm environment serve another tenant (Lambda starts
    /// a new environment).
    pub tenants_share_environment: bool,
    /// Tenant isolation: leave `Lambda-Runtime-Aws-Tenant-Id` out of the runtime's `next`.
    pub tenant_header_missing: bool,
    /// Tenant isolation: put `tenantId` in the extensions' INVOKE event (Lambda's
    /// event has none).
    pub tenant_in_extension_event: bool,
    /// Tenant isolation: leave `tenantId` out of the telemetry records.
    pub telemetry_drops_tenant: bool,
    /// Without tenant isolation: an empty tenant header and `"tenantId": ""` in the
    /// telemetry records (Lambda omits both when there is no tenant).
    pub tenant_id_not_omitted: bool,
    /// Accept Telemetry API subscriptions after init (Lambda: 403 `Telemetry.SubscriptionClosed`).
    pub telemetry_open_after_init: bool,
}

impl Quirks {
    /// The defaults with `f` applied: `Quirks::with(|q| q.no_hold = true)`.
    pub fn with(f: impl FnOnce(&mut Quirks)) -> Quirks {
        let mut q = Quirks::default();
        f(&mut q);
        q
    }
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            runtime_before_registration: false,
            late_registration: false,
            max_extensions: 10,
            runtime_first: false,
            extension_deadline_skew_ms: 0,
            no_hold: false,
            shutdown_deadline: Duration::from_millis(2000),
            no_kill: false,
            ignore_extension_failures: false,
            ignore_next_after_shutdown: false,
            legacy_env: false,
            managed_accepts_invoke: false,
            managed_one_at_a_time: false,
            managed_freezes: false,
            blind_snapshot: false,
            restore_next_at_once: false,
            tenant_optional: false,
            tenants_share_environment: false,
            tenant_header_missing: false,
            tenant_in_extension_event: false,
            telemetry_drops_tenant: false,
            tenant_id_not_omitted: false,
            telemetry_open_after_init: false,
        }
    }
}

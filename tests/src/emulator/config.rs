//! What an execution environment is made of: the function, its layer's extensions,
//! its configuration, and (for contract tests only) deliberate deviations from
//! Lambda's behaviour that show each contract test can fail.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct FunctionConfig {
    pub name: String,
    /// The runtime executable (`bootstrap` in the task root).
    pub bootstrap: PathBuf,
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
    pub freeze: bool,
    pub init_timeout: Duration,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub quirks: Quirks,
}

impl FunctionConfig {
    pub fn new(name: &str, bootstrap: impl Into<PathBuf>) -> Self {
        FunctionConfig {
            name: name.to_owned(),
            bootstrap: bootstrap.into(),
            extensions_dir: None,
            env: Vec::new(),
            timeout: Duration::from_secs(3),
            memory_mb: 128,
            region: "us-east-1".to_owned(),
            handler: "bootstrap".to_owned(),
            account_id: "123456789012".to_owned(),
            freeze: true,
            init_timeout: Duration::from_secs(10),
            access_key_id: "ASIALOCALEMULATOR".to_owned(),
            secret_access_key: "local-emulator-secret-key".to_owned(),
            session_token: format!("local-emulator-session-{}", uuid::Uuid::new_v4().simple()),
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
        }
    }
}

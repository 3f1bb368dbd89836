//! Start-up and shutdown shared by both modes: build the layers on a bound listener,
//! serve, prefetch within the init budget, refresh ahead, stop within a deadline.
//!
//! `lambda` drives these from the Extensions API (INVOKE, SHUTDOWN, init/error) as
//! its platform allows (`extensions_api` is the client, `snapstart` the snapshot
//! and restore); `standalone` from a timer and SIGTERM/SIGINT. `limits` sizes the
//! client connection cap. [`Running`] owns every task it starts (`tasks`: the server, the
//! refresher, the restore) and stops them all before it wipes the cache. After
//! each refresh-ahead pass it brings the `SECRETS_SIDECAR_FILES` up to date
//! (`crate::files`) and, when due, writes an EMF metrics line (`crate::metrics::emf`); at
//! the stop it removes the files and writes the last line.

pub mod extensions_api;
pub mod lambda;
pub mod limits;
mod snapstart;
pub mod standalone;
mod tasks;
pub mod telemetry;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::aws::AwsUpstream;
use crate::backend::CallStats;
use crate::cache::{Cache, Overflow, Plan, Report};
use crate::config::{vars, Config, Platform};
use crate::files::Files;
use crate::metrics::emf::{self, Emf};
use crate::model::SecretRef;
use crate::server::gate::Gate;
use crate::server::{self, App, Limits};
use crate::tenant::{State, Tenancy};
use crate::token::Token;
use tasks::Tasks;

/// Longest pause between timer-driven refresh-ahead passes (entries added by
/// requests are picked up at the next pass).
const REFRESH_TICK: Duration = Duration::from_secs(1);
/// Longest timer-driven refresh-ahead pass.
const REFRESH_BUDGET: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A started sidecar: serving, with its prefetch possibly still running.
pub struct Running {
    pub app: Arc<App>,
    pub config: Config,
    pub platform: Platform,
    upstream: Arc<AwsUpstream>,
    shutdown: CancellationToken,
    /// The server, the refresher (when a timer drives refresh-ahead) and the
    /// SnapStart restore: stopped together against the stop's deadline.
    tasks: Tasks,
    /// The start-up prefetch, registered before the first accept; taken by `prefetch`.
    plan: Mutex<Option<Plan>>,
    /// Held by every refresh-ahead pass, timer or INVOKE: `stop` takes it, so no
    /// pass is still running when the cache is wiped.
    refreshing: tokio::sync::Mutex<()>,
    /// SnapStart: set once the restore has run (the first INVOKE waits for it).
    restored: tokio::sync::OnceCell<()>,
    /// `SECRETS_SIDECAR_FILES`, when any.
    files: Option<Files>,
    /// `SECRETS_SIDECAR_EMF=true`.
    emf: Option<Emf>,
    /// `{tenant}` templates in the configuration, and the tenant they resolve for.
    pub tenancy: Option<Arc<Tenancy>>,
    /// Set once the templated PREFETCH entries have been fetched for the tenant.
    tenant_prefetched: tokio::sync::OnceCell<()>,
}

impl Running {
    /// Builds the upstream clients and the cache, and starts serving on `listener`.
    /// Under SnapStart nothing is connected or planned yet (see `snapstart`).
    pub async fn start(config: Config, token: Token, listener: TcpListener, platform: Platform) -> Arc<Running> {
        let snapshot = !platform.fetches_during_init();
        crate::cache::set_spread(config.fleet_spread);
        let calls = Arc::new(CallStats::default());
        let backend = config.backend_settings();
        for (var, url) in &config.endpoints.ignored {
            warn!(
                variable = var,
                %url,
                "ignored for the sidecar's own calls: it names this sidecar (set SECRETS_SIDECAR_UPSTREAM_ENDPOINT to point the sidecar elsewhere)"
            );
        }
        let upstream = Arc::new(AwsUpstream::from_environment(backend, calls.clone()));
        if !snapshot {
            upstream.connect().await;
        }
        // One allowlist for the cache, the server and the tenancy: binding the
        // tenant resolves its templates in every copy.
        let allow = config.allow.clone();
        // The session tag cell is the backend's (shared through its settings' clone).
        let tenancy = Tenancy::plan(
            &config.prefetch,
            allow.as_ref(),
            config.tenant_role.as_ref(),
            &config.roles.tenant,
        )
        .map(Arc::new);
        let mut settings = config.cache_settings();
        settings.allow = allow.clone();
        settings.tenancy = tenancy.clone();
        let cache = Cache::new(settings, upstream.clone());
        let gate = if snapshot { Gate::for_snapshot() } else { Gate::open() };
        let app = App::new(cache, token, allow, calls, gate);
        if let Some(t) = &tenancy {
            app.set_tenancy(t.clone());
        }
        // The SDK route verifies with, and forwards through, the same clients' credentials.
        app.set_passthrough(upstream.clone());
        let shutdown = CancellationToken::new();
        let wanted = config
            .max_client_connections
            .map_or_else(|| limits::default_client_connections(platform), |n| n.get());
        let cap = limits::fit_to_open_files(wanted, limits::raise_open_files());
        if cap < wanted {
            warn!(wanted, cap, "client connection cap lowered to fit the open-file limit");
        }
        // Before serving: a request during INIT must find its key already in flight.
        let plan = (!snapshot).then(|| app.cache.plan_prefetch(&config.startup_refs()));
        let tasks = Tasks::default();
        tasks.add(
            "server",
            tokio::spawn(server::serve(listener, app.clone(), shutdown.clone(), Limits::new(cap))),
        );
        let files = Files::new(config.files.clone());
        let emf = config.emf.then(|| {
            // Standalone there is no function: the dimension still needs a value.
            let function = config.function_name.clone().unwrap_or_else(|| "standalone".to_owned());
            Emf::new(function, config.log_format, Instant::now())
        });
        Arc::new(Running {
            app,
            config,
            platform,
            upstream,
            shutdown,
            tasks,
            plan: Mutex::new(plan),
            refreshing: tokio::sync::Mutex::new(()),
            restored: tokio::sync::OnceCell::new(),
            files,
            emf,
            tenancy,
            tenant_prefetched: tokio::sync::OnceCell::new(),
        })
    }

    /// An INVOKE in an environment with `{tenant}` templates: waits (until the
    /// invoke's deadline) for Lambda's word on the tenant, then fetches the
    /// templated PREFETCH entries once. `Err`: the templates can never resolve here
    /// (no tenant, an unusable one, a conflict); the caller reports it to Lambda.
    pub async fn bind_tenant(&self, deadline_ms: u64) -> Result<(), String> {
        let Some(tenancy) = &self.tenancy else {
            return Ok(());
        };
        tenancy.set_invoke_deadline(deadline_ms);
        let budget = until_deadline(deadline_ms, Duration::from_millis(100), self.config.init_timeout);
        match tenancy.binding().wait(Instant::now() + budget).await {
            State::Tenant(_) => {}
            State::Unbound => {
                warn!("no tenant from Lambda by the invoke's deadline; templated ids wait for it");
                return Ok(());
            }
            State::NoTenant => {
                return Err(
                    "{tenant} templates are configured, but Lambda reported an invoke without a tenant: \
                            the function is not in tenant isolation mode"
                        .to_owned(),
                )
            }
            other => {
                return Err(format!(
                    "the tenant Lambda reported cannot resolve {{tenant}}: {other:?}"
                ))
            }
        }
        if !tenancy.prefetches() {
            return Ok(());
        }
        self.tenant_prefetched
            .get_or_init(|| async {
                let refs = tenancy.prefetch();
                // Under the tenant's role, when one is configured.
                let plan = self.app.cache.plan_prefetch_in(&tenancy.scope(), &refs);
                let report = self.app.cache.prefetch(plan, Instant::now() + budget).await;
                let missing = report.missing(&refs);
                if !missing.is_empty() {
                    let ids: Vec<String> = missing.iter().map(|(r, why)| format!("{r}: {why}")).collect();
                    warn!(missing = %ids.join("; "), "templated prefetch incomplete");
                }
                self.sync_files().await;
            })
            .await;
        Ok(())
    }

    /// INIT's work: the prefetch (under SnapStart, only metadata checks of REQUIRED).
    pub async fn init(&self) -> Result<(), StartupFailure> {
        if !self.platform.fetches_during_init() {
            return StartupFailure::check(self.check_required_metadata().await, None);
        }
        self.prefetch().await
    }

    /// Runs the start-up prefetch within the init budget and marks the sidecar
    /// ready. Fails when a REQUIRED reference is not available or what was
    /// prefetched does not fit the cache's bounds.
    pub async fn prefetch(&self) -> Result<(), StartupFailure> {
        let plan = lock(&self.plan).take();
        let deadline = Instant::now() + self.config.init_timeout;
        let report = match plan {
            Some(plan) => self.app.cache.prefetch(plan, deadline).await,
            None => Report::default(),
        };
        self.app.set_ready();
        self.sync_files().await;
        StartupFailure::check(report.missing(&self.config.required), self.app.cache.overflow())
    }

    /// Rewrites the mapped files whose value has a new version (all, the first time).
    async fn sync_files(&self) {
        if let Some(files) = &self.files {
            files.sync(&self.app.cache).await;
        }
    }

    /// Writes an EMF line if one is due (at most one a minute).
    fn report_metrics(&self) {
        if let Some(emf) = &self.emf {
            if let Some(line) = emf.tick(self.app.snapshot().totals(), Instant::now()) {
                emf::emit(&line);
            }
        }
    }

    /// One refresh-ahead pass within `budget` (Lambda: on INVOKE, before the next
    /// `event/next`). Skipped once stopping.
    pub async fn refresh(&self, budget: Duration) {
        let _pass = self.refreshing.lock().await;
        if !self.shutdown.is_cancelled() {
            self.app.cache.refresh_due(budget).await;
            // Files follow the cache, never lead it: a pass that brought a new
            // version is what rewrites them.
            if !self.shutdown.is_cancelled() {
                self.sync_files().await;
            }
        }
        self.report_metrics();
    }

    /// Starts refresh-ahead on a timer (standalone, where nothing else wakes the
    /// sidecar): it sleeps until the earliest refresh point, at most a tick.
    pub fn start_refresh_timer(self: &Arc<Self>) {
        let running = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let tick = Instant::now() + REFRESH_TICK;
                let next = running.app.cache.next_refresh_at().map_or(tick, |t| t.min(tick));
                tokio::select! {
                    () = running.shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(next) => {}
                }
                running.refresh(REFRESH_BUDGET).await;
            }
        });
        self.tasks.add("refresher", task);
    }

    /// Stops accepting, cancels upstream work, stops the refresher, drains
    /// connections, wipes every cached value and logs one summary line, all within
    /// `budget`: one deadline that every step waits against, so a step that ends
    /// early leaves its time to the next and none has a share fixed in advance.
    pub async fn stop(&self, budget: Duration) {
        let deadline = Instant::now() + budget;
        self.shutdown.cancel();
        // Cancels fetches and batches (a refresh pass or a restore in progress then
        // ends at once) and waits for them: nothing stores a value after this.
        self.app.cache.shutdown(deadline).await;
        self.tasks.stop(deadline).await;
        if tokio::time::timeout_at(deadline, self.refreshing.lock()).await.is_err() {
            warn!("a refresh-ahead pass did not stop in time");
        }
        if let Some(files) = &self.files {
            files.remove_all();
        }
        if let Some(emf) = &self.emf {
            emf::emit(&emf.flush(self.app.snapshot().totals(), Instant::now()));
        }
        self.app.cache.wipe();
        info!(summary = %self.app.snapshot().summary(), "stopped");
    }

    /// A task stopped with the others (`tasks`).
    pub fn own_task(&self, name: &'static str, task: tokio::task::JoinHandle<()>) {
        self.tasks.add(name, task);
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Binds the loopback listener on the configured port.
pub async fn bind(config: &Config) -> Result<TcpListener, String> {
    server::bind(config.http_port)
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", config.http_port))
}

/// Time left until an epoch-milliseconds deadline, less `margin`, at most `cap`.
pub fn until_deadline(deadline_ms: u64, margin: Duration, cap: Duration) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
        .saturating_sub(margin)
        .min(cap)
}

/// One line naming each unavailable REQUIRED reference and why.
/// Why start-up failed, as INIT reports it (`init/error`) and standalone prints it.
#[derive(Debug)]
pub enum StartupFailure {
    /// REQUIRED references not available, with why.
    Missing(Vec<(SecretRef, String)>),
    /// The prefetch does not fit the cache's bounds (prefetched entries are never evicted).
    Overflow(Overflow),
}

impl StartupFailure {
    /// Missing REQUIRED references first: they say what to fix upstream.
    pub(super) fn check(missing: Vec<(SecretRef, String)>, overflow: Option<Overflow>) -> Result<(), StartupFailure> {
        match (missing.is_empty(), overflow) {
            (false, _) => Err(StartupFailure::Missing(missing)),
            (true, Some(o)) => Err(StartupFailure::Overflow(o)),
            (true, None) => Ok(()),
        }
    }

    /// The `Lambda-Extension-Function-Error-Type` posted with `init/error`.
    pub fn error_type(&self) -> &'static str {
        match self {
            StartupFailure::Missing(_) => "Extension.RequiredSecretUnavailable",
            StartupFailure::Overflow(_) => "Extension.CacheBudgetExceeded",
        }
    }
}

impl std::fmt::Display for StartupFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartupFailure::Missing(missing) => {
                let items: Vec<String> = missing.iter().map(|(r, why)| format!("{r}: {why}")).collect();
                write!(f, "required secrets unavailable at start-up: {}", items.join("; "))
            }
            StartupFailure::Overflow(o) => write!(
                f,
                "the prefetch does not fit the cache: it holds {} bytes in {} entries, the budget is \
                 {} bytes ({}; by default 1/{} of {}) and {} entries ({}); prefetched entries are \
                 never evicted, so raise the budget or prefetch less",
                o.bytes,
                o.entries,
                o.budget,
                vars::CACHE_BYTES,
                crate::config::BUDGET_SHARE_OF_MEMORY,
                vars::LAMBDA_MEMORY_SIZE,
                o.capacity,
                vars::CACHE_SIZE,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
        let d = until_deadline(now_ms + 2000, Duration::from_millis(200), Duration::from_secs(10));
        assert!(
            d <= Duration::from_millis(1800) && d > Duration::from_millis(1500),
            "{d:?}"
        );
        assert_eq!(
            until_deadline(now_ms + 2000, Duration::ZERO, Duration::from_millis(5)),
            Duration::from_millis(5)
        );
        assert_eq!(
            until_deadline(now_ms - 1000, Duration::ZERO, Duration::from_secs(1)),
            Duration::ZERO
        );
    }
}

//! The local harness for secrets-sidecar: everything a test needs on 127.0.0.1,
//! started and stopped by the test itself, every wait bounded.
//!
//! - `venv`: the project's Python venv with pinned moto (created on first use);
//! - `emulator`: a local Lambda execution environment (Runtime and Extensions APIs,
//!   real processes, freezing, timeouts, shutdown) with RIE and API-Gateway front doors.
//!   Lambda's rules live one per file: `emulator/init.rs` (extensions register before
//!   the runtime starts; init on demand), `emulator/invoke.rs` (INVOKE to extensions
//!   before the runtime; invoke N+1 waits until every process is back in `next`;
//!   freeze between invokes), `emulator/shutdown.rs` (SIGTERM + 300 ms for the
//!   runtime, SHUTDOWN + 2 s for extensions, then SIGKILL; resets after a timeout or a
//!   failure); the platforms (`emulator/modes.rs`: on demand, provisioned concurrency,
//!   SnapStart with its snapshot scan and restore, Managed Instances with concurrent
//!   invokes); `emulator/mod.rs` maps them;
//! - `probes`: emulators over the probe extension and runtime, for contract tests;
//! - `extensions_api`: a scripted Lambda Extensions API for one extension;
//! - `fakes`: fake weather providers (Dark Sky-compatible, OpenWeatherMap, HERE) and a fake sidecar;
//! - `layer`: layer-like extension folders and task roots for the emulator;
//! - `moto`: a moto server on a free port, with helpers to seed secrets and parameters;
//! - `proxy`: a fault-injecting proxy between the sidecar and moto that counts calls by API
//!   and can enforce AWS-shaped request quotas (token buckets, `ThrottlingException`);
//! - `sdk_function`: the article's second approach (a Node.js function calling the AWS
//!   SDK on every invoke) in the emulator, through the sidecar or straight to AWS;
//! - `sidecar`: the real `secrets-sidecar` binary in standalone mode;
//! - `process`: child processes killed on drop (panics included), logs captured;
//! - `net`: the one HTTP accept loop every server above runs on (`net::serve`; a
//!   server stops, connections and all, when its handle is dropped), free ports, a
//!   small HTTP client, bounded polling;
//! - `bins`: where the project's binaries are;
//! - `world`: the whole product wired together (moto, proxy, fakes, emulator, sidecar, function).

pub mod bins;
pub mod emulator;
pub mod extensions_api;
pub mod fakes;
pub mod layer;
pub mod moto;
pub mod net;
pub mod probes;
pub mod process;
pub mod proxy;
pub mod sdk_function;
pub mod sidecar;
pub mod venv;
pub mod world;

//! Probe environments for the emulator's contract tests: an emulator over a layer of
//! probe extensions (`bin/probe-extension.rs`, one entry per name with its own
//! settings) and the probe runtime (`bin/probe-runtime.rs`), plus readers for what the
//! probes printed and what the trace recorded.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::emulator::{Emulator, FunctionConfig, Trace, TraceEvent};
use crate::layer::{Layer, TaskRoot};

/// Where the probe binaries are (a test passes `env!("CARGO_BIN_EXE_probe-…")`).
#[derive(Clone, Copy, Debug)]
pub struct ProbeBins {
    pub extension: &'static str,
    pub runtime: &'static str,
}

/// One probe extension: its name and settings.
pub type Probe<'a> = (&'a str, &'a [(&'a str, &'a str)]);

/// A running emulator over probes; the layer and task root live as long as it does.
pub struct ProbeEnv {
    pub emulator: Emulator,
    _layer: Layer,
    _task: TaskRoot,
}

impl ProbeEnv {
    /// The emulator over probe extensions `exts` and the probe runtime with
    /// settings `runtime_env`; `cfg` adjusts the function configuration.
    pub async fn start(
        bins: ProbeBins,
        exts: &[Probe<'_>],
        runtime_env: &[(&str, &str)],
        cfg: impl FnOnce(FunctionConfig) -> FunctionConfig,
    ) -> Result<ProbeEnv> {
        let layer = Layer::new()?;
        for (name, env) in exts {
            layer.add(name, Path::new(bins.extension), env)?;
        }
        let task = TaskRoot::new(Path::new(bins.runtime), runtime_env)?;
        let config = cfg(FunctionConfig::new("contract", task.bootstrap()).extensions(layer.extensions()));
        Ok(ProbeEnv {
            emulator: Emulator::start(config).await?,
            _layer: layer,
            _task: task,
        })
    }

    /// The JSON lines probe `probe` printed (`runtime` for the runtime).
    pub fn lines(&self, probe: &str) -> Vec<Value> {
        probe_lines(&self.emulator, probe)
    }

    /// The first line probe `probe` printed with `what`.
    pub fn line(&self, probe: &str, what: &str) -> Option<Value> {
        self.lines(probe).into_iter().find(|l| l["what"] == what)
    }

    /// Ticks (`PROBE_TICK_MS`) probe `probe` printed during the first idle spell
    /// ([`Emulator::idle`]), with a 50 ms margin for a tick already on its way.
    pub fn ticks_while_idle(&self, probe: &str) -> Result<usize, String> {
        let trace = self.emulator.trace();
        let mark = |what: Trace| trace.iter().find(|t| t.what == what).map(|t| t.epoch_ms);
        let from = mark(Trace::IdleStarted).ok_or("no idle spell")?;
        let to = mark(Trace::IdleEnded).ok_or("the idle spell never ended")?;
        Ok(self
            .lines(probe)
            .iter()
            .filter_map(|l| (l["what"] == "tick").then(|| l["epoch_ms"].as_u64()).flatten())
            .filter(|&t| t > from + 50 && t < to)
            .count())
    }
}

/// The JSON lines a probe printed.
pub fn probe_lines(emulator: &Emulator, probe: &str) -> Vec<Value> {
    let prefix = format!("[{probe}] ");
    emulator
        .logs()
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix).and_then(|j| serde_json::from_str(j).ok()))
        .collect()
}

/// Where in the trace the first event satisfying `pred` is.
pub fn position(trace: &[TraceEvent], pred: impl Fn(&Trace) -> bool) -> Option<usize> {
    trace.iter().position(|t| pred(&t.what))
}

//! Layer-like folders for the emulator: an `extensions/` directory whose entries are
//! started as external extensions. Each entry is a small wrapper script that sets its
//! own environment and execs the real binary under the entry's name, so one probe
//! binary can play several differently behaving extensions.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

pub struct Layer {
    dir: tempfile::TempDir,
}

impl Layer {
    pub fn new() -> Result<Layer> {
        let dir = tempfile::Builder::new().prefix("layer-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("extensions"))?;
        Ok(Layer { dir })
    }

    /// The folder to give the emulator (Lambda's `/opt/extensions`).
    pub fn extensions(&self) -> PathBuf {
        self.dir.path().join("extensions")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Adds `extensions/<name>` running `binary` with extra environment `env`.
    pub fn add(&self, name: &str, binary: &Path, env: &[(&str, &str)]) -> Result<PathBuf> {
        let mut script = String::from("#!/bin/bash\n");
        for (k, v) in env {
            script.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
        }
        // exec -a keeps this entry's name as argv[0], which the extension registers under.
        script.push_str(&format!("exec -a \"$0\" '{}' \"$@\"\n", binary.display()));
        let path = self.extensions().join(name);
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }

    /// Adds the exec wrapper at the layer's root (Lambda's `/opt/secrets-sidecar-exec`)
    /// as a copy of `binary`; returns its path, for `AWS_LAMBDA_EXEC_WRAPPER`.
    pub fn add_wrapper(&self, binary: &Path) -> Result<PathBuf> {
        let path = self.root().join("secrets-sidecar-exec");
        std::fs::copy(binary, &path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }

    /// Adds `extensions/<name>` as a copy of `binary` (exactly what a layer zip holds).
    pub fn add_binary(&self, name: &str, binary: &Path) -> Result<PathBuf> {
        let path = self.extensions().join(name);
        std::fs::copy(binary, &path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }
}

/// A task root holding `bootstrap` (a wrapper script like the layer's entries).
pub struct TaskRoot {
    dir: tempfile::TempDir,
}

impl TaskRoot {
    pub fn new(binary: &Path, env: &[(&str, &str)]) -> Result<TaskRoot> {
        let dir = tempfile::Builder::new().prefix("task-").tempdir()?;
        let mut script = String::from("#!/bin/bash\n");
        for (k, v) in env {
            script.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
        }
        script.push_str(&format!("exec '{}' \"$@\"\n", binary.display()));
        let path = dir.path().join("bootstrap");
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(TaskRoot { dir })
    }

    /// A task root holding a copy of `binary` as `bootstrap` (what a function zip holds).
    pub fn copy_of(binary: &Path) -> Result<TaskRoot> {
        let dir = tempfile::Builder::new().prefix("task-").tempdir()?;
        let path = dir.path().join("bootstrap");
        std::fs::copy(binary, &path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(TaskRoot { dir })
    }

    pub fn bootstrap(&self) -> PathBuf {
        self.dir.path().join("bootstrap")
    }
}

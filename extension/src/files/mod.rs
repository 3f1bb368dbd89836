//! `SECRETS_SIDECAR_FILES`: secret values kept in files under `/tmp` for code that
//! reads a credentials file rather than making an HTTP call.
//!
//! The exec wrapper writes each file before the runtime starts (`crate::exec`). The
//! sidecar then keeps them current: after each refresh-ahead pass (INVOKE, or the
//! timer under Managed Instances and standalone) it asks the cache for every mapped
//! key, as any request would, and rewrites a file whose value came back with a
//! version other than the one it last wrote; at SHUTDOWN it removes them. Under
//! SnapStart nothing is written before the restore (`/tmp` is in the snapshot).
//! Every write is atomic and refuses symlinks (`write`). Logs name paths, ids and
//! versions, never values.

pub mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::{info, warn};

use crate::backend::Value;
use crate::cache::{Cache, Freshness, Key};
use crate::mapping::FileMapping;

/// The mapped files and the version each was last written with.
pub struct Files {
    mappings: Vec<FileMapping>,
    written: Mutex<HashMap<PathBuf, Arc<str>>>,
}

/// What a file holds for `mapping`: the whole value, or one field of a JSON value.
/// `None` when the field is missing or the value is not a JSON object.
pub fn contents(value: &Value, field: Option<&str>) -> Option<Bytes> {
    match field {
        None => Some(value.raw()),
        Some(f) => value.json_field(f).ok().flatten(),
    }
}

impl Files {
    /// `None` when nothing is mapped.
    pub fn new(mappings: Vec<FileMapping>) -> Option<Files> {
        (!mappings.is_empty()).then(|| Files {
            mappings,
            written: Mutex::new(HashMap::new()),
        })
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<str>>> {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes every file whose value has a version other than the one last written
    /// (all of them, the first time). A value that cannot be had now leaves its
    /// file as it is: the next pass tries again.
    pub async fn sync(&self, cache: &Cache) {
        for m in &self.mappings {
            let key = Key::current(m.reference.source(), Arc::from(m.reference.id()));
            let answer = match cache.get(&key, Freshness::Cached).await {
                Ok(a) => a,
                Err(e) => {
                    warn!(path = %m.target.display(), id = %m.reference, error = %e, "file not refreshed");
                    continue;
                }
            };
            let version = answer.value.version.clone();
            if self.written().get(&m.target) == Some(&version) {
                continue;
            }
            let Some(bytes) = contents(&answer.value, m.field.as_deref()) else {
                warn!(path = %m.target.display(), id = %m.reference, "file not written: the field is not in the value");
                continue;
            };
            let path = m.target.clone();
            let outcome = tokio::task::spawn_blocking(move || write::write_atomic(&path, &bytes)).await;
            match outcome {
                Ok(Ok(())) => {
                    info!(path = %m.target.display(), id = %m.reference, version = %version, "file written");
                    self.written().insert(m.target.clone(), version);
                }
                Ok(Err(e)) => warn!(path = %m.target.display(), error = %e, "file not written"),
                Err(e) => warn!(path = %m.target.display(), error = %e, "file write task failed"),
            }
        }
    }

    /// Removes every mapped file (SHUTDOWN).
    pub fn remove_all(&self) {
        for m in &self.mappings {
            match write::remove(&m.target) {
                Ok(()) => {}
                Err(e) => warn!(path = %m.target.display(), error = %e, "file not removed"),
            }
        }
        self.written().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::cache::CacheSettings;
    use crate::mapping::parse_files;
    use std::time::Duration;

    #[tokio::test]
    async fn rewrites_only_on_a_new_version_and_removes_at_the_end() {
        let dir = format!("/tmp/secrets-sidecar-files-{}", std::process::id());
        let _ = std::fs::remove_dir_all(&dir);
        let fake = Arc::new(FakeUpstream::new());
        fake.put_secret("app/db", r#"{"url":"postgres://one"}"#);
        let cache = Cache::new(CacheSettings::for_tests(10, Duration::from_secs(60)), fake.clone());
        let mappings = parse_files(&format!(
            "{dir}/db.json=secretsmanager:app/db {dir}/url=secretsmanager:app/db#url"
        ))
        .expect("mappings");
        let files = Files::new(mappings).expect("some");
        files.sync(&cache).await;
        let (whole, url) = (
            PathBuf::from(format!("{dir}/db.json")),
            PathBuf::from(format!("{dir}/url")),
        );
        assert_eq!(std::fs::read(&url).expect("url"), b"postgres://one");
        assert_eq!(std::fs::read(&whole).expect("whole"), br#"{"url":"postgres://one"}"#);
        // Same version: the file is left alone (same inode).
        let inode = |p: &PathBuf| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("stat"));
        let before = inode(&url);
        files.sync(&cache).await;
        assert_eq!(inode(&url), before);
        // A new version reaches the cache: the next pass rewrites the file.
        fake.put_secret("app/db", r#"{"url":"postgres://two"}"#);
        let key = Key::current(crate::model::Source::SecretsManager, Arc::from("app/db"));
        cache.get(&key, Freshness::Latest).await.expect("refresh");
        files.sync(&cache).await;
        assert_eq!(std::fs::read(&url).expect("url"), b"postgres://two");
        assert_ne!(inode(&url), before);
        files.remove_all();
        assert!(!url.exists() && !whole.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

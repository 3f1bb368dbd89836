//! Writing one secret file so that no reader ever sees half of it and nobody else
//! on the machine can steer where it goes.
//!
//! The value goes into a fresh temporary file beside the target, created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` at mode 0600 (a name planted in advance, symlink or
//! not, makes the open fail instead of being followed), is flushed to disk, and is
//! renamed over the target. `rename` replaces whatever is at the target, a planted
//! symlink included, without following it, and a reader that has the old file open
//! keeps reading the old version. Missing directories are created 0700; every
//! directory between `/tmp` and the file must be a real directory (not a symlink)
//! that only its owner may write, or the write is refused.
//!
//! Standard library only: the exec wrapper uses this too.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::libc;

use crate::mapping::FILES_ROOT;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with a file holding `contents`, atomically (see the module header).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file path")),
    };
    ensure_dir(dir)?;
    let temp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let written = create_exclusive(&temp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Creates `path` for writing, mode 0600; fails if anything (a file, a symlink) is
/// already there.
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Removes the file at `path` if there is one (a symlink planted there is removed,
/// never followed).
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates `dir` (and its missing parents) mode 0700, then checks every directory
/// below `/tmp` on the way to it.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    let root = Path::new(FILES_ROOT);
    let below = dir.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not under {FILES_ROOT}", dir.display()),
        )
    })?;
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut walked = PathBuf::from(root);
    for part in below.components() {
        let Component::Normal(part) = part else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "unexpected path segment"));
        };
        walked.push(part);
        let meta = std::fs::symlink_metadata(&walked)?;
        if !meta.file_type().is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory (a symlink?)", walked.display()),
            ));
        }
        // Anyone else who may write here could swap the file for their own.
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is writable by others", walked.display()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A fresh directory under /tmp (the only place files may go), removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = PathBuf::from(format!(
                "/tmp/secrets-sidecar-write-{tag}-{}-{}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn files_0600_in_new_directories_0700() {
        let s = Scratch::new("modes");
        let file = s.0.join("a/b/db.json");
        write_atomic(&file, b"one").expect("write");
        assert_eq!(std::fs::read(&file).expect("read"), b"one");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&s.0), 0o700);
        assert_eq!(mode(&s.0.join("a/b")), 0o700);
        // Nothing but the file is left behind (no temporary files).
        let names: Vec<_> = std::fs::read_dir(s.0.join("a/b")).expect("dir").collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_rewrite_replaces_the_file_and_open_readers_keep_the_old_one() {
        let s = Scratch::new("replace");
        let file = s.0.join("k");
        write_atomic(&file, b"version-1").expect("write");
        let before = std::fs::metadata(&file).expect("stat").ino();
        let held = File::open(&file).expect("open");
        write_atomic(&file, b"version-2").expect("rewrite");
        assert_ne!(
            std::fs::metadata(&file).expect("stat").ino(),
            before,
            "a new inode: renamed, not rewritten in place"
        );
        assert_eq!(std::fs::read(&file).expect("read"), b"version-2");
        let mut old = String::new();
        io::Read::read_to_string(&mut &held, &mut old).expect("read held");
        assert_eq!(old, "version-1", "an open reader never sees a mix");
    }

    #[test]
    fn a_planted_symlink_is_replaced_never_followed() {
        let s = Scratch::new("symlink");
        std::fs::create_dir_all(&s.0).expect("dir");
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let victim = s.0.join("victim");
        std::fs::write(&victim, b"untouched").expect("victim");
        let file = s.0.join("k");
        std::os::unix::fs::symlink(&victim, &file).expect("plant");
        write_atomic(&file, b"value").expect("write");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"untouched");
        assert!(std::fs::symlink_metadata(&file).expect("stat").file_type().is_file());
        // The exclusive open itself refuses a symlink (dangling or not) at its name.
        let dangling = s.0.join("dangling");
        std::os::unix::fs::symlink(s.0.join("nowhere"), &dangling).expect("plant");
        assert!(create_exclusive(&dangling).is_err());
        assert!(
            !s.0.join("nowhere").exists(),
            "the open did not create the link's target"
        );
        std::os::unix::fs::symlink(&victim, s.0.join("to-victim")).expect("plant");
        assert!(create_exclusive(&s.0.join("to-victim")).is_err());
        assert_eq!(std::fs::read(&victim).expect("victim"), b"untouched");
    }

    #[test]
    fn a_symlinked_or_shared_directory_is_refused() {
        let s = Scratch::new("dirs");
        let elsewhere = s.0.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).expect("dir");
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::symlink(&elsewhere, s.0.join("link")).expect("plant");
        assert!(write_atomic(&s.0.join("link/k"), b"v").is_err());
        assert!(!elsewhere.join("k").exists());
        let shared = s.0.join("shared");
        std::fs::create_dir(&shared).expect("dir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(write_atomic(&shared.join("k"), b"v").is_err());
        assert!(write_atomic(Path::new("/etc/secrets-sidecar-k"), b"v").is_err());
    }

    #[test]
    fn removal_tolerates_a_missing_file() {
        let s = Scratch::new("remove");
        let file = s.0.join("k");
        write_atomic(&file, b"v").expect("write");
        remove(&file).expect("remove");
        assert!(!file.exists());
        remove(&file).expect("already gone");
    }
}

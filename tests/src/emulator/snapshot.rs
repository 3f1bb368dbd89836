//! The SnapStart snapshot scan: what a snapshot of the environment would carry.
//!
//! Lambda snapshots the memory and disk of the initialised environment and restores
//! copies of it, possibly days later and many times over; a secret fetched during
//! INIT travels with every copy. The emulator stands in for the snapshot by looking:
//! with every process stopped, it reads the writable mappings of each process of the
//! environment (`/proc/PID/maps`, then the bytes from `/proc/PID/mem`, which root may
//! read; regions that cannot be read are skipped and counted) and every file under the
//! environment's `/tmp`, for each planted value, as plain bytes and as standard base64.
//!
//! A [`Finding`] says which value (by its index in the planted list), in which form,
//! where: never the value itself, so a report can be printed and traced.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use memchr::memmem::Finder;

/// Memory is read this much at a time.
const CHUNK: usize = 1 << 20;
/// Larger files under `/tmp` are read only this far.
const MAX_FILE: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Form {
    Plain,
    Base64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// `process` is the environment's name for it and the kernel's (`name (comm)`);
    /// `mapping` the mapping's path (or `[anon]`) and address range.
    Memory {
        pid: i32,
        process: String,
        mapping: String,
    },
    File {
        path: PathBuf,
    },
}

/// Planted value number `value` (its index in the list given to the scan) in `form` at `place`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub value: usize,
    pub form: Form,
    pub place: Place,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match self.form {
            Form::Plain => "plain",
            Form::Base64 => "base64",
        };
        match &self.place {
            Place::Memory { pid, process, mapping } => write!(
                f,
                "planted value #{} ({form}) in the memory of pid {pid} {process}: {mapping}",
                self.value
            ),
            Place::File { path } => write!(f, "planted value #{} ({form}) in {}", self.value, path.display()),
        }
    }
}

/// One process as scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedProcess {
    pub pid: i32,
    pub process: String,
    /// Writable mappings read.
    pub mappings: usize,
    pub bytes: u64,
    /// Writable mappings (or the process itself) that could not be read.
    pub unreadable: usize,
}

/// What a snapshot carried of the planted values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    /// How many values were looked for.
    pub values: usize,
    pub processes: Vec<ScannedProcess>,
    /// Files read under the environment's `/tmp`.
    pub files: Vec<PathBuf>,
    /// Bytes read, memory and files.
    pub bytes: u64,
    /// Regions, processes or files that could not be read.
    pub unreadable: usize,
    pub findings: Vec<Finding>,
}

impl SnapshotReport {
    pub fn in_memory(&self) -> Vec<&Finding> {
        let memory = |f: &&Finding| matches!(f.place, Place::Memory { .. });
        self.findings.iter().filter(memory).collect()
    }

    pub fn in_files(&self) -> Vec<&Finding> {
        let file = |f: &&Finding| matches!(f.place, Place::File { .. });
        self.findings.iter().filter(file).collect()
    }
}

/// The planted values in every form, ready to search for.
pub struct Needles {
    finders: Vec<(usize, Form, Finder<'static>)>,
    longest: usize,
}

impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Needles({} forms, redacted)", self.finders.len())
    }
}

impl Needles {
    /// Each non-empty value, plain and standard base64.
    pub fn new(values: &[Vec<u8>]) -> Needles {
        let mut finders = Vec::new();
        for (i, v) in values.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v).into_bytes();
            finders.push((i, Form::Plain, Finder::new(v).into_owned()));
            finders.push((i, Form::Base64, Finder::new(&b64).into_owned()));
        }
        let longest = finders.iter().map(|(_, _, f)| f.needle().len()).max().unwrap_or(0);
        Needles { finders, longest }
    }

    fn find_in(&self, hay: &[u8]) -> Vec<(usize, Form)> {
        self.finders
            .iter()
            .filter(|(_, _, f)| f.find(hay).is_some())
            .map(|(i, form, _)| (*i, *form))
            .collect()
    }
}

/// Scans the memory of `processes` (pid, label) and the files under `tmp`.
pub fn scan(processes: &[(i32, String)], tmp: &Path, values: &[Vec<u8>]) -> SnapshotReport {
    let needles = Needles::new(values);
    let mut found = BTreeSet::new();
    let mut report = SnapshotReport {
        values: values.len(),
        ..SnapshotReport::default()
    };
    for (pid, label) in processes {
        let p = scan_process(*pid, label, &needles, &mut found);
        report.bytes += p.bytes;
        report.unreadable += p.unreadable;
        report.processes.push(p);
    }
    scan_dir(tmp, &needles, &mut report, &mut found);
    report.findings = found.into_iter().collect();
    report
}

fn scan_process(pid: i32, label: &str, needles: &Needles, found: &mut BTreeSet<Finding>) -> ScannedProcess {
    let mut out = ScannedProcess {
        pid,
        process: label.to_owned(),
        mappings: 0,
        bytes: 0,
        unreadable: 0,
    };
    let (Ok(maps), Ok(mem)) = (
        std::fs::read_to_string(format!("/proc/{pid}/maps")),
        File::open(format!("/proc/{pid}/mem")),
    ) else {
        out.unreadable += 1;
        return out;
    };
    for line in maps.lines() {
        let Some((start, end, mapping)) = writable_mapping(line) else {
            continue;
        };
        let mut record = |value, form| {
            found.insert(Finding {
                value,
                form,
                place: Place::Memory {
                    pid,
                    process: label.to_owned(),
                    mapping: mapping.clone(),
                },
            });
        };
        let (bytes, complete) = scan_region(&mem, start, end, needles, &mut record);
        out.bytes += bytes;
        out.mappings += 1;
        if !complete {
            out.unreadable += 1;
        }
    }
    out
}

/// `(start, end, label)` of a line of `/proc/PID/maps` if the mapping is writable.
fn writable_mapping(line: &str) -> Option<(u64, u64, String)> {
    let mut fields = line.split_whitespace();
    let (range, perms) = (fields.next()?, fields.next()?);
    if perms.as_bytes().get(1) != Some(&b'w') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
    // offset, device, inode; the rest (possibly with spaces) is the path.
    let path: Vec<&str> = fields.skip(3).collect();
    let path = if path.is_empty() {
        "[anon]".to_owned()
    } else {
        path.join(" ")
    };
    Some((start, end, format!("{path} {start:x}-{end:x}")))
}

/// Reads `[start, end)` of a process's memory chunk by chunk (each chunk keeps the
/// previous one's tail, so a value across the boundary is found); returns the bytes
/// read and whether the whole region could be read.
fn scan_region(
    mem: &File,
    start: u64,
    end: u64,
    needles: &Needles,
    record: &mut impl FnMut(usize, Form),
) -> (u64, bool) {
    let keep = needles.longest.saturating_sub(1);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + keep);
    let mut chunk = vec![0u8; CHUNK];
    let (mut pos, mut bytes) = (start, 0u64);
    while pos < end {
        let want = usize::try_from(end - pos).map_or(CHUNK, |left| left.min(CHUNK));
        let n = match mem.read_at(&mut chunk[..want], pos) {
            Ok(0) | Err(_) => return (bytes, false),
            Ok(n) => n,
        };
        let tail = buf.len().saturating_sub(keep);
        buf.drain(..tail);
        buf.extend_from_slice(&chunk[..n]);
        for (value, form) in needles.find_in(&buf) {
            record(value, form);
        }
        pos += n as u64;
        bytes += n as u64;
    }
    (bytes, true)
}

/// Every regular file under `dir` (symbolic links are not followed).
fn scan_dir(dir: &Path, needles: &Needles, report: &mut SnapshotReport, found: &mut BTreeSet<Finding>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => scan_dir(&path, needles, report, found),
            Ok(t) if t.is_file() => {
                let read = File::open(&path).and_then(|f| {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_FILE), &mut bytes)?;
                    Ok(bytes)
                });
                let Ok(bytes) = read else {
                    report.unreadable += 1;
                    continue;
                };
                report.bytes += bytes.len() as u64;
                for (value, form) in needles.find_in(&bytes) {
                    found.insert(Finding {
                        value,
                        form,
                        place: Place::File { path: path.clone() },
                    });
                }
                report.files.push(path);
            }
            _ => {}
        }
    }
}

/// Fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, ...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

/// Every live process in the process groups `groups` (name, pgid): each process of
/// the environment leads its own group, which holds its children too. Returns
/// (pid, `name (comm)`).
pub fn processes_in_groups(groups: &[(String, i32)]) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<(i32, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            let pgrp: i32 = fields.get(2)?.parse().ok()?;
            let zombie = fields.first().is_some_and(|s| s == "Z");
            let (name, _) = groups.iter().find(|(_, g)| *g == pgrp)?;
            (!zombie).then(|| (pid, format!("{name} ({})", comm(pid))))
        })
        .collect();
    out.sort();
    out
}

/// Whether `pid` is stopped (or gone, which counts: there is nothing left to stop).
pub fn is_stopped(pid: i32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_none_or(|state| matches!(state.as_str(), "T" | "t" | "Z" | "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_in_both_forms_across_chunks() {
        let needles = Needles::new(&[b"s3cr3t-value".to_vec(), Vec::new(), b"other".to_vec()]);
        let mut hay = vec![b'x'; CHUNK + 100];
        hay[CHUNK - 4..CHUNK + 8].copy_from_slice(b"s3cr3t-value");
        let encoded = base64::engine::general_purpose::STANDARD.encode("other");
        hay[10..10 + encoded.len()].copy_from_slice(encoded.as_bytes());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mem");
        std::fs::write(&path, &hay).expect("write");
        let file = File::open(&path).expect("open");
        let mut found = Vec::new();
        let (bytes, complete) = scan_region(&file, 0, hay.len() as u64, &needles, &mut |v, f| found.push((v, f)));
        assert!(complete && bytes == hay.len() as u64);
        found.sort();
        found.dedup();
        assert_eq!(found, [(0, Form::Plain), (2, Form::Base64)]);
        // Past the end of the file: a region that cannot be read is reported as such.
        let (_, complete) = scan_region(&file, 0, hay.len() as u64 + 10, &needles, &mut |_, _| {});
        assert!(!complete);
    }

    #[test]
    fn reads_only_writable_mappings() {
        let line = "7f00aa000000-7f00aa021000 rw-p 00000000 00:00 0 ";
        assert_eq!(
            writable_mapping(line),
            Some((
                0x7f00aa000000,
                0x7f00aa021000,
                "[anon] 7f00aa000000-7f00aa021000".into()
            ))
        );
        let heap = "55d0c0000000-55d0c0100000 rw-p 00000000 00:00 0                          [heap]";
        assert!(writable_mapping(heap).is_some_and(|(_, _, l)| l.starts_with("[heap]")));
        let text = "55d0bf000000-55d0bf100000 r-xp 00000000 08:01 1234 /usr/bin/probe";
        assert_eq!(writable_mapping(text), None);
    }

    #[test]
    fn scans_files_and_its_own_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let value = format!("planted-{}", uuid::Uuid::new_v4().simple());
        let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
        std::fs::write(dir.path().join("sub/kept"), encoded).expect("write");
        // This test process holds the value in memory: the scan of it must find it.
        let pid = i32::try_from(std::process::id()).expect("pid");
        let report = scan(&[(pid, "self".into())], dir.path(), &[value.clone().into_bytes()]);
        assert!(!report.in_memory().is_empty(), "{report:?}");
        assert_eq!(report.in_files().len(), 1, "{report:?}");
        assert_eq!(report.in_files()[0].form, Form::Base64);
        let shown = report.findings.iter().map(ToString::to_string).collect::<String>();
        assert!(!shown.contains(&value), "a finding never shows the value");
        assert!(std::hint::black_box(&value).starts_with("planted-"));
    }
}

//! Secrets for code that reads the environment or a file: the exec wrapper.
//!
//! Two entry points, one behaviour:
//! - `/opt/secrets-sidecar-exec CMD ARGS…`, named by `AWS_LAMBDA_EXEC_WRAPPER`: a
//!   managed runtime's bootstrap runs it with the runtime's own command line (Lambda
//!   honours the variable on managed runtimes only);
//! - `secrets-sidecar exec -- CMD ARGS…`, from a custom runtime's `bootstrap` script
//!   or a container's entrypoint.
//!
//! Either asks the local sidecar over HTTP (with the same token as the function,
//! and during INIT, where the sidecar answers once its prefetch has the key) for
//! each `SECRETS_SIDECAR_ENV` and `SECRETS_SIDECAR_FILES` mapping, writes the files
//! (`files::write`), sets the variables and `exec`s the command with its arguments
//! unchanged, or the next wrapper (`SECRETS_SIDECAR_EXEC_WRAPPER_NEXT`) with the
//! whole command line. Values are never in argv (so not in `/proc/PID/cmdline`) and
//! never printed. Any value unavailable fails the init (`/runtime/init/error` in
//! Lambda, then exit 1) with a message naming the variable or file and the id.
//!
//! Under SnapStart, variables set during INIT would be in the snapshot's memory, so
//! `SECRETS_SIDECAR_ENV` fails the init; files are left to the sidecar, which
//! writes them after the restore.
//!
//! Standard library, `serde_json` and `zeroize` only: the wrapper binary carries no
//! async runtime and no AWS SDK.

pub mod client;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::config::vars;
use crate::files::write::write_atomic;
use crate::mapping::{parse_env, parse_files, EnvMapping, FileMapping};
use crate::model::SecretRef;
use client::{encode, Sidecar};

/// The wrapper's file name in the layer (`/opt/secrets-sidecar-exec`); the main
/// binary behaves as the wrapper when started under this name.
pub const WRAPPER_NAME: &str = "secrets-sidecar-exec";
/// How long all the values may take: well inside Lambda's 10 s init.
const FETCH_BUDGET: Duration = Duration::from_secs(8);
const SNAPSHOT_INIT_TYPE: &str = "snap-start";

const SNAPSTART_REFUSAL: &str = "SECRETS_SIDECAR_ENV cannot be used with SnapStart: variables set during INIT \
would be saved in the snapshot (memory and disk) and restored into every copy of the environment. Read secrets \
after the restore instead, from the sidecar's HTTP API (GET http://localhost:2773/secretsmanager/get?secretId=ID \
with the X-Aws-Parameters-Secrets-Token header, in the handler or an after-restore hook), or through the AWS \
SDK with AWS_ENDPOINT_URL_SECRETS_MANAGER pointing at the sidecar. SECRETS_SIDECAR_FILES works under \
SnapStart: the sidecar writes the files after the restore.";

/// Why the runtime is not started: told to Lambda and on stderr.
struct Failure {
    error_type: &'static str,
    message: String,
}

impl Failure {
    fn new(error_type: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            error_type,
            message: message.into(),
        }
    }
}

/// `secrets-sidecar-exec CMD ARGS…`: `args` without the program's own name.
pub fn wrapper_main(args: Vec<OsString>) -> ExitCode {
    finish(run(args))
}

/// `secrets-sidecar exec [--] CMD ARGS…`: `args` after `exec`.
pub fn subcommand_main(mut args: Vec<OsString>) -> ExitCode {
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    finish(run(args))
}

/// Only reached when the command did not start.
fn finish(failure: Failure) -> ExitCode {
    eprintln!("secrets-sidecar exec: {}", failure.message);
    if let Some(api) = var("AWS_LAMBDA_RUNTIME_API") {
        if let Err(e) = post_init_error(&api, &failure) {
            eprintln!("secrets-sidecar exec: reporting the init error failed: {e}");
        }
    }
    ExitCode::FAILURE
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Sets everything up and `exec`s; returns only why it could not.
fn run(command: Vec<OsString>) -> Failure {
    if command.is_empty() {
        return Failure::new(
            "Runtime.ConfigInvalid",
            format!("no command to run: use {WRAPPER_NAME} CMD ARGS… or secrets-sidecar exec -- CMD ARGS…"),
        );
    }
    let env = match var(vars::ENV).map(|t| parse_env(&t)).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return Failure::new("Runtime.ConfigInvalid", format!("{}: {e}", vars::ENV)),
    };
    let files = match var(vars::FILES).map(|t| parse_files(&t)).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return Failure::new("Runtime.ConfigInvalid", format!("{}: {e}", vars::FILES)),
    };
    let snapshot = var("AWS_LAMBDA_INITIALIZATION_TYPE").as_deref() == Some(SNAPSHOT_INIT_TYPE);
    if snapshot && !env.is_empty() {
        return Failure::new("Runtime.SnapStartUnsupported", SNAPSTART_REFUSAL);
    }
    // Under SnapStart the sidecar writes the files after the restore.
    let files: &[FileMapping] = if snapshot { &[] } else { &files };
    let values = if env.is_empty() && files.is_empty() {
        Vec::new()
    } else {
        match fetch_all(&env, files) {
            Ok(v) => v,
            Err(f) => return f,
        }
    };
    let next = var(vars::EXEC_WRAPPER_NEXT);
    let (program, args) = match &next {
        Some(next) => (OsString::from(next), &command[..]),
        None => (command[0].clone(), &command[1..]),
    };
    let err = Command::new(&program).args(args).envs(values).exec();
    Failure::new(
        "Runtime.InvalidEntrypoint",
        format!("cannot start {}: {err}", program.to_string_lossy()),
    )
}

/// Asks the sidecar for every mapping, writes the files, and returns the variables.
fn fetch_all(env: &[EnvMapping], files: &[FileMapping]) -> Result<Vec<(String, OsString)>, Failure> {
    let port = match var(vars::HTTP_PORT) {
        None => crate::config::DEFAULT_HTTP_PORT,
        Some(p) => p.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            Failure::new(
                "Runtime.ConfigInvalid",
                format!("{}: expected a port from 1 to 65535", vars::HTTP_PORT),
            )
        })?,
    };
    let token = token().ok_or_else(|| {
        Failure::new(
            "Runtime.ConfigInvalid",
            "no token to ask the sidecar with: AWS_SESSION_TOKEN, AWS_CONTAINER_AUTHORIZATION_TOKEN \
             (or, outside Lambda, SECRETS_SIDECAR_TOKEN) is not set",
        )
    })?;
    let sidecar = Sidecar::new(port, token, FETCH_BUDGET);
    let mut out = Vec::with_capacity(env.len());
    for m in env {
        let value = fetch(&sidecar, &m.reference, m.field.as_deref())
            .map_err(|why| Failure::new("Runtime.SecretUnavailable", format!("{}: {m}: {why}", vars::ENV)))?;
        if value.contains(&0) {
            return Err(Failure::new(
                "Runtime.SecretUnavailable",
                format!(
                    "{}: {m}: the value holds a NUL byte, which no environment variable can; map it to a file ({})",
                    vars::ENV,
                    vars::FILES
                ),
            ));
        }
        // The copy handed to exec becomes the new program's environment.
        out.push((m.target.clone(), OsString::from_vec(value.to_vec())));
    }
    for m in files {
        let value = fetch(&sidecar, &m.reference, m.field.as_deref())
            .map_err(|why| Failure::new("Runtime.SecretUnavailable", format!("{}: {m}: {why}", vars::FILES)))?;
        write_atomic(&m.target, &value).map_err(|e| {
            Failure::new(
                "Runtime.SecretUnavailable",
                format!("{}: cannot write {}: {e}", vars::FILES, m.target.display()),
            )
        })?;
    }
    Ok(out)
}

/// The token the function itself would send: the session token, else (SnapStart)
/// the container credentials token; outside Lambda `SECRETS_SIDECAR_TOKEN` (a value
/// or `file:///path`) comes first, as for the sidecar.
fn token() -> Option<Zeroizing<String>> {
    let in_lambda = var("AWS_LAMBDA_RUNTIME_API").is_some();
    if !in_lambda {
        if let Some(v) = var(vars::TOKEN) {
            return match v.strip_prefix("file://") {
                Some(path) => std::fs::read_to_string(path)
                    .ok()
                    .map(|t| Zeroizing::new(t.trim().to_owned()))
                    .filter(|t| !t.is_empty()),
                None => Some(Zeroizing::new(v.trim().to_owned())),
            };
        }
    }
    let order: &[&str] = if in_lambda {
        &["AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    } else {
        &["AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_SESSION_TOKEN"]
    };
    order
        .iter()
        .find_map(|name| var(name))
        .map(|t| Zeroizing::new(t.trim().to_owned()))
}

/// The request for one value: the bare value (`raw=true`), or one field of it (`jsonKey`).
pub fn request_path(reference: &SecretRef, field: Option<&str>) -> String {
    let base = match reference {
        SecretRef::Secret(id) => format!("/secretsmanager/get?secretId={}", encode(id)),
        // Paths and tags never reach here (`mapping` refuses them); asked for as a
        // parameter, the sidecar would answer a clear not-found.
        SecretRef::Parameter(id) | SecretRef::Path(id) | SecretRef::Tag(id) => {
            format!("/systemsmanager/parameters/get?name={}&withDecryption=true", encode(id))
        }
    };
    match field {
        Some(f) => format!("{base}&jsonKey={}", encode(f)),
        None => format!("{base}&raw=true"),
    }
}

/// One value, or why not (the sidecar's status and error code and message, which
/// name ids, never values).
fn fetch(sidecar: &Sidecar, reference: &SecretRef, field: Option<&str>) -> Result<Zeroizing<Vec<u8>>, String> {
    let response = sidecar
        .get(&request_path(reference, field))
        .map_err(|e| e.to_string())?;
    if response.status == 200 {
        return Ok(response.body);
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
        message: String,
    }
    Err(match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(e) => format!("the sidecar answered {} {}: {}", response.status, e.error, e.message),
        Err(_) => format!("the sidecar answered {}", response.status),
    })
}

/// `POST /2018-06-01/runtime/init/error`: the init fails with our message (as a
/// runtime that failed its own init would report it).
fn post_init_error(api: &str, failure: &Failure) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let body = serde_json::json!({
        "errorMessage": failure.message,
        "errorType": failure.error_type,
        "stackTrace": [],
    })
    .to_string();
    let mut stream = std::net::TcpStream::connect(api)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\nLambda-Runtime-Function-Error-Type: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        failure.error_type,
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_ask_for_the_bare_value_or_one_field() {
        assert_eq!(
            request_path(&SecretRef::Secret("app/db".into()), Some("url")),
            "/secretsmanager/get?secretId=app%2Fdb&jsonKey=url"
        );
        assert_eq!(
            request_path(&SecretRef::Parameter("/app/stripe".into()), None),
            "/systemsmanager/parameters/get?name=%2Fapp%2Fstripe&withDecryption=true&raw=true"
        );
    }

    #[test]
    fn the_snapstart_refusal_points_to_the_http_api_and_the_sdk_route() {
        for needle in [
            "SnapStart",
            "snapshot",
            "/secretsmanager/get",
            "X-Aws-Parameters-Secrets-Token",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            "SECRETS_SIDECAR_FILES",
        ] {
            assert!(SNAPSTART_REFUSAL.contains(needle), "{needle}");
        }
    }
}

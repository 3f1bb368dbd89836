//! `secrets-sidecar-exec`: the exec wrapper shipped at `/opt/secrets-sidecar-exec`
//! (`AWS_LAMBDA_EXEC_WRAPPER`). A binary of its own so that the wrapper, which runs
//! before every managed runtime start, links no async runtime and no AWS SDK;
//! the behaviour lives in `secrets_sidecar::exec`.

use std::process::ExitCode;

fn main() -> ExitCode {
    secrets_sidecar::exec::wrapper_main(std::env::args_os().skip(1).collect())
}

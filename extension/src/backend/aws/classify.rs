//! Sorting SDK errors into transient (a cached value may stand in) or definitive.

use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::backend::{ErrorKind, UpstreamError};

/// Sorts an SDK error into transient or definitive. Transport failures are
/// described by their innermost cause ("Connection refused (os error 111)"), which
/// is what an operator needs; the full chain goes to the debug log.
pub(super) fn classify<E>(err: SdkError<E, HttpResponse>) -> UpstreamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // Credentials that could not be resolved surface as a dispatch failure of the
    // call that needed them. For an assumed role the cause is STS's answer, sorted
    // like any other: a trust policy that refuses is definitive, a throttled or
    // unreachable STS transient.
    if let SdkError::DispatchFailure(_) = &err {
        if let Some(sts) = find_assume_role_error(&err) {
            let inner = sort(sts);
            return UpstreamError::new(inner.kind, format!("AssumeRole: {}", inner.detail));
        }
    }
    sort(&err)
}

fn sort<E>(err: &SdkError<E, HttpResponse>) -> UpstreamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transport = |kind: ErrorKind, what: &str| {
        tracing::debug!(error = %DisplayErrorContext(err), "upstream transport error");
        UpstreamError::new(kind, format!("{what}: {}", root_cause(err)))
    };
    match err {
        SdkError::ServiceError(ctx) => UpstreamError::from_aws_code(
            ctx.err().code(),
            Some(ctx.raw().status().as_u16()),
            ctx.err().message().unwrap_or(""),
        ),
        SdkError::TimeoutError(_) => UpstreamError::new(ErrorKind::Timeout, "upstream call timed out"),
        SdkError::DispatchFailure(d) if d.is_timeout() => transport(ErrorKind::Timeout, "upstream call timed out"),
        SdkError::DispatchFailure(_) => transport(ErrorKind::Unavailable, "cannot reach upstream"),
        SdkError::ResponseError(_) => transport(ErrorKind::Unavailable, "unreadable upstream response"),
        // Request construction failed: typically no credentials or no region.
        _ => transport(ErrorKind::AccessDenied, "cannot build the upstream request"),
    }
}

/// The STS AssumeRole error somewhere in `err`'s chain of causes, if any.
fn find_assume_role_error<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e SdkError<AssumeRoleError, HttpResponse>> {
    let mut cause = err.source();
    while let Some(c) = cause {
        if let Some(sts) = c.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return Some(sts);
        }
        cause = c.source();
    }
    None
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

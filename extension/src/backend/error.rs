//! Upstream failures sorted by what the cache should do with them.
//!
//! Transient failures (throttling, 5xx, timeouts, connection errors) let the cache
//! serve a value it already holds, marked stale, and retry with backoff. Definitive
//! answers (not found, access denied, invalid request) are the truth about the secret
//! and are passed on, never masked by an old value.

/// What went wrong, without the SDK's detail (kept for logs in `UpstreamError::detail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    AccessDenied,
    /// The request was refused as malformed or impossible (bad id format, secret
    /// scheduled for deletion, KMS decryption refused).
    Invalid,
    Throttled,
    /// 5xx, connection refused or reset, malformed response.
    Unavailable,
    Timeout,
    /// The call was abandoned: the sidecar is shutting down or its refresh budget ran out.
    Aborted,
    /// AWS answered with a secret or parameter outside `SECRETS_SIDECAR_ALLOW` (a
    /// look-alike id): the value was dropped unserved.
    NotAllowed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::NotFound,
        ErrorKind::AccessDenied,
        ErrorKind::Invalid,
        ErrorKind::Throttled,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Aborted,
        ErrorKind::NotAllowed,
    ];

    /// Whether a cached value may stand in while this lasts.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Aborted
        )
    }

    /// Stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Aborted => "aborted",
            ErrorKind::NotAllowed => "not_allowed",
        }
    }

    /// Whether the answer is worth remembering for the negative TTL: the truth about
    /// an id, which asking again within seconds will not change.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            ErrorKind::NotFound | ErrorKind::AccessDenied | ErrorKind::NotAllowed
        )
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed upstream call. `detail` is the service's error code and message (AWS
/// error messages name ids, never values) or the transport error, for the log and
/// the response body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({detail})", kind.label())]
pub struct UpstreamError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl UpstreamError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.len() > 512 {
            let mut cut = 512;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        UpstreamError { kind, detail }
    }

    pub fn aborted(why: &str) -> Self {
        UpstreamError::new(ErrorKind::Aborted, why)
    }

    /// Sorts an AWS error code (`ResourceNotFoundException`, `ThrottlingException`, …)
    /// and the HTTP status it came with.
    pub fn from_aws_code(code: Option<&str>, status: Option<u16>, message: &str) -> Self {
        let kind = match code.unwrap_or("") {
            "ResourceNotFoundException"
            | "ParameterNotFound"
            | "ParameterVersionNotFound"
            | "ParameterVersionLabelNotFound" => ErrorKind::NotFound,
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "InvalidClientTokenId"
            | "NotAuthorized" => ErrorKind::AccessDenied,
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "TooManyUpdates"
            | "LimitExceededException" => ErrorKind::Throttled,
            "InternalServiceError"
            | "InternalServerError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException" => ErrorKind::Unavailable,
            "RequestTimeout" | "RequestTimeoutException" => ErrorKind::Timeout,
            "InvalidRequestException"
            | "InvalidParameterException"
            | "ValidationException"
            | "DecryptionFailure"
            | "InvalidKeyId"
            | "InvalidNextToken"
            | "InvalidFilterKey"
            | "InvalidFilterValue"
            | "InvalidFilterOption" => ErrorKind::Invalid,
            _ => match status {
                Some(429) => ErrorKind::Throttled,
                Some(404) => ErrorKind::NotFound,
                Some(401 | 403) => ErrorKind::AccessDenied,
                Some(s) if s >= 500 => ErrorKind::Unavailable,
                Some(s) if (400..500).contains(&s) => ErrorKind::Invalid,
                _ => ErrorKind::Unavailable,
            },
        };
        let code = code.unwrap_or("UnknownError");
        UpstreamError::new(kind, format!("{code}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the cache must do with each error AWS documents for the five operations
    /// we call (and the bare statuses of errors it does not name), written out by hand
    /// from the API references rather than derived from the code under test: the
    /// kind, and whether a cached value may stand in (`true`) or the error is the
    /// truth about the secret (`false`).
    const TABLE: &[(&str, Option<u16>, ErrorKind, bool)] = &[
        ("ResourceNotFoundException", Some(400), ErrorKind::NotFound, false),
        ("ParameterNotFound", Some(400), ErrorKind::NotFound, false),
        ("ParameterVersionNotFound", Some(400), ErrorKind::NotFound, false),
        ("ParameterVersionLabelNotFound", Some(400), ErrorKind::NotFound, false),
        ("AccessDeniedException", Some(400), ErrorKind::AccessDenied, false),
        ("UnrecognizedClientException", Some(400), ErrorKind::AccessDenied, false),
        ("InvalidSignatureException", Some(400), ErrorKind::AccessDenied, false),
        ("ExpiredTokenException", Some(400), ErrorKind::AccessDenied, false),
        ("MissingAuthenticationToken", Some(403), ErrorKind::AccessDenied, false),
        ("InvalidClientTokenId", Some(403), ErrorKind::AccessDenied, false),
        ("InvalidRequestException", Some(400), ErrorKind::Invalid, false),
        ("InvalidParameterException", Some(400), ErrorKind::Invalid, false),
        ("ValidationException", Some(400), ErrorKind::Invalid, false),
        ("DecryptionFailure", Some(400), ErrorKind::Invalid, false),
        ("InvalidKeyId", Some(400), ErrorKind::Invalid, false),
        ("InvalidNextToken", Some(400), ErrorKind::Invalid, false),
        ("ThrottlingException", Some(400), ErrorKind::Throttled, true),
        ("Throttling", Some(400), ErrorKind::Throttled, true),
        ("TooManyRequestsException", Some(400), ErrorKind::Throttled, true),
        ("RequestLimitExceeded", Some(400), ErrorKind::Throttled, true),
        ("TooManyUpdates", Some(400), ErrorKind::Throttled, true),
        ("InternalServiceError", Some(500), ErrorKind::Unavailable, true),
        ("InternalServiceErrorException", Some(500), ErrorKind::Unavailable, true),
        ("InternalServerError", Some(500), ErrorKind::Unavailable, true),
        ("InternalFailure", Some(500), ErrorKind::Unavailable, true),
        ("ServiceUnavailable", Some(503), ErrorKind::Unavailable, true),
        ("RequestTimeout", Some(408), ErrorKind::Timeout, true),
        ("RequestTimeoutException", Some(408), ErrorKind::Timeout, true),
        // Codes nobody documents yet: the status decides.
        ("SomethingNew", Some(429), ErrorKind::Throttled, true),
        ("SomethingNew", Some(500), ErrorKind::Unavailable, true),
        ("SomethingNew", Some(503), ErrorKind::Unavailable, true),
        ("SomethingNew", Some(404), ErrorKind::NotFound, false),
        ("SomethingNew", Some(403), ErrorKind::AccessDenied, false),
        ("SomethingNew", Some(401), ErrorKind::AccessDenied, false),
        ("SomethingNew", Some(400), ErrorKind::Invalid, false),
        ("SomethingNew", None, ErrorKind::Unavailable, true),
    ];

    #[test]
    fn aws_errors_are_sorted_as_the_table_says() {
        for &(code, status, kind, transient) in TABLE {
            let e = UpstreamError::from_aws_code(Some(code), status, "m");
            assert_eq!(e.kind, kind, "{code} {status:?}");
            assert_eq!(e.kind.is_transient(), transient, "{code} {status:?}: transient?");
            assert!(e.detail.starts_with(code), "the detail names the code: {}", e.detail);
        }
    }

    #[test]
    fn abandoned_calls_are_transient() {
        // A call cut off by shutdown or a spent refresh budget says nothing about the
        // secret: the cached value must keep being served.
        assert!(UpstreamError::aborted("closing").kind.is_transient());
        assert!(ErrorKind::Timeout.is_transient());
    }

    #[test]
    fn long_details_are_cut_on_a_char_boundary() {
        let e = UpstreamError::new(ErrorKind::Invalid, "é".repeat(400));
        assert!(e.detail.len() <= 512);
    }

    #[test]
    fn kind_indexes_are_dense() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}

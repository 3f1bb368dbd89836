//! Upstream failures sorted by what the cache should do with them.
//!
//! Transient failures (throttling, 5xx, timeouts, connection errors) let the cache
//! serve a value it already holds, marked stale, and retry with backoff. Definitive
//! answers (not found, access denied, invalid request) are the truth about the secret
//! and are passed on, never masked by an old value.

use std::fmt;

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
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::NotFound,
        ErrorKind::AccessDenied,
        ErrorKind::Invalid,
        ErrorKind::Throttled,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Aborted,
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
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed upstream call. `detail` is the service's error code and message (AWS
/// error messages name ids, never values) or the transport error, for the log and
/// the response body.
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind.label(), self.detail)
    }
}

impl std::error::Error for UpstreamError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_codes_are_sorted() {
        let k = |code: &str, status| UpstreamError::from_aws_code(Some(code), status, "m").kind;
        assert_eq!(k("ResourceNotFoundException", Some(400)), ErrorKind::NotFound);
        assert_eq!(k("ParameterNotFound", Some(400)), ErrorKind::NotFound);
        assert_eq!(k("ParameterVersionNotFound", Some(400)), ErrorKind::NotFound);
        assert_eq!(k("AccessDeniedException", Some(400)), ErrorKind::AccessDenied);
        assert_eq!(k("ThrottlingException", Some(400)), ErrorKind::Throttled);
        assert_eq!(k("InternalServiceError", Some(500)), ErrorKind::Unavailable);
        assert_eq!(k("DecryptionFailure", Some(400)), ErrorKind::Invalid);
        assert_eq!(k("SomethingNew", Some(503)), ErrorKind::Unavailable);
        assert_eq!(k("SomethingNew", Some(429)), ErrorKind::Throttled);
        assert_eq!(k("SomethingNew", Some(400)), ErrorKind::Invalid);
    }

    #[test]
    fn transient_versus_definitive() {
        for kind in ErrorKind::ALL {
            let expected = matches!(
                kind,
                ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Aborted
            );
            assert_eq!(kind.is_transient(), expected, "{kind:?}");
        }
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

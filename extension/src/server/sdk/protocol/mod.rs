//! The AWS JSON 1.1 protocol of the read operations the cache serves, so every SDK
//! parses the sidecar's answers into its ordinary objects and exceptions:
//! which operation an `X-Amz-Target` names (here), the request fields as AWS's API
//! reference spells them (`request`), the answers (`answer`) and the errors
//! (`error`) in AWS's own shapes.

pub mod answer;
pub mod error;
pub mod request;

#[cfg(test)]
mod tests;

pub use error::SdkError;
pub use request::{parse_request, PathRequest, Request, MAX_PATH_RESULTS};

/// The service an `X-Amz-Target` prefix names, and the name its SigV4 scope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssm",
        }
    }

    /// The `__type` of an internal failure, which differs between the two services.
    pub fn internal_error(self) -> &'static str {
        match self {
            Service::SecretsManager => "InternalServiceError",
            Service::Ssm => "InternalServerError",
        }
    }
}

/// The operations served from the cache; anything else passes through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    GetSecretValue,
    BatchGetSecretValue,
    GetParameter,
    GetParameters,
    GetParametersByPath,
    /// Another operation of the service, by name.
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub service: Service,
    pub operation: Operation,
}

impl Target {
    /// `secretsmanager.GetSecretValue`, `AmazonSSM.GetParameter`, …
    pub fn parse(header: &str) -> Result<Target, SdkError> {
        let unknown = || SdkError::unknown_operation(header);
        let (prefix, name) = header.split_once('.').ok_or_else(unknown)?;
        let service = match prefix {
            "secretsmanager" => Service::SecretsManager,
            "AmazonSSM" => Service::Ssm,
            _ => return Err(unknown()),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(unknown());
        }
        let operation = match (service, name) {
            (Service::SecretsManager, "GetSecretValue") => Operation::GetSecretValue,
            (Service::SecretsManager, "BatchGetSecretValue") => Operation::BatchGetSecretValue,
            (Service::Ssm, "GetParameter") => Operation::GetParameter,
            (Service::Ssm, "GetParameters") => Operation::GetParameters,
            (Service::Ssm, "GetParametersByPath") => Operation::GetParametersByPath,
            (_, other) => Operation::Other(other.to_owned()),
        };
        Ok(Target { service, operation })
    }

    /// The operation's name, as the metrics label it.
    pub fn operation_name(&self) -> &str {
        match &self.operation {
            Operation::GetSecretValue => "GetSecretValue",
            Operation::BatchGetSecretValue => "BatchGetSecretValue",
            Operation::GetParameter => "GetParameter",
            Operation::GetParameters => "GetParameters",
            Operation::GetParametersByPath => "GetParametersByPath",
            Operation::Other(name) => name,
        }
    }
}

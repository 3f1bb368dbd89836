//! A moto server (AWS emulator) on a free loopback port, stopped when dropped, with
//! helpers that seed Secrets Manager and SSM through their JSON APIs.
//!
//! moto quirks worth knowing: a SecureString read without decryption comes back as
//! `kms:<key>:<plaintext>` (so a missing decryption flag is visible), and moving
//! staging labels does not change the default version, so rotation is simulated
//! with PutSecretValue.

use std::time::Duration;

use anyhow::{anyhow, Result};
use base64::Engine;
use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::net::{free_port, poll, HttpClient};
use crate::process::Proc;
use crate::venv;

pub struct Moto {
    pub port: u16,
    proc: Option<Proc>,
    http: HttpClient,
}

/// SSM parameter types.
#[derive(Clone, Copy, Debug)]
pub enum ParamType {
    String,
    StringList,
    SecureString,
}

impl ParamType {
    fn name(self) -> &'static str {
        match self {
            ParamType::String => "String",
            ParamType::StringList => "StringList",
            ParamType::SecureString => "SecureString",
        }
    }
}

impl Moto {
    /// Starts moto (creating the venv first if needed) and waits until it answers.
    pub async fn start() -> Result<Moto> {
        tokio::task::spawn_blocking(venv::ensure).await??;
        let mut last = anyhow!("moto did not start");
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(venv::tool("moto_server"));
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            let proc = Proc::spawn("moto", cmd)?;
            let mut moto = Moto {
                port,
                proc: Some(proc),
                http: HttpClient::new(),
            };
            match moto.wait_ready().await {
                Ok(()) => return Ok(moto),
                Err(e) => {
                    moto.stop().await;
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/moto-api/", self.endpoint());
        let http = self.http.clone();
        poll(Duration::from_secs(30), "moto readiness", || {
            let http = http.clone();
            let url = url.clone();
            async move { http.get(&url, &[]).await.ok().filter(|r| r.status == 200).map(|_| ()) }
        })
        .await
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops moto; later calls to it fail with connection refused.
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill().await;
        }
    }

    /// Calls one operation of the AWS JSON protocol. The Authorization header only
    /// tells moto which service is meant; moto does not check signatures.
    pub async fn call(&self, service: Service, operation: &str, body: Value) -> Result<Value> {
        self.call_as(Caller::HOME, service, operation, body).await
    }

    /// [`Moto::call`] as `caller`: moto keeps one world per account (known by the
    /// access key) and region (the SigV4 credential scope's).
    pub async fn call_as(&self, caller: Caller<'_>, service: Service, operation: &str, body: Value) -> Result<Value> {
        let (prefix, scope) = match service {
            Service::SecretsManager => ("secretsmanager", "secretsmanager"),
            Service::Ssm => ("AmazonSSM", "ssm"),
        };
        let target = format!("{prefix}.{operation}");
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{}/{scope}/aws4_request, SignedHeaders=host, Signature=0",
            caller.access_key, caller.region
        );
        let resp = self
            .http
            .send(
                Method::POST,
                &format!("{}/", self.endpoint()),
                &[
                    ("x-amz-target", &target),
                    ("content-type", "application/x-amz-json-1.1"),
                    ("authorization", &auth),
                ],
                Bytes::from(body.to_string()),
            )
            .await?;
        if resp.status != 200 {
            return Err(anyhow!("{target} failed: {} {}", resp.status, resp.text()));
        }
        Ok(resp.json())
    }

    /// Assumes `role_arn` through STS (its query protocol); returns the access key,
    /// with which moto acts in the role's account.
    pub async fn assume_role(&self, role_arn: &str) -> Result<String> {
        let body = format!(
            "Action=AssumeRole&Version=2011-06-15&RoleSessionName=harness&RoleArn={}",
            role_arn.replace(':', "%3A").replace('/', "%2F")
        );
        let auth =
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0";
        let resp = self
            .http
            .send(
                Method::POST,
                &format!("{}/", self.endpoint()),
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("authorization", auth),
                ],
                Bytes::from(body),
            )
            .await?;
        let text = resp.text();
        if resp.status != 200 {
            return Err(anyhow!("AssumeRole failed: {} {text}", resp.status));
        }
        text.split("<AccessKeyId>")
            .nth(1)
            .and_then(|t| t.split("</AccessKeyId>").next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no AccessKeyId in {text}"))
    }

    /// Creates a string secret as `caller`; returns its ARN.
    pub async fn create_secret_as(&self, caller: Caller<'_>, name: &str, value: &str) -> Result<String> {
        let out = self
            .call_as(
                caller,
                Service::SecretsManager,
                "CreateSecret",
                json!({"Name": name, "SecretString": value}),
            )
            .await?;
        arn_of(&out)
    }

    /// Creates a string parameter as `caller`; returns its ARN.
    pub async fn put_parameter_as(&self, caller: Caller<'_>, name: &str, value: &str) -> Result<String> {
        self.call_as(
            caller,
            Service::Ssm,
            "PutParameter",
            json!({"Name": name, "Value": value, "Type": "String", "Overwrite": true}),
        )
        .await?;
        let out = self
            .call_as(caller, Service::Ssm, "GetParameter", json!({"Name": name}))
            .await?;
        out["Parameter"]["ARN"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no ARN in {out}"))
    }

    /// Creates a string secret; returns its ARN.
    pub async fn create_secret(&self, name: &str, value: &str) -> Result<String> {
        let out = self
            .call(
                Service::SecretsManager,
                "CreateSecret",
                json!({"Name": name, "SecretString": value}),
            )
            .await?;
        arn_of(&out)
    }

    /// Creates a binary secret; returns its ARN.
    pub async fn create_binary_secret(&self, name: &str, value: &[u8]) -> Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let out = self
            .call(
                Service::SecretsManager,
                "CreateSecret",
                json!({"Name": name, "SecretBinary": b64}),
            )
            .await?;
        arn_of(&out)
    }

    /// Puts a new AWSCURRENT version (the old one becomes AWSPREVIOUS); returns its version id.
    pub async fn put_secret_value(&self, name: &str, value: &str) -> Result<String> {
        let out = self
            .call(
                Service::SecretsManager,
                "PutSecretValue",
                json!({"SecretId": name, "SecretString": value}),
            )
            .await?;
        out["VersionId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no VersionId in {out}"))
    }

    /// Puts a version with the given staging labels (e.g. `AWSPENDING` during a
    /// rotation, which leaves AWSCURRENT where it is); returns its version id.
    pub async fn put_secret_value_staged(&self, name: &str, value: &str, stages: &[&str]) -> Result<String> {
        let out = self
            .call(
                Service::SecretsManager,
                "PutSecretValue",
                json!({"SecretId": name, "SecretString": value, "VersionStages": stages}),
            )
            .await?;
        out["VersionId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no VersionId in {out}"))
    }

    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        self.call(
            Service::SecretsManager,
            "DeleteSecret",
            json!({"SecretId": name, "ForceDeleteWithoutRecovery": true}),
        )
        .await
        .map(|_| ())
    }

    /// Creates or overwrites a parameter; returns its new version.
    pub async fn put_parameter(&self, name: &str, value: &str, kind: ParamType) -> Result<i64> {
        let out = self
            .call(
                Service::Ssm,
                "PutParameter",
                json!({"Name": name, "Value": value, "Type": kind.name(), "Overwrite": true}),
            )
            .await?;
        out["Version"].as_i64().ok_or_else(|| anyhow!("no Version in {out}"))
    }

    pub async fn label_parameter_version(&self, name: &str, version: i64, labels: &[&str]) -> Result<()> {
        self.call(
            Service::Ssm,
            "LabelParameterVersion",
            json!({"Name": name, "ParameterVersion": version, "Labels": labels}),
        )
        .await
        .map(|_| ())
    }
}

/// Who calls moto: the access key decides the account (`test`: the default,
/// 123456789012; a key from [`Moto::assume_role`]: the role's), the region the world.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub access_key: &'a str,
    pub region: &'a str,
}

impl Caller<'static> {
    /// The default account in us-east-1, as the sidecar's tests configure it.
    pub const HOME: Caller<'static> = Caller {
        access_key: "test",
        region: "us-east-1",
    };

    pub fn home_in(region: &'static str) -> Caller<'static> {
        Caller {
            access_key: "test",
            region,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Service {
    SecretsManager,
    Ssm,
}

fn arn_of(out: &Value) -> Result<String> {
    out["ARN"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no ARN in {out}"))
}

//! The CDK example users copy (`deploy/cdk`): its app is compiled and synthesized offline,
//! and the CloudFormation it produces is checked against what the repository promises
//! elsewhere. The weather stack must attach the layer by the `SidecarLayerArn` parameter,
//! set exactly the environment of `serverless.yml` and `template.yaml` (read here, so the
//! three cannot drift apart), and grant the same least IAM those files grant. The
//! `SecretsSidecar` construct is then checked on its own, with prefetch lists the weather
//! stack does not cover and with bad input, which must be refused with nothing attached.
//!
//! Needs node and npm; `npm ci` runs in `deploy/cdk` when its `node_modules` is missing
//! or older than its `package-lock.json`. No AWS credentials and no network are used by
//! the synth (credentials are removed from its environment, IMDS is switched off).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

/// `npm ci` from an empty cache takes about 15 s here; a slow registry gets more.
const NPM_CI_LIMIT: Duration = Duration::from_secs(80);
/// tsc, a synth, or the construct cases: each takes a few seconds warm.
const STEP_LIMIT: Duration = Duration::from_secs(45);

const LAYER_PARAMETER: &str = "SidecarLayerArn";
const CASES_LAYER: &str = "arn:aws:lambda:us-east-1:123456789012:layer:secrets-sidecar:1";

fn cdk_dir() -> PathBuf {
    harness::venv::repo_root().join("deploy/cdk")
}

/// Held for a whole test: both tests install, compile into and run from the same
/// `deploy/cdk`, and nextest runs them in parallel processes.
struct Prepared {
    _lock: std::fs::File,
}

/// Installs (when needed) and compiles the CDK app, under a lock across processes.
async fn prepare() -> Result<Prepared> {
    let dir = cdk_dir();
    let lock = std::fs::File::create(std::env::temp_dir().join("secrets-sidecar-cdk.lock"))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock)).await??;

    let installed = dir.join("node_modules/.package-lock.json");
    let lockfile = dir.join("package-lock.json");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&installed), mtime(&lockfile)) {
        (Some(i), Some(l)) => i >= l,
        _ => false,
    };
    if !fresh {
        run(
            tokio::process::Command::new("npm").args(["ci", "--no-audit", "--no-fund"]),
            "npm ci in deploy/cdk",
            NPM_CI_LIMIT,
        )
        .await?;
    }
    run(
        tokio::process::Command::new("node").args(["node_modules/typescript/bin/tsc", "-p", "."]),
        "tsc",
        STEP_LIMIT,
    )
    .await?;
    Ok(Prepared { _lock: lock })
}

/// Runs a command in `deploy/cdk` with no AWS credentials, no instance metadata, no
/// version check or telemetry, bounded by `limit` (its whole process group is killed
/// then). Fails with its output unless it exits 0.
async fn run(cmd: &mut tokio::process::Command, what: &str, limit: Duration) -> Result<std::process::Output> {
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "CDK_CONTEXT_JSON",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(cdk_dir())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CDK_DISABLE_VERSION_CHECK", "1")
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("{what} exited before it could be watched"))?;
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.with_context(|| format!("waiting for {what}"))?,
        Err(_) => {
            // npx and cdk start children of their own: end the whole group.
            let pgid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            bail!("{what} did not finish within {limit:?}");
        }
    };
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

// ---- the YAML of serverless.yml and template.yaml, as far as these checks read it ----

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn significant(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The lines of the block under the key chain `path` (each key found deeper inside the
/// previous one's block). Enough for the block mappings these files use, without a YAML
/// parser (theirs carry `!Sub`/`!Ref` tags that generic parsers treat specially).
fn yaml_block<'a>(text: &'a str, path: &[&str]) -> Result<Vec<&'a str>> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut start, mut end, mut parent) = (0, lines.len(), None::<usize>);
    for key in path {
        let want = format!("{key}:");
        let at = (start..end)
            .find(|&i| significant(lines[i]) && lines[i].trim() == want && parent.is_none_or(|p| indent(lines[i]) > p))
            .with_context(|| format!("no '{}' block", path.join(".")))?;
        let depth = indent(lines[at]);
        end = (at + 1..end)
            .find(|&j| significant(lines[j]) && indent(lines[j]) <= depth)
            .unwrap_or(end);
        start = at + 1;
        parent = Some(depth);
    }
    Ok(lines[start..end].to_vec())
}

/// A block of `KEY: scalar` lines as a map (quotes removed, comments skipped).
fn yaml_scalars(block: &[&str]) -> Result<BTreeMap<String, String>> {
    let depth = block.iter().filter(|l| significant(l)).map(|l| indent(l)).min();
    let mut out = BTreeMap::new();
    for line in block.iter().filter(|l| significant(l) && Some(indent(l)) == depth) {
        let (key, value) = line
            .trim()
            .split_once(": ")
            .with_context(|| format!("not a 'KEY: value' line: {line}"))?;
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            v
        } else if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v
        } else {
            value.split(" #").next().unwrap_or(value).trim()
        };
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// Every `!Sub "..."` string of a block: the ARNs and services an IAM policy names.
fn yaml_subs(block: &[&str]) -> BTreeSet<String> {
    block
        .iter()
        .filter_map(|l| l.split_once("!Sub \"").and_then(|(_, rest)| rest.rsplit_once('"')))
        .map(|(s, _)| s.to_owned())
        .collect()
}

// ---- the synthesized template ----

/// A value of the template as the `${...}` text `!Sub` would write: `Ref` becomes
/// `${Name}`, `Fn::Join` is joined, `Fn::Sub` is already that text.
fn render(v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Object(o) if o.len() == 1 => {
            if let Some(Value::String(name)) = o.get("Ref") {
                return Ok(format!("${{{name}}}"));
            }
            if let Some(Value::String(s)) = o.get("Fn::Sub") {
                return Ok(s.clone());
            }
            if let Some(Value::Array(join)) = o.get("Fn::Join") {
                if let [Value::String(sep), Value::Array(parts)] = join.as_slice() {
                    let parts: Result<Vec<String>> = parts.iter().map(render).collect();
                    return Ok(parts?.join(sep));
                }
            }
            bail!("cannot render {v}")
        }
        _ => bail!("cannot render {v}"),
    }
}

fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// One action on one resource, under a condition (rendered JSON, "" for none).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    action: String,
    resource: String,
    condition: String,
}

fn grant(action: &str, resource: &str) -> Grant {
    Grant {
        action: action.to_owned(),
        resource: resource.to_owned(),
        condition: String::new(),
    }
}

/// Conditions with every value rendered, as canonical JSON text.
fn render_condition(v: &Value) -> Result<Value> {
    Ok(match v {
        Value::Object(o) if o.contains_key("Ref") || o.contains_key("Fn::Join") || o.contains_key("Fn::Sub") => {
            Value::String(render(v)?)
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), render_condition(v)?)))
                .collect::<Result<_>>()?,
        ),
        Value::Array(a) => Value::Array(a.iter().map(render_condition).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

struct Stack {
    template: Value,
}

impl Stack {
    fn load(dir: &Path, name: &str) -> Result<Stack> {
        Ok(Stack {
            template: read_json(&dir.join(format!("{name}.template.json")))?,
        })
    }

    fn resources(&self, kind: &str) -> Vec<(&String, &Value)> {
        self.template["Resources"]
            .as_object()
            .map(|r| r.iter().filter(|(_, v)| v["Type"] == kind).collect())
            .unwrap_or_default()
    }

    /// The only Lambda function of the stack.
    fn function(&self) -> Result<&Value> {
        match self.resources("AWS::Lambda::Function").as_slice() {
            [(_, f)] => Ok(&f["Properties"]),
            other => bail!("expected one function, found {}", other.len()),
        }
    }

    /// What the function's role may do beyond the managed policy every Lambda role
    /// gets for its logs: every statement of every policy attached to the role, one
    /// grant per action and resource. Anything but plain Allow statements fails.
    fn grants_of(&self, function: &Value) -> Result<BTreeSet<Grant>> {
        let role = function["Role"]["Fn::GetAtt"][0]
            .as_str()
            .context("the function's role is not one of the stack's")?;
        let role_props = &self.template["Resources"][role]["Properties"];
        ensure!(
            role_props.get("Policies").is_none(),
            "the role has inline policies: {role_props}"
        );
        let managed: Result<Vec<String>> = one_or_many(&role_props["ManagedPolicyArns"])
            .into_iter()
            .map(render)
            .collect();
        ensure!(
            managed? == ["arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
            "the role has managed policies beyond the basic execution role: {role_props}"
        );
        ensure!(
            self.resources("AWS::IAM::ManagedPolicy").is_empty(),
            "the stack defines managed policies"
        );
        let mut out = BTreeSet::new();
        for (_, policy) in self.resources("AWS::IAM::Policy") {
            let props = &policy["Properties"];
            let roles: Vec<&str> = one_or_many(&props["Roles"])
                .iter()
                .filter_map(|r| r["Ref"].as_str())
                .collect();
            ensure!(roles == [role], "a policy of the stack is attached elsewhere: {props}");
            for st in one_or_many(&props["PolicyDocument"]["Statement"]) {
                ensure!(st["Effect"] == "Allow", "not an Allow statement: {st}");
                for field in ["NotAction", "NotResource", "Principal"] {
                    ensure!(st.get(field).is_none(), "statement with {field}: {st}");
                }
                let condition = match st.get("Condition") {
                    Some(c) => render_condition(c)?.to_string(),
                    None => String::new(),
                };
                for action in one_or_many(&st["Action"]) {
                    let action = action.as_str().with_context(|| format!("action in {st}"))?;
                    for resource in one_or_many(&st["Resource"]) {
                        out.insert(Grant {
                            action: action.to_owned(),
                            resource: render(resource)?,
                            condition: condition.clone(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    fn environment(function: &Value) -> Result<BTreeMap<String, String>> {
        serde_json::from_value(function["Environment"]["Variables"].clone()).context("the function's environment")
    }
}

/// An ARN of the stack's own account and region, as `!Sub` writes it.
fn local_arn(service: &str, rest: &str) -> String {
    format!("arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}")
}

fn via_service(services: &[&str]) -> String {
    let values: Vec<String> = services
        .iter()
        .map(|s| format!("{s}.${{AWS::Region}}.amazonaws.com"))
        .collect();
    serde_json::json!({ "StringEquals": { "kms:ViaService": values } }).to_string()
}

/// Checks that hold for any prefetch list: a `*` resource only for BatchGetSecretValue,
/// kms:Decrypt only through the services, never on every key of every account.
fn check_shape(grants: &BTreeSet<Grant>) -> Result<()> {
    for g in grants {
        if g.resource == "*" {
            ensure!(
                g.action == "secretsmanager:BatchGetSecretValue",
                "'*' resource for {g:?}"
            );
        }
        ensure!(
            !g.action.contains('*'),
            "wildcard action {g:?} (every grant names its action)"
        );
        if g.action == "kms:Decrypt" {
            ensure!(
                g.condition.contains("\"kms:ViaService\""),
                "kms:Decrypt without kms:ViaService: {g:?}"
            );
        } else {
            ensure!(g.condition.is_empty(), "unexpected condition on {g:?}");
        }
    }
    Ok(())
}

/// The grants a prefetch list (in the sidecar's own syntax) needs, kms:Decrypt aside,
/// for ids of the stack's own account and region.
fn expected_for(prefetch: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    let mut secrets = 0;
    for item in prefetch.split([' ', ',']).filter(|s| !s.is_empty()) {
        match item.split_once(':') {
            Some(("secretsmanager", name)) => {
                secrets += 1;
                out.insert(grant(
                    "secretsmanager:GetSecretValue",
                    &local_arn("secretsmanager", &format!("secret:{name}-??????")),
                ));
            }
            Some(("ssm", name)) => {
                for action in ["ssm:GetParameter", "ssm:GetParameters"] {
                    out.insert(grant(action, &local_arn("ssm", &format!("parameter{name}"))));
                }
            }
            Some(("ssm-path", path)) => {
                for action in ["ssm:GetParameter", "ssm:GetParameters"] {
                    out.insert(grant(action, &local_arn("ssm", &format!("parameter{path}*"))));
                }
                let path = path.trim_end_matches('/');
                out.insert(grant(
                    "ssm:GetParametersByPath",
                    &local_arn("ssm", &format!("parameter{path}")),
                ));
            }
            _ => panic!("unexpected prefetch item {item}"),
        }
    }
    if secrets > 0 {
        out.insert(grant("secretsmanager:BatchGetSecretValue", "*"));
    }
    out
}

#[tokio::test]
async fn weather_stack_matches_serverless_and_sam() -> Result<()> {
    let _prepared = prepare().await?;
    let out = tempfile::tempdir()?;
    // The function's zip comes from a release build; the synth only copies it.
    let zip = out.path().join("function.zip");
    std::fs::write(&zip, b"stands in for dist/function.zip")?;
    let assembly = out.path().join("cdk.out");
    let started = Instant::now();
    run(
        tokio::process::Command::new("npx")
            .args([
                "--no-install",
                "cdk",
                "synth",
                "--no-notices",
                "--no-version-reporting",
                "--quiet",
            ])
            // Compiled by prepare() under the lock; cdk.json's app would compile again.
            .args(["--app", "node dist/bin/weather.js"])
            .arg("-c")
            .arg(format!("functionZip={}", zip.display()))
            .arg("-o")
            .arg(&assembly),
        "cdk synth",
        STEP_LIMIT,
    )
    .await?;
    eprintln!("synth of the weather stack: {:.1} s", started.elapsed().as_secs_f64());

    let stack = Stack::load(&assembly, "WeatherForecast")?;
    let function = stack.function()?;
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Handler"], "bootstrap");
    assert_eq!(function["Architectures"], serde_json::json!(["x86_64"]));

    // The layer is the stack parameter a user fills from the published ARNs.
    assert_eq!(function["Layers"], serde_json::json!([{ "Ref": LAYER_PARAMETER }]));
    assert_eq!(stack.template["Parameters"][LAYER_PARAMETER]["Type"], "String");

    // The environment is exactly that of the other two deployments.
    let root = harness::venv::repo_root();
    let serverless = std::fs::read_to_string(root.join("serverless.yml"))?;
    let sam = std::fs::read_to_string(root.join("template.yaml"))?;
    let env_sls = yaml_scalars(&yaml_block(&serverless, &["functions", "weather", "environment"])?)?;
    let env_sam = yaml_scalars(&yaml_block(
        &sam,
        &["Resources", "WeatherFunction", "Properties", "Environment", "Variables"],
    )?)?;
    assert!(
        env_sls.contains_key("SECRETS_SIDECAR_PREFETCH"),
        "serverless.yml as read: {env_sls:?}"
    );
    assert_eq!(env_sls, env_sam, "serverless.yml and template.yaml disagree");
    let env = Stack::environment(function)?;
    assert_eq!(
        env, env_sls,
        "the CDK stack's environment differs from serverless.yml's"
    );

    // IAM: what serverless.yml's prefetch list needs, nothing more; kms:Decrypt via SSM
    // and Secrets Manager only; no role to assume.
    let grants = stack.grants_of(function)?;
    check_shape(&grants)?;
    let (kms, rest): (BTreeSet<Grant>, BTreeSet<Grant>) =
        grants.iter().cloned().partition(|g| g.action == "kms:Decrypt");
    assert_eq!(
        rest,
        expected_for(&env_sls["SECRETS_SIDECAR_PREFETCH"]),
        "grants beyond kms:Decrypt"
    );
    assert_eq!(
        kms,
        BTreeSet::from([Grant {
            action: "kms:Decrypt".into(),
            resource: local_arn("kms", "key/*"),
            condition: via_service(&["ssm", "secretsmanager"]),
        }])
    );
    assert!(!grants.iter().any(|g| g.action.starts_with("sts:")), "{grants:#?}");

    // The same ARNs and services as the other two files' policies, written alike.
    let named: BTreeSet<String> = grants
        .iter()
        .map(|g| g.resource.clone())
        .filter(|r| r != "*")
        .chain(["ssm", "secretsmanager"].map(|s| format!("{s}.${{AWS::Region}}.amazonaws.com")))
        .collect();
    let sls_subs = yaml_subs(&yaml_block(&serverless, &["provider", "iam"])?);
    let sam_subs = yaml_subs(&yaml_block(
        &sam,
        &["Resources", "WeatherFunction", "Properties", "Policies"],
    )?);
    assert_eq!(named, sls_subs, "the ARNs differ from serverless.yml's");
    assert_eq!(named, sam_subs, "the ARNs differ from template.yaml's");
    Ok(())
}

#[tokio::test]
async fn construct_grants_follow_the_prefetch_list() -> Result<()> {
    let _prepared = prepare().await?;
    let out = tempfile::tempdir()?;
    run(
        tokio::process::Command::new("node")
            .arg("dist/test/cases.js")
            .env("CDK_OUTDIR", out.path()),
        "construct cases",
        STEP_LIMIT,
    )
    .await?;

    // One secret: GetSecretValue on it alone, the batch call the sidecar makes even for
    // one, and a role for roleArn that is assumed on exactly that ARN.
    let role = "arn:aws:iam::210987654321:role/secret-reader";
    let stack = Stack::load(out.path(), "OneSecretWithRole")?;
    let f = stack.function()?;
    assert_eq!(f["Layers"], serde_json::json!([CASES_LAYER]));
    let grants = stack.grants_of(f)?;
    check_shape(&grants)?;
    let mut want = expected_for("secretsmanager:app/db");
    want.insert(grant("sts:AssumeRole", role));
    assert_eq!(grants, want);
    let env = Stack::environment(f)?;
    assert_eq!(env["SECRETS_SIDECAR_PREFETCH"], "secretsmanager:app/db");
    assert_eq!(
        env["SECRETS_SIDECAR_ALLOW"],
        format!("secretsmanager:app/db role:{role}")
    );
    assert!(
        !env.contains_key("SECRETS_MANAGER_TTL"),
        "a TTL set though none was given: {env:?}"
    );

    // ARNs are granted as given (their own region and account), names in the stack's.
    let stack = Stack::load(out.path(), "ArnsAndNames")?;
    let f = stack.function()?;
    let grants = stack.grants_of(f)?;
    check_shape(&grants)?;
    let secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbCdEf";
    let parameter_arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/app/key";
    let other = local_arn("secretsmanager", "secret:app/other-??????");
    let plain = local_arn("ssm", "parameter/plain-name");
    let want = BTreeSet::from([
        grant("secretsmanager:GetSecretValue", secret_arn),
        grant("secretsmanager:GetSecretValue", &other),
        grant("secretsmanager:BatchGetSecretValue", "*"),
        grant("ssm:GetParameter", parameter_arn),
        grant("ssm:GetParameters", parameter_arn),
        grant("ssm:GetParameter", &plain),
        grant("ssm:GetParameters", &plain),
    ]);
    assert_eq!(grants, want, "no path, no kms, no role: nothing else");
    assert_eq!(
        Stack::environment(f)?["SECRETS_SIDECAR_PREFETCH"],
        format!("secretsmanager:{secret_arn} secretsmanager:app/other ssm:{parameter_arn} ssm:plain-name")
    );

    // A path alone with one customer managed key: no Secrets Manager action at all,
    // kms:Decrypt on that key through SSM only.
    let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let stack = Stack::load(out.path(), "PathWithKey")?;
    let f = stack.function()?;
    let grants = stack.grants_of(f)?;
    check_shape(&grants)?;
    let mut want = expected_for("ssm-path:/team/");
    want.insert(Grant {
        action: "kms:Decrypt".into(),
        resource: key.into(),
        condition: via_service(&["ssm"]),
    });
    assert_eq!(grants, want);
    assert_eq!(Stack::environment(f)?["SECRETS_SIDECAR_ALLOW"], "ssm:/team/*");

    // Bad input: a clear refusal naming the problem, and nothing attached to the function.
    let stack = Stack::load(out.path(), "Refusals")?;
    let outputs = stack.template["Outputs"]
        .as_object()
        .context("Refusals has no outputs")?;
    let refusals = [
        ("Tag", "selects secrets by tag"),
        ("NoPrefix", "needs a prefix"),
        ("Selector", "selectors cannot be prefetched"),
        ("RelativePath", "starts with '/'"),
        ("UnknownPrefix", "'vault:' is not a known prefix"),
        ("TwoInOne", "one item per string"),
        ("Empty", "the prefetch list is empty"),
        ("Role", "is not a literal role ARN"),
        ("Ttl", "whole seconds from 0 to 86400, not 1.5"),
        ("Override", "environment sets SECRETS_SIDECAR_PREFETCH"),
        ("LayerArn", "is not a layer version ARN"),
        ("KmsKey", "is not a literal KMS key ARN"),
    ];
    assert_eq!(outputs.len(), refusals.len(), "{outputs:#?}");
    for (case, says) in refusals {
        let message = outputs[case]["Value"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("SecretsSidecar: ") && message.contains(says),
            "{case}: expected a refusal saying '{says}', got '{message}'"
        );
    }
    let functions = stack.resources("AWS::Lambda::Function");
    assert_eq!(functions.len(), refusals.len());
    for (id, f) in functions {
        for field in ["Layers", "Environment"] {
            assert!(
                f["Properties"].get(field).is_none(),
                "{id} was given {field} though refused"
            );
        }
    }
    assert!(
        stack.resources("AWS::IAM::Policy").is_empty(),
        "a refused attach granted something"
    );
    Ok(())
}

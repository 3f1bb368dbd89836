// The secrets-sidecar layer as a CDK construct: attaches the published layer by ARN, sets the
// sidecar's environment and grants the function's role the least IAM that the prefetch list
// needs, so the permissions are derived from the same list the sidecar reads and cannot drift.
//
//   SecretsSidecar.attach(fn, {
//     layerArn: layerArn.valueAsString,
//     prefetch: ['ssm:/app/key', 'secretsmanager:app/db', 'ssm-path:/team/'],
//     kmsDecrypt: true,
//   });

import { ArnFormat, Duration, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';

export interface SecretsSidecarProps {
  /**
   * The layer version to attach: `arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION`, usually a
   * CfnParameter's value (the published layers are `secrets-sidecar` for x86_64 and
   * `secrets-sidecar-arm64`; the function's architecture must match).
   */
  readonly layerArn: string;
  /**
   * What the sidecar fetches at start-up (SECRETS_SIDECAR_PREFETCH), each a literal string:
   * `secretsmanager:NAME` or `secretsmanager:ARN`, `ssm:NAME` or `ssm:ARN`, `ssm-path:/PREFIX/`.
   * The role may read exactly these. Secrets by tag (`secretsmanager-tag:`) are refused: which
   * secrets carry a tag is not known when the stack is written, so no ARN could be granted.
   */
  readonly prefetch: string[];
  /**
   * Roles that requests may name with `roleArn=` (full role ARNs): sts:AssumeRole on exactly
   * these, and `role:ARN` in the default allowlist. The roles' own policies grant their reads.
   */
  readonly roles?: string[];
  /**
   * SECRETS_SIDECAR_ALLOW. Default: the prefetch list itself (a path allows what lies under
   * it) and the roles, so the sidecar serves nothing the role was not granted for.
   */
  readonly allow?: string[];
  /**
   * Grant kms:Decrypt, only through SSM and Secrets Manager (kms:ViaService): set it when a
   * listed parameter is a SecureString, or a secret is encrypted, under a customer managed key
   * (the AWS managed keys aws/ssm and aws/secretsmanager need no grant). `true`: any key of the
   * stack's account and region; a list: exactly those key ARNs.
   */
  readonly kmsDecrypt?: boolean | string[];
  /** SECRETS_MANAGER_TTL (whole seconds, 0 to 86 400); the sidecar's default is 300 s. */
  readonly secretsManagerTtl?: Duration;
  /** SSM_PARAMETER_STORE_TTL (whole seconds, 0 to 86 400); the sidecar's default is 300 s. */
  readonly ssmParameterStoreTtl?: Duration;
  /** Further sidecar variables, e.g. SECRETS_SIDECAR_REQUIRED (see the README's table). */
  readonly environment?: Record<string, string>;
}

/** One prefetch item, parsed as the sidecar parses SECRETS_SIDECAR_PREFETCH. */
type Ref =
  | { kind: 'secret'; id: string }
  | { kind: 'parameter'; id: string }
  | { kind: 'path'; id: string };

const LAYER_ARN = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+$/;
const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@\/*-]+$/;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)\/[\w\/*-]+$/;
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w\/+=.@-]+$/;
const PARAMETER_ARN = /^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter\/[\w\/.-]+$/;
const TTL_MAX_SECONDS = 86_400;

export class SecretsSidecar {
  /**
   * Attaches the layer to `fn`, sets the sidecar's variables and adds the statements to the
   * function's role. Everything is checked first: on bad input it throws and changes nothing.
   */
  static attach(fn: lambda.Function, props: SecretsSidecarProps): void {
    const stack = Stack.of(fn);
    const refs = parsePrefetch(props.prefetch);
    const roles = checkRoles(props.roles ?? []);
    const env = sidecarEnvironment(refs, roles, props);
    const statements = leastPrivilege(stack, refs, roles, props.kmsDecrypt);
    if (!Token.isUnresolved(props.layerArn) && !LAYER_ARN.test(props.layerArn)) {
      throw new Error(`SecretsSidecar: layerArn '${props.layerArn}' is not a layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)`);
    }
    if (fn.role === undefined) {
      throw new Error('SecretsSidecar: the function has no role to grant the reads to');
    }

    fn.addLayers(lambda.LayerVersion.fromLayerVersionArn(fn, 'SecretsSidecarLayer', props.layerArn));
    for (const [name, value] of Object.entries(env)) {
      fn.addEnvironment(name, value);
    }
    for (const statement of statements) {
      fn.addToRolePolicy(statement);
    }
  }
}

function parsePrefetch(items: string[]): Ref[] {
  const refs: Ref[] = [];
  for (const item of items) {
    if (Token.isUnresolved(item)) {
      throw new Error('SecretsSidecar: prefetch items must be literal strings (a token cannot be turned into a grant)');
    }
    if (/[\s,]/.test(item)) {
      throw new Error(`SecretsSidecar: prefetch item '${item}' holds a comma or whitespace; give one item per string`);
    }
    const colon = item.indexOf(':');
    if (colon < 0) {
      throw new Error(`SecretsSidecar: prefetch item '${item}' needs a prefix: secretsmanager:, ssm: or ssm-path:`);
    }
    const kind = item.slice(0, colon);
    const id = item.slice(colon + 1);
    if (id === '') {
      throw new Error(`SecretsSidecar: prefetch item '${item}' has an empty id`);
    }
    let ref: Ref;
    switch (kind) {
      case 'secretsmanager':
        if (id.startsWith('arn:') && !SECRET_ARN.test(id)) {
          throw new Error(`SecretsSidecar: prefetch item '${item}' is not a secret ARN`);
        }
        ref = { kind: 'secret', id };
        break;
      case 'ssm':
        if (id.startsWith('arn:') ? !PARAMETER_ARN.test(id) : id.includes(':')) {
          // A version or label selector (`NAME:3`) cannot be prefetched, and is no parameter ARN.
          throw new Error(`SecretsSidecar: prefetch item '${item}' is not a parameter name or ARN (version and label selectors cannot be prefetched)`);
        }
        if (id.startsWith('/aws/reference/')) {
          throw new Error(`SecretsSidecar: prefetch item '${item}' is a reference; prefetch the secret itself as secretsmanager:NAME`);
        }
        ref = { kind: 'parameter', id };
        break;
      case 'ssm-path':
        if (!id.startsWith('/') || id.includes(':')) {
          throw new Error(`SecretsSidecar: prefetch item '${item}': an SSM path starts with '/'`);
        }
        ref = { kind: 'path', id };
        break;
      case 'secretsmanager-tag':
        throw new Error(`SecretsSidecar: prefetch item '${item}' selects secrets by tag, which cannot be granted by ARN; list the secrets as secretsmanager:NAME`);
      default:
        throw new Error(`SecretsSidecar: prefetch item '${item}': '${kind}:' is not a known prefix (use secretsmanager:, ssm: or ssm-path:)`);
    }
    if (!refs.some((r) => r.kind === ref.kind && r.id === ref.id)) {
      refs.push(ref);
    }
  }
  if (refs.length === 0) {
    throw new Error('SecretsSidecar: the prefetch list is empty, so there is nothing to grant');
  }
  return refs;
}

function checkRoles(roles: string[]): string[] {
  for (const role of roles) {
    if (Token.isUnresolved(role) || !ROLE_ARN.test(role)) {
      throw new Error(`SecretsSidecar: role '${role}' is not a literal role ARN (arn:aws:iam::ACCOUNT:role/NAME)`);
    }
  }
  return [...new Set(roles)];
}

function ttlSeconds(name: string, ttl: Duration): string {
  const seconds = ttl.toSeconds({ integral: false });
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > TTL_MAX_SECONDS) {
    throw new Error(`SecretsSidecar: ${name} must be whole seconds from 0 to ${TTL_MAX_SECONDS}, not ${seconds}`);
  }
  return String(seconds);
}

function refText(ref: Ref): string {
  switch (ref.kind) {
    case 'secret':
      return `secretsmanager:${ref.id}`;
    case 'parameter':
      return `ssm:${ref.id}`;
    case 'path':
      return `ssm-path:${ref.id}`;
  }
}

/** An allowlist pattern for each item: a path allows everything under it. */
function allowText(ref: Ref): string {
  switch (ref.kind) {
    case 'secret':
      return `secretsmanager:${ref.id}`;
    case 'parameter':
      return `ssm:${ref.id}`;
    case 'path':
      return `ssm:${ref.id.endsWith('/') ? ref.id : `${ref.id}/`}*`;
  }
}

function sidecarEnvironment(refs: Ref[], roles: string[], props: SecretsSidecarProps): Record<string, string> {
  const allow = props.allow ?? [...refs.map(allowText), ...roles.map((r) => `role:${r}`)];
  const env: Record<string, string> = {
    SECRETS_SIDECAR_PREFETCH: refs.map(refText).join(' '),
    SECRETS_SIDECAR_ALLOW: allow.join(' '),
  };
  if (props.secretsManagerTtl !== undefined) {
    env.SECRETS_MANAGER_TTL = ttlSeconds('secretsManagerTtl', props.secretsManagerTtl);
  }
  if (props.ssmParameterStoreTtl !== undefined) {
    env.SSM_PARAMETER_STORE_TTL = ttlSeconds('ssmParameterStoreTtl', props.ssmParameterStoreTtl);
  }
  for (const [name, value] of Object.entries(props.environment ?? {})) {
    if (name in env) {
      throw new Error(`SecretsSidecar: environment sets ${name}, which the construct sets from its own props`);
    }
    env[name] = value;
  }
  return env;
}

/** The parameter's ARN: given, or in the stack's account and region (names may lack the '/'). */
function parameterArn(stack: Stack, id: string): string {
  if (id.startsWith('arn:')) {
    return id;
  }
  return stack.formatArn({
    service: 'ssm',
    resource: 'parameter',
    resourceName: id.replace(/^\//, ''),
    arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
  });
}

function leastPrivilege(stack: Stack, refs: Ref[], roles: string[], kmsDecrypt: boolean | string[] | undefined): iam.PolicyStatement[] {
  const secrets = refs.filter((r) => r.kind === 'secret').map((r) =>
    // A name matches its ARN only with the six random characters Secrets Manager appends.
    r.id.startsWith('arn:')
      ? r.id
      : stack.formatArn({
          service: 'secretsmanager',
          resource: 'secret',
          resourceName: `${r.id}-??????`,
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        }),
  );
  const parameters = refs.filter((r) => r.kind === 'parameter').map((r) => parameterArn(stack, r.id));
  const paths = refs.filter((r) => r.kind === 'path').map((r) => r.id.replace(/\/+$/, ''));

  const statements: iam.PolicyStatement[] = [];
  if (secrets.length > 0) {
    statements.push(new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: secrets }));
  }
  if (secrets.length > 0) {
    // The sidecar prefetches and refreshes secrets with BatchGetSecretValue, even a single one
    // (refused, it falls back to GetSecretValue, but each refusal is an AccessDenied in
    // CloudTrail and a wasted call). That action has no resource-level permissions and still
    // needs GetSecretValue on each secret (above), so `*` here grants no further reads.
    statements.push(new iam.PolicyStatement({ actions: ['secretsmanager:BatchGetSecretValue'], resources: ['*'] }));
  }
  // A path's parameters are also read one by one (a cold miss, refreshNow), so its children
  // get GetParameter(s) too; GetParametersByPath is granted on the path itself.
  const byName = [...parameters, ...paths.map((p) => parameterArn(stack, `${p}/*`))];
  if (byName.length > 0) {
    statements.push(new iam.PolicyStatement({ actions: ['ssm:GetParameter', 'ssm:GetParameters'], resources: byName }));
  }
  if (paths.length > 0) {
    statements.push(new iam.PolicyStatement({
      actions: ['ssm:GetParametersByPath'],
      resources: paths.map((p) => (p === '' ? parameterArn(stack, '/') : parameterArn(stack, p))),
    }));
  }
  if (kmsDecrypt !== undefined && kmsDecrypt !== false) {
    if (kmsDecrypt !== true) {
      if (kmsDecrypt.length === 0) {
        throw new Error('SecretsSidecar: kmsDecrypt lists no keys; give key ARNs or true');
      }
      for (const key of kmsDecrypt) {
        if (Token.isUnresolved(key) || !KMS_KEY_ARN.test(key)) {
          throw new Error(`SecretsSidecar: kmsDecrypt key '${key}' is not a literal KMS key ARN`);
        }
      }
    }
    const keys = kmsDecrypt === true ? [stack.formatArn({ service: 'kms', resource: 'key', resourceName: '*' })] : kmsDecrypt;
    const services = [
      ...(parameters.length + paths.length > 0 ? [`ssm.${stack.region}.amazonaws.com`] : []),
      ...(secrets.length > 0 ? [`secretsmanager.${stack.region}.amazonaws.com`] : []),
    ];
    statements.push(new iam.PolicyStatement({
      actions: ['kms:Decrypt'],
      resources: keys,
      // Only when SSM or Secrets Manager decrypts on the function's behalf, never directly.
      conditions: { StringEquals: { 'kms:ViaService': services } },
    }));
  }
  if (roles.length > 0) {
    statements.push(new iam.PolicyStatement({ actions: ['sts:AssumeRole'], resources: roles }));
  }
  return statements;
}

// Cases for the SecretsSidecar construct beyond the weather stack, synthesized into
// CDK_OUTDIR (one template per stack) for the repository's test to read: each stack is one
// prefetch list, and the Refusals stack records, as outputs, what each bad input was told
// (its functions must come out with nothing attached).
//
//   CDK_OUTDIR=/tmp/cases node dist/test/cases.js

import { App, CfnOutput, Duration, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { SecretsSidecar, SecretsSidecarProps } from '../lib/sidecar';

const LAYER = 'arn:aws:lambda:us-east-1:123456789012:layer:secrets-sidecar:1';

function fnIn(stack: Stack, id: string): lambda.Function {
  // Code from a bucket: no asset, so the cases need no zip on disk.
  const bucket = s3.Bucket.fromBucketName(stack, `${id}Code`, 'example-code-bucket');
  return new lambda.Function(stack, id, {
    runtime: lambda.Runtime.PROVIDED_AL2023,
    handler: 'bootstrap',
    code: lambda.Code.fromBucket(bucket, 'function.zip'),
  });
}

const app = new App();

// One secret: GetSecretValue on it alone (and the batch call the sidecar makes even for one);
// a role for roleArn.
const one = new Stack(app, 'OneSecretWithRole');
SecretsSidecar.attach(fnIn(one, 'Fn'), {
  layerArn: LAYER,
  prefetch: ['secretsmanager:app/db'],
  roles: ['arn:aws:iam::210987654321:role/secret-reader'],
});

// Secrets and parameters by ARN (granted as given) and by name.
const arns = new Stack(app, 'ArnsAndNames');
SecretsSidecar.attach(fnIn(arns, 'Fn'), {
  layerArn: LAYER,
  prefetch: [
    'secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbCdEf',
    'secretsmanager:app/other',
    'ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/app/key',
    'ssm:plain-name',
  ],
});

// A path alone, SecureStrings under one customer managed key: kms:Decrypt on that key, via SSM
// only; no secret, so no Secrets Manager action at all.
const path = new Stack(app, 'PathWithKey');
SecretsSidecar.attach(fnIn(path, 'Fn'), {
  layerArn: LAYER,
  prefetch: ['ssm-path:/team/'],
  kmsDecrypt: ['arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab'],
});

// Bad input: each must throw before anything is attached.
const refusals = new Stack(app, 'Refusals');
const bad: Record<string, Partial<SecretsSidecarProps>> = {
  Tag: { prefetch: ['secretsmanager-tag:team=weather'] },
  NoPrefix: { prefetch: ['/app/key'] },
  Selector: { prefetch: ['ssm:/app/key:3'] },
  RelativePath: { prefetch: ['ssm-path:team/'] },
  UnknownPrefix: { prefetch: ['vault:app/key'] },
  TwoInOne: { prefetch: ['ssm:/a ssm:/b'] },
  Empty: { prefetch: [] },
  Role: { prefetch: ['ssm:/app/key'], roles: ['secret-reader'] },
  Ttl: { prefetch: ['ssm:/app/key'], ssmParameterStoreTtl: Duration.millis(1500) },
  Override: { prefetch: ['ssm:/app/key'], environment: { SECRETS_SIDECAR_PREFETCH: 'ssm:/other' } },
  LayerArn: { prefetch: ['ssm:/app/key'], layerArn: 'secrets-sidecar' },
  KmsKey: { prefetch: ['ssm:/app/key'], kmsDecrypt: ['alias-of-mine'] },
};
for (const [name, props] of Object.entries(bad)) {
  const fn = fnIn(refusals, `${name}Fn`);
  let outcome = 'accepted';
  try {
    SecretsSidecar.attach(fn, { layerArn: LAYER, prefetch: [], ...props });
  } catch (e) {
    outcome = (e as Error).message;
  }
  new CfnOutput(refusals, name, { value: outcome });
}

app.synth();

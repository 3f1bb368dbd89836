// The weather API of serverless.yml and template.yaml, as a CDK stack: the weather function
// (provided.al2023, handler bootstrap), the secrets-sidecar layer attached by ARN (a stack
// parameter, as published), an HTTP API route, and a role that may read exactly the three
// provider keys the sidecar prefetches.

import { CfnOutput, CfnParameter, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import { HttpApi, HttpMethod } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { SecretsSidecar } from './sidecar';

export interface WeatherStackProps extends StackProps {
  /** The function's zip (`bootstrap` at its root), as ./layer.zip.sh builds it. */
  readonly functionZip: string;
}

export class WeatherStack extends Stack {
  constructor(scope: Construct, id: string, props: WeatherStackProps) {
    super(scope, id, props);

    const layerArn = new CfnParameter(this, 'SidecarLayerArn', {
      type: 'String',
      description: 'The secrets-sidecar layer version for x86_64 (the secrets-sidecar layer of your region)',
      allowedPattern: '^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$',
    });

    const logGroup = new logs.LogGroup(this, 'WeatherFunctionLogs', {
      retention: logs.RetentionDays.TWO_WEEKS,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const fn = new lambda.Function(this, 'WeatherFunction', {
      description: 'Weather API; provider keys from the secrets-sidecar',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.X86_64,
      handler: 'bootstrap',
      code: lambda.Code.fromAsset(props.functionZip),
      memorySize: 256,
      timeout: Duration.seconds(10),
      logGroup,
      environment: {
        // Where the function finds its keys (these are its defaults, stated here for the reader).
        DARKSKY_KEY_PARAMETER: '/weather/darksky-api-key',
        OPENWEATHERMAP_SECRET: 'weather/openweathermap',
        OPENWEATHERMAP_SECRET_FIELD: 'appid',
        HERE_PARAMETER_PATH: '/weather/here/',
      },
    });

    // Prefetch all three at start-up, serve nothing else, keep values an hour. The Dark Sky and
    // HERE keys are SecureStrings, hence kmsDecrypt (only through SSM and Secrets Manager).
    SecretsSidecar.attach(fn, {
      layerArn: layerArn.valueAsString,
      prefetch: ['ssm:/weather/darksky-api-key', 'secretsmanager:weather/openweathermap', 'ssm-path:/weather/here/'],
      secretsManagerTtl: Duration.hours(1),
      ssmParameterStoreTtl: Duration.hours(1),
      kmsDecrypt: true,
    });

    const api = new HttpApi(this, 'WeatherApi', { description: 'weather-forecast' });
    api.addRoutes({
      path: '/{provider}/{latitude}/{longitude}',
      methods: [HttpMethod.GET],
      integration: new HttpLambdaIntegration('Weather', fn),
    });

    new CfnOutput(this, 'WeatherApiUrl', {
      description: 'Base URL; append /{provider}/{latitude}/{longitude}',
      value: api.apiEndpoint,
    });
  }
}

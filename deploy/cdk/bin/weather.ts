// The CDK app: one stack, the weather API. The function's zip defaults to the repository's
// dist/function.zip (./layer.zip.sh); `-c functionZip=PATH` names another.

import { App } from 'aws-cdk-lib';
import { WeatherStack } from '../lib/weather-stack';

const app = new App();
const functionZip: string = app.node.tryGetContext('functionZip') ?? '../../dist/function.zip';
new WeatherStack(app, 'WeatherForecast', {
  stackName: 'weather-forecast',
  description: 'weather-forecast: the weather function with the secrets-sidecar layer, an HTTP API, and an IAM policy that may read exactly the three provider keys',
  functionZip,
});

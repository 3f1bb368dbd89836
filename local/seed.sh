#!/usr/bin/env bash
# Creates the weather app's three keys in the compose file's moto (localhost:5000),
# with the AWS CLI. Give real keys in DARKSKY_KEY, OPENWEATHERMAP_APPID, HERE_API_KEY.
set -euo pipefail
export AWS_ENDPOINT_URL=http://localhost:5000 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
aws ssm put-parameter --name /weather/darksky-api-key --type SecureString --overwrite --value "${DARKSKY_KEY:-replace-me}"
aws secretsmanager create-secret --name weather/openweathermap --secret-string "{\"appid\":\"${OPENWEATHERMAP_APPID:-replace-me}\"}"
aws ssm put-parameter --name /weather/here/api-key --type SecureString --overwrite --value "${HERE_API_KEY:-replace-me}"

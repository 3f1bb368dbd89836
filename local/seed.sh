#!/usr/bin/env bash
# Stores the weather app's three keys in the compose file's moto (localhost:5000), with
# the AWS CLI. Safe to run again: parameters are overwritten and an existing secret
# gets a new version. Without DARKSKY_KEY, OPENWEATHERMAP_APPID and HERE_API_KEY it
# stores the keys the fake providers accept (local-fake-key).
set -euo pipefail
export AWS_ENDPOINT_URL=http://localhost:5000 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
fake=local-fake-key
aws ssm put-parameter --name /weather/darksky-api-key --type SecureString --overwrite --value "${DARKSKY_KEY:-$fake}" >/dev/null
owm="{\"appid\":\"${OPENWEATHERMAP_APPID:-$fake}\"}"
if aws secretsmanager describe-secret --secret-id weather/openweathermap >/dev/null 2>&1; then
  aws secretsmanager put-secret-value --secret-id weather/openweathermap --secret-string "$owm" >/dev/null
else
  aws secretsmanager create-secret --name weather/openweathermap --secret-string "$owm" >/dev/null
fi
aws ssm put-parameter --name /weather/here/api-key --type SecureString --overwrite --value "${HERE_API_KEY:-$fake}" >/dev/null
echo "seeded /weather/darksky-api-key, weather/openweathermap, /weather/here/api-key"

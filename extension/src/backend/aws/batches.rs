//! The batch calls (BatchGetSecretValue, GetParameters) as the SDK makes them: ids
//! split by the region their ARNs name, one call per region, the answers merged into
//! one [`Batch`] as if it had been one call.

use super::classify::classify;
use super::shapes::{parameter_value, permit, secret_value};
use super::AwsUpstream;
use crate::backend::{Batch, ErrorKind, UpstreamError, Via};
use crate::model::arn_region;

impl AwsUpstream {
    /// BatchGetSecretValue of ids that all live in one region.
    pub(super) async fn batch_get_secrets_in(&self, via: &Via, ids: &[String]) -> Result<Batch, UpstreamError> {
        let _permit = permit(&self.sm_permits).await?;
        let out = self
            .clients_for(via, ids.first().map(String::as_str))
            .await?
            .sm(via.attempts)
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids.to_vec()))
            .send()
            .await
            .map_err(classify)?;
        let mut batch = Batch::default();
        for e in out.secret_values.unwrap_or_default() {
            batch.values.push(secret_value(
                e.arn,
                e.name,
                e.version_id,
                e.secret_string,
                e.secret_binary,
                e.version_stages,
                e.created_date,
            )?);
        }
        for e in out.errors.unwrap_or_default() {
            let id = e.secret_id.unwrap_or_default();
            let err = UpstreamError::from_aws_code(e.error_code.as_deref(), None, e.message.as_deref().unwrap_or(""));
            batch.errors.push((id, err));
        }
        Ok(batch)
    }

    /// GetParameters of names that all live in one region.
    pub(super) async fn get_parameters_in(
        &self,
        via: &Via,
        names: &[String],
        decrypt: bool,
    ) -> Result<Batch, UpstreamError> {
        let _permit = permit(&self.ssm_permits).await?;
        let out = self
            .clients_for(via, names.first().map(String::as_str))
            .await?
            .ssm(via.attempts)
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(decrypt)
            .send()
            .await
            .map_err(classify)?;
        let mut batch = Batch::default();
        for p in out.parameters.unwrap_or_default() {
            batch.values.push(parameter_value(p)?);
        }
        for name in out.invalid_parameters.unwrap_or_default() {
            let err = UpstreamError::new(ErrorKind::NotFound, format!("ParameterNotFound: {name}"));
            batch.errors.push((name, err));
        }
        Ok(batch)
    }
}

/// `ids` grouped by the region their ARNs name, in the order first seen, so each
/// group is one call. Names, and ARNs of the `home` region, are one group.
pub(super) fn by_region<'a>(ids: &'a [String], home: Option<&str>) -> Vec<Vec<String>> {
    let mut groups: Vec<(Option<&'a str>, Vec<String>)> = Vec::new();
    for id in ids {
        let region = arn_region(id).filter(|r| Some(*r) != home);
        match groups.iter_mut().find(|(r, _)| *r == region) {
            Some((_, members)) => members.push(id.clone()),
            None => groups.push((region, vec![id.clone()])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// One batch out of one call per region. A call that failed as a whole fails the
/// batch only when it was the only call (exactly as before regions were split).
/// Otherwise a transient failure becomes each of its ids' error (the cache backs
/// them off), and a definitive one leaves its ids unanswered, so the cache fetches
/// them one by one, as it does when a whole batch is refused.
pub(super) fn merge(parts: Vec<(Vec<String>, Result<Batch, UpstreamError>)>) -> Result<Batch, UpstreamError> {
    if parts.len() == 1 {
        return parts
            .into_iter()
            .next()
            .map_or_else(|| Ok(Batch::default()), |(_, r)| r);
    }
    let mut out = Batch::default();
    for (ids, result) in parts {
        match result {
            Ok(b) => {
                out.values.extend(b.values);
                out.errors.extend(b.errors);
            }
            Err(e) if e.kind.is_transient() => out.errors.extend(ids.into_iter().map(|id| (id, e.clone()))),
            Err(e) => tracing::debug!(error = %e, ids = ids.len(), "batch call in one region refused"),
        }
    }
    Ok(out)
}

//! The settings of every role assumed for `roleArn`, checked as STS checks them:
//! the external id (`SECRETS_SIDECAR_ROLE_EXTERNAL_ID`) and the session name,
//! which names the function in the role owner's CloudTrail.

use super::reader::{Env, Reader};
use super::{vars, MAX_EXTERNAL_ID_LEN, MAX_SESSION_NAME_LEN, MIN_EXTERNAL_ID_LEN};
use crate::backend::RoleSettings;
use crate::tenant::role::DEFAULT_TAG_KEY;
use crate::tenant::TenantRole;

/// `SECRETS_SIDECAR_TENANT_ROLE` with `SECRETS_SIDECAR_TENANT_TAG_KEY`.
pub(super) fn tenant_role<E: Env>(r: &mut Reader<'_, E>) -> Option<TenantRole> {
    let key = r.raw(vars::TENANT_TAG_KEY);
    let Some(role) = r.raw(vars::TENANT_ROLE) else {
        if key.is_some() {
            r.fail(vars::TENANT_TAG_KEY, format!("is used only with {}", vars::TENANT_ROLE));
        }
        return None;
    };
    let key = key.unwrap_or_else(|| DEFAULT_TAG_KEY.to_owned());
    match TenantRole::parse(&role, &key) {
        Ok(r) => Some(r),
        Err(why) => {
            let var = if why.contains("session tag key") {
                vars::TENANT_TAG_KEY
            } else {
                vars::TENANT_ROLE
            };
            r.fail(var, why);
            None
        }
    }
}

/// `SECRETS_SIDECAR_ROLE_EXTERNAL_ID`, checked against STS's rules (never echoed).
pub(super) fn external_id<E: Env>(r: &mut Reader<'_, E>) -> Option<String> {
    let id = r.raw(vars::ROLE_EXTERNAL_ID)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c);
    if !(MIN_EXTERNAL_ID_LEN..=MAX_EXTERNAL_ID_LEN).contains(&id.len()) || !id.chars().all(allowed) {
        r.fail(
            vars::ROLE_EXTERNAL_ID,
            format!(
                "must be {MIN_EXTERNAL_ID_LEN}-{MAX_EXTERNAL_ID_LEN} characters of \
                 A-Z a-z 0-9 and _+=,.@:/- (STS's rule)"
            ),
        );
        return None;
    }
    Some(id)
}

/// An STS session name naming the function: characters STS refuses become `-`,
/// cut to 64 (Lambda's own function names always fit; this guards odd runtimes).
pub(super) fn session_name(function: &str) -> String {
    let name: String = function
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_SESSION_NAME_LEN)
        .collect();
    // STS wants at least two characters.
    if name.len() < 2 {
        RoleSettings::STANDALONE_SESSION.to_owned()
    } else {
        name
    }
}

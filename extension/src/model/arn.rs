//! The parts of ARNs the sidecar acts on: the region a secret or parameter lives in
//! (it decides which region's clients fetch it) and the shape of a role ARN (a
//! `roleArn` is checked strictly before anything is built for it).
//!
//! Partitions (`aws`, `aws-cn`, `aws-us-gov`, …) are not listed anywhere: a region is
//! recognised by its shape, and the SDK's endpoint rules map it to its partition.

/// Longest region name accepted (the longest real ones are about 16 characters).
const MAX_REGION_LEN: usize = 32;
/// IAM: a role name is 1–64 characters, its path at most 512.
const MAX_ROLE_NAME_LEN: usize = 64;
const MAX_ROLE_PATH_LEN: usize = 512;

/// The region field of `id` if `id` is an ARN naming one (`arn:P:S:REGION:…`);
/// `None` for plain names and ARNs without a region.
pub fn arn_region(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("arn:")?;
    let mut fields = rest.splitn(5, ':');
    let (_partition, _service, region) = (fields.next()?, fields.next()?, fields.next()?);
    // An ARN has account and resource fields after the region; without them this
    // is not an ARN but a name that happens to start with "arn:".
    fields.next()?;
    fields.next()?;
    (!region.is_empty()).then_some(region)
}

/// Whether `region` has the shape of an AWS region (`eu-west-1`, `cn-north-1`,
/// `us-gov-west-1`, `us-iso-east-1`): lowercase words joined by hyphens, ending in a
/// number. It becomes part of a host name, so nothing else may pass.
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    region.len() <= MAX_REGION_LEN
        && parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// Why a `roleArn` is refused, or `Ok` for `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`
/// with a 12-digit account and IAM's characters in path and name.
pub fn check_role_arn(arn: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "must be arn:PARTITION:iam::ACCOUNT:role/NAME";
    let mut fields = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(SHAPE);
    };
    let partition_ok = partition.starts_with("aws")
        && partition.len() <= 32
        && partition.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    if !partition_ok {
        return Err("has an unknown partition (aws, aws-cn, aws-us-gov, …)");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must name a 12-digit account");
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return Err(SHAPE);
    };
    // IAM paths are `/` or `/a/b/`: in the ARN, segments between `role/` and the name.
    let (path, name) = match path_and_name.rsplit_once('/') {
        Some((path, name)) => (Some(path), name),
        None => (None, path_and_name),
    };
    let iam_chars = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if name.is_empty() || name.len() > MAX_ROLE_NAME_LEN || !iam_chars(name) {
        return Err("has a role name that IAM would not accept (1-64 of A-Z a-z 0-9 +=,.@_-)");
    }
    if let Some(path) = path {
        let segments_ok = path.split('/').all(|seg| !seg.is_empty() && iam_chars(seg));
        if path.len() + 2 > MAX_ROLE_PATH_LEN || !segments_ok {
            return Err("has a role path that IAM would not accept");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regions_come_from_arns_only() {
        assert_eq!(
            arn_region("arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbCdEf"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-cn:ssm:cn-north-1:123456789012:parameter/app/key"),
            Some("cn-north-1")
        );
        assert_eq!(
            arn_region("arn:aws:iam::123456789012:role/r"),
            None,
            "IAM has no region"
        );
        assert_eq!(arn_region("app/db"), None);
        assert_eq!(arn_region("/app/key"), None);
        assert_eq!(arn_region("arn:eu-west-1"), None, "a name starting with arn:");
    }

    #[test]
    fn region_shapes() {
        for r in [
            "us-east-1",
            "eu-west-1",
            "cn-north-1",
            "us-gov-west-1",
            "us-iso-east-1",
            "ap-southeast-5",
        ] {
            assert!(is_region(r), "{r}");
        }
        for r in [
            "",
            "us",
            "us-east",
            "US-EAST-1",
            "us-east-1.evil.com",
            "us-east-1/",
            "us--1",
            "-east-1",
            "us-east-x",
            "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-1",
        ] {
            assert!(!is_region(r), "{r}");
        }
    }

    #[test]
    fn role_arns_are_checked_strictly() {
        for ok in [
            "arn:aws:iam::123456789012:role/reader",
            "arn:aws-cn:iam::123456789012:role/team/app/reader",
            "arn:aws-us-gov:iam::123456789012:role/a+b=c,d.e@f_g-h",
        ] {
            assert_eq!(check_role_arn(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("reader", "must be"),
            ("arn:aws:iam::123456789012:user/bob", "must be"),
            ("arn:aws:sts::123456789012:role/r", "must be"),
            ("arn:aws:iam:us-east-1:123456789012:role/r", "must be"),
            ("arn:aws:iam::1234:role/r", "12-digit"),
            ("arn:aws:iam::12345678901x:role/r", "12-digit"),
            ("arn:evil:iam::123456789012:role/r", "partition"),
            ("arn:aws:iam::123456789012:role/", "role name"),
            ("arn:aws:iam::123456789012:role/a b", "role name"),
            ("arn:aws:iam::123456789012:role/x:y", "role name"),
            ("arn:aws:iam::123456789012:role//r", "path"),
        ] {
            let err = check_role_arn(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("arn:aws:iam::123456789012:role/{}", "n".repeat(65));
        assert!(check_role_arn(&long).is_err());
    }

    proptest! {
        #[test]
        fn arn_parsing_never_panics(s in ".{0,80}") {
            let _ = arn_region(&s);
            let _ = check_role_arn(&s);
            if let Some(r) = arn_region(&s) {
                prop_assert!(!r.contains(':'));
            }
        }
    }
}

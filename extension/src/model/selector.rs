//! Which version of a value is asked for, and how SSM's `name:selector` suffix splits.

/// The AWS stage that a request without selector means.
pub const AWSCURRENT: &str = "AWSCURRENT";

/// Longest SSM label (AWS: 100 characters).
pub const MAX_LABEL_LEN: usize = 100;

/// Which version of a value is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// AWSCURRENT for a secret, the latest version for a parameter.
    Current,
    /// Secrets Manager `versionId`.
    VersionId(String),
    /// Secrets Manager `versionStage` other than AWSCURRENT.
    VersionStage(String),
    /// SSM `version` or `name:N`.
    Version(u64),
    /// SSM `label` or `name:label`.
    Label(String),
}

impl Selector {
    /// The suffix SSM's GetParameter understands (`:3`, `:prod`), if any.
    pub fn ssm_suffix(&self) -> Option<String> {
        match self {
            Selector::Version(n) => Some(format!(":{n}")),
            Selector::Label(l) => Some(format!(":{l}")),
            _ => None,
        }
    }
}

/// Splits `name:selector`. Parameter names cannot contain ':', but ARNs do: in
/// `arn:aws:ssm:region:account:parameter/x:3` only a ':' after the fifth one counts.
pub fn split_ssm_selector(name: &str) -> (&str, Option<&str>) {
    let start = if name.starts_with("arn:") {
        match name.match_indices(':').nth(4) {
            Some((i, _)) => i + 1,
            None => return (name, None),
        }
    } else {
        0
    };
    match name[start..].rfind(':') {
        Some(i) => (&name[..start + i], Some(&name[start + i + 1..])),
        None => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn arn_colons_are_not_selectors() {
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/app/key";
        assert_eq!(split_ssm_selector(arn), (arn, None));
        assert_eq!(
            split_ssm_selector("arn:aws:ssm:us-east-1:123456789012:parameter/app/key:4"),
            (arn, Some("4"))
        );
        assert_eq!(split_ssm_selector("/app/key:prod"), ("/app/key", Some("prod")));
        assert_eq!(split_ssm_selector("arn:aws:ssm"), ("arn:aws:ssm", None));
    }

    #[test]
    fn only_versions_and_labels_have_an_ssm_suffix() {
        assert_eq!(Selector::Version(3).ssm_suffix().as_deref(), Some(":3"));
        assert_eq!(Selector::Label("blue".into()).ssm_suffix().as_deref(), Some(":blue"));
        assert_eq!(Selector::Current.ssm_suffix(), None);
        assert_eq!(Selector::VersionStage("AWSPREVIOUS".into()).ssm_suffix(), None);
    }

    proptest! {
        #[test]
        fn split_never_loses_characters(s in "[a-z:/]{0,40}") {
            let (name, sel) = split_ssm_selector(&s);
            let rebuilt = match sel { Some(x) => format!("{name}:{x}"), None => name.to_string() };
            prop_assert_eq!(rebuilt, s);
        }
    }
}

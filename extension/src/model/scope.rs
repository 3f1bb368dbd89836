//! Where a value lives and who reads it: account, region and role.
//!
//! Today every value is read in the function's own account and region with its own
//! role: [`Scope::HOME`]. The open issues add values named by full ARN in other
//! regions and accounts, and roles assumed per request; those values must never share
//! a cache entry with the home scope's, so the scope is part of every cache key now.
//! The home scope holds nothing and hashes as one discriminant, which keeps the hit
//! path as cheap as it was without a scope.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope(Option<Arc<Parts>>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct Parts {
    account: Option<Box<str>>,
    region: Option<Box<str>>,
    role: Option<Box<str>>,
}

impl Scope {
    /// The function's own account, region and role.
    pub const HOME: Scope = Scope(None);

    /// A scope naming any of account, region and role; with none named it is [`Scope::HOME`].
    pub fn new(account: Option<&str>, region: Option<&str>, role: Option<&str>) -> Scope {
        if account.is_none() && region.is_none() && role.is_none() {
            return Scope::HOME;
        }
        Scope(Some(Arc::new(Parts {
            account: account.map(Box::from),
            region: region.map(Box::from),
            role: role.map(Box::from),
        })))
    }

    pub fn is_home(&self) -> bool {
        self.0.is_none()
    }

    pub fn account(&self) -> Option<&str> {
        self.0.as_ref().and_then(|p| p.account.as_deref())
    }

    pub fn region(&self) -> Option<&str> {
        self.0.as_ref().and_then(|p| p.region.as_deref())
    }

    pub fn role(&self) -> Option<&str> {
        self.0.as_ref().and_then(|p| p.role.as_deref())
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Scope::HOME"),
            Some(p) => write!(f, "Scope({:?})", p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_named_is_home_and_parts_tell_scopes_apart() {
        assert_eq!(Scope::new(None, None, None), Scope::HOME);
        assert!(Scope::default().is_home());
        let eu = Scope::new(None, Some("eu-west-1"), None);
        assert!(!eu.is_home());
        assert_eq!(eu.region(), Some("eu-west-1"));
        assert_eq!(eu.account(), None);
        assert_ne!(eu, Scope::HOME);
        assert_ne!(eu, Scope::new(Some("123456789012"), Some("eu-west-1"), None));
        assert_eq!(eu, Scope::new(None, Some("eu-west-1"), None));
        let role = Scope::new(None, None, Some("arn:aws:iam::1:role/r"));
        assert_eq!(role.role(), Some("arn:aws:iam::1:role/r"));
    }
}

//! (filled in by the cdk work)

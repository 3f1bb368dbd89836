//! Releases and what a user copies: the release artifacts (versioned, reproducible,
//! with checksums and SBOMs), the publish script against moto's Lambda API, the CDK
//! example's synthesized template, and the documentation under docs/.
//! Each module is one concern, each test runnable alone
//! (`cargo nextest run -p harness --test system -E 'test(release::publish::)'`).

mod artifacts;
mod cdk;
mod docs;
mod publish;

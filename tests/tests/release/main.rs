//! Releases and what a user copies: the release artifacts (versioned, reproducible,
//! with checksums and SBOMs), the publish script against moto's Lambda API, the CDK
//! example's synthesized template, and the documentation under docs/.
//! One test binary; each module is one concern, each test runnable alone
//! (`cargo nextest run -p harness --test release -E 'test(publish::)'`).

mod artifacts;
mod cdk;
mod docs;
mod publish;

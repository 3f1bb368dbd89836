//! The sidecar's integration tests: the real `secrets-sidecar` binary against moto
//! (through the fault proxy where calls are counted), a scripted Extensions API and raw
//! sockets. One test binary, so the AWS SDK is linked once; each module is one suite,
//! each test runnable alone (`cargo nextest run -p secrets-sidecar --test integration
//! -E 'test(faults::)'`).

mod access;
mod allowlist;
mod bad_input;
mod endpoints;
mod faults;
mod http_edges;
mod lambda_lifecycle;
mod limits;
mod rotation;
mod scopes;
mod sdk_clients;
mod standalone_moto;
mod tags;

//! The system tests: the emulator's contract, the sidecar and the weather function (or
//! an SDK function) end to end in emulated Lambda environments on every platform, the
//! lifecycle's faults, secrets hygiene, the demo, and the releases (`release::`, run by
//! `make release-check`). One test binary, so the AWS SDK is linked once; each module
//! is one concern, each test runnable alone (`cargo nextest run -p harness --test
//! system -E 'test(e2e::)'`).

mod budget;
mod contract;
mod contract_managed;
mod contract_modes;
mod contract_tenant;
mod demo;
mod e2e;
mod e2e_modes;
mod e2e_tenant;
mod e2e_tenant_hostile;
mod exec_env;
mod function_deps;
mod hygiene;
mod lifecycle_faults;
mod release;
mod sdk_function;
mod sdk_platforms;
mod sdk_rotation;
mod simulator_crosscheck;

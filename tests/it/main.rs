//! Integration tests: the real `atlas` binary, real HTTP to the sample API on
//! loopback, real PostgreSQL (one throwaway database per test).

mod api_tls;
mod data;
mod erp;
mod faults;
mod fleet;
mod foundation;
mod hostile;
mod manager;
mod oauth;
mod pacing;
mod package;
mod perf;
mod promises_cmd;
mod promises_run;
mod run;
mod shapes;
mod sync;
mod tls;
mod util;
mod verify;

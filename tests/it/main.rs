//! Integration tests: the real `atlas` binary, real HTTP to the sample API on
//! loopback, real PostgreSQL (one throwaway database per test).

mod data;
mod faults;
mod foundation;
mod pacing;
mod perf;
mod promises_cmd;
mod promises_run;
mod run;
mod shapes;
mod sync;
mod tls;
mod util;

//! Integration tests: the real `atlas` binary, real HTTP to the sample API on
//! loopback, real PostgreSQL (one throwaway database per test).

mod alerts;
mod api_tls;
mod data;
mod days;
mod erp;
mod exits;
mod faults;
mod fleet;
mod fleet_waves;
mod foundation;
mod history;
mod hostile;
mod limits;
mod manager;
mod oauth;
mod oauth_login;
mod pacing;
mod package;
mod perf;
mod promises_cmd;
mod promises_run;
mod rates;
mod refetch;
mod run;
mod shapes;
mod slow_db;
mod status;
mod sync;
mod task_xml;
mod tls;
mod util;
mod verify;
mod version_json;
mod windows;

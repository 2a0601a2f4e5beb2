//! HTTP, one concern a file (agent, auth, request, answer, failure, mask,
//! limit, body, headers, trust), re-exported here as one `http` namespace.
//!
//! Secrets reach the wire only: any URL shown to a person goes through
//! `redact`, and resolved secret values never implement `Display`.

pub mod agent;
pub mod answer;
pub mod auth;
pub mod body;
pub mod failure;
pub mod headers;
pub mod limit;
pub mod mask;
pub mod request;
pub mod trust;

pub use crate::userinfo::MASK;
pub use agent::*;
pub use answer::*;
pub use auth::*;
pub use failure::*;
pub use limit::*;
pub use mask::*;
pub use request::*;

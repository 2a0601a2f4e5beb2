//! `atlas check`: config, database and a probe of each route.

use crate::app::Env;
use crate::cli::CheckArgs;
use crate::exit::{usage, Exit};
use anyhow::Result;

pub fn check(_env: &Env<'_>, _a: &CheckArgs) -> Result<Exit> {
    Err(usage("atlas check is not available in this build yet"))
}

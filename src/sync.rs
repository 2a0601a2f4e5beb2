//! `atlas sync`: incremental loads for schedulers (SPEC §2).

use crate::app::Env;
use crate::cli::SyncArgs;
use crate::exit::{usage, Exit};
use anyhow::Result;

pub fn sync(_env: &Env<'_>, _a: &SyncArgs) -> Result<Exit> {
    Err(usage("atlas sync is not available in this build yet"))
}

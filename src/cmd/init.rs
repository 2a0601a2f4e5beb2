//! `atlas init`: creates or upgrades the control schema (idempotent, safe
//! to run concurrently). Needs no config file, only a database URL.

use super::Context;
use crate::db;
use crate::exit::Exit;
use anyhow::Result;

pub fn run(ctx: &Context<'_>) -> Result<Exit> {
    let db = ctx.database()?;
    let applied = db::migrate(&mut db.connect()?)?;
    let line = if applied.is_empty() {
        format!("Esquema atlas já atualizado em {db}")
    } else {
        format!(
            "Esquema atlas pronto em {db} (aplicadas: {})",
            applied.join(", ")
        )
    };
    ctx.style.say("✅", &line);
    Ok(Exit::Ok)
}

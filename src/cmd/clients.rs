//! `atlas clients`: the configured clients and their routes, one table.

use super::Context;
use crate::exit::Exit;
use crate::report;
use anyhow::Result;

pub fn run(ctx: &Context<'_>) -> Result<Exit> {
    let cfg = ctx.config()?;
    let rows: Vec<Vec<String>> = cfg
        .clients
        .values()
        .map(|c| {
            let routes: Vec<&str> = c.routes.keys().map(String::as_str).collect();
            vec![
                c.id.clone(),
                c.name.clone(),
                crate::http::redact(&c.base_url, None),
                c.auth.kind().to_string(),
                routes.join(", "),
            ]
        })
        .collect();
    report::out(&report::table(
        &["client", "name", "base_url", "auth", "routes"],
        &rows,
    ));
    Ok(Exit::Ok)
}

//! Many raw tables made sure of at once: a fleet's wave creates its
//! missing tables a few dozen per transaction, in two round trips, where
//! one at a time took six each (a fleet's first night across the network
//! was mostly that).

use super::batch_sql::literal;
use super::{create_raw_table_if_missing, raw_table_ddl};
use crate::ident::quote;
use anyhow::Result;
use postgres::types::Type;
use postgres::Client;

/// Creates those of `tables` that are missing, as
/// [`create_raw_table_if_missing`] does for one: each under its advisory
/// lock, taken in name order (two fleets creating the same tables wait for
/// each other, never deadlock). One round trip asks which exist; one
/// message creates the rest in one transaction. If that fails (another
/// process created one of them meanwhile, or the server refused one), it
/// is rolled back and each table is made sure of on its own, so each gets
/// its own verdict (so does each when the first question fails). Returns
/// one result per table, in order.
pub fn create_raw_tables_if_missing(conn: &mut Client, tables: &[&str]) -> Vec<Result<()>> {
    let quoted: Vec<String> = tables.iter().map(|t| quote(t)).collect();
    let present = conn.query_typed(
        "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL",
        &[(&quoted, Type::TEXT_ARRAY)],
    );
    let Ok(rows) = present else {
        // Each table on its own says why, with its error (a lost database
        // is told as such).
        return one_by_one(conn, tables);
    };
    let present: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut missing: Vec<&str> = tables
        .iter()
        .zip(&quoted)
        .filter(|(_, q)| !present.contains(q))
        .map(|(t, _)| *t)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() && conn.batch_execute(&create_sql(&missing)).is_err() {
        // Rolled back whole: each table again on its own, with its verdict.
        let _ = conn.batch_execute("ROLLBACK");
        return one_by_one(conn, tables);
    }
    tables.iter().map(|_| Ok(())).collect()
}

fn one_by_one(conn: &mut Client, tables: &[&str]) -> Vec<Result<()>> {
    tables
        .iter()
        .map(|t| create_raw_table_if_missing(conn, t))
        .collect()
}

/// One transaction creating `tables` (sorted): their advisory locks in
/// that order, then each table and its index.
fn create_sql(tables: &[&str]) -> String {
    let locks: Vec<String> = tables
        .iter()
        .map(|t| format!("pg_advisory_xact_lock(hashtext({}))", literal(t)))
        .collect();
    let mut sql = format!("BEGIN;\nSELECT {};\n", locks.join(", "));
    for t in tables {
        sql.push_str(&raw_table_ddl(t));
    }
    sql.push_str("COMMIT");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_locked_in_order_then_created_in_one_transaction() {
        let sql = create_sql(&["a_1", "b'2"]);
        assert!(sql.starts_with(
            "BEGIN;\nSELECT pg_advisory_xact_lock(hashtext(E'a_1')), pg_advisory_xact_lock(hashtext(E'b''2'));"
        ));
        assert_eq!(sql.matches("CREATE TABLE").count(), 2);
        assert!(sql.contains("CREATE TABLE \"b'2\""));
        assert!(sql.ends_with("COMMIT"));
    }
}

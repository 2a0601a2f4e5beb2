//! What makes a table a raw table: the columns a statement reads of it
//! (`raw_shape_sql!`, to ride along another statement's round trip) and
//! the verdict on them (`Shape::verdict`, pure).

use crate::exit::usage;
use anyhow::Result;
use postgres::Row;

/// Three columns saying whether the table named by the quoted identifier
/// in the parameter `$p` exists, its columns (`name type`) and whether
/// `hash_conteudo` alone is unique; read with [`Shape::at`].
#[macro_export]
macro_rules! raw_shape_sql {
    ($p:literal) => {
        concat!(
            "to_regclass(", $p, ") IS NOT NULL,
             coalesce((SELECT array_agg(a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod))
                       FROM pg_attribute a
                       WHERE a.attrelid = to_regclass(", $p, ") AND a.attnum > 0 AND NOT a.attisdropped),
                      '{}'),
             EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a
                         ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                     WHERE i.indrelid = to_regclass(", $p, ") AND i.indisunique AND i.indnatts = 1
                       AND a.attname = 'hash_conteudo')"
        )
    };
}

/// A table as [`raw_shape_sql!`] read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub present: bool,
    /// Its columns as `name type`.
    pub columns: Vec<String>,
    /// `hash_conteudo` alone is unique.
    pub unique_hash: bool,
}

impl Shape {
    /// The shape read at column `i` of `row` (three columns).
    pub fn at(row: &Row, i: usize) -> Shape {
        Shape {
            present: row.get(i),
            columns: row.get(i + 1),
            unique_hash: row.get(i + 2),
        }
    }

    /// Whether `table` exists, refused (exit 2) when it does without the
    /// raw table's columns or its unique hash.
    pub fn verdict(&self, table: &str) -> Result<bool> {
        if !self.present {
            return Ok(false);
        }
        for (name, ty) in [
            ("data_referencia", "date"),
            ("payload", "jsonb"),
            ("hash_conteudo", "text"),
        ] {
            if !self.columns.iter().any(|c| *c == format!("{name} {ty}")) {
                return Err(usage(format!(
                    "table {table} exists but has no column {name} {ty}: it is not an atlas raw table"
                )));
            }
        }
        if !self.unique_hash {
            return Err(usage(format!(
                "table {table} exists but hash_conteudo is not UNIQUE: loads would not be idempotent"
            )));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(columns: &[&str], unique_hash: bool) -> Shape {
        Shape {
            present: true,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            unique_hash,
        }
    }

    const RAW: [&str; 5] = [
        "id bigint",
        "data_coleta timestamp without time zone",
        "data_referencia date",
        "payload jsonb",
        "hash_conteudo text",
    ];

    #[test]
    fn a_missing_table_is_absent_and_a_raw_one_present() {
        assert!(!Shape::default().verdict("t").unwrap());
        assert!(shape(&RAW, true).verdict("t").unwrap());
    }

    #[test]
    fn a_table_that_is_not_a_raw_table_is_refused_naming_why() {
        let e = shape(&RAW[..4], true).verdict("t").unwrap_err();
        assert_eq!(crate::exit::classify(&e), crate::exit::Exit::Usage);
        assert!(
            format!("{e:#}").contains("no column hash_conteudo text"),
            "{e:#}"
        );
        let e = shape(&RAW, false).verdict("t").unwrap_err();
        assert!(format!("{e:#}").contains("not UNIQUE"), "{e:#}");
    }
}

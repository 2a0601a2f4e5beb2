//! SQL identifiers built from config names: sanitised, length-checked, quoted.
//!
//! PostgreSQL silently truncates identifiers past 63 bytes; two long names
//! could then land in one table. We refuse such names instead (exit 2),
//! except the `data_referencia` index name, which is shortened by a fixed,
//! documented rule because it is ours, not the old tool's.

use sha2::{Digest, Sha256};

/// PostgreSQL's NAMEDATALEN - 1.
pub const MAX_IDENT: usize = 63;

/// Lowercase ASCII letters, digits and `_`; anything else becomes `_`.
/// Empty names and names with nothing but separators are refused.
pub fn sanitize(name: &str) -> Result<String, String> {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().all(|c| c == '_') {
        return Err(format!(
            "'{name}' has no letters or digits to build a table name from"
        ));
    }
    Ok(s)
}

/// `dados_raw_cliente_{client}_{route}`, refused when it or its constraint
/// name would pass 63 bytes.
pub fn raw_table(client: &str, route: &str) -> Result<String, String> {
    let t = format!("dados_raw_cliente_{client}_{route}");
    let c = unique_constraint(&t);
    if c.len() > MAX_IDENT {
        return Err(format!(
            "table name {t} is {} bytes; with its constraint name {c} ({} bytes) it passes PostgreSQL's {MAX_IDENT}-byte limit: use a shorter client id or route name",
            t.len(),
            c.len()
        ));
    }
    Ok(t)
}

/// The old tool's constraint name.
pub fn unique_constraint(table: &str) -> String {
    format!("uq_{table}_hash")
}

/// `idx_{table}_data_referencia`, or when that passes 63 bytes,
/// `idx_` + the table name cut to fit + `_` + 8 hex digits of its SHA-256.
pub fn date_index(table: &str) -> String {
    let full = format!("idx_{table}_data_referencia");
    if full.len() <= MAX_IDENT {
        return full;
    }
    let digest = Sha256::digest(table.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let keep = MAX_IDENT - "idx_".len() - 1 - tag.len();
    format!("idx_{}_{tag}", &table[..keep.min(table.len())])
}

/// Double-quoted identifier (names are ASCII from `sanitize`, quotes doubled anyway).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_maps_and_refuses() {
        assert_eq!(sanitize("2151").unwrap(), "2151");
        assert_eq!(sanitize("Loja-Norte").unwrap(), "loja_norte");
        assert_eq!(
            sanitize("pedidos; DROP TABLE x").unwrap(),
            "pedidos__drop_table_x"
        );
        assert_eq!(sanitize("notas fiscais").unwrap(), "notas_fiscais");
        assert_eq!(sanitize("ação").unwrap(), "a__o");
        assert!(sanitize("").is_err());
        assert!(sanitize("--").is_err());
    }

    #[test]
    fn table_names_follow_the_seed() {
        let t = raw_table("2151", "pedidos").unwrap();
        assert_eq!(t, "dados_raw_cliente_2151_pedidos");
        assert_eq!(
            unique_constraint(&t),
            "uq_dados_raw_cliente_2151_pedidos_hash"
        );
        assert_eq!(
            date_index(&t),
            "idx_dados_raw_cliente_2151_pedidos_data_referencia"
        );
    }

    #[test]
    fn long_names_are_refused_not_truncated() {
        // constraint = 3 + table + 5 bytes; table = 18 + client + 1 + route.
        let route_ok = "r".repeat(63 - 8 - 18 - 1 - 4);
        let t = raw_table("2151", &route_ok).unwrap();
        assert_eq!(unique_constraint(&t).len(), 63);
        let e = raw_table("2151", &format!("{route_ok}x")).unwrap_err();
        assert!(e.contains("63-byte"), "{e}");
    }

    #[test]
    fn every_table_length_gets_an_index_name_that_fits() {
        for n in 1..=(63 - 8 - 23) {
            let t = raw_table("2151", &"r".repeat(n)).unwrap();
            let i = date_index(&t);
            assert!(i.len() <= MAX_IDENT, "{i}");
            assert!(i.starts_with("idx_dados_raw_cliente_2151_r"), "{i}");
        }
    }

    #[test]
    fn long_index_names_are_shortened_deterministically() {
        let t = raw_table("2151", &"r".repeat(32)).unwrap();
        let i = date_index(&t);
        assert_eq!(i.len(), 63);
        assert_eq!(i, date_index(&t));
        assert_ne!(i, date_index(&t.replace("rr", "rs")));
        assert!(i.starts_with("idx_dados_raw_cliente_2151_"));
    }

    #[test]
    fn quote_doubles_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}

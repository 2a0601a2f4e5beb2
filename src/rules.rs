//! `response_rules`: a route's ordered list of answers that do not mean what
//! their HTTP status says (an empty result as HTTP 500 with a fault body, an
//! error inside HTTP 200). The first rule whose every condition holds
//! decides; rules are checked before the default status handling.

use serde::Deserialize;
use serde_json::Value;

/// One rule as written; every condition given must hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The HTTP status, or a list of them.
    pub status: Option<Statuses>,
    /// JSON pointer into the body; alone, the value must be present and not null.
    pub pointer: Option<String>,
    /// The value at `pointer` equals this (a number and its text are equal: `"20"` = `20`).
    pub equals: Option<Value>,
    /// The value at `pointer`, as text, contains this.
    pub contains: Option<String>,
    /// The raw body contains this text.
    pub body_contains: Option<String>,
    /// What the answer means.
    pub then: Then,
}

/// `status`: one code or a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Statuses {
    One(u16),
    Many(Vec<u16>),
}

/// What a matched answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    /// A page with no records: the slice ends normally.
    Empty,
    /// Like a 503: asked again after the backoff or `Retry-After`.
    Retry,
    /// The slice fails with the matched text.
    Fail,
    /// Like a 401: the credentials are refused (exit 3).
    Auth,
}

impl Rule {
    /// Checks made at config load; `Err` = (key below the rule, message).
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Some(p) = &self.pointer {
            if !(p.is_empty() || p.starts_with('/')) {
                return Err((
                    "pointer".into(),
                    format!("'{p}' is not a JSON pointer (use \"\" or start with '/')"),
                ));
            }
        } else if self.equals.is_some() || self.contains.is_some() {
            let k = if self.equals.is_some() {
                "equals"
            } else {
                "contains"
            };
            return Err((k.into(), "needs 'pointer' to say which value".into()));
        }
        if self.status.is_none() && self.pointer.is_none() && self.body_contains.is_none() {
            return Err((
                "then".into(),
                "a rule needs a condition: status, pointer (with equals or contains) or body_contains".into(),
            ));
        }
        if let Some(Statuses::Many(v)) = &self.status {
            if v.is_empty() {
                return Err(("status".into(), "an empty list matches nothing".into()));
            }
        }
        if let Some(bad) = self.statuses().iter().find(|s| !(100..=599).contains(*s)) {
            return Err(("status".into(), format!("{bad} is not an HTTP status")));
        }
        Ok(())
    }

    fn statuses(&self) -> Vec<u16> {
        match &self.status {
            None => Vec::new(),
            Some(Statuses::One(s)) => vec![*s],
            Some(Statuses::Many(v)) => v.clone(),
        }
    }

    /// The matched text when every condition holds for this answer.
    fn matches(&self, status: u16, text: &str, json: Option<&Value>) -> Option<String> {
        let mut said = None;
        if self.status.is_some() && !self.statuses().contains(&status) {
            return None;
        }
        if let Some(needle) = &self.body_contains {
            if !text.contains(needle.as_str()) {
                return None;
            }
            said = Some(needle.clone());
        }
        if let Some(p) = &self.pointer {
            let v = json?.pointer(p)?;
            if v.is_null() {
                return None;
            }
            let shown = scalar_text(v);
            if let Some(want) = &self.equals {
                if v != want && !(is_scalar(v) && is_scalar(want) && shown == scalar_text(want)) {
                    return None;
                }
            }
            if let Some(needle) = &self.contains {
                if !shown.contains(needle.as_str()) {
                    return None;
                }
            }
            said = Some(format!("{p} = {shown}"));
        }
        Some(said.unwrap_or_else(|| format!("HTTP {status}")))
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// A string as itself, anything else as its JSON text.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first rule that matches an answer: its number (1-based), what it
/// says, and the matched text.
pub fn first_match(rules: &[Rule], status: u16, body: &str) -> Option<(usize, Then, String)> {
    if rules.is_empty() {
        return None;
    }
    let json: Option<Value> = rules
        .iter()
        .any(|r| r.pointer.is_some())
        .then(|| serde_json::from_str(body).ok())
        .flatten();
    rules.iter().enumerate().find_map(|(i, r)| {
        r.matches(status, body, json.as_ref())
            .map(|m| (i + 1, r.then, m))
    })
}

/// A body standing for an empty page: an empty array at the route's
/// records pointer, so pagination ends as on any empty page.
pub fn empty_body(records: &str) -> Vec<u8> {
    let mut v = Value::Array(Vec::new());
    if !records.is_empty() {
        for seg in records.trim_start_matches('/').split('/').rev() {
            let key = seg.replace("~1", "/").replace("~0", "~");
            v = serde_json::json!({ key: v });
        }
    }
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: Value) -> Vec<Rule> {
        let r: Vec<Rule> = serde_json::from_value(v).unwrap();
        r.iter().for_each(|x| x.check().unwrap());
        r
    }

    #[test]
    fn first_matching_rule_decides() {
        let r = rules(json!([
            {"status": 500, "body_contains": "Não existem registros", "then": "empty"},
            {"pointer": "/retorno/codigo_erro", "equals": "20", "then": "empty"},
            {"pointer": "/retorno/codigo_erro", "equals": 6, "then": "retry"},
            {"status": [500, 502], "then": "fail"}
        ]));
        let fault = r#"{"faultstring":"ERROR: Não existem registros para a página [1]!"}"#;
        assert_eq!(first_match(&r, 500, fault).unwrap().1, Then::Empty);
        assert_eq!(first_match(&r, 502, fault).unwrap().1, Then::Fail);
        assert_eq!(first_match(&r, 200, fault), None);
        let e20 = r#"{"retorno":{"status":"Erro","codigo_erro":20}}"#;
        assert_eq!(first_match(&r, 200, e20).unwrap().1, Then::Empty);
        let e6 = r#"{"retorno":{"status":"Erro","codigo_erro":"6"}}"#;
        let (n, then, text) = first_match(&r, 200, e6).unwrap();
        assert_eq!((n, then), (3, Then::Retry));
        assert_eq!(text, "/retorno/codigo_erro = 6");
        assert_eq!(first_match(&r, 200, "not json"), None);
    }

    #[test]
    fn contains_and_checks() {
        let r = rules(json!([{"pointer": "/erro", "contains": "bloqueada", "then": "retry"}]));
        assert!(first_match(&r, 200, r#"{"erro":"API bloqueada"}"#).is_some());
        assert!(first_match(&r, 200, r#"{"erro":"outra"}"#).is_none());
        let bad: Rule = serde_json::from_value(json!({"then": "empty"})).unwrap();
        assert!(bad.check().is_err());
        let bad: Rule = serde_json::from_value(json!({"equals": 1, "then": "empty"})).unwrap();
        assert_eq!(bad.check().unwrap_err().0, "equals");
        let bad: Rule = serde_json::from_value(json!({"status": 42, "then": "empty"})).unwrap();
        assert!(bad.check().is_err());
    }

    #[test]
    fn empty_body_puts_an_empty_array_at_the_records() {
        assert_eq!(empty_body(""), b"[]");
        assert_eq!(
            empty_body("/retorno/pedidos"),
            br#"{"retorno":{"pedidos":[]}}"#
        );
    }
}

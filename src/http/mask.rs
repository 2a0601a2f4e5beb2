//! What is shown of a request: names whose values are secrets, URLs
//! redacted, and the `Masker` that hides every secret value of a request
//! wherever it would appear (URL, header, body snippet, error text).

use super::auth::ResolvedAuth;
use crate::config::template::Secrets;
use crate::userinfo::{self, MASK};
use base64::Engine;
use url::Url;

/// A query param or header whose name contains one of these (ASCII
/// case-insensitive) has its value masked wherever it is shown.
const SECRET_NAME_PARTS: &[&str] = &[
    "token", "secret", "pass", "pwd", "key", "auth", "sig", "session", "senha", "chave",
];

/// Values of secret-named params and headers shorter than this are masked
/// by name only (in URLs): masking "1" in every text would hide everything.
const MIN_MASKED_VALUE: usize = 3;

/// True for a param or header name whose value is a secret.
pub fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|p| name.contains(p))
}

/// A URL fit for logs: userinfo and secret-looking query values masked.
pub fn redact(url: &Url, auth_param: Option<&str>) -> String {
    let mut u = userinfo::url(url).into_owned();
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = Some(k.as_ref()) == auth_param || secret_name(&k);
                (
                    k.into_owned(),
                    if secret {
                        MASK.to_string()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Masks secrets in anything shown to a person (error log, stderr, the
/// ledger's error texts): the user info of any URL in it, every value of
/// the client's resolved secret (from a `*_env` or `*_file`, wherever it
/// appears, also percent-encoded), and the values of headers and query
/// params named like secrets ([`secret_name`]).
#[derive(Default)]
pub struct Masker {
    auth_param: Option<String>,
    /// Longest first, so a value that contains another is masked whole.
    values: Vec<String>,
}

impl Masker {
    /// The secrets of `auth`, and of `headers` and `query` (name, value) pairs.
    pub fn new(
        auth: &ResolvedAuth,
        headers: &[(String, String)],
        query: &[(String, String)],
    ) -> Masker {
        let mut values: Vec<String> = Vec::new();
        match auth {
            ResolvedAuth::None => {}
            ResolvedAuth::OAuth2(source) => values.extend(source.secrets()),
            ResolvedAuth::Header { value, .. } | ResolvedAuth::Query { value, .. } => {
                let v = value.expose();
                values.push(v.to_string());
                // The token of "Bearer T", the credentials of "Basic B64".
                if let Some((scheme, rest)) = v.split_once(' ') {
                    values.push(rest.to_string());
                    if scheme.eq_ignore_ascii_case("basic") {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(rest.trim())
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok());
                        if let Some((_, password)) =
                            decoded.as_deref().and_then(|d| d.split_once(':'))
                        {
                            values.push(password.to_string());
                        }
                    }
                }
            }
        }
        values.retain(|v| !v.is_empty());
        for (name, value) in headers.iter().chain(query) {
            if secret_name(name) && value.chars().count() >= MIN_MASKED_VALUE {
                values.push(value.clone());
            }
        }
        let encoded: Vec<String> = values
            .iter()
            .map(|v| url::form_urlencoded::byte_serialize(v.as_bytes()).collect())
            .collect();
        values.extend(encoded);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker {
            auth_param: auth.query_param().map(str::to_string),
            values,
        }
    }

    /// Also masks every secret a route's templates read (`{env:}`, `{file:}`).
    pub fn with_secrets(mut self, secrets: &Secrets) -> Masker {
        for v in secrets.values() {
            let v = v.expose();
            if v.is_empty() {
                continue;
            }
            self.values.push(v.to_string());
            self.values
                .push(url::form_urlencoded::byte_serialize(v.as_bytes()).collect());
            // As it appears inside a JSON string (an echoed body).
            let json = serde_json::Value::from(v).to_string();
            self.values.push(json[1..json.len() - 1].to_string());
        }
        self.values.retain(|v| !v.is_empty());
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self.values.dedup();
        self
    }

    /// `text` with every secret value replaced by `***`.
    pub fn text(&self, text: &str) -> String {
        let mut out = userinfo::text(text).into_owned();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// A URL fit for logs: [`redact`], then every secret value masked.
    pub fn url(&self, url: &Url) -> String {
        let secrets: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, v)| secret_name(k) && v.chars().count() >= MIN_MASKED_VALUE)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let redacted = redact(url, self.auth_param.as_deref());
        let mut out = self.text(&redacted);
        for (_, v) in secrets {
            out = out.replace(&v, MASK);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, SecretValue};

    #[test]
    fn redaction_masks_auth_and_secret_looking_params() {
        let u =
            Url::parse("https://user:pw@api.test/x?page=2&apikey=SEGREDO&chave_api=abc&token=t0k")
                .unwrap();
        let r = redact(&u, Some("chave_api"));
        assert!(
            !r.contains("SEGREDO") && !r.contains("abc") && !r.contains("t0k") && !r.contains("pw"),
            "{r}"
        );
        assert!(r.contains("page=2"), "{r}");
    }

    #[test]
    fn names_containing_a_secret_word_are_secret() {
        for n in [
            "client_password",
            "client_secret",
            "my_password",
            "passwd",
            "PWD",
            "x-api-key",
            "Signature",
            "sessionid",
            "SENHA_app",
            "chave",
            "Authorization",
            "access_token",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in ["page", "data_inicial", "por_pagina", "cursor", "limit"] {
            assert!(!secret_name(n), "{n}");
        }
        let u = Url::parse(
            "https://api.test/x?page=2&client_password=a1&client_secret=b2&my_password=c3\
             &passwd=d4&pwd=e5&signature=f6&sessionid=g7",
        )
        .unwrap();
        let r = redact(&u, None);
        assert_eq!(
            r,
            "https://api.test/x?page=2&client_password=***&client_secret=***&my_password=***\
             &passwd=***&pwd=***&signature=***&sessionid=***"
        );
    }

    #[test]
    fn the_masker_hides_secret_values_wherever_they_appear() {
        let auth = ResolvedAuth::Query {
            param: "code".into(),
            value: SecretValue::new("s3cr3t/+v".into()),
        };
        let headers = vec![
            ("x-api-key".to_string(), "HEADERKEY".to_string()),
            ("Accept-Language".to_string(), "pt-BR".to_string()),
            ("x-sig".to_string(), "1".to_string()),
        ];
        let query = vec![("client_secret".to_string(), "QSECRET".to_string())];
        let m = Masker::new(&auth, &headers, &query);
        let body = "bad code s3cr3t/+v for HEADERKEY and QSECRET in pt-BR, 1 try";
        assert_eq!(
            m.text(body),
            "bad code *** for *** and *** in pt-BR, 1 try",
            "short values are masked by name only"
        );
        let u = Url::parse(
            "https://api.test/p/s3cr3t%2F%2Bv?code=s3cr3t%2F%2Bv&echo=s3cr3t%2F%2Bv&pwd=zz",
        )
        .unwrap();
        let shown = m.url(&u);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("zz"), "{shown}");
        // Bearer and Basic: the token and the password alone are secrets too.
        let bearer = ResolvedAuth::Header {
            name: "Authorization".into(),
            value: SecretValue::new("Bearer tok-123".into()),
        };
        assert_eq!(
            Masker::new(&bearer, &[], &[]).text("got tok-123"),
            "got ***"
        );
        let basic = ResolvedAuth::resolve(
            &Auth::Basic {
                user: "u".into(),
                password: crate::config::Secret::Env {
                    var: "P".into(),
                    key: "password_env".into(),
                },
            },
            &|_| Some("hunter22".into()),
        )
        .unwrap();
        assert_eq!(
            Masker::new(&basic, &[], &[]).text("password hunter22 refused"),
            "password *** refused"
        );
    }
}

//! How an OAuth2 client authenticates at the token endpoint (RFC 6749
//! §2.3.1): HTTP Basic with the id and secret each form-urlencoded, then
//! joined by `:` and base64-encoded (the default: servers must support it),
//! or `client_id` and `client_secret` in the form body. A client without a
//! secret (a public client) sends only `client_id` in the body either way:
//! Basic is for clients that have a password (§2.3.1, §3.2.1).

use crate::config::ClientAuth;
use base64::Engine;

/// Puts the client's credentials in `form` or returns the `Authorization`
/// header that carries them.
pub fn apply<'a>(
    how: ClientAuth,
    id: &'a str,
    secret: Option<&'a str>,
    form: &mut Vec<(&'a str, &'a str)>,
) -> Option<String> {
    match (how, secret) {
        (ClientAuth::Basic, Some(secret)) => Some(basic(id, secret)),
        (_, secret) => {
            form.push(("client_id", id));
            form.extend(secret.map(|s| ("client_secret", s)));
            None
        }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))`.
pub fn basic(id: &str, secret: &str) -> String {
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The config word of `how`.
pub fn word(how: ClientAuth) -> &'static str {
    match how {
        ClientAuth::Basic => "basic",
        ClientAuth::Body => "body",
    }
}

/// Where the credentials went, for a refusal's message.
pub fn how(how: ClientAuth, has_secret: bool) -> &'static str {
    match (how, has_secret) {
        (_, false) => "client_id sent in the form body, no secret",
        (ClientAuth::Basic, true) => {
            "sent by HTTP Basic; a server that wants them in the form body needs \"body\""
        }
        (ClientAuth::Body, true) => {
            "sent in the form body; a server that wants HTTP Basic needs \"basic\""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_encodes_each_part_then_joins_them() {
        let mut form = vec![("grant_type", "client_credentials")];
        let h = apply(ClientAuth::Basic, "app 1", Some("s:é+/"), &mut form);
        let b64 = h.as_deref().and_then(|h| h.strip_prefix("Basic ")).unwrap();
        let pair = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(pair).unwrap(), "app+1:s%3A%C3%A9%2B%2F");
        assert_eq!(
            form,
            [("grant_type", "client_credentials")],
            "nothing in the body"
        );
    }

    #[test]
    fn body_and_public_clients_use_the_form() {
        let mut form = vec![];
        assert_eq!(apply(ClientAuth::Body, "app", Some("s"), &mut form), None);
        assert_eq!(form, [("client_id", "app"), ("client_secret", "s")]);
        let mut form = vec![];
        assert_eq!(apply(ClientAuth::Basic, "app", None, &mut form), None);
        assert_eq!(form, [("client_id", "app")]);
    }
}

//! The top-level `notify` block: who is told at the end of a run (a
//! command given the run's `--json` object on stdin, a webhook given a
//! POST), on which outcomes, within what time. The webhook's URL is a
//! secret (Slack's are): the file names only the environment variable
//! that holds it.

use super::ranges;
use serde::Deserialize;
use std::time::Duration;

/// Seconds a notifier has when `timeout_secs` is not given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// The block as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub on: Vec<String>,
    pub command: Option<Vec<String>>,
    pub webhook_url_env: Option<String>,
    pub timeout_secs: Option<u64>,
}

/// Outcomes a notification is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct On {
    /// A run that ended with exit code 0.
    pub success: bool,
    /// Any other exit code (failed slices, environment, interrupted, an error).
    pub failure: bool,
}

/// The validated block.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub on: On,
    /// Program and arguments (no shell), given the `--json` object on stdin.
    pub command: Option<Vec<String>>,
    /// The environment variable holding the webhook's URL.
    pub webhook_url_env: Option<String>,
    /// How long each notifier may take before it is cut.
    pub timeout: Duration,
}

impl Notify {
    /// Whether a run that ended with `exit_code` is notified.
    pub fn wants(&self, exit_code: u8) -> bool {
        if exit_code == 0 {
            self.on.success
        } else {
            self.on.failure
        }
    }
}

/// The block checked, or the key (under `notify`) and why not.
pub fn validate(raw: RawNotify) -> Result<Notify, (String, String)> {
    let bad = |k: &str, why: &str| (k.to_string(), why.to_string());
    let mut on = On {
        success: false,
        failure: false,
    };
    if raw.on.is_empty() {
        return Err(bad("on", "must list \"failure\", \"success\" or both"));
    }
    for o in &raw.on {
        match o.as_str() {
            "failure" => on.failure = true,
            "success" => on.success = true,
            other => {
                return Err(bad(
                    "on",
                    &format!("'{other}' is not \"failure\" or \"success\""),
                ))
            }
        }
    }
    if let Some(c) = &raw.command {
        if c.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(bad(
                "command",
                "must name a program: [\"prog\", \"arg\", …]",
            ));
        }
    }
    if let Some(e) = &raw.webhook_url_env {
        let name = !e.is_empty()
            && !e.starts_with(|c: char| c.is_ascii_digit())
            && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name {
            return Err(bad(
                "webhook_url_env",
                "must name an environment variable (the URL itself is a secret)",
            ));
        }
    }
    if raw.command.is_none() && raw.webhook_url_env.is_none() {
        return Err(bad("command", "give command, webhook_url_env or both"));
    }
    ranges::check_count(
        "timeout_secs",
        ranges::NOTIFY_TIMEOUT_SECS,
        raw.timeout_secs,
    )
    .map_err(|(k, m)| (k.to_string(), m))?;
    Ok(Notify {
        on,
        command: raw.command,
        webhook_url_env: raw.webhook_url_env,
        timeout: Duration::from_secs(raw.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: serde_json::Value) -> RawNotify {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_block_needs_outcomes_and_a_notifier() {
        let n = validate(raw(serde_json::json!({
            "on": ["failure"], "command": ["mail", "-s", "atlas"]
        })))
        .unwrap();
        assert!(n.wants(1) && n.wants(130) && !n.wants(0));
        assert_eq!(n.timeout, Duration::from_secs(10));
        let n = validate(raw(serde_json::json!({
            "on": ["success", "failure"], "webhook_url_env": "SLACK_URL", "timeout_secs": 3
        })))
        .unwrap();
        assert!(n.wants(0) && n.wants(3));
        for (v, key) in [
            (serde_json::json!({"on": [], "command": ["x"]}), "on"),
            (
                serde_json::json!({"on": ["sempre"], "command": ["x"]}),
                "on",
            ),
            (serde_json::json!({"on": ["failure"]}), "command"),
            (
                serde_json::json!({"on": ["failure"], "command": []}),
                "command",
            ),
            (
                serde_json::json!({"on": ["failure"], "command": [" "]}),
                "command",
            ),
            (
                serde_json::json!({"on": ["failure"], "webhook_url_env": "https://hooks"}),
                "webhook_url_env",
            ),
            (
                serde_json::json!({"on": ["failure"], "command": ["x"], "timeout_secs": 0}),
                "timeout_secs",
            ),
        ] {
            assert_eq!(validate(raw(v.clone())).unwrap_err().0, key, "{v}");
        }
    }
}

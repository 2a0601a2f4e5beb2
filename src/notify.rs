//! Notifications at the end of a run (`notify`): the configured command,
//! given the run's `--json` object on stdin, and the webhook, given a POST
//! of `{"text": <one line>, "atlas": <the object>}`, both at once, each
//! within the block's timeout. A notifier that fails or hangs is reported
//! back (and cut at the timeout); what it says never changes the run.
//!
//! The command gets no shell and no pipe to atlas: its stdin is a file
//! holding the object, its stdout and stderr go to another file whose end
//! is quoted when it fails, so neither a command that never reads stdin
//! nor one that leaves a child behind can hold the run up. The webhook's
//! URL is a secret: it never appears in what is reported.

use crate::config::notify::Notify;
use crate::userinfo;
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often a running command is looked at.
const POLL: Duration = Duration::from_millis(20);

/// Characters of a failed command's output quoted in its report.
const OUTPUT_SHOWN: usize = 300;

/// What each notifier came to: (`command` or `webhook`, Ok or why not).
pub type Delivered = Vec<(&'static str, Result<(), String>)>;

/// Sends `object` (and `text`, for the webhook) to the notifiers of `n`;
/// `webhook_url` is the URL read from `webhook_url_env`, or why it cannot
/// be (the variable is not set).
pub fn send(
    n: &Notify,
    object: &str,
    text: &str,
    webhook_url: Option<Result<String, String>>,
) -> Delivered {
    let input = object;
    std::thread::scope(|s| {
        let command = n
            .command
            .as_ref()
            .map(|argv| s.spawn(|| ("command", run_command(argv, input.as_bytes(), n.timeout))));
        let webhook = webhook_url.map(|url| {
            s.spawn(move || {
                // The object goes as it is, text already (a fleet's is large).
                let body = format!("{{\"text\":{},\"atlas\":{object}}}", Value::from(text));
                ("webhook", url.and_then(|u| post(&u, &body, n.timeout)))
            })
        });
        [command, webhook]
            .into_iter()
            .flatten()
            .map(|h| {
                h.join()
                    .unwrap_or(("notify", Err("the notifier's thread panicked".into())))
            })
            .collect()
    })
}

/// Runs `argv` with `input` on stdin; Ok if it exits 0 within `timeout`.
pub fn run_command(argv: &[String], input: &[u8], timeout: Duration) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no program")?;
    let stdin = Scratch::with(input).map_err(|e| format!("cannot write its input: {e}"))?;
    let output = Scratch::with(b"").map_err(|e| format!("cannot make its output file: {e}"))?;
    let (Ok(i), Ok(o), Ok(e)) = (
        stdin.file.try_clone(),
        output.file.try_clone(),
        output.file.try_clone(),
    ) else {
        return Err("cannot hand it its files".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::from(i))
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e));
    own_group(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill(&mut child);
                return Err(format!(
                    "{program} did not end within {}s: stopped",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                kill(&mut child);
                return Err(format!("cannot wait for {program}: {e}"));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let said = output.tail();
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    Err(format!("{program} ended with {status}{said}"))
}

/// POSTs `body` to `url`; Ok on a 2xx answer within `timeout`.
pub fn post(url: &str, body: &str, timeout: Duration) -> Result<(), String> {
    let agent = crate::http::agent_trusting(timeout, &[]);
    let answer = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body);
    match answer {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the webhook answered HTTP {}", r.status().as_u16())),
        Err(e) => Err(mask(&format!("cannot reach the webhook: {e}"), url)),
    }
}

/// `text` without `url` or the parts of it that hold its secret (path,
/// query, user info).
pub fn mask(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    if url.is_empty() {
        return out;
    }
    out = out.replace(url, "***");
    if let Ok(u) = url::Url::parse(url) {
        out = out.replace(u.as_str(), "***");
        if u.path().len() > 1 {
            out = out.replace(u.path(), "/***");
        }
        if let Some(q) = u.query().filter(|q| !q.is_empty()) {
            out = out.replace(q, "***");
        }
    }
    userinfo::text(&out).into_owned()
}

/// The command in a process group of its own (Unix), so that stopping it
/// stops what it started.
#[cfg(unix)]
fn own_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

#[cfg(not(unix))]
fn own_group(_: &mut Command) {}

/// Stops the command (its whole group on Unix) and reaps it.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    {
        extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        const SIGKILL: i32 = 9;
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group
            // the child leads (made by `own_group`); no memory is involved.
            unsafe {
                kill(-pid, SIGKILL);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A file of this process's in the temporary directory, removed on drop.
struct Scratch {
    path: PathBuf,
    file: File,
}

impl Scratch {
    fn with(content: &[u8]) -> std::io::Result<Scratch> {
        let path = std::env::temp_dir().join(format!(
            "atlas-notify-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let scratch = Scratch {
            path,
            file: file.try_clone()?,
        };
        file.write_all(content)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(scratch)
    }

    /// The end of what was written to it, as one line.
    fn tail(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&self.path) {
            let _ = f.read_to_end(&mut bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let start = text
            .char_indices()
            .rev()
            .nth(OUTPUT_SHOWN)
            .map_or(0, |(i, _)| i);
        crate::report::snippet(&text[start..], OUTPUT_SHOWN, "")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn argv(line: &[&str]) -> Vec<String> {
        line.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_command_reads_the_object_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got.json");
        let script = format!("cat > '{}'", out.display());
        run_command(
            &argv(&["sh", "-c", &script]),
            b"{\"a\":1}",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"a\":1}");
    }

    #[test]
    fn a_failing_command_is_reported_with_the_end_of_its_output() {
        let e = run_command(
            &argv(&["sh", "-c", "echo 'smtp: relay refused' >&2; exit 4"]),
            b"{}",
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.contains("4") && e.contains("smtp: relay refused"), "{e}");
        let e =
            run_command(&argv(&["/no/such/program"]), b"{}", Duration::from_secs(5)).unwrap_err();
        assert!(e.starts_with("cannot start /no/such/program"), "{e}");
    }

    #[test]
    fn a_hanging_command_and_its_children_are_cut_at_the_timeout() {
        let started = Instant::now();
        // A child that never reads its stdin and outlives its parent's kill.
        let e = run_command(
            &argv(&["sh", "-c", "sleep 30 & sleep 30"]),
            &vec![b'x'; 1 << 20],
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.contains("did not end within 1s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_webhook_url_never_shows_in_a_report() {
        let url = "http://127.0.0.1:1/services/T000/B000/segredoXYZ?k=abc";
        let e = post(url, r#"{"text":"x"}"#, Duration::from_secs(2)).unwrap_err();
        assert!(!e.contains("segredoXYZ") && !e.contains("k=abc"), "{e}");
        assert_eq!(
            mask(
                &format!("bad uri {url} at /services/T000/B000/segredoXYZ"),
                url
            ),
            "bad uri *** at /***"
        );
    }
}

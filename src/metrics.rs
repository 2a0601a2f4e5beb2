//! The metrics textfile (`metrics_file`): per (client, route) gauges of its
//! last run in the Prometheus text exposition format, for node_exporter's
//! textfile collector.
//!
//! A run rewrites only its own pairs: the file's other pairs are read back
//! and kept, so one file serves a fleet split into several runs, and a
//! pair's last success survives its failed runs. The file is replaced
//! whole (a temporary file beside it, then a rename), so a reader never
//! sees it half-written; writers of one file take turns under a lock on a
//! `.lock` file beside it.

use crate::requests::{Requests, CLASSES};
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// One metric family.
struct Family {
    name: &'static str,
    help: &'static str,
    /// Its samples carry a `class` label (`2xx` … `other`).
    by_class: bool,
}

const FAMILIES: [Family; 11] = [
    Family {
        name: "atlas_last_run_timestamp_seconds",
        help: "Unix time the last run of the pair (scrap run, sync or sync --all) ended.",
        by_class: false,
    },
    Family {
        name: "atlas_last_success_timestamp_seconds",
        help: "Unix time the last run of the pair that ended with exit code 0 ended.",
        by_class: false,
    },
    Family {
        name: "atlas_last_run_exit_code",
        help: "Exit code of the last run of the pair (0 ok, 1 failed slices, 2 usage, 3 environment, 130 interrupted).",
        by_class: false,
    },
    Family {
        name: "atlas_records_inserted",
        help: "Rows the last run of the pair inserted into its raw table.",
        by_class: false,
    },
    Family {
        name: "atlas_records_duplicated",
        help: "Records the last run of the pair found already loaded.",
        by_class: false,
    },
    Family {
        name: "atlas_slices_failed",
        help: "Slices of the scrap of the last run of the pair that failed.",
        by_class: false,
    },
    Family {
        name: "atlas_http_requests",
        help: "Requests the last run of the pair sent, by the class of the answer's status (other: no answer).",
        by_class: true,
    },
    Family {
        name: "atlas_http_429",
        help: "Answers 429 (Too Many Requests) the last run of the pair got.",
        by_class: false,
    },
    Family {
        name: "atlas_retries",
        help: "Attempts the last run of the pair made again.",
        by_class: false,
    },
    Family {
        name: "atlas_run_duration_seconds",
        help: "Seconds the last run of the pair took.",
        by_class: false,
    },
    Family {
        name: "atlas_loaded_until_timestamp_seconds",
        help: "Unix time of 00:00 UTC of the last day loaded without a gap for the pair.",
        by_class: false,
    },
];

const LAST_SUCCESS: usize = 1;
const LOADED_UNTIL: usize = 10;

/// A sample of a pair: its family (index in `FAMILIES`) and class label.
type Key = (usize, Option<String>);

/// Pairs and their samples, as in the file.
type Samples = BTreeMap<(String, String), BTreeMap<Key, f64>>;

/// A pair's figures from one run.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRun {
    pub client: String,
    pub route: String,
    /// When the run ended (Unix seconds).
    pub ended: f64,
    pub exit_code: u8,
    pub inserted: i64,
    pub duplicated: i64,
    pub slices_failed: i64,
    pub http: Requests,
    pub retries: i64,
    pub duration_secs: f64,
    /// The last day loaded without a gap; `None`: unknown or nothing
    /// (the file's value, if any, is kept).
    pub loaded_until: Option<NaiveDate>,
}

impl PairRun {
    /// A pair's figures from its `--json` object (`scrap run`, `sync`, or
    /// one of `sync --all`'s pairs); `None` without client and route.
    pub fn from_summary(v: &Value, ended: f64) -> Option<PairRun> {
        let n = |k: &str| v[k].as_i64().unwrap_or(0);
        let h = |k: &str| v["http_requests"][k].as_i64().unwrap_or(0);
        Some(PairRun {
            client: v["client"].as_str()?.to_string(),
            route: v["route"].as_str()?.to_string(),
            ended,
            exit_code: v["exit_code"]
                .as_u64()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1),
            inserted: n("inserted"),
            duplicated: n("duplicates"),
            slices_failed: n("slices_failed"),
            http: Requests {
                c2xx: h("2xx"),
                c3xx: h("3xx"),
                c4xx: h("4xx"),
                c5xx: h("5xx"),
                other: h("other"),
                too_many: n("http_429"),
            },
            retries: n("retries"),
            duration_secs: v["elapsed_secs"].as_f64().unwrap_or(0.0),
            loaded_until: v["loaded_until"].as_str().and_then(crate::dates::parse_day),
        })
    }

    /// The run's samples, given the pair's samples in the file before.
    fn samples(&self, before: Option<&BTreeMap<Key, f64>>) -> BTreeMap<Key, f64> {
        let kept = |f: usize| before.and_then(|b| b.get(&(f, None)).copied());
        let mut s = BTreeMap::new();
        let mut put = |f: usize, v: f64| {
            s.insert((f, None), v);
        };
        put(0, self.ended);
        let success = (self.exit_code == 0).then_some(self.ended);
        if let Some(t) = success.or_else(|| kept(LAST_SUCCESS)) {
            put(LAST_SUCCESS, t);
        }
        put(2, f64::from(self.exit_code));
        put(3, self.inserted as f64);
        put(4, self.duplicated as f64);
        put(5, self.slices_failed as f64);
        put(7, self.http.too_many as f64);
        put(8, self.retries as f64);
        put(9, self.duration_secs);
        let loaded = self
            .loaded_until
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp() as f64);
        if let Some(t) = loaded.or_else(|| kept(LOADED_UNTIL)) {
            put(LOADED_UNTIL, t);
        }
        let h = &self.http;
        for (class, n) in CLASSES
            .iter()
            .zip([h.c2xx, h.c3xx, h.c4xx, h.c5xx, h.other])
        {
            s.insert((6, Some(class.to_string())), n as f64);
        }
        s
    }
}

/// Rewrites `path` with `runs` over the pairs it held: atomically, under a
/// lock shared by every atlas process writing it.
pub fn write(path: &Path, runs: &[PairRun]) -> io::Result<()> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(beside(path, ".lock", false))?;
    lock.lock()?;
    let before = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        // Unreadable: writing over it would lose the other pairs.
        Err(e) => return Err(e),
    };
    let text = render(&merge(parse(&before), runs));
    let tmp = beside(path, &format!(".{}.tmp", std::process::id()), true);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// `dir/name{suffix}`, hidden (`dir/.name{suffix}`) when `hide`: the
/// textfile collector reads `*.prom` files only, and skips neither.
fn beside(path: &Path, suffix: &str, hide: bool) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "atlas.prom".into());
    let dot = if hide { "." } else { "" };
    path.with_file_name(format!("{dot}{name}{suffix}"))
}

/// The file's pairs with `runs` over them.
fn merge(mut samples: Samples, runs: &[PairRun]) -> Samples {
    for r in runs {
        let key = (r.client.clone(), r.route.clone());
        let new = r.samples(samples.get(&key));
        samples.insert(key, new);
    }
    samples
}

/// The exposition text: each family once, with its HELP and TYPE, then
/// its samples by client and route.
fn render(samples: &Samples) -> String {
    let mut out = String::new();
    for (f, family) in FAMILIES.iter().enumerate() {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} gauge", family.name);
        for ((client, route), pair) in samples {
            for ((g, class), v) in pair.range((f, None)..) {
                if *g != f {
                    break;
                }
                let _ = write!(
                    out,
                    "{}{{client=\"{}\",route=\"{}\"",
                    family.name,
                    escape(client),
                    escape(route)
                );
                if let Some(c) = class {
                    let _ = write!(out, ",class=\"{}\"", escape(c));
                }
                let _ = writeln!(out, "}} {v}");
            }
        }
    }
    out
}

/// A label value as the format writes it.
fn escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The samples of a file this module wrote; lines it cannot read (another
/// family, another writer's) are left out.
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            log::debug!("metrics file: line not read: {line}");
            continue;
        };
        let Some(f) = FAMILIES.iter().position(|x| x.name == name) else {
            continue;
        };
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (Some(client), Some(route)) = (get("client"), get("route")) else {
            continue;
        };
        let class = get("class").filter(|_| FAMILIES[f].by_class);
        samples
            .entry((client, route))
            .or_default()
            .insert((f, class), value);
    }
    samples
}

/// A sample's labels, as (name, value).
type Labels = Vec<(String, String)>;

/// `name{a="x",b="y"} value`: its name, labels and value.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let open = line.find('{')?;
    let name = &line[..open];
    let mut labels = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(r) = rest.strip_prefix('}') {
            let value = r.split_whitespace().next()?.parse().ok()?;
            return Some((name, labels, value));
        }
        let eq = rest.find("=\"")?;
        let label = rest[..eq].to_string();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((label, value));
        rest = &rest[eq + 2 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client: &str, route: &str, ended: f64, exit_code: u8) -> PairRun {
        PairRun {
            client: client.into(),
            route: route.into(),
            ended,
            exit_code,
            inserted: 30,
            duplicated: 2,
            slices_failed: u8::from(exit_code != 0).into(),
            http: Requests {
                c2xx: 7,
                c5xx: 1,
                c4xx: 1,
                too_many: 1,
                ..Requests::default()
            },
            retries: 2,
            duration_secs: 1.25,
            loaded_until: NaiveDate::from_ymd_opt(2025, 3, 2),
        }
    }

    fn value(s: &Samples, pair: (&str, &str), f: usize) -> Option<f64> {
        s.get(&(pair.0.to_string(), pair.1.to_string()))?
            .get(&(f, None))
            .copied()
    }

    #[test]
    fn the_text_has_each_family_once_with_help_and_type() {
        let text = render(&merge(Samples::new(), &[run("2151", "pedidos", 1e9, 0)]));
        for f in &FAMILIES {
            assert_eq!(
                text.matches(&format!("# TYPE {} gauge\n", f.name)).count(),
                1
            );
            assert_eq!(text.matches(&format!("# HELP {} ", f.name)).count(), 1);
        }
        assert!(text
            .contains("atlas_http_requests{client=\"2151\",route=\"pedidos\",class=\"5xx\"} 1\n"));
        assert!(
            text.contains("atlas_run_duration_seconds{client=\"2151\",route=\"pedidos\"} 1.25\n")
        );
        assert!(text.contains(
            "atlas_loaded_until_timestamp_seconds{client=\"2151\",route=\"pedidos\"} 1740873600\n"
        ));
        assert!(text.contains(
            "atlas_last_run_timestamp_seconds{client=\"2151\",route=\"pedidos\"} 1000000000\n"
        ));
    }

    #[test]
    fn a_run_rewrites_its_pairs_and_keeps_the_others() {
        let first = render(&merge(
            Samples::new(),
            &[run("a", "r", 100.0, 0), run("b", "r", 100.0, 0)],
        ));
        // The second run: b fails, c is new, a is not in it.
        let mut b = run("b", "r", 200.0, 1);
        b.loaded_until = None;
        let second = merge(parse(&first), &[b, run("c", "r", 200.0, 0)]);
        assert_eq!(second.len(), 3);
        assert_eq!(value(&second, ("a", "r"), 0), Some(100.0));
        assert_eq!(value(&second, ("b", "r"), 0), Some(200.0));
        assert_eq!(value(&second, ("b", "r"), 2), Some(1.0));
        // b's last success and loaded-until are the first run's.
        assert_eq!(value(&second, ("b", "r"), LAST_SUCCESS), Some(100.0));
        assert_eq!(value(&second, ("b", "r"), LOADED_UNTIL), Some(1740873600.0));
        assert_eq!(value(&second, ("c", "r"), LAST_SUCCESS), Some(200.0));
        // A pair that never succeeded has no last success.
        let never = merge(Samples::new(), &[run("d", "r", 5.0, 3)]);
        assert_eq!(value(&never, ("d", "r"), LAST_SUCCESS), None);
        // What is written reads back the same.
        assert_eq!(parse(&render(&second)), second);
    }

    #[test]
    fn labels_are_escaped_and_read_back() {
        let odd = run("cli\"ente", "ro\\ta\nx", 1.0, 0);
        let s = merge(Samples::new(), &[odd]);
        let text = render(&s);
        assert!(
            text.contains(r#"client="cli\"ente",route="ro\\ta\nx""#),
            "{text}"
        );
        assert_eq!(parse(&text), s);
        // Foreign and broken lines are skipped, not fatal.
        let s = parse("other_metric{client=\"a\",route=\"r\"} 1\natlas_retries{client=\"a\",rou\nnot a line\n");
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn a_pair_is_read_from_its_json_object() {
        let v = serde_json::json!({
            "client": "2151", "route": "pedidos", "exit_code": 1, "inserted": 5,
            "duplicates": 3, "slices_failed": 2, "retries": 4, "elapsed_secs": 2.5,
            "http_requests": {"2xx": 9, "3xx": 0, "4xx": 2, "5xx": 6, "other": 1},
            "http_429": 2, "loaded_until": "2025-03-02"
        });
        let p = PairRun::from_summary(&v, 10.0).unwrap();
        assert_eq!(
            (p.exit_code, p.inserted, p.duplicated, p.slices_failed),
            (1, 5, 3, 2)
        );
        assert_eq!((p.http.c5xx, p.http.other, p.http.too_many), (6, 1, 2));
        assert_eq!(p.loaded_until, NaiveDate::from_ymd_opt(2025, 3, 2));
        let idle = serde_json::json!({"client": "x", "route": "y", "loaded_until": null});
        let p = PairRun::from_summary(&idle, 10.0).unwrap();
        assert_eq!((p.exit_code, p.loaded_until), (1, None));
        assert!(PairRun::from_summary(&serde_json::json!({"error": "x"}), 1.0).is_none());
    }

    #[test]
    fn the_file_is_replaced_whole_and_merged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atlas.prom");
        write(&path, &[run("a", "r", 1.0, 0)]).unwrap();
        write(&path, &[run("b", "r", 2.0, 0)]).unwrap();
        let s = parse(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(s.len(), 2);
        // Only the file and its lock are left: no temporary file.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["atlas.prom", "atlas.prom.lock"]);
    }
}

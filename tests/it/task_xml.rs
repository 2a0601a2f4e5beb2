//! `scripts/atlas-task.xml`, the Task Scheduler definition shipped in the
//! Windows zip (`schtasks /Create /TN "Atlas Sync" /XML atlas-task.xml`):
//! well-formed, in the Task Scheduler 1.2 namespace, only the schema's
//! elements in the schema's order where it sets one, the required ones
//! present, and the command, arguments, working directory and settings the
//! README promises. `scripts/test-windows.sh` imports it with Wine's
//! schtasks and runs its action under Wine's cmd.exe.

use roxmltree::{Document, Node};
use std::path::Path;

const NS: &str = "http://schemas.microsoft.com/windows/2004/02/mit/task";

fn text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/atlas-task.xml");
    std::fs::read_to_string(path).expect("scripts/atlas-task.xml")
}

/// The element children of `n`.
fn elements<'a, 'i>(n: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    n.children().filter(Node::is_element).collect()
}

/// The one child element `name` of `n`.
fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Node<'a, 'i> {
    let found: Vec<_> = elements(n)
        .into_iter()
        .filter(|c| c.tag_name().name() == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "<{}> must have one <{name}>",
        n.tag_name().name()
    );
    found[0]
}

fn value<'a>(n: Node<'a, '_>, name: &str) -> &'a str {
    child(n, name).text().unwrap_or("").trim()
}

/// The children of `n` are among `allowed` (each at most once), in
/// `allowed`'s order when `ordered` (an xs:sequence), and `required` are there.
fn check_children(n: Node, allowed: &[&str], required: &[&str], ordered: bool) {
    let names: Vec<&str> = elements(n).iter().map(|c| c.tag_name().name()).collect();
    let what = n.tag_name().name();
    let mut last = None;
    for name in &names {
        let at = allowed
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("<{name}> is not a child of <{what}> in the schema"));
        assert_eq!(
            names.iter().filter(|x| *x == name).count(),
            1,
            "<{name}> twice in <{what}>"
        );
        if ordered {
            assert!(
                last.is_none_or(|l| l < at),
                "<{name}> out of the schema's order in <{what}>: {names:?}"
            );
        }
        last = Some(at);
    }
    for r in required {
        assert!(names.contains(r), "<{what}> lacks the required <{r}>");
    }
}

/// An xs:duration as Task Scheduler writes them (`PT12H`, `PT10M`, `P1D`).
fn is_duration(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let part_ok = |p: &str, units: &str| {
        let mut digits = false;
        for c in p.chars() {
            if c.is_ascii_digit() {
                digits = true;
            } else if units.contains(c) && digits {
                digits = false;
            } else {
                return false;
            }
        }
        !digits
    };
    !(date.is_empty() && time.is_empty())
        && part_ok(date, "YMD")
        && part_ok(time, "HMS")
        && !(rest.contains('T') && time.is_empty())
}

#[test]
fn the_task_definition_is_a_task_scheduler_1_2_task() {
    let text = text();
    assert!(
        text.is_ascii(),
        "plain ASCII: no encoding for schtasks to guess"
    );
    let doc = Document::parse(&text).expect("well-formed XML");
    let task = doc.root_element();
    assert_eq!(task.tag_name().name(), "Task");
    assert_eq!(task.tag_name().namespace(), Some(NS));
    assert_eq!(task.attribute("version"), Some("1.2"));
    for n in task.descendants().filter(Node::is_element) {
        assert_eq!(
            n.tag_name().namespace(),
            Some(NS),
            "<{}> outside the task namespace",
            n.tag_name().name()
        );
    }
    check_children(
        task,
        &[
            "RegistrationInfo",
            "Triggers",
            "Settings",
            "Data",
            "Principals",
            "Actions",
        ],
        &["Actions"],
        false,
    );

    // Nightly: a daily calendar trigger with its required start boundary.
    let trigger = child(child(task, "Triggers"), "CalendarTrigger");
    check_children(
        trigger,
        &[
            "Repetition",
            "StartBoundary",
            "EndBoundary",
            "ExecutionTimeLimit",
            "Enabled",
            "RandomDelay",
            "ScheduleByDay",
        ],
        &["StartBoundary", "ScheduleByDay"],
        true,
    );
    let start = value(trigger, "StartBoundary");
    assert!(
        start.len() == 19 && start.ends_with("T02:15:00"),
        "a local time at 02:15: {start}"
    );
    assert!(is_duration(value(trigger, "RandomDelay")));
    assert_eq!(value(child(trigger, "ScheduleByDay"), "DaysInterval"), "1");

    // Whether the user is logged on or not: S4U (or Password), never the
    // interactive token; the actions run as that principal.
    let principal = child(child(task, "Principals"), "Principal");
    check_children(
        principal,
        &[
            "UserId",
            "LogonType",
            "GroupId",
            "DisplayName",
            "RunLevel",
            "ProcessTokenSidType",
            "RequiredPrivileges",
        ],
        &["LogonType"],
        true,
    );
    assert!(
        ["S4U", "Password"].contains(&value(principal, "LogonType")),
        "runs whether the user is logged on or not"
    );
    let actions = child(task, "Actions");
    assert_eq!(actions.attribute("Context"), principal.attribute("id"));

    let settings = child(task, "Settings");
    check_children(
        settings,
        &[
            "AllowStartOnDemand",
            "RestartOnFailure",
            "MultipleInstancesPolicy",
            "DisallowStartIfOnBatteries",
            "StopIfGoingOnBatteries",
            "AllowHardTerminate",
            "StartWhenAvailable",
            "NetworkProfileName",
            "RunOnlyIfNetworkAvailable",
            "WakeToRun",
            "Enabled",
            "Hidden",
            "DeleteExpiredTaskAfter",
            "IdleSettings",
            "NetworkSettings",
            "ExecutionTimeLimit",
            "Priority",
            "RunOnlyIfIdle",
        ],
        &[],
        false,
    );
    assert_eq!(
        value(settings, "MultipleInstancesPolicy"),
        "IgnoreNew",
        "no second instance while one runs"
    );
    let limit = value(settings, "ExecutionTimeLimit");
    assert!(
        is_duration(limit) && limit != "PT0S",
        "a time limit: {limit}"
    );
    assert_eq!(value(settings, "StartWhenAvailable"), "true");
    assert_eq!(value(settings, "Enabled"), "true");
    assert_eq!(value(settings, "DisallowStartIfOnBatteries"), "false");

    // The nightly fleet, in its working directory, a log per day, and
    // atlas's exit code as the task's (cmd /c ends with atlas).
    let exec = child(actions, "Exec");
    check_children(
        exec,
        &["Command", "Arguments", "WorkingDirectory"],
        &["Command"],
        true,
    );
    assert_eq!(
        value(exec, "Command").to_ascii_lowercase(),
        r"%systemroot%\system32\cmd.exe"
    );
    assert_eq!(value(exec, "WorkingDirectory"), r"C:\atlas");
    let args = value(exec, "Arguments");
    // cmd.exe's `if` takes every `&` after it into its body: in
    // parentheses, atlas runs whether logs\ existed or not.
    assert!(
        args.starts_with("/d /c \"(if not exist logs mkdir logs) & "),
        "{args}"
    );
    let last = args
        .rsplit(" & ")
        .next()
        .expect("the command after the last &");
    assert_eq!(
        last, r#""C:\atlas\atlas.exe" --plain sync --all >> "logs\sync-%DATE:/=-%.log" 2>&1""#,
        "atlas runs last, so its exit code is cmd's"
    );
}

#[test]
fn durations_are_checked() {
    for good in ["PT12H", "PT10M", "P1D", "PT1H30M", "P1DT2H"] {
        assert!(is_duration(good), "{good}");
    }
    for bad in ["", "P", "PT", "12H", "PTH", "PT12", "P1H", "PT1D"] {
        assert!(!is_duration(bad), "{bad}");
    }
}

/// `atlas-task.ps1` registers the same action: its argument string, with
/// PowerShell's escapes undone and the example's paths put in, is the
/// XML's plus the `--config` it passes.
#[test]
fn the_powershell_script_registers_the_same_action() {
    let ps1 = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/atlas-task.ps1"),
    )
    .expect("scripts/atlas-task.ps1");
    let line = ps1
        .lines()
        .find_map(|l| l.strip_prefix("$cmdArgs = \""))
        .expect("a `$cmdArgs = \"…\"` line");
    let inner = line.strip_suffix('"').expect("one double-quoted string");
    assert!(!inner.contains("$("), "no subexpressions: {inner}");
    let ps_args = inner
        .replace("`\"", "\"")
        .replace("$LogDir", "logs")
        .replace("$AtlasExe", r"C:\atlas\atlas.exe")
        .replace("$configPath", r"C:\atlas\atlas.json");
    assert!(!ps_args.contains(['`', '$']), "unknown escapes: {ps_args}");

    let text = text();
    let doc = Document::parse(&text).expect("well-formed XML");
    let exec = child(child(doc.root_element(), "Actions"), "Exec");
    let xml_args = value(exec, "Arguments")
        .replace(
            "(if not exist logs mkdir logs)",
            "(if not exist \"logs\" mkdir \"logs\")",
        )
        .replace(
            "--plain sync",
            r#"--plain --config "C:\atlas\atlas.json" sync"#,
        );
    assert_eq!(ps_args, xml_args);
    assert!(ps1.contains(r#"-Execute "$env:SystemRoot\System32\cmd.exe""#));
    for setting in [
        "-MultipleInstances IgnoreNew",
        "-StartWhenAvailable",
        "-ExecutionTimeLimit (New-TimeSpan -Hours 12)",
        "-LogonType S4U",
        "-RandomDelay (New-TimeSpan -Minutes 10)",
    ] {
        assert!(ps1.contains(setting), "{setting}");
    }
}

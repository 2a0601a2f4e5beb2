//! `scripts/package.sh`: the `.deb` passes lintian (the script fails
//! otherwise), unpacks into a scratch root, its binary runs, its files are
//! where docs/operations.md says, and its systemd units pass
//! `systemd-analyze verify` where systemd is present; the Windows zip holds
//! the exe it was given, the task definition, the task script, the example
//! config and the README (the exe itself is run by scripts/test-windows.sh).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_deb_installs_runs_and_its_units_verify() {
    let out = tempfile::tempdir().unwrap();
    // A stand-in for atlas.exe: the cross build is scripts/test-windows.sh's.
    let exe = out.path().join("stand-in.exe");
    std::fs::write(&exe, b"MZ stand-in for atlas.exe").unwrap();
    let built = Command::new("bash")
        .arg(root().join("scripts/package.sh"))
        .env("ATLAS_BIN", env!("CARGO_BIN_EXE_atlas"))
        .env("ATLAS_EXE", &exe)
        .env("OUT", out.path())
        .env("COMPRESS", "none")
        .output()
        .expect("run scripts/package.sh");
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "package.sh: {stdout}\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = stdout
        .lines()
        .find(|l| l.ends_with(".deb"))
        .unwrap_or_else(|| panic!("no .deb named in {stdout}"));
    assert!(Path::new(deb).exists(), "{deb}");

    let scratch = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb")
        .args(["-x", deb])
        .arg(scratch.path())
        .status()
        .expect("dpkg-deb -x");
    assert!(x.success());
    let r = scratch.path();
    for f in [
        "usr/bin/atlas",
        "lib/systemd/system/atlas-sync.service",
        "lib/systemd/system/atlas-sync.timer",
        "etc/atlas/atlas.env",
        "usr/share/doc/atlas/atlas.example.json",
        "usr/share/doc/atlas/README.md",
        "usr/share/doc/atlas/CHANGELOG.md",
        "usr/share/doc/atlas/docs/operations.md",
        "usr/share/doc/atlas/copyright",
        "usr/share/doc/atlas/changelog.gz",
        "usr/share/man/man1/atlas.1.gz",
        "usr/share/lintian/overrides/atlas",
    ] {
        assert!(r.join(f).exists(), "{f} missing from the .deb");
    }
    // Secrets: readable by root only (lintian's override says why).
    let mode = std::fs::metadata(r.join("etc/atlas/atlas.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "atlas.env mode {mode:o}");
    let help = Command::new(r.join("usr/bin/atlas"))
        .arg("--help")
        .output()
        .expect("installed atlas --help");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("Usage: atlas"));
    // The example config is one atlas accepts.
    let clients = Command::new(r.join("usr/bin/atlas"))
        .arg("--config")
        .arg(r.join("usr/share/doc/atlas/atlas.example.json"))
        .arg("clients")
        .output()
        .expect("atlas clients");
    assert!(
        clients.status.success(),
        "{}",
        String::from_utf8_lossy(&clients.stderr)
    );
    let unit = std::fs::read_to_string(r.join("lib/systemd/system/atlas-sync.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/atlas --plain sync --all"),
        "{unit}"
    );
    // A stop by SIGTERM (exit 130) is not a failed unit.
    assert!(unit.contains("SuccessExitStatus=130"), "{unit}");
    let control = Command::new("dpkg-deb")
        .args(["-f", deb, "Package", "Version"])
        .output()
        .expect("dpkg-deb -f");
    let control = String::from_utf8_lossy(&control.stdout);
    assert!(control.contains("Package: atlas"), "{control}");
    assert!(
        control.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );

    check_zip(&stdout, &exe);

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not found: units not verified");
        return;
    }
    // verify checks that ExecStart exists: point it at the unpacked binary.
    let units = tempfile::tempdir().unwrap();
    let service = unit.replace("/usr/bin/atlas", r.join("usr/bin/atlas").to_str().unwrap());
    std::fs::write(units.path().join("atlas-sync.service"), service).unwrap();
    std::fs::copy(
        r.join("lib/systemd/system/atlas-sync.timer"),
        units.path().join("atlas-sync.timer"),
    )
    .unwrap();
    let v = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.path().join("atlas-sync.service"))
        .arg(units.path().join("atlas-sync.timer"))
        .output()
        .expect("systemd-analyze verify");
    assert!(
        v.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}

/// The zip package.sh named: its entries, each the file it was made from.
fn check_zip(stdout: &str, exe: &Path) {
    let zip = stdout
        .lines()
        .find(|l| l.ends_with("-windows-x86_64.zip"))
        .unwrap_or_else(|| panic!("no zip named in {stdout}"));
    assert!(
        zip.ends_with(&format!(
            "atlas-{}-windows-x86_64.zip",
            env!("CARGO_PKG_VERSION")
        )),
        "{zip}"
    );
    let scratch = tempfile::tempdir().unwrap();
    // python3 is what package.sh writes the zip with.
    let x = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
        ])
        .arg(zip)
        .arg(scratch.path())
        .output()
        .expect("python3 unzip");
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    let r = scratch.path().join("atlas");
    let mut names: Vec<String> = std::fs::read_dir(&r)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "atlas-notify.ps1",
            "atlas-task.ps1",
            "atlas-task.xml",
            "atlas.example.json",
            "atlas.exe"
        ]
    );
    let same = |inside: &str, from: &Path| {
        assert_eq!(
            std::fs::read(r.join(inside)).unwrap(),
            std::fs::read(from).unwrap(),
            "{inside}"
        );
    };
    same("atlas.exe", exe);
    same("atlas-task.xml", &root().join("scripts/atlas-task.xml"));
    same("atlas-task.ps1", &root().join("scripts/atlas-task.ps1"));
    same("atlas-notify.ps1", &root().join("scripts/atlas-notify.ps1"));
    same(
        "atlas.example.json",
        &root().join("scripts/deb/atlas.example.json"),
    );
}

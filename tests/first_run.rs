//! What a new user meets first (issue 18's first-run friction). The set-up and build scripts run
//! against stand-in commands on PATH (each logs its arguments), so nothing is installed or
//! cross-built: the demo's set-up (`tools/setup.sh`) changes nothing for the aarch64 build (the
//! test command's `tools/setup_aarch64.sh` does), and `tools/build_aarch64.sh` gates the binary
//! where cargo put it when `CARGO_TARGET_DIR` is set. The help of every command cites nothing
//! the user does not have (SPEC.md is not in the repository).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{edgebind, repo, run};

/// Writes an executable script.
fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of the repository's `tools/<names>` under `root/tools`, and a `bin` of stand-ins that
/// log `name args…` to `root/log`.
fn sandbox(root: &Path, tools: &[&str], stand_ins: &[(&str, &str)]) -> PathBuf {
    for t in tools {
        let to = root.join("tools").join(t);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join("tools").join(t), &to).unwrap();
    }
    let bin = root.join("bin");
    for (name, body) in stand_ins {
        script(
            &bin.join(name),
            &format!(
                "echo \"{name} $*\" >> \"{}\"\n{body}",
                root.join("log").display()
            ),
        );
    }
    bin
}

fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

fn log(root: &Path) -> String {
    std::fs::read_to_string(root.join("log")).unwrap_or_default()
}

/// dpkg, apt and rustup as on a fresh x86_64 Debian where every listed package is installed
/// and no foreign architecture or Rust target has been added yet.
const SYSTEM: &[(&str, &str)] = &[
    (
        "uname",
        "if [ \"$1\" = -m ]; then echo x86_64; else /usr/bin/uname \"$@\"; fi",
    ),
    ("dpkg-query", "echo 'install ok installed'"),
    ("dpkg", ":"),
    ("apt-get", ":"),
    ("sudo", "\"$@\""),
    ("rustup", ":"),
    ("mosquitto", ":"),
];

#[test]
fn the_demo_set_up_installs_nothing_for_the_aarch64_build_and_the_test_set_up_does() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bin = sandbox(root, &["setup.sh", "setup_aarch64.sh"], SYSTEM);
    for fetch in [
        "fetch_onnxruntime.sh",
        "fetch_clip_bpe.sh",
        "setup_realsense.sh",
    ] {
        script(
            &root.join("tools").join(fetch),
            &format!("echo {fetch} >> \"{}\"", root.join("log").display()),
        );
    }
    let out = Command::new("bash")
        .arg(root.join("tools/setup.sh"))
        .env("PATH", path_with(&bin))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo = log(root);
    assert!(demo.contains("fetch_onnxruntime.sh"), "{demo}");
    for aarch64 in ["--add-architecture", "rustup target add", "arm64"] {
        assert!(
            !demo.contains(aarch64),
            "the demo's set-up ran {aarch64:?}:\n{demo}"
        );
    }
    // The test command's set-up does it (so the stand-ins above can see it).
    std::fs::remove_file(root.join("log")).unwrap();
    let out = Command::new("bash")
        .arg(root.join("tools/setup_aarch64.sh"))
        .env("PATH", path_with(&bin))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let test = log(root);
    assert!(test.contains("dpkg --add-architecture arm64"), "{test}");
    assert!(
        test.contains("rustup target add aarch64-unknown-linux-gnu"),
        "{test}"
    );
}

#[test]
fn the_aarch64_glibc_gate_checks_the_binary_in_cargo_target_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // A stand-in cargo that "builds" where cargo would; readelf and objdump that need the file.
    let need_file = "f=\"${@: -1}\"; [ -f \"$f\" ] || { echo \"$f: No such file\" >&2; exit 1; }";
    let bin = sandbox(
        root,
        &["build_aarch64.sh", "aarch64_env.sh"],
        &[
            (
                "cargo",
                "d=\"${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release\"; mkdir -p \"$d\"; echo elf > \"$d/edgebind\"",
            ),
            ("rustup", "echo aarch64-unknown-linux-gnu"),
            ("aarch64-linux-gnu-gcc", ":"),
            (
                "aarch64-linux-gnu-objdump",
                &format!("{need_file}; echo '0000 DF *UND* 0000 (GLIBC_2.17) memcpy'"),
            ),
            (
                "readelf",
                &format!("{need_file}; echo '  Machine:                           AArch64'"),
            ),
        ],
    );
    // What the cross set-up installs is not what this test is about.
    let env = root.join("tools/aarch64_env.sh");
    let text = std::fs::read_to_string(&env).unwrap();
    std::fs::write(&env, format!("{text}\naarch64_missing() {{ :; }}\n")).unwrap();
    let target_dir = root.join("elsewhere");
    let out = Command::new("bash")
        .arg(root.join("tools/build_aarch64.sh"))
        .env("PATH", path_with(&bin))
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let built = target_dir.join("aarch64-unknown-linux-gnu/release/edgebind");
    assert!(
        stdout.contains(&format!(
            "glibc gate: {} needs at most GLIBC_2.17 (limit 2.35): ok",
            built.display()
        )),
        "{stdout}"
    );
    assert!(!root.join("target").exists());
}

#[test]
fn no_help_text_cites_files_outside_the_repository() {
    let top = run(edgebind().arg("--help"));
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        commands.contains(&"preprocess") && commands.contains(&"devices"),
        "{top}"
    );
    for c in commands {
        let out = run(edgebind().arg(c).arg("--help"));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{c} --help");
        assert!(
            !help.contains("SPEC.md"),
            "`edgebind {c} --help` cites SPEC.md:\n{help}"
        );
    }
}

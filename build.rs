//! With the `realsense` feature and a librealsense from the PyPI wheel
//! (`tools/setup_realsense.sh`): link the libpython the wheel's module needs at load time, kept
//! even though nothing in edgebind calls it (`--no-as-needed`), and an rpath to the library so
//! binaries and tests run without `LD_LIBRARY_PATH`. A system librealsense needs neither.

use std::process::Command;

fn pkg_config_variable(name: &str) -> Option<String> {
    let out = Command::new("pkg-config")
        .args(["--variable", name, "realsense2"])
        .output()
        .ok()?;
    let value = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !value.is_empty()).then_some(value)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if std::env::var_os("CARGO_FEATURE_REALSENSE").is_none() {
        return;
    }
    if let Some(python) = pkg_config_variable("edgebind_link_python") {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-l{python},--pop-state");
        if let Some(libdir) = pkg_config_variable("libdir") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
        }
    }
}

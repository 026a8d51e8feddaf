//! Records the commit the binary was built from (`AUTHLAB_COMMIT` at build time, else
//! `git rev-parse`), for the provenance of the reports it writes, and rebuilds when the shipped
//! catalog changes.

fn main() {
    println!("cargo:rerun-if-env-changed=AUTHLAB_COMMIT");
    // The shipped catalog and manifests are built in (`shipped.rs`): a change to any file
    // under them rebuilds the binary.
    for d in ["../cases", "../manifests"] {
        println!("cargo:rerun-if-changed={d}");
    }
    let git = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.git");
    for p in ["HEAD", "refs/heads", "packed-refs"] {
        if git.join(p).exists() {
            println!("cargo:rerun-if-changed={}", git.join(p).display());
        }
    }
    let commit = std::env::var("AUTHLAB_COMMIT").ok().or_else(|| {
        std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    });
    println!(
        "cargo:rustc-env=AUTHLAB_BUILD_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}

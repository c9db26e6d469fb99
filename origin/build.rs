//! Records the git revision the binary is built from, for `pushwire_build_info`.
//! Outside a git checkout (a source tarball) the revision is left unset and the
//! metric says `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    let git = Path::new("../.git");
    // Rebuild when the checked-out commit changes: HEAD moves to another
    // branch, or the branch it names gets a new commit.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(reference) = head.trim().strip_prefix("ref: ")
        && git.join(reference).exists()
    {
        println!("cargo:rerun-if-changed=../.git/{reference}");
    }
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok());
    if let Some(revision) = revision {
        println!("cargo:rustc-env=PUSHWIRE_GIT_REVISION={}", revision.trim());
    }
}

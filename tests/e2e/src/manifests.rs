//! The repository's `manifests/`, found at run time, and scratch copies of it for tests that edit
//! an overlay (as the README tells users to) before rendering or applying it.

use std::io;
use std::path::{Path, PathBuf};

/// The repository's `manifests/` directory, found at run time.
///
/// Not `env!("CARGO_MANIFEST_DIR")`: the e2e target directory is shared between checkouts (it
/// lives under ~/.cache), and cargo reuses a test binary built in another checkout, which would
/// then read that checkout's manifests (or fail once it is gone). `cargo test` sets the variable
/// for the process it runs, so it always names this checkout.
pub fn manifests_dir() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    crate_dir.join("../../manifests")
}

/// A copy of `manifests/` in the temporary directory, removed when dropped (also when the test
/// fails).
#[derive(Debug)]
pub struct ScratchCopy(pub PathBuf);

impl ScratchCopy {
    /// Copies `manifests/` to `deputy-manifests-<unique>` in the temporary directory.
    pub fn manifests() -> ScratchCopy {
        let copy =
            ScratchCopy(std::env::temp_dir().join(format!("deputy-manifests-{}", crate::unique())));
        let from = manifests_dir();
        copy_dir(&from, &copy.0)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), copy.0.display()));
        copy
    }

    /// A directory of the copy (such as `overlays/local`).
    pub fn join(&self, dir: &str) -> PathBuf {
        self.0.join(dir)
    }
}

impl Drop for ScratchCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the directory tree `from` to `to` (which must not exist), as `cp -r` does.
fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

//! `deputy-agent install <DIR>`: copies this executable to `<DIR>/deputy-agent` for the app
//! containers of a Pod. Runs in an init container as a non-root user on a read-only root
//! filesystem, so it writes only into `<DIR>`: a temp file, fsync, rename. Idempotent.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The installed file's name inside `<DIR>`.
pub const INSTALLED_NAME: &str = "deputy-agent";

/// Installs into `dir`, returning the installed path.
pub fn install(dir: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(dir).with_context(|| {
        format!(
            "cannot install into {}: the directory must exist (the webhook mounts an emptyDir there)",
            dir.display()
        )
    })?;
    anyhow::ensure!(
        meta.is_dir(),
        "cannot install into {}: not a directory",
        dir.display()
    );
    let mut source = open_own_executable()?;
    let dest = dir.join(INSTALLED_NAME);
    let tmp = dir.join(format!(".{INSTALLED_NAME}.tmp.{}", std::process::id()));
    let result = write_copy(&mut source, &tmp).and_then(|()| {
        fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|err| explain_read_only(err, dir))?;
    // Make the rename durable too; a failure here only weakens crash safety.
    if let Ok(dir_handle) = File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(dest)
}

/// `/proc/self/exe` names the running binary even when its path is gone or relative.
fn open_own_executable() -> Result<File> {
    File::open("/proc/self/exe")
        .or_else(|_| {
            let path = std::env::current_exe()?;
            File::open(path)
        })
        .context("cannot open this program's own executable (is /proc mounted?)")
}

fn write_copy(source: &mut File, tmp: &Path) -> Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    io::copy(source, &mut out).with_context(|| format!("cannot write {}", tmp.display()))?;
    // The umask may have narrowed the mode given at creation.
    out.set_permissions(fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod 0755 {}", tmp.display()))?;
    out.sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))
}

fn explain_read_only(err: anyhow::Error, dir: &Path) -> anyhow::Error {
    let read_only = err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(libc::EROFS))
    });
    if read_only {
        err.context(format!(
            "{} is on a read-only file system; mount a writable emptyDir there",
            dir.display()
        ))
    } else {
        err
    }
}

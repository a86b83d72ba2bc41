//! `deputy-agent install` and the static binary: an identical copy, idempotent, a clear error on
//! a read-only mount, and a binary that runs in a root holding nothing but itself.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;

#[test]
fn install_copies_an_identical_executable_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let (code, out) = agent_output(dir.path(), &["install", dir.path().to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
    }
    let installed = dir.path().join("deputy-agent");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(agent_binary()).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["deputy-agent"], "no temporary file is left behind");
    let out = run_binary(&installed).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("deputy-agent "));
}

#[test]
fn install_into_a_missing_directory_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let (code, out) = agent_output(dir.path(), &["install", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("must exist"), "{out}");
}

#[test]
fn install_onto_a_read_only_mount_fails_clearly_and_writes_nothing() {
    require!("root" => is_root(), "unshare" => have("unshare"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Root ignores file modes, so make the directory truly read-only: a read-only bind mount in
    // a private mount namespace (gone when the command exits).
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {} install {d}",
        agent()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("read-only") && text.contains("emptyDir"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_binary_runs_in_a_root_that_holds_nothing_but_itself() {
    require!("root" => is_root(), "unshare" => have("unshare"), "chroot" => have("chroot"));
    // Like a scratch image: no libc, no loader, no shell, no /tmp, no /etc; only /proc, as
    // every container has.
    // An emulated build brings its emulator (a static binary too) and nothing else.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::copy(agent_binary(), r.join("deputy-agent")).unwrap();
    for sub in ["proc", "ipc", "bin"] {
        std::fs::create_dir(r.join(sub)).unwrap();
    }
    let emulator: Vec<&str> = match runner() {
        Some(runner) => {
            std::fs::copy(&runner, r.join("emulator")).unwrap();
            vec!["/emulator"]
        }
        None => vec![],
    };
    let in_root = |args: &[&str]| {
        let out = Command::new("unshare")
            .args([
                "-m",
                "-p",
                "-f",
                &format!("--mount-proc={}/proc", r.display()),
                "chroot",
            ])
            .arg(r)
            .args(&emulator)
            .arg("/deputy-agent")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEPUTY_IPC_DIR", "/ipc")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, out) = in_root(&["--version"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = in_root(&["install", "/bin"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(r.join("bin/deputy-agent").exists());
    let (code, out) = in_root(&["terminate"]);
    assert_eq!(code, Some(0), "{out}");
    // `run` as PID 1 supervising `status`, which sees run registered as the entrypoint.
    let mut supervised = vec!["run", "--"];
    supervised.extend(&emulator);
    supervised.extend(["/bin/deputy-agent", "status"]);
    let (code, out) = in_root(&supervised);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("entrypoint: PID 1"), "{out}");
}

//! The README's registration examples (Python, shell) terminated by `deputy-agent terminate`.

use std::process::Command;

use crate::common::*;

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_python_example_registers_and_terminates() {
    require!("python3" => have("python3"));
    let dir = ipc_dir();
    let mut command = Command::new("python3");
    command
        .arg(example("register.py"))
        .env("DEPUTY_IPC_DIR", dir.path());
    let mut app = Proc::spawn(command);
    app.wait_for_line("registered pid=");
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    app.wait_for_line("terminating");
    assert_eq!(app.wait_exit(DEADLINE), 0);
}

#[test]
fn the_shell_example_registers_and_terminates() {
    require!("OpenBSD nc with -U (Debian netcat-openbsd)" => have("nc"));
    let dir = ipc_dir();
    let mut command = Command::new("sh");
    command
        .arg(example("register.sh"))
        .env("DEPUTY_IPC_DIR", dir.path());
    let mut app = Proc::spawn(command);
    let pid = app.wait_for_line("registered pid=");
    assert!(pid.ends_with(&app.pid().to_string()), "{pid}");
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    app.wait_for_line("terminating");
    app.wait_exit(DEADLINE);
}

#[test]
fn the_readme_shows_the_python_example_verbatim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("a python block in the README")
        + "```python\n".len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let file = std::fs::read_to_string(example("register.py")).unwrap();
    assert!(
        file.ends_with(block),
        "README's Python example and agent/examples/register.py differ"
    );
}

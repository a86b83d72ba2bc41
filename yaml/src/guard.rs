//! A last line of defence around the parser: libyaml-safer panics on some input (three such
//! places found by fuzzing are avoided before parsing, see `scanner_gap` and `split`); any
//! other panic becomes a parse error instead of the end of the process. The panic's own report
//! is kept quiet while it is caught. Under cargo-fuzz (`cfg(fuzzing)`) nothing is caught, so
//! the fuzzer still sees every panic.

#[cfg(not(fuzzing))]
use std::cell::Cell;

#[cfg(not(fuzzing))]
thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; a panic inside it is returned as its message.
#[cfg(not(fuzzing))]
pub(crate) fn catching<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(f);
    CATCHING.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
}

#[cfg(fuzzing)]
pub(crate) fn catching<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    Ok(f())
}

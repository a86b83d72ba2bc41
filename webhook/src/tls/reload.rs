//! The pair from files, kept current: the files' directories are watched (a Secret volume swaps
//! its `..data` symlink; cert-manager rewrites the files), and read again after a burst of
//! events settles, or every minute in case an event was missed.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::{read_pair, PairLoader, PairOrigin, PairPaths, Serving, TlsError};

/// How long the watcher waits for a burst of file events to settle before reloading.
const SETTLE: Duration = Duration::from_millis(150);
/// A re-check even without events, in case one was missed (e.g. a watched directory replaced).
const RECHECK: Duration = Duration::from_secs(60);

/// Loads the pair and keeps it current: the watch lasts as long as the returned value.
#[derive(Debug)]
pub struct Reloader {
    _watcher: notify::RecommendedWatcher,
}

impl Reloader {
    /// Tries a first load (a failure is logged, and the server stays unready until a valid pair
    /// appears) and starts watching the files' directories.
    pub fn start(paths: PairPaths, serving: Serving) -> Result<Self, TlsError> {
        let mut reload = Reload {
            loader: PairLoader::new(PairOrigin::Files(paths.clone()), serving),
            paths: paths.clone(),
        };
        reload.run();
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = tx.send(());
                }
            })
            .map_err(|e| TlsError::Watch {
                path: paths.cert.clone(),
                message: e.to_string(),
            })?;
        let mut dirs = vec![parent(&paths.cert), parent(&paths.key)];
        dirs.dedup();
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| TlsError::Watch {
                    path: dir.clone(),
                    message: e.to_string(),
                })?;
        }
        std::thread::Builder::new()
            .name("tls-reload".into())
            .spawn(move || watch_loop(&rx, &mut reload))
            .map_err(|e| TlsError::Watch {
                path: dirs[0].clone(),
                message: format!("cannot start the reload thread: {e}"),
            })?;
        Ok(Self { _watcher: watcher })
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Ends when the watcher (the sender) is dropped.
fn watch_loop(rx: &mpsc::Receiver<()>, reload: &mut Reload) {
    loop {
        match rx.recv_timeout(RECHECK) {
            Ok(()) => {
                // Let a burst (several files, a symlink swap) settle, then reload once.
                std::thread::sleep(SETTLE);
                while rx.try_recv().is_ok() {}
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        reload.run();
    }
}

/// One reload step: what to read, and the loader it goes to.
struct Reload {
    paths: PairPaths,
    loader: PairLoader,
}

impl Reload {
    /// Reads the files and offers the pair to the loader.
    fn run(&mut self) {
        match read_pair(&self.paths) {
            Ok(source) => self.loader.offer(source),
            Err(err) => self.loader.unreadable(&err),
        }
    }
}

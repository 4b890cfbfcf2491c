//! The watcher thread: inotify over the services' directories (recursive ones grow as
//! subdirectories appear), a filter on each event as rr's, and one reset per affected plugin
//! one `interval` after the first event of a burst.

use super::{ReloadSection, Resets, WatchedService};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The most directories watched in all: past it a warning, and the rest go unwatched
/// (each watch costs kernel memory, bounded by `fs.inotify.max_user_watches` too).
pub const MAX_WATCHED_DIRS: usize = 8192;

/// The most distinct files a burst's log line counts (the count is only informative).
const MAX_BURST_FILES: usize = 1024;

/// The inotify read buffer: many events per read.
const EVENT_BUFFER_BYTES: usize = 64 * 1024;

/// What is watched for: content changes, new, removed and renamed entries, mtime changes.
fn watch_flags() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::ATTRIB
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
}

/// A service's changes since its last reset, for the reset's log line.
#[derive(Debug)]
struct Burst {
    first_file: PathBuf,
    /// The distinct files changed, up to [`MAX_BURST_FILES`].
    files: BTreeSet<PathBuf>,
}

impl Burst {
    fn new(first_file: PathBuf) -> Self {
        Self {
            first_file,
            files: BTreeSet::new(),
        }
    }
}

/// One watched directory and the services (indexes) that watch it.
#[derive(Debug)]
struct WatchedDir {
    path: PathBuf,
    services: Vec<usize>,
}

/// The watcher's state, owned by its thread.
#[derive(Debug)]
pub struct Watcher {
    config: ReloadSection,
    inotify: OwnedFd,
    stop: OwnedFd,
    dirs: HashMap<i32, WatchedDir>,
    /// Services with changes not yet acted on, by index, with what changed.
    pending: BTreeMap<usize, Burst>,
    /// When the pending resets run: one interval after the burst's first event.
    deadline: Option<Instant>,
    /// Warned once when [`MAX_WATCHED_DIRS`] is reached.
    full_warned: bool,
}

impl Watcher {
    /// Opens inotify and watches every service's directories.
    ///
    /// # Errors
    /// When inotify cannot be opened.
    pub fn new(config: ReloadSection, stop: OwnedFd) -> io::Result<Self> {
        let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let mut watcher = Self {
            config,
            inotify,
            stop,
            dirs: HashMap::new(),
            pending: BTreeMap::new(),
            deadline: None,
            full_warned: false,
        };
        for index in 0..watcher.config.services.len() {
            let service = &watcher.config.services[index];
            let (dirs, recursive) = (service.dirs.clone(), service.recursive);
            for dir in dirs {
                watcher.watch(index, &dir, recursive, false);
            }
        }
        tracing::info!(
            target: "reload",
            directories = watcher.dirs.len(),
            interval = ?watcher.config.interval,
            "watching for changes"
        );
        Ok(watcher)
    }

    /// Watches `dir` for service `index` (and, `recursive`, its subtree). With
    /// `report_files`, matching files found count as changes (a directory that appeared
    /// after its files were written into it).
    fn watch(&mut self, index: usize, dir: &Path, recursive: bool, report_files: bool) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if self.config.services[index].ignores(&dir) {
                continue;
            }
            if !self.add_watch(index, &dir) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                if is_dir && recursive {
                    stack.push(entry.path());
                } else if !is_dir && report_files {
                    self.file_changed(index, &entry.path(), "file was created");
                }
            }
        }
    }

    /// Adds one inotify watch; false when it could not be added.
    fn add_watch(&mut self, index: usize, dir: &Path) -> bool {
        if self.dirs.len() >= MAX_WATCHED_DIRS {
            if !self.full_warned {
                self.full_warned = true;
                tracing::warn!(
                    target: "reload",
                    limit = MAX_WATCHED_DIRS,
                    path = %dir.display(),
                    "too many directories to watch, the rest are not watched"
                );
            }
            return false;
        }
        match inotify::add_watch(&self.inotify, dir, watch_flags()) {
            Ok(wd) => {
                let watched = self.dirs.entry(wd).or_insert_with(|| WatchedDir {
                    path: dir.to_path_buf(),
                    services: Vec::new(),
                });
                if !watched.services.contains(&index) {
                    watched.services.push(index);
                }
                true
            }
            Err(error) => {
                tracing::warn!(
                    target: "reload",
                    path = %dir.display(),
                    %error,
                    "cannot watch directory"
                );
                false
            }
        }
    }

    /// Records a change of `path` for service `index` when its filter takes it.
    fn file_changed(&mut self, index: usize, path: &Path, what: &str) {
        let service: &WatchedService = &self.config.services[index];
        let name = path
            .file_name()
            .map(OsStr::to_string_lossy)
            .unwrap_or_default();
        if service.ignores(path) || !service.matches(&name) {
            return;
        }
        tracing::debug!(target: "reload", path = %path.display(), %name, "{what}");
        let burst = self
            .pending
            .entry(index)
            .or_insert_with(|| Burst::new(path.to_path_buf()));
        if burst.files.len() < MAX_BURST_FILES {
            burst.files.insert(path.to_path_buf());
        }
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.config.interval);
    }

    /// Runs until the stop pipe closes: reads events, resets when a deadline passes.
    pub fn run(mut self, resets: &Resets) {
        let mut buffer = vec![MaybeUninit::<u8>::uninit(); EVENT_BUFFER_BYTES];
        loop {
            let timeout = self.deadline.map(|deadline| {
                let left = deadline.saturating_duration_since(Instant::now());
                Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                })
            });
            let mut fds = [
                PollFd::new(&self.inotify, PollFlags::IN),
                PollFd::new(&self.stop, PollFlags::IN),
            ];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(error) => {
                    tracing::error!(target: "reload", %error, "poll failed, reload stops");
                    return;
                }
            }
            if !fds[1].revents().is_empty() {
                return;
            }
            let readable = !fds[0].revents().is_empty();
            if readable {
                self.read_events(&mut buffer);
            }
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.reset_pending(resets);
            }
        }
    }

    /// Drains the inotify queue.
    fn read_events(&mut self, buffer: &mut [MaybeUninit<u8>]) {
        let mut events = Vec::new();
        let mut reader = inotify::Reader::new(self.inotify.as_fd(), buffer);
        loop {
            match reader.next() {
                Ok(event) => {
                    let name = event
                        .file_name()
                        .map(|name| OsStr::from_bytes(name.to_bytes()).to_owned());
                    events.push((event.wd(), event.events(), name));
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        for (wd, flags, name) in events {
            self.handle_event(wd, flags, name);
        }
    }

    fn handle_event(&mut self, wd: i32, flags: ReadFlags, name: Option<std::ffi::OsString>) {
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            tracing::warn!(target: "reload", "inotify queue overflowed, resetting every service");
            for index in 0..self.config.services.len() {
                self.pending
                    .entry(index)
                    .or_insert_with(|| Burst::new(PathBuf::new()));
            }
            self.deadline
                .get_or_insert_with(|| Instant::now() + self.config.interval);
            return;
        }
        if flags.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF) {
            self.dirs.remove(&wd);
            return;
        }
        let (Some(watched), Some(name)) = (self.dirs.get(&wd), name) else {
            return;
        };
        let path = watched.path.join(name);
        let services = watched.services.clone();
        let new_dir = flags.contains(ReadFlags::ISDIR)
            && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO);
        for index in services {
            if flags.contains(ReadFlags::ISDIR) {
                if new_dir && self.config.services[index].recursive {
                    self.watch(index, &path, true, true);
                }
            } else {
                self.file_changed(index, &path, describe(flags));
            }
        }
    }

    /// Resets each pending service's plugin once, logging one line per reset.
    fn reset_pending(&mut self, resets: &Resets) {
        self.deadline = None;
        for (index, burst) in std::mem::take(&mut self.pending) {
            let name = self.config.services[index].name.clone();
            let started = Instant::now();
            if resets.reset(&name) {
                tracing::info!(
                    target: "reload",
                    plugin = %name,
                    changed_files = burst.files.len(),
                    first_file = %burst.first_file.display(),
                    elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "plugin was successfully reset"
                );
            } else {
                tracing::debug!(target: "reload", plugin = %name, "no such resettable plugin, not reset");
            }
        }
    }
}

/// rr's debug texts for what happened to a file.
fn describe(flags: ReadFlags) -> &'static str {
    if flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
        "file was removed from watcher"
    } else if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
        "file was created"
    } else {
        "file was updated"
    }
}

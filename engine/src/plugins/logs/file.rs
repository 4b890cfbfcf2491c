//! `logs.file_logger_options`: a log file rotated by size, lumberjack's way (what rr uses).
//! When a write would take the file past `max_size`, the file is renamed to
//! `<stem>-<UTC 2006-01-02T15-04-05.000><ext>` beside it and a fresh one is opened; then
//! backups past `max_backups` (oldest first) and older than `max_age` days are removed.

use super::FileLoggerOptions;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The rotating file; a `Write` the logs plugin uses as a sink.
#[derive(Debug)]
pub struct RotatingFile {
    options: FileLoggerOptions,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (appends to) the file, creating it and its directory when missing.
    ///
    /// # Errors
    /// The directory or file cannot be created.
    pub fn open(options: FileLoggerOptions) -> io::Result<Self> {
        if let Some(dir) = options.log_output.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let file = append(&options.log_output)?;
        let size = file.metadata()?.len();
        Ok(Self {
            options,
            file,
            size,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = &self.options.log_output;
        // Two rotations within a millisecond: the later one takes the next free millisecond.
        let now = SystemTime::now();
        let backup = (0..1000)
            .map(|ms| backup_name(path, now + Duration::from_millis(ms)))
            .find(|candidate| !candidate.exists())
            .unwrap_or_else(|| backup_name(path, now));
        std::fs::rename(path, backup)?;
        self.file = append(path)?;
        self.size = 0;
        self.remove_old_backups();
        Ok(())
    }

    fn remove_old_backups(&self) {
        let path = &self.options.log_output;
        let (Some(dir), Some((stem, ext))) = (path.parent(), stem_and_ext(path)) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{stem}-");
        let mut backups: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|candidate| {
                candidate
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|name| {
                        name.starts_with(&prefix)
                            && name.ends_with(&ext)
                            && name.len() > prefix.len()
                    })
            })
            .collect();
        // The timestamp in the name sorts lexicographically: newest last.
        backups.sort();
        let keep = if self.options.max_backups == 0 {
            backups.len()
        } else {
            self.options.max_backups
        };
        let excess = backups.len().saturating_sub(keep);
        let max_age = Duration::from_secs(self.options.max_age_days.saturating_mul(86_400));
        for (index, backup) in backups.iter().enumerate() {
            let too_old = self.options.max_age_days > 0
                && std::fs::metadata(backup)
                    .and_then(|meta| meta.modified())
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age > max_age);
            if index < excess || too_old {
                let _ = std::fs::remove_file(backup);
            }
        }
    }
}

impl Write for RotatingFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.options.max_size {
            self.rotate()?;
        }
        let written = self.file.write(bytes)?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `app.log` → (`app`, `.log`); `app` → (`app`, ``).
fn stem_and_ext(path: &Path) -> Option<(String, String)> {
    let name = path.file_name()?.to_str()?;
    Some(match name.rfind('.') {
        Some(dot) if dot > 0 => (name[..dot].to_owned(), name[dot..].to_owned()),
        _ => (name.to_owned(), String::new()),
    })
}

/// `dir/app.log` at `now` → `dir/app-2026-11-22T21-30-00.123.log`.
fn backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let c = crate::clock::civil(since_epoch.as_secs());
    let (stem, ext) = stem_and_ext(path).unwrap_or_else(|| ("rr".into(), ".log".into()));
    path.with_file_name(format!(
        "{stem}-{}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}{ext}",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        since_epoch.subsec_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_are_named_by_utc_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_735_830_245_123);
        assert_eq!(
            backup_name(Path::new("/var/log/rr.log"), at),
            Path::new("/var/log/rr-2025-01-02T15-04-05.123.log")
        );
    }

    #[test]
    fn rotation_keeps_max_backups_and_the_newest_lines() {
        let dir = std::env::temp_dir().join(format!("rr-log-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = FileLoggerOptions {
            log_output: dir.join("app.log"),
            max_size: 100,
            max_age_days: 0,
            max_backups: 2,
            compress: false,
        };
        let mut file = RotatingFile::open(options).unwrap();
        for n in 0..20 {
            file.write_all(format!("{n:>39}\n").as_bytes()).unwrap();
        }
        let current = std::fs::read_to_string(dir.join("app.log")).unwrap();
        assert!(current.len() <= 100, "{}", current.len());
        assert!(current.ends_with("19\n"));
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "app.log")
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names
            .iter()
            .all(|n| n.starts_with("app-") && n.ends_with(".log")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Regular files on a shard: static files served and uploads stored. On io_uring they are
//! opened, read and written by the ring; epoll has no readiness for files, so there they
//! are plain blocking calls, which the page cache answers at memory speed (nginx without
//! `aio` does the same).

use super::{epoll, Backend};
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use tokio_uring::buf::BoundedBufMut;

/// An open regular file.
#[derive(Debug)]
pub struct File {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Uring(tokio_uring::fs::File),
    Blocking(std::fs::File),
}

/// What serving a file needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// Size in bytes.
    pub size: u64,
    /// Last modification, Unix seconds.
    pub modified_unix: i64,
    /// A directory, not a file.
    pub is_dir: bool,
}

impl File {
    /// Opens `path` for reading.
    ///
    /// # Errors
    /// As `open(2)`.
    pub async fn open(path: &Path, backend: Backend) -> io::Result<Self> {
        let inner = match backend {
            Backend::Uring => Inner::Uring(tokio_uring::fs::File::open(path).await?),
            Backend::Epoll => Inner::Blocking(std::fs::File::open(path)?),
        };
        Ok(Self { inner })
    }

    /// Takes an open file onto `backend`.
    #[must_use]
    pub fn from_std(file: std::fs::File, backend: Backend) -> Self {
        let inner = match backend {
            Backend::Uring => Inner::Uring(tokio_uring::fs::File::from_std(file)),
            Backend::Epoll => Inner::Blocking(file),
        };
        Self { inner }
    }

    /// Size, modification time and type.
    ///
    /// # Errors
    /// As `statx(2)`.
    pub async fn facts(&self) -> io::Result<FileFacts> {
        let stat = match &self.inner {
            Inner::Uring(file) => {
                let stat = file.statx().await?;
                return Ok(FileFacts {
                    size: stat.stx_size,
                    modified_unix: stat.stx_mtime.tv_sec,
                    // S_IFMT / S_IFDIR.
                    is_dir: u32::from(stat.stx_mode) & 0o170_000 == 0o040_000,
                });
            }
            Inner::Blocking(file) => rustix::fs::fstat(file)?,
        };
        Ok(FileFacts {
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified_unix: stat.st_mtime,
            is_dir: rustix::fs::FileType::from_raw_mode(stat.st_mode)
                == rustix::fs::FileType::Directory,
        })
    }

    /// Reads into `buf`'s bounded range at `position`; gives the count (0 at EOF) and `buf`.
    pub async fn read_at<T: BoundedBufMut>(
        &self,
        mut buf: T,
        position: u64,
    ) -> (io::Result<usize>, T) {
        match &self.inner {
            Inner::Uring(file) => file.read_at(buf, position).await,
            Inner::Blocking(file) => {
                let result = epoll::pread_into(file.as_fd(), &mut buf, position);
                (result, buf)
            }
        }
    }

    /// Writes all of `buf` at `position`; gives `buf` back.
    pub async fn write_all_at(&self, buf: Vec<u8>, position: u64) -> (io::Result<()>, Vec<u8>) {
        match &self.inner {
            Inner::Uring(file) => file.write_all_at(buf, position).await,
            Inner::Blocking(file) => {
                let mut written = 0;
                while written < buf.len() {
                    match rustix::io::pwrite(file, &buf[written..], position + written as u64) {
                        Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                        Ok(n) => written += n,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(error) => return (Err(error.into()), buf),
                    }
                }
                (Ok(()), buf)
            }
        }
    }

    /// Closes the file (on io_uring through the ring).
    ///
    /// # Errors
    /// As `close(2)`.
    pub async fn close(self) -> io::Result<()> {
        match self.inner {
            Inner::Uring(file) => file.close().await,
            Inner::Blocking(file) => {
                drop(file);
                Ok(())
            }
        }
    }
}

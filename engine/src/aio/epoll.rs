//! The epoll backend's reads and writes on lent buffers: what a ring operation does with
//! the buffer it is given (fill it from its start, mark the count read as initialised; send
//! its initialised bytes), done with a non-blocking system call once epoll reports the
//! descriptor ready.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio_uring::buf::{BoundedBuf, BoundedBufMut};

/// Reads into `buf` (its bounded range, from the start) once `fd` is readable.
pub(super) async fn read<T: BoundedBufMut>(
    fd: &AsyncFd<OwnedFd>,
    mut buf: T,
) -> (io::Result<usize>, T) {
    loop {
        let mut ready = match fd.readable().await {
            Ok(ready) => ready,
            Err(error) => return (Err(error), buf),
        };
        // WouldBlock (a stale readiness) clears it and waits again.
        if let Ok(result) = ready.try_io(|fd| retry_interrupted(|| read_into(fd.as_fd(), &mut buf)))
        {
            return (result, buf);
        }
    }
}

/// Writes what `buf` holds (once, possibly short) once `fd` is writable.
pub(super) async fn write<T: BoundedBuf>(fd: &AsyncFd<OwnedFd>, buf: T) -> (io::Result<usize>, T) {
    loop {
        let mut ready = match fd.writable().await {
            Ok(ready) => ready,
            Err(error) => return (Err(error), buf),
        };
        if let Ok(result) = ready.try_io(|fd| retry_interrupted(|| write_from(fd.as_fd(), &buf))) {
            return (result, buf);
        }
    }
}

/// One `read` into the buffer's bounded range; the count read is marked initialised.
pub(super) fn read_into<T: BoundedBufMut>(fd: BorrowedFd<'_>, buf: &mut T) -> io::Result<usize> {
    let total = buf.bytes_total();
    // SAFETY: `BoundedBufMut` promises that `stable_mut_ptr` points at `bytes_total` bytes
    // the buffer owns, which do not move while it is borrowed; seen as `MaybeUninit` their
    // contents need not be initialised. The slice lives only during this call, while `buf`
    // is borrowed mutably, so nothing else reaches those bytes meanwhile.
    let room = unsafe {
        std::slice::from_raw_parts_mut(buf.stable_mut_ptr().cast::<MaybeUninit<u8>>(), total)
    };
    let (filled, _) = rustix::io::read(fd, room)?;
    let count = filled.len();
    // SAFETY: the kernel has written the first `count` bytes of the range.
    unsafe { buf.set_init(count) };
    Ok(count)
}

/// One `read` at `position` (a regular file), as [`read_into`].
pub(super) fn pread_into<T: BoundedBufMut>(
    fd: BorrowedFd<'_>,
    buf: &mut T,
    position: u64,
) -> io::Result<usize> {
    let total = buf.bytes_total();
    // SAFETY: as in `read_into`.
    let room = unsafe {
        std::slice::from_raw_parts_mut(buf.stable_mut_ptr().cast::<MaybeUninit<u8>>(), total)
    };
    let count = loop {
        match rustix::io::pread(fd, &mut *room, position) {
            Ok((filled, _)) => break filled.len(),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    };
    // SAFETY: the kernel has written the first `count` bytes of the range.
    unsafe { buf.set_init(count) };
    Ok(count)
}

/// One `write` of the buffer's initialised bytes.
pub(super) fn write_from<T: BoundedBuf>(fd: BorrowedFd<'_>, buf: &T) -> io::Result<usize> {
    Ok(rustix::io::write(fd, initialised(buf))?)
}

/// The initialised bytes of a lent buffer.
pub(super) fn initialised<T: BoundedBuf>(buf: &T) -> &[u8] {
    // SAFETY: `BoundedBuf` promises that `stable_ptr` points at `bytes_init` initialised
    // bytes the buffer owns; the slice borrows `buf`, so they stay put and unchanged.
    unsafe { std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init()) }
}

/// Copies `bytes` (as many as fit) to the start of a lent buffer's bounded range, as a read
/// would; the count copied is marked initialised.
pub(super) fn fill_from<T: BoundedBufMut>(buf: &mut T, bytes: &[u8]) -> usize {
    let count = bytes.len().min(buf.bytes_total());
    // SAFETY: `stable_mut_ptr` points at `bytes_total` bytes the buffer owns (see
    // `read_into`), `count` is within them, and `bytes` is a different allocation (the
    // caller's), so the ranges do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.stable_mut_ptr(), count);
        buf.set_init(count);
    }
    count
}

fn retry_interrupted<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

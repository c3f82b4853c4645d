//! Opening a file under a root directory so that what is read is what the
//! policy allowed: the path is resolved relative to the root's directory
//! handle, and no symlink may lead out of it, in the same system call that
//! opens the file. Checking a path and then opening it by name would leave
//! a window in which a directory could be swapped for a symlink out.
//!
//! Linux 5.6+ does this with `openat2(RESOLVE_BENEATH)`; where that call is
//! missing (older kernels, or a seccomp filter that refuses it) the path is
//! walked one component at a time with `O_NOFOLLOW`, which refuses every
//! symlink, in or out. Only regular files are opened (a FIFO would block a
//! read forever): the open does not wait for a writer, and the handle's own
//! type is checked.

use std::fs::File;
use std::io;
use std::path::{Component, Path};

/// Opens `relative` (no `..`, no root) under `root` for reading.
pub fn open_beneath(root: &Path, relative: &Path) -> io::Result<File> {
    if relative
        .components()
        .any(|component| !matches!(component, Component::Normal(_)))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path leaves its root (`..` or an absolute part)",
        ));
    }
    let file = open(root, relative)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(
            "it is not a regular file (a directory, a FIFO or a device)",
        ));
    }
    Ok(file)
}

/// Whether an open failed because the path would have left its root (a
/// symlink out, any symlink on the fallback walk, or `..`).
pub fn escaped(error: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        matches!(error.raw_os_error(), Some(libc::EXDEV | libc::ELOOP)) || error.kind() == io::ErrorKind::InvalidInput
    }
    #[cfg(not(target_os = "linux"))]
    {
        error.kind() == io::ErrorKind::InvalidInput
    }
}

#[cfg(target_os = "linux")]
fn open(root: &Path, relative: &Path) -> io::Result<File> {
    let directory = linux::open_directory(root)?;
    // openat2 answers EAGAIN when a rename raced the lookup: try again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match linux::openat2_beneath(&directory, relative) {
            Err(error) if matches!(error.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                return linux::walk_without_symlinks(directory, relative);
            }
            Err(error) if error.raw_os_error() == Some(libc::EAGAIN) && attempts < 3 => continue,
            opened => return opened,
        }
    }
}

/// Elsewhere, the path as the policy checked it (canonical, under a root).
#[cfg(not(target_os = "linux"))]
fn open(root: &Path, relative: &Path) -> io::Result<File> {
    File::open(root.join(relative))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// Read-only, closed on exec, no controlling terminal, and not waiting
    /// for a FIFO's writer.
    const FLAGS: libc::c_int = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

    /// A directory to resolve paths from: `O_PATH`, so that searching it
    /// is enough (reading its entries is not needed).
    const DIRECTORY: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;

    pub fn open_directory(path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(DIRECTORY)
            .open(path)
    }

    fn c_path(path: &Path) -> io::Result<CString> {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the path holds a NUL byte"))
    }

    /// A descriptor a successful open returned, owned from now on.
    fn owned(fd: libc::c_long) -> io::Result<File> {
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("the kernel returned an impossible descriptor"))?;
        // SAFETY: `fd` was just returned by a successful open and nothing
        // else owns it; the File closes it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    pub fn openat2_beneath(directory: &File, relative: &Path) -> io::Result<File> {
        let path = c_path(relative)?;
        // SAFETY: open_how is plain integers (#[non_exhaustive], so it can
        // only be made zeroed); all zero is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = FLAGS as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: the directory descriptor is open for the call's length,
        // `path` is NUL-terminated, and `how` is a valid open_how whose
        // size is passed with it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                directory.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        owned(fd)
    }

    pub fn walk_without_symlinks(root: File, relative: &Path) -> io::Result<File> {
        let mut current = root;
        let mut components = relative.components().peekable();
        while let Some(component) = components.next() {
            let name = c_path(Path::new(component.as_os_str()))?;
            let last = components.peek().is_none();
            let flags = if last {
                FLAGS | libc::O_NOFOLLOW
            } else {
                DIRECTORY | libc::O_NOFOLLOW
            };
            // SAFETY: `current` is an open directory for the call's length
            // and `name` is NUL-terminated.
            let fd = unsafe { libc::openat(current.as_raw_fd(), name.as_ptr(), flags) };
            current = owned(libc::c_long::from(fd)).map_err(|error| {
                // O_DIRECTORY | O_NOFOLLOW on a symlink says "not a directory".
                if !last && error.raw_os_error() == Some(libc::ENOTDIR) {
                    io::Error::from_raw_os_error(libc::ELOOP)
                } else {
                    error
                }
            })?;
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("exports")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("exports/data.csv"), "inside").unwrap();
        std::fs::write(outside.join("data.csv"), "SECRET").unwrap();
        (dir, root, outside)
    }

    fn read(file: File) -> String {
        let mut text = String::new();
        { file }.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn a_file_under_the_root_opens() {
        let (_dir, root, _) = setup();
        assert_eq!(
            read(open_beneath(&root, Path::new("exports/data.csv")).unwrap()),
            "inside"
        );
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_out_is_refused() {
        let (_dir, root, outside) = setup();
        std::fs::remove_dir_all(root.join("exports")).unwrap();
        symlink(&outside, root.join("exports")).unwrap();
        let error = open_beneath(&root, Path::new("exports/data.csv")).unwrap_err();
        assert!(escaped(&error), "{error}");
        symlink(outside.join("data.csv"), root.join("link.csv")).unwrap();
        let error = open_beneath(&root, Path::new("link.csv")).unwrap_err();
        assert!(escaped(&error), "{error}");
        assert!(escaped(
            &open_beneath(&root, Path::new("../outside/data.csv")).unwrap_err()
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_fallback_walk_refuses_every_symlink() {
        let (_dir, root, outside) = setup();
        let walk =
            |relative: &str| linux::walk_without_symlinks(linux::open_directory(&root).unwrap(), Path::new(relative));
        assert_eq!(read(walk("exports/data.csv").unwrap()), "inside");
        symlink(&outside, root.join("out")).unwrap();
        assert!(escaped(&walk("out/data.csv").unwrap_err()));
        symlink(root.join("exports/data.csv"), root.join("inner.csv")).unwrap();
        assert!(escaped(&walk("inner.csv").unwrap_err()), "even a symlink inside");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let (_dir, root, _) = setup();
        let fifo = std::ffi::CString::new(root.join("pipe.csv").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path, created in a scratch directory.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let error = open_beneath(&root, Path::new("pipe.csv")).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        assert!(!escaped(&error), "a FIFO inside is not outside");
    }
}

//! Writing the files other programs read, atomically: a reader sees the
//! old file or the new one, never half of one, even across a power cut
//! (and not at all when they already hold what would be written).
//! Narrowing the modes of files and directories that hold secrets.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write `contents` to `path` with `mode`: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// [`write_atomic`], unless `path` already holds exactly `contents` with
/// `mode` (then nothing is written or synced). Returns whether it wrote.
pub fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<bool> {
    let same = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file() && m.permissions().mode() & 0o7777 == mode)
        .filter(|m| m.len() == contents.len() as u64)
        .and_then(|_| std::fs::read(path).ok())
        .is_some_and(|old| old == contents);
    if same {
        return Ok(false);
    }
    write_atomic(path, contents, mode).map(|()| true)
}

/// A file or directory whose permission bits were narrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub path: PathBuf,
    /// The permission bits before and after (`0o755` → `0o700`).
    pub from: u32,
    pub to: u32,
}

/// Narrow the permission bits of `path` to `mode` when it exists and allows
/// more than `mode` (a directory `0o700`, a secret file `0o600`). A path
/// that does not exist, or is a symbolic link (never followed), is left
/// alone. Returns what was changed.
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<Option<Tightened>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let from = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || from & !mode == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(Some(Tightened {
        path: path.to_owned(),
        from,
        to: mode,
    }))
}

/// [`tighten`] every regular file directly in `dir` (not in its
/// subdirectories; sockets and links are left alone). A directory that
/// does not exist has nothing to tighten.
pub fn tighten_files_in(dir: &Path, mode: u32) -> std::io::Result<Vec<Tightened>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut done = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            done.extend(tighten(&entry.path(), mode)?);
        }
    }
    Ok(done)
}

/// Create the directory `path` (and its parents) owner-only, or narrow it
/// to `0o700` when it exists.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    tighten(path, 0o700).map(drop)
}

/// Create the file `path` empty and owner-only (`0o600`) if it does not
/// exist, or narrow it to `0o600` when it does: for a file another program
/// (SQLite) fills with secrets.
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    tighten(path, 0o600).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn tighten_narrows_only_what_allows_more_and_never_follows_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let open = d.join("open");
        std::fs::write(&open, "secret").expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let narrow = d.join("narrow");
        std::fs::write(&narrow, "secret").expect("write");
        std::fs::set_permissions(&narrow, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        let outside = tempfile::NamedTempFile::new().expect("file");
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::os::unix::fs::symlink(outside.path(), d.join("link")).expect("symlink");

        let done = tighten_files_in(d, 0o600).expect("tighten");
        assert_eq!(
            done,
            [Tightened {
                path: open.clone(),
                from: 0o644,
                to: 0o600
            }]
        );
        assert_eq!(mode(&open), 0o600);
        assert_eq!(mode(&narrow), 0o400, "already narrower: kept");
        assert_eq!(
            mode(outside.path()),
            0o644,
            "the link's target is not touched"
        );
        assert_eq!(tighten(&d.join("missing"), 0o600).expect("missing"), None);
        assert!(
            tighten_files_in(&d.join("missing"), 0o600)
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn private_dirs_and_files_are_made_or_narrowed_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("a/keys");
        create_private_dir(&keys).expect("create");
        assert_eq!(mode(&keys), 0o700);
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create_private_dir(&keys).expect("again");
        assert_eq!(mode(&keys), 0o700);
        let db = keys.join("subscriber.db");
        ensure_private_file(&db).expect("create");
        assert_eq!(mode(&db), 0o600);
        std::fs::write(&db, "kept").expect("write");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        ensure_private_file(&db).expect("again");
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::read(&db).expect("read"), b"kept", "not truncated");
    }

    #[test]
    fn the_file_is_replaced_whole_with_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/key.pem");
        write_atomic(&p, b"one", 0o600).expect("write");
        write_atomic(&p, b"two", 0o600).expect("rewrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(p.parent().expect("dir"))
                .expect("ls")
                .count(),
            1,
            "no temporary file left"
        );
    }
}

#[cfg(test)]
mod write_if_changed_tests {
    use super::*;

    #[test]
    fn the_same_contents_and_mode_are_not_written_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.pem");
        assert!(write_if_changed(&f, b"one", 0o644).expect("write"));
        let inode =
            |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("meta"));
        let first = inode(&f);
        assert!(!write_if_changed(&f, b"one", 0o644).expect("same"));
        assert_eq!(inode(&f), first, "not replaced");
        assert!(write_if_changed(&f, b"two", 0o644).expect("other contents"));
        assert!(write_if_changed(&f, b"two", 0o600).expect("other mode"));
        assert_eq!(std::fs::read(&f).expect("read"), b"two");
    }
}

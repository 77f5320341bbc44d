//! The data directory's modes, enforced at every start: whatever existed
//! before (a directory made by hand, files restored from a backup), the
//! directory is owner-only and so is every file in it that holds a secret.

use std::path::Path;

use switchboard_system::files::{Tightened, tighten, tighten_files_in};

use crate::sip;

/// Narrow the modes in `data_dir`: the directory `0700`; every regular
/// file at its top level `0600` (the store, which holds private keys and
/// password hashes, its `-wal` and `-shm`, the lock); Kamailio's `keys/`
/// `0700` and each key `0600`; Kamailio's subscriber database (HA1
/// digests) and its journal `0600`. Returns what was narrowed, for the log.
pub fn secure_data_dir(data_dir: &Path) -> std::io::Result<Vec<Tightened>> {
    let mut done = Vec::new();
    done.extend(tighten(data_dir, 0o700)?);
    done.extend(tighten_files_in(data_dir, 0o600)?);
    let kamailio = sip::dir(data_dir);
    let keys = kamailio.join(sip::KEYS_DIR);
    done.extend(tighten(&keys, 0o700)?);
    done.extend(tighten_files_in(&keys, 0o600)?);
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let file = format!("{}{suffix}", sip::SUBSCRIBER_DB);
        done.extend(tighten(&kamailio.join(file), 0o600)?);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn set(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn every_secret_is_narrowed_and_public_files_are_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let keys = sip::dir(&data).join(sip::KEYS_DIR);
        std::fs::create_dir_all(&keys).expect("mkdir");
        let files = [
            data.join("switchboard.db"),
            data.join("switchboard.db-wal"),
            keys.join("voip.key"),
            sip::dir(&data).join(sip::SUBSCRIBER_DB),
            sip::dir(&data).join("kamailio.cfg"),
        ];
        for f in &files {
            std::fs::write(f, "x").expect("write");
            set(f, 0o644);
        }
        for d in [&data, &sip::dir(&data), &keys] {
            set(d, 0o755);
        }
        let done = secure_data_dir(&data).expect("secure");
        assert_eq!(done.len(), 6, "{done:?}");
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&keys), 0o700);
        for f in &files[..4] {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(
            mode(&files[4]),
            0o644,
            "Kamailio's configuration is no secret"
        );
        assert!(secure_data_dir(&data).expect("again").is_empty());
    }
}

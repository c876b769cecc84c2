//! Owner-only files and directories on Unix: the data directory (0700), the SQLite database
//! with its `-wal` / `-shm` files and the report-signing key (0600). The database holds the
//! acknowledge-link secret and the audit log, the key signs reports and audit checkpoints, so
//! nobody but the server's user may read them. Existing ones that others can read are
//! tightened, with a log line naming the path and the old mode. Elsewhere these do nothing
//! beyond creating what is missing.

use std::path::Path;

use anyhow::Context;

/// Creates `dir` (and missing parents) owner-only, or tightens an existing `dir` that group or
/// others may access to 0700.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))?;
    tighten(dir, 0o700)
}

/// Tightens an existing file that group or others may access to 0600; a missing file is left
/// missing.
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        tighten(path, 0o600)?;
    }
    Ok(())
}

/// Creates an empty file with mode 0600 unless it exists (then it is tightened).
pub fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    private_file(path)
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let old = std::fs::metadata(path)
        .with_context(|| format!("reading the mode of {}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if old & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {} to {mode:o}", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            "tightened permissions from {old:o} to {mode:o}: group and others could access it"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_existing_ones_tightened() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("db");
        create_private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_dir(&dir).unwrap();
        private_file(&f).unwrap();
        private_file(&dir.join("missing")).unwrap();
        assert_eq!((mode(&dir), mode(&f)), (0o700, 0o600));
        assert!(!dir.join("missing").exists());
    }
}

//! The server's report-signing key (Ed25519): created on first use under the data directory
//! as `report-signing.key` (secret, mode 0600) and `report-signing.pub` (public, for
//! `report verify` and for the office). Both files hold 64 hex digits and a newline.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// File name of the secret key under the data directory.
pub const SECRET_KEY_FILE: &str = "report-signing.key";
/// File name of the public key under the data directory.
pub const PUBLIC_KEY_FILE: &str = "report-signing.pub";

/// Default public-key path for a data directory.
pub fn public_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(PUBLIC_KEY_FILE)
}

fn read_hex32(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    match bytes {
        Some(b) => Ok(b),
        None => bail!("{}: not a key (expected 64 hex digits)", path.display()),
    }
}

/// Reads a public key file.
pub fn load_public(path: &Path) -> anyhow::Result<VerifyingKey> {
    let bytes = read_hex32(path)?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| anyhow::anyhow!("{}: not a valid Ed25519 public key", path.display()))
}

/// Loads the signing key from `data_dir`, creating it (and the public key file) on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let secret = data_dir.join(SECRET_KEY_FILE);
    let public = public_key_path(data_dir);
    if secret.exists() {
        crate::private_files::private_file(&secret)?;
        let key = SigningKey::from_bytes(&read_hex32(&secret)?);
        if !public.exists() {
            write(&public, &hex::encode(key.verifying_key().as_bytes()), 0o644)?;
        }
        return Ok(key);
    }
    crate::private_files::private_dir(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    write(&secret, &hex::encode(key.to_bytes()), 0o600)?;
    write(&public, &hex::encode(key.verifying_key().as_bytes()), 0o644)?;
    Ok(key)
}

/// The name under which the replicas' shared public key is recorded in the store.
const SHARED_PUBLIC_KEY: &str = "report_signing_public";

/// Replicas on one PostgreSQL (issue 19) sign reports and audit checkpoints with one key, so
/// that one public key verifies everything the database holds. The first replica to start
/// records its public key in the store; a replica whose key differs — or that has none and
/// would create a new one — is refused with a message saying which files to copy. The secret
/// key stays in the data directories, never in the database (it anchors the audit chain
/// against someone who can write the database).
pub async fn check_shared(
    store: &crate::store::Store,
    data_dir: &Path,
    now_ms: i64,
) -> anyhow::Result<()> {
    let created = !data_dir.join(SECRET_KEY_FILE).exists();
    let key = load_or_create(data_dir)?;
    let ours = hex::encode(key.verifying_key().as_bytes());
    let shared = store
        .notify_secret(SHARED_PUBLIC_KEY, &ours, now_ms)
        .await
        .context("reading the replicas' report-signing public key")?;
    if shared == ours {
        return Ok(());
    }
    if created {
        // Not ours to keep: the replicas' key is to be copied here.
        let _ = std::fs::remove_file(data_dir.join(SECRET_KEY_FILE));
        let _ = std::fs::remove_file(public_key_path(data_dir));
    }
    bail!(
        "the report-signing key in {dir} {what} the one the replicas on this database use \
         (public key {shared}); every replica signs reports and audit checkpoints with the same \
         key: copy {SECRET_KEY_FILE} (mode 0600) and {PUBLIC_KEY_FILE} from another replica's data \
         directory into {dir} / 数据目录 {dir} 中的报告签名密钥与本数据库其他副本使用的不一致（或缺失）；\
         所有副本须使用同一密钥：请从其他副本的数据目录复制 {SECRET_KEY_FILE}（权限 0600）和 {PUBLIC_KEY_FILE}",
        dir = data_dir.display(),
        what = if created {
            "is missing, unlike"
        } else {
            "differs from"
        },
    )
}

fn write(path: &Path, hex: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    writeln!(f, "{hex}").with_context(|| format!("writing key file {}", path.display()))?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_reloaded_and_its_public_half_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(key.to_bytes(), again.to_bytes());
        let public = load_public(&public_key_path(dir.path())).unwrap();
        assert_eq!(public, key.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secret key readable by others");
        }
        std::fs::write(dir.path().join("bad.pub"), "xyz\n").unwrap();
        let err = load_public(&dir.path().join("bad.pub")).unwrap_err();
        assert!(err.to_string().contains("expected 64 hex digits"));
    }
}

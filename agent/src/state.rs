//! The agent's persisted identity and sequence counter, `<state_dir>/state.json`.
//!
//! The file is replaced atomically (temporary file, fsync, rename, fsync of the folder), so a
//! crash leaves either the old or the new state. The push loop saves `next_seq` before a batch
//! with that number is first sent, so a restart never reuses a sequence number for different
//! content.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "state.json";

/// Identity issued at enrollment plus the next batch sequence number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub agent_id: String,
    /// Bearer token for ingest; secret.
    pub token: String,
    /// Sequence number of the next batch; starts at 1.
    pub next_seq: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("agent_id", &self.agent_id)
            .field("token", &"<redacted>")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

/// Path of the state file in `state_dir`.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Loads the state, or `None` if the agent has not enrolled yet (no state file).
pub fn load_state(state_dir: &Path) -> anyhow::Result<Option<State>> {
    let path = state_path(state_dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let state: State =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(
        state.next_seq >= 1,
        "{}: next_seq must be at least 1",
        path.display()
    );
    Ok(Some(state))
}

/// Writes the state atomically, creating `state_dir` if needed. The file is readable by its
/// owner only, since it holds the token.
pub fn save_state(state_dir: &Path, state: &State) -> anyhow::Result<()> {
    fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state folder {}", state_dir.display()))?;
    let path = state_path(state_dir);
    let tmp = state_dir.join(format!("{FILE_NAME}.tmp"));
    let json = serde_json::to_vec_pretty(state).expect("state always serializes");
    let write = || -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        fs::File::open(state_dir)?.sync_all()?;
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_state_is_none_and_saved_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nested/state");
        assert_eq!(load_state(&sub).unwrap(), None);
        let s = State {
            agent_id: "a1".into(),
            token: "t0k3n".into(),
            next_seq: 1,
        };
        save_state(&sub, &s).unwrap();
        assert_eq!(load_state(&sub).unwrap(), Some(s.clone()));
        let s2 = State { next_seq: 42, ..s };
        save_state(&sub, &s2).unwrap();
        assert_eq!(load_state(&sub).unwrap(), Some(s2));
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn state_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        save_state(
            dir.path(),
            &State {
                agent_id: "a".into(),
                token: "t".into(),
                next_seq: 1,
            },
        )
        .unwrap();
        let mode = fs::metadata(state_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(state_path(dir.path()), "{\"agent_id\":").unwrap();
        let err = format!("{:#}", load_state(dir.path()).unwrap_err());
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let s = State {
            agent_id: "a".into(),
            token: "secret-token".into(),
            next_seq: 1,
        };
        assert!(!format!("{s:?}").contains("secret-token"));
    }
}

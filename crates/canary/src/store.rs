//! The state file of file mode: every canary's state as JSON, next to the config. Its name is
//! a dotfile without a config extension, so the config loader and watcher never read it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::state::CanaryState;

/// The state file's name inside the config directory (the file watcher ignores its writes:
/// `sluice_sources`' `CANARY_STATE_PREFIX`).
pub const STATE_FILE_NAME: &str = ".sluice-canary-state";

/// A canary state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path`.
    pub fn new(path: PathBuf) -> StateFile {
        StateFile { path }
    }

    /// The state file of a config path: inside it when it is a directory, next to it when a file.
    pub fn for_config(config: &Path) -> StateFile {
        let dir = if config.is_dir() {
            config
        } else {
            config.parent().unwrap_or(Path::new("."))
        };
        StateFile::new(dir.join(STATE_FILE_NAME))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The states saved, by `namespace/name`; none when the file does not exist.
    pub fn load(&self) -> io::Result<BTreeMap<String, CanaryState>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// Saves the states: written aside, then renamed over the file (a crash keeps the old one).
    pub fn save(&self, states: &BTreeMap<String, CanaryState>) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(states).map_err(io::Error::other)?;
        let tmp = self.path.with_file_name(format!("{STATE_FILE_NAME}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_states_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_config(dir.path());
        assert!(f.load().unwrap().is_empty());
        let mut states = BTreeMap::new();
        states.insert("default/app".to_string(), CanaryState::new("t".into(), 5));
        f.save(&states).unwrap();
        assert_eq!(f.load().unwrap(), states);
        assert!(f
            .path()
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.')));
    }
}

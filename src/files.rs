//! Files written all or nothing and durably: each is staged beside its destination,
//! synced, and renamed into place only when every one is ready, then the directories
//! holding them are synced, so the new names survive a crash of the machine too (a
//! file's own fsync does not cover its directory entry). Staged files that are never
//! committed are removed.

use std::path::{Path, PathBuf};

/// Files staged for one command's output.
#[derive(Debug, Default)]
pub struct StagedFiles {
    /// (staged, destination)
    files: Vec<(PathBuf, PathBuf)>,
}

impl StagedFiles {
    /// Like [`stage`](Self::stage), but refuses a destination that already exists.
    pub fn stage_new(&mut self, dest: &Path, bytes: &[u8], secret: bool) -> Result<(), String> {
        if dest.exists() {
            return Err(format!("{} already exists: name another file", dest.display()));
        }
        self.stage(dest, bytes, secret)
    }

    /// Writes `bytes` to a hidden file beside `dest` and syncs it. A `secret` is created
    /// mode 0600, so it is never readable by others, not even briefly. A destination that
    /// is a directory is refused here, before anything is moved into place.
    pub fn stage(&mut self, dest: &Path, bytes: &[u8], secret: bool) -> Result<(), String> {
        if dest.is_dir() {
            return Err(format!("cannot write {}: it is a directory", dest.display()));
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest.file_name().ok_or_else(|| format!("{} is not a file name", dest.display()))?;
        let mut tag = [0u8; 6];
        crate::model::fill_random(&mut tag);
        let staged = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), crate::jose::b64_encode(tag)));
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", dest.display());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
        #[cfg(not(unix))]
        let _ = secret;
        let mut file = options.open(&staged).map_err(fail)?;
        self.files.push((staged, dest.to_path_buf()));
        std::io::Write::write_all(&mut file, bytes).map_err(fail)?;
        file.sync_all().map_err(fail)
    }

    /// Moves every staged file into place and syncs the directories; an error if a
    /// directory cannot be synced (the files are in place, but not known durable).
    pub fn commit(mut self) -> Result<(), String> {
        let files = std::mem::take(&mut self.files);
        for (i, (staged, dest)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(staged, dest) {
                for (s, _) in files.get(i..).unwrap_or_default() {
                    let _ = std::fs::remove_file(s);
                }
                return Err(format!("cannot write {}: {e}", dest.display()));
            }
        }
        for (_, dest) in &files {
            let dir = parent_dir(dest);
            sync_dir(dir)
                .map_err(|e| format!("cannot sync {} after writing {}: {e}", dir.display(), dest.display()))?;
        }
        Ok(())
    }
}

/// fsyncs directory `dir`, so the names created or renamed in it are on stable storage.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes `text` to `path` unless it already holds exactly that: staged, synced,
/// renamed into place, directory synced.
pub fn write_if_changed(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let mut files = StagedFiles::default();
    files.stage(path, text.as_bytes(), false)?;
    files.commit()
}

impl Drop for StagedFiles {
    fn drop(&mut self) {
        for (staged, _) in &self.files {
            let _ = std::fs::remove_file(staged);
        }
    }
}

//! What stands around the sled files: one process at a time, damage found before
//! anything is changed, and lost writes noticed.
//!
//! Beside the store directory `D` (idca's is `data/db`):
//! - `D.lock`: an exclusive `flock` held while the store is open, taken before anything
//!   else is read or written, so a second process is refused at once.
//! - `D.generation`: the number of the last group commit known to be on disk. Each group
//!   commit writes its number into the store before flushing and into this file after,
//!   so the store never holds less than the file says unless it lost flushed writes.
//! - `D.clean`: written after a clean close: the size, modification time and SHA-256 of
//!   every file of the store. When it matches (sizes and times first; then the contents,
//!   so a same-size change made behind idca's back is found too), the store opens
//!   directly. Otherwise (after a crash, or when something touched the files) it is
//!   first opened as a copy and checked; a damaged store is reported and left exactly
//!   as it was, because sled's recovery rewrites what it opens.

use std::fs::File;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{GENERATION_KEY, StoreError, backend};

/// `D` + `suffix`, beside `D`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens (creating, never truncating) a file beside the store for writing.
fn open_beside(path: &Path) -> Result<File, StoreError> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))
}

fn damaged(dir: &Path, problem: impl Into<String>) -> StoreError {
    StoreError::Damaged { path: dir.display().to_string(), problem: problem.into() }
}

/// Held for as long as the store is open; on drop (after sled has closed its files)
/// writes the clean-close fingerprint and releases the lock.
#[derive(Debug)]
pub(super) struct Guard {
    dir: PathBuf,
    lock: Option<File>,
    /// Set once the store is open: only then is a clean close recorded.
    opened: bool,
}

impl Guard {
    /// Takes the lock, refuses a store whose files are missing or damaged, and checks a
    /// store that was not closed cleanly on a copy first. Returns the guard and the
    /// generation the store must hold at least.
    /// `unchecked_ok`: when the copy cannot be made, open the store without the check
    /// (`storage.open_unchecked`) instead of refusing.
    pub(super) fn acquire(dir: &Path, cache_capacity: u64, unchecked_ok: bool) -> Result<(Self, u64), StoreError> {
        let lock_path = sibling(dir, ".lock");
        let lock = open_beside(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Backend(format!("{} is in use by another idca process", dir.display())));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Backend(format!("cannot lock {}: {e}", lock_path.display())));
            }
        }
        let guard = Self { dir: dir.to_owned(), lock: Some(lock), opened: false };
        let expected = guard.recorded_generation()?;
        let log = dir.join("db");
        let log_len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        if expected > 0 && log_len == 0 {
            return Err(damaged(
                dir,
                format!(
                    "{} is missing or empty, but {} says {expected} group commits reached it",
                    log.display(),
                    sibling(dir, ".generation").display()
                ),
            ));
        }
        let clean = sibling(dir, ".clean");
        let closed_cleanly = std::fs::read_to_string(&clean).is_ok_and(|recorded| {
            fingerprint(dir, Contents::Skip).is_ok_and(|now| now == without_digests(&recorded))
                && fingerprint(dir, Contents::Hash).is_ok_and(|now| now == recorded)
        });
        if !closed_cleanly && log_len > 0 {
            guard.check_copy(cache_capacity, expected, unchecked_ok)?;
        }
        // From here on the files change: a crash must not find a stale fingerprint.
        match std::fs::remove_file(&clean) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Backend(format!("cannot remove {}: {e}", clean.display()))),
        }
        Ok((guard, expected))
    }

    /// The generation recorded beside the store (0 when there is none yet).
    fn recorded_generation(&self) -> Result<u64, StoreError> {
        let path = sibling(&self.dir, ".generation");
        match std::fs::read_to_string(&path) {
            // Empty: created, but the process ended before it recorded anything.
            Ok(text) if text.trim().is_empty() => Ok(0),
            Ok(text) => {
                text.trim().parse().map_err(|_| damaged(&self.dir, format!("{} is not a number", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::Backend(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Opens a copy of the store the way the real open would, and checks it. A copy that
    /// cannot be made (no space, no permission beside the store) refuses the open, since
    /// sled's recovery would rewrite a damaged store unseen, unless `unchecked_ok`.
    fn check_copy(&self, cache_capacity: u64, expected: u64, unchecked_ok: bool) -> Result<(), StoreError> {
        let copy = sibling(&self.dir, ".check");
        let _ = std::fs::remove_dir_all(&copy);
        if let Err(e) = copy_dir(&self.dir, &copy) {
            let _ = std::fs::remove_dir_all(&copy);
            if unchecked_ok {
                tracing::warn!(store = %self.dir.display(), error = %e, "cannot copy the store to check it after an unclean stop; opening it unchecked (storage.open_unchecked)");
                return Ok(());
            }
            return Err(StoreError::Backend(format!(
                "{} was not closed cleanly and cannot be copied to {} to be checked first ({e}); make room or \
                 fix permissions beside it, or set storage.open_unchecked = true to open it without the check",
                self.dir.display(),
                copy.display()
            )));
        }
        let result = open_db(&copy, cache_capacity).and_then(|db| check_generation(&db, expected));
        let _ = std::fs::remove_dir_all(&copy);
        result.map_err(|e| match e {
            StoreError::Damaged { problem, .. } => damaged(&self.dir, problem),
            other => other,
        })
    }

    /// The store is open and checked: record a clean close when dropped.
    pub(super) fn opened(&mut self) {
        self.opened = true;
    }

    /// The close will not be clean (a final flush failed): record none.
    pub(super) fn not_clean(&mut self) {
        self.opened = false;
    }

    /// The file the group-commit thread records each generation in, holding `current`
    /// (what the open store holds) from the start.
    pub(super) fn generation_file(&self, current: u64) -> Result<File, StoreError> {
        let file = open_beside(&sibling(&self.dir, ".generation"))?;
        record_generation(&file, current);
        Ok(file)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // sled has closed its files by now (the guard is dropped after the database).
        if let Some(print) = self.opened.then(|| fingerprint(&self.dir, Contents::Hash).ok()).flatten() {
            let path = sibling(&self.dir, ".clean");
            let written = File::create(&path).and_then(|mut f| {
                f.write_all(print.as_bytes())?;
                f.sync_all()?;
                crate::files::sync_dir(crate::files::parent_dir(&path))
            });
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the clean close");
            }
        }
        self.lock.take();
    }
}

/// Records generation `n` after its flush (no fsync: it only has to outlive the
/// process, and a value older than the store's never raises an alarm).
pub(super) fn record_generation(file: &File, n: u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        let _ = file.write_all_at(format!("{n:020}\n").as_bytes(), 0);
    }
    #[cfg(not(unix))]
    let _ = (file, n);
}

/// The store must hold at least the generation recorded beside it.
pub(super) fn check_generation(db: &sled::Db, expected: u64) -> Result<(), StoreError> {
    let held = stored_generation(db)?;
    if held < expected {
        return Err(StoreError::Damaged {
            path: String::new(),
            problem: format!(
                "it has lost writes that were on disk (it holds group commit {held}, but {expected} was recorded \
                 after its flush)"
            ),
        });
    }
    Ok(())
}

/// The last generation written into the store (0 for a new one).
pub(super) fn stored_generation(db: &sled::Db) -> Result<u64, StoreError> {
    let meta = db.open_tree("meta").map_err(backend)?;
    Ok(meta
        .get(GENERATION_KEY)
        .map_err(backend)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Opens sled at `dir`; a panic inside sled's recovery (it panics on some damaged logs)
/// becomes `Damaged` instead of taking the process down.
pub(super) fn open_db(dir: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
    static PANIC: Mutex<Option<String>> = Mutex::new(None);
    // One open at a time swaps the process's panic hook, so that two opens never leave
    // the capturing hook installed.
    static OPENING: Mutex<()> = Mutex::new(());
    let _one = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    let config = sled::Config::new().path(dir).cache_capacity(cache_capacity).flush_every_ms(None);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut p) = PANIC.lock() {
            *p = Some(info.to_string());
        }
    }));
    let opened = std::panic::catch_unwind(AssertUnwindSafe(|| config.open()));
    std::panic::set_hook(previous);
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Corruption { at, .. })) => Err(damaged(
            dir,
            match at {
                Some(at) => format!("sled found a corrupt log entry ({at:?})"),
                None => "sled found its log truncated or overwritten".to_owned(),
            },
        )),
        Ok(Err(e)) => Err(StoreError::Backend(format!("cannot open {}: {e}", dir.display()))),
        Err(_) => {
            let why = PANIC.lock().ok().and_then(|mut p| p.take()).unwrap_or_default();
            Err(damaged(dir, format!("sled cannot recover it ({})", why.replace('\n', " "))))
        }
    }
}

/// Whether a fingerprint reads the files' contents.
#[derive(Clone, Copy, PartialEq)]
enum Contents {
    Skip,
    Hash,
}

/// sled's log, relative to the store (see [`log_digest`]).
const LOG_FILE: &str = "db";
/// sled's segment header: CRC-32, then the segment's LSN and the highest stable LSN,
/// each little-endian and XORed with `i64::MAX` (sled 0.34 `SegmentHeader`).
const SEGMENT_HEADER_LEN: u64 = 20;

/// Every file under `dir` with its size and modification time (and with
/// `Contents::Hash`, the SHA-256 of what the start-up check reads of it), one per line,
/// sorted: the whole of every file but sled's log, of which [`log_digest`].
fn fingerprint(dir: &Path, contents: Contents) -> std::io::Result<String> {
    fn walk(dir: &Path, base: &Path, contents: Contents, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), base, contents, out)?;
            } else {
                let modified = meta.modified()?.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let path = entry.path();
                let name = path.strip_prefix(base).unwrap_or(&path).display().to_string();
                let mut line = format!("{name} {} {}", meta.len(), modified.as_nanos());
                if contents == Contents::Hash {
                    line.push(' ');
                    let digest = if name == LOG_FILE { log_digest(base, &path)? } else { sha256_file(&path)? };
                    line.push_str(&digest);
                }
                out.push(line);
            }
        }
        Ok(())
    }
    let mut lines = Vec::new();
    walk(dir, dir, contents, &mut lines)?;
    lines.sort();
    Ok(lines.join("\n") + "\n")
}

/// A recorded fingerprint without its digests (a recorded line is `name size time digest`;
/// file names in a sled store have no spaces).
fn without_digests(recorded: &str) -> String {
    recorded.lines().map(|l| l.rsplit_once(' ').map_or(l, |(rest, _)| rest)).map(|l| format!("{l}\n")).collect()
}

/// What sled's recovery reads of its log, hashed: every segment's header (to order
/// them) and every segment from the newest snapshot's stable LSN on (replayed into it;
/// sled 0.34 `raw_segment_iter_from`). The rest, which only later page reads touch, is
/// left out: each of its messages carries a CRC-32 that sled checks on every read, so
/// a changed byte there fails that read as corrupt instead of returning other data,
/// and hashing it would make each start and stop read the whole store (8 s each for
/// 1,000,000 certificates, a 9.2 GB log). Without a readable configuration or a
/// snapshot, the whole log. A segment whose header does not verify (sled zeroes freed
/// segments at every open) is one sled skips: only its header is hashed.
fn log_digest(dir: &Path, log: &Path) -> std::io::Result<String> {
    let segment_size = std::fs::read(dir.join("conf")).ok().and_then(|conf| {
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse::<u64>().ok())
            // Only a size sled 0.34 itself accepts (`Config::validate`: a power of two,
            // 256 B to 16 MiB): the conf is read here before anything verifies it, and a
            // damaged one must not make this check allocate what it names.
            .filter(|s| s.is_power_of_two() && (256..=1 << 24).contains(s))
    });
    // The snapshot sled takes: the last `snap.*` name in sort order but those being
    // moved (sled 0.34 `get_snapshot_files`); named by its stable LSN in 16 hex digits.
    let mut snapshots: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned))
        .filter(|name| name.starts_with("snap.") && !name.ends_with(".in___motion"))
        .collect();
    snapshots.sort();
    let stable = snapshots.pop().and_then(|name| {
        let hex = name.strip_prefix("snap.")?;
        let lsn = (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()?;
        Some(lsn.cast_signed())
    });
    let (Some(segment_size), Some(stable)) = (segment_size, stable) else {
        return Ok(format!("whole:{}", sha256_file(log)?));
    };
    replayed_digest(log, segment_size, stable)
}

#[cfg(unix)]
fn replayed_digest(log: &Path, segment_size: u64, stable: i64) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let file = File::open(log)?;
    let len = file.metadata()?.len();
    let size = i64::try_from(segment_size).unwrap_or(i64::MAX);
    let first = stable.div_euclid(size).saturating_mul(size);
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut segment = vec![0u8; usize::try_from(segment_size).unwrap_or(0)];
    prefetch_headers(&file, len, segment_size);
    let mut base = 0;
    while base + SEGMENT_HEADER_LEN <= len {
        let header = segment.get_mut(..SEGMENT_HEADER_LEN as usize).unwrap_or_default();
        file.read_exact_at(header, base)?;
        hash.update(&base.to_le_bytes());
        hash.update(header);
        let word = |at: usize, n: usize| header.get(at..at + n).unwrap_or_default();
        let crc = <[u8; 4]>::try_from(word(0, 4)).map(|b| u32::from_le_bytes(b) ^ u32::MAX);
        let verified = crc.is_ok_and(|crc| crc == crc32fast::hash(word(4, 16)));
        let lsn = <[u8; 8]>::try_from(word(4, 8)).map(|b| i64::from_le_bytes(b) ^ i64::MAX);
        if verified && lsn.is_ok_and(|lsn| lsn >= first) {
            let end = (base + segment_size).min(len);
            let body = segment.get_mut(..usize::try_from(end - base).unwrap_or(0)).unwrap_or_default();
            file.read_exact_at(body, base)?;
            hash.update(body);
        }
        base += segment_size;
    }
    Ok(format!("replayed:{}", crate::model::hex(hash.finish().as_ref())))
}

/// Reads every segment's header on several threads at once, before the ordered pass
/// above and sled's recovery read them again one after the other: once the log has left
/// the page cache each header is a random read of the disk, and one at a time the
/// 16,000 of a million-certificate store took 1.4-7.8 s. A hint only: what it cannot
/// read or spawn, the ordered pass reads and reports.
#[cfg(unix)]
fn prefetch_headers(file: &File, len: u64, segment_size: u64) {
    use std::os::unix::fs::FileExt;
    // Sixteen reads in flight: the cold start above fell to 0.58-0.64 s (this disk).
    let readers = (len / segment_size.max(1)).clamp(1, 16);
    std::thread::scope(|scope| {
        for reader in 0..readers {
            let read = move || {
                let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
                let mut base = reader * segment_size;
                while base + SEGMENT_HEADER_LEN <= len && file.read_exact_at(&mut header, base).is_ok() {
                    base += readers * segment_size;
                }
            };
            let _ = std::thread::Builder::new().name("idca-prefetch".into()).spawn_scoped(scope, read);
        }
    });
}

#[cfg(not(unix))]
fn replayed_digest(log: &Path, _: u64, _: i64) -> std::io::Result<String> {
    Ok(format!("whole:{}", sha256_file(log)?))
}

/// The SHA-256 of a file's contents, in hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(buf.get(..n).unwrap_or_default());
    }
    Ok(crate::model::hex(hash.finish().as_ref()))
}

/// Copies a directory tree (a store, to check it before opening; `idca-crash` and the
/// durability tests use it too).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

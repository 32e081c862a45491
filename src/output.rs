//! Output files (`--save`, `--plot`): checked before the work, written only
//! when the result is ready, and never left half-written or as debris.
//!
//! A file is written to a fresh temporary file beside its target (created
//! by the `tempfile` crate: an unpredictable name, `O_EXCL`, no symlink
//! followed), flushed to disk and renamed over the target. Until the rename
//! its path is listed as pending, so the SIGINT/SIGTERM handler of
//! [`exit_on_interrupt`] can remove it.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temporary files created and not yet renamed into place.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Where an output goes, checked: a file name (not a folder) in a folder
/// this process can create files in.
#[derive(Debug, Clone)]
pub struct OutputFile {
    target: PathBuf,
    folder: PathBuf,
    /// The flag that named it, for messages.
    flag: String,
}

impl OutputFile {
    /// Checks `target` before any work: it is not a folder, it names a
    /// file, and a file can be created beside it (a temporary one is created
    /// and removed at once). Nothing else is created until [`Self::write`].
    pub fn check(target: &Path, flag: &str) -> Result<Self> {
        if target.is_dir() {
            bail!(
                "{flag} {}: is a folder, expected a file name",
                target.display()
            );
        }
        if target.file_name().is_none() {
            bail!("{flag} {}: not a file name", target.display());
        }
        let folder = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let output = Self {
            target: target.to_path_buf(),
            folder,
            flag: flag.to_string(),
        };
        output.temporary("")?;
        Ok(output)
    }

    /// Writes `bytes` to the target, atomically.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        self.write_with("", |file, _| file.write_all(bytes).map_err(Into::into))
    }

    /// Fills a temporary file beside the target (its name ends in `suffix`,
    /// for writers that pick a format from it) with `fill`, which gets the
    /// open file and its path, then flushes it and renames it over the
    /// target. On any failure the temporary file is removed and the target
    /// left as it was.
    pub fn write_with(
        &self,
        suffix: &str,
        fill: impl FnOnce(&mut std::fs::File, &Path) -> Result<()>,
    ) -> Result<()> {
        // Created and listed under the lock, so a signal in between cannot
        // miss it.
        let (mut temporary, path) = {
            let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
            let temporary = self.temporary(suffix)?;
            let path = temporary.path().to_path_buf();
            pending.push(path.clone());
            (temporary, path)
        };
        let result = fill(temporary.as_file_mut(), &path)
            .and_then(|()| temporary.as_file().sync_all().map_err(Into::into))
            .and_then(|()| {
                temporary
                    .persist(&self.target)
                    .map(drop)
                    .map_err(|e| e.error.into())
            });
        PENDING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|pending| pending != &path);
        result.with_context(|| format!("cannot write {}", self.target.display()))
    }

    /// A new temporary file in the target's folder, readable as any new file
    /// is (0666 less the umask, not tempfile's private 0600).
    fn temporary(&self, suffix: &str) -> Result<tempfile::NamedTempFile> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(".gpu-c2f-").suffix(suffix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let (flag, target, folder) = (&self.flag, self.target.display(), self.folder.display());
        if !self.folder.exists() {
            bail!("{flag} {target}: cannot write there, the folder {folder} does not exist");
        }
        if !self.folder.is_dir() {
            bail!("{flag} {target}: cannot write there, {folder} is not a folder");
        }
        builder
            .tempfile_in(&self.folder)
            .with_context(|| format!("{flag} {target}: cannot write a file in {folder}"))
    }
}

/// On SIGINT or SIGTERM: remove the temporary output files not yet renamed
/// into place, say so, and exit with 128 + the signal's number (130, 143),
/// as shells report a process killed by it. The exit is `_exit`: no atexit
/// handler or driver teardown runs while the main thread may be inside the
/// GPU driver. Call once, from a program's `main`.
#[cfg(unix)]
pub fn exit_on_interrupt() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the SIGINT/SIGTERM handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Hold the list until the exit, so no new file starts.
                let pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
                let removed = pending
                    .iter()
                    .filter(|path| std::fs::remove_file(path).is_ok())
                    .count();
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                let what = match removed {
                    0 => String::new(),
                    n => format!("; removed {n} unfinished output file(s)"),
                };
                eprintln!("\ninterrupted ({name}): training stopped{what}");
                signal_hook::low_level::exit(128 + signal);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Elsewhere the default handlers stay (no files are pending for long).
#[cfg(not(unix))]
pub fn exit_on_interrupt() -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let folder = std::env::temp_dir().join(format!("gpu-c2f-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_debris() {
        let folder = scratch("output-fail");
        let target = folder.join("model.json");
        std::fs::write(&target, "old").unwrap();
        let output = OutputFile::check(&target, "--save").unwrap();
        let error = output
            .write_with("", |file, _| {
                file.write_all(b"half")?;
                bail!("the work failed")
            })
            .unwrap_err();
        assert!(format!("{error:#}").contains("the work failed"));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        output.write(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
        // (Other tests may be writing their own files meanwhile.)
        let pending = PENDING.lock().unwrap();
        assert!(
            !pending.iter().any(|p| p.starts_with(&folder)),
            "{pending:?}"
        );
        drop(pending);
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn checking_creates_nothing_and_refuses_folders() {
        let folder = scratch("output-check");
        OutputFile::check(&folder.join("plot.svg"), "--plot").unwrap();
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
        let error = OutputFile::check(&folder, "--plot").unwrap_err();
        assert!(error.to_string().contains("is a folder"), "{error}");
        let missing = folder.join("no-such-folder").join("x.json");
        let error = format!("{:#}", OutputFile::check(&missing, "--save").unwrap_err());
        assert!(error.contains("does not exist"), "{error}");
        std::fs::write(folder.join("file"), "").unwrap();
        let under_a_file = folder.join("file").join("x.json");
        let error = format!(
            "{:#}",
            OutputFile::check(&under_a_file, "--save").unwrap_err()
        );
        assert!(error.contains("is not a folder"), "{error}");
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn written_files_get_ordinary_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let folder = scratch("output-mode");
        let target = folder.join("model.json");
        OutputFile::check(&target, "--save")
            .unwrap()
            .write(b"{}")
            .unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        // The mode any new file gets here (0666 less this process's umask),
        // not tempfile's private 0600.
        let plain = folder.join("plain");
        std::fs::File::create(&plain).unwrap();
        assert_eq!(mode(&target), mode(&plain), "{:o}", mode(&target));
        std::fs::remove_dir_all(&folder).unwrap();
    }
}

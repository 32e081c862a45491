//! Output files (`--save`, `--plot`): checked before the work, written only
//! when the result is ready, and never left half-written or as debris.
//!
//! Where an output goes is settled by [`OutputFile::check`], before any work:
//! - `-` is standard output;
//! - a symbolic link is followed to the file it names, which is replaced and
//!   the link kept;
//! - a regular file (or a new name) is replaced atomically: its bytes go to
//!   a fresh temporary file beside it (created by the `tempfile` crate: an
//!   unpredictable name, `O_EXCL`, no symlink followed), flushed to disk and
//!   renamed over it. Until the rename its path is listed as pending, so the
//!   SIGINT/SIGTERM handler of [`exit_on_interrupt`] can remove it;
//! - anything else that exists (a FIFO, a device such as `/dev/null`) is
//!   written into directly, never renamed over.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temporary files created and not yet renamed into place.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Most symbolic links followed from an output's path to its file, as
/// Linux's own limit (ELOOP).
const MAX_LINKS: usize = 40;

/// Where an output goes, checked.
#[derive(Debug, Clone)]
pub struct OutputFile {
    /// The path as the user gave it, for messages.
    given: PathBuf,
    destination: Destination,
    /// The flag that named it, for messages.
    flag: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// `-`.
    Stdout,
    /// A regular file or a new name (links followed): replaced atomically
    /// through a temporary file in `folder`.
    Replace { target: PathBuf, folder: PathBuf },
    /// An existing file that is not a regular one (a FIFO, a device):
    /// written into directly.
    Into(PathBuf),
}

impl OutputFile {
    /// Checks `given` before any work: `-`, or a path that is not a folder,
    /// names a file (after following symbolic links), and where a file can
    /// be created beside it (a temporary one is created and removed at
    /// once) unless it is an existing non-regular file. Nothing else is
    /// created until [`Self::write`].
    pub fn check(given: &Path, flag: &str) -> Result<Self> {
        let shown = given.display();
        let destination = if given.as_os_str() == "-" {
            Destination::Stdout
        } else {
            let target =
                follow_links(given).with_context(|| format!("{flag} {shown}: cannot follow it"))?;
            match std::fs::metadata(&target) {
                Ok(meta) if meta.is_dir() => {
                    bail!("{flag} {shown}: is a folder, expected a file name")
                }
                Ok(meta) if !meta.is_file() => Destination::Into(target),
                _ => {
                    if target.file_name().is_none() {
                        bail!("{flag} {shown}: not a file name");
                    }
                    let folder = match target.parent() {
                        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                        _ => PathBuf::from("."),
                    };
                    Destination::Replace { target, folder }
                }
            }
        };
        let output = Self {
            given: given.to_path_buf(),
            destination,
            flag: flag.to_string(),
        };
        if let Destination::Replace { .. } = output.destination {
            output.temporary()?;
        }
        Ok(output)
    }

    /// Whether this is standard output.
    pub fn is_stdout(&self) -> bool {
        self.destination == Destination::Stdout
    }

    /// The path as given (`-` for standard output).
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// Refuses two outputs that would land in one file (after following
    /// links; hard links too) or both on standard output: the later write
    /// would destroy the earlier.
    pub fn check_distinct(&self, other: &OutputFile) -> Result<()> {
        if self.identity() == other.identity() || same_existing_file(self, other) {
            let same = match self.destination {
                Destination::Stdout => "standard output".to_string(),
                _ => format!("the same file ({})", self.identity().display()),
            };
            bail!(
                "{} {} and {} {} both write to {same}; the second would destroy the first: \
                 give each its own file",
                self.flag,
                self.given.display(),
                other.flag,
                other.given.display()
            );
        }
        Ok(())
    }

    /// What the output lands in: `-`, or the file's absolute path (its
    /// folder's canonical path and its name when it does not exist yet).
    fn identity(&self) -> PathBuf {
        match &self.destination {
            Destination::Stdout => PathBuf::from("-"),
            Destination::Into(target) | Destination::Replace { target, .. } => {
                std::fs::canonicalize(target).unwrap_or_else(|_| {
                    let folder = target.parent().filter(|p| !p.as_os_str().is_empty());
                    let folder = std::fs::canonicalize(folder.unwrap_or(Path::new(".")))
                        .unwrap_or_else(|_| target.clone());
                    folder.join(target.file_name().unwrap_or_default())
                })
            }
        }
    }

    /// Writes `bytes` to the output: atomically for a file it replaces
    /// (on any failure the temporary file is removed and the old file left
    /// as it was), directly into standard output or a non-regular file.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let shown = self.given.display();
        match &self.destination {
            Destination::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(bytes)
                    .and_then(|()| stdout.flush())
                    .with_context(|| format!("{}: cannot write to standard output", self.flag))
            }
            Destination::Into(target) => std::fs::OpenOptions::new()
                .write(true)
                .open(target)
                .and_then(|mut file| file.write_all(bytes).and_then(|()| file.flush()))
                .with_context(|| format!("cannot write {shown}")),
            Destination::Replace { target, .. } => self
                .replace(target, bytes)
                .with_context(|| format!("cannot write {shown}")),
        }
    }

    /// Fills a temporary file beside `target` with `bytes`, flushes it and
    /// renames it over `target`.
    fn replace(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        // Created and listed under the lock, so a signal in between cannot
        // miss it.
        let (mut temporary, path) = {
            let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
            let temporary = self.temporary()?;
            let path = temporary.path().to_path_buf();
            pending.push(path.clone());
            (temporary, path)
        };
        // A file replaced keeps its permissions.
        let keep_mode = std::fs::metadata(target)
            .map(|meta| temporary.as_file().set_permissions(meta.permissions()))
            .unwrap_or(Ok(()));
        let result = keep_mode
            .map_err(anyhow::Error::from)
            .and_then(|()| temporary.write_all(bytes).map_err(Into::into))
            .and_then(|()| temporary.as_file().sync_all().map_err(Into::into))
            .and_then(|()| {
                temporary
                    .persist(target)
                    .map(drop)
                    .map_err(|e| e.error.into())
            });
        PENDING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|pending| pending != &path);
        result
    }

    /// A new temporary file in the target's folder, readable as any new file
    /// is (0666 less the umask, not tempfile's private 0600).
    fn temporary(&self) -> Result<tempfile::NamedTempFile> {
        let Destination::Replace { target, folder } = &self.destination else {
            unreachable!("only replaced files have temporary ones")
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".gpu-c2f-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let flag = &self.flag;
        let given = self.given.display();
        let (shown_target, shown_folder) = (target.display(), folder.display());
        let via = if target == &self.given {
            String::new()
        } else {
            format!(" (a link to {shown_target})")
        };
        if !folder.exists() {
            bail!(
                "{flag} {given}{via}: cannot write there, the folder {shown_folder} does not exist"
            );
        }
        if !folder.is_dir() {
            bail!("{flag} {given}{via}: cannot write there, {shown_folder} is not a folder");
        }
        builder
            .tempfile_in(folder)
            .with_context(|| format!("{flag} {given}{via}: cannot write a file in {shown_folder}"))
    }
}

/// Whether both outputs are one existing file under two names (hard links).
#[cfg(unix)]
fn same_existing_file(a: &OutputFile, b: &OutputFile) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inode = |output: &OutputFile| match &output.destination {
        Destination::Stdout => None,
        Destination::Into(target) | Destination::Replace { target, .. } => {
            std::fs::metadata(target)
                .ok()
                .map(|meta| (meta.dev(), meta.ino()))
        }
    };
    inode(a).is_some() && inode(a) == inode(b)
}

#[cfg(not(unix))]
fn same_existing_file(_: &OutputFile, _: &OutputFile) -> bool {
    false
}

/// The file `path` names once every symbolic link on its last component is
/// followed (a link's relative target is read from the link's folder); the
/// path itself when it is not a link or does not exist.
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)
                    .with_context(|| format!("cannot read the link {}", current.display()))?;
                current = match current.parent() {
                    Some(folder) if link.is_relative() => folder.join(link),
                    _ => link,
                };
            }
            _ => return Ok(current),
        }
    }
    bail!("more than {MAX_LINKS} symbolic links in a row")
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

    fn no_pending_in(folder: &Path) {
        // (Other tests may be writing their own files meanwhile.)
        let pending = PENDING.lock().unwrap();
        assert!(
            !pending.iter().any(|p| p.starts_with(folder)),
            "{pending:?}"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_debris() {
        let folder = scratch("output-fail");
        let target = folder.join("model.json");
        let output = OutputFile::check(&target, "--save").unwrap();
        // Something that cannot be renamed over appears meanwhile.
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "old").unwrap();
        let error = format!("{:#}", output.write(b"new").unwrap_err());
        assert!(error.contains("cannot write"), "{error}");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_to_string(target.join("inside")).unwrap(),
            "old"
        );
        no_pending_in(&folder);
        std::fs::remove_dir_all(&target).unwrap();
        output.write(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
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

    #[test]
    fn two_outputs_into_one_file_are_refused() {
        let folder = scratch("output-same");
        let check = |path: &Path, flag| OutputFile::check(path, flag).unwrap();
        let model = check(&folder.join("same.svg"), "--save");
        #[cfg(unix)]
        {
            std::fs::write(folder.join("same.svg"), "").unwrap();
            std::fs::hard_link(folder.join("same.svg"), folder.join("hard.svg")).unwrap();
            let error = model
                .check_distinct(&check(&folder.join("hard.svg"), "--plot"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("both write to the same file"), "{error}");
        }
        // The same file by another spelling.
        let spelled = folder.join(".").join("same.svg");
        let error = model
            .check_distinct(&check(&spelled, "--plot"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("both write to the same file"), "{error}");
        let stdout = check(Path::new("-"), "--save");
        let error = stdout
            .check_distinct(&check(Path::new("-"), "--plot"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("standard output"), "{error}");
        model
            .check_distinct(&check(&folder.join("other.svg"), "--plot"))
            .unwrap();
        stdout.check_distinct(&model).unwrap();
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn links_are_written_through_and_kept() {
        let folder = scratch("output-link");
        std::fs::create_dir(folder.join("real")).unwrap();
        let file = folder.join("real").join("model.json");
        std::fs::write(&file, "old").unwrap();
        let link = folder.join("link.json");
        std::os::unix::fs::symlink("real/model.json", &link).unwrap();
        // A link to the link: both are kept.
        let outer = folder.join("outer.json");
        std::os::unix::fs::symlink("link.json", &outer).unwrap();
        OutputFile::check(&outer, "--save")
            .unwrap()
            .write(b"new")
            .unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            std::fs::symlink_metadata(&outer)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        // The temporary file was made in the target's folder, and is gone.
        assert_eq!(std::fs::read_dir(folder.join("real")).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 3);
        // A link to a new file creates it; one that does not lead to a
        // file in an existing folder is refused before the work.
        std::os::unix::fs::symlink("real/new.json", folder.join("new.json")).unwrap();
        let new = OutputFile::check(&folder.join("new.json"), "--save").unwrap();
        new.check_distinct(&OutputFile::check(&folder.join("real/new.json"), "--plot").unwrap())
            .unwrap_err();
        new.write(b"{}").unwrap();
        assert_eq!(
            std::fs::read_to_string(folder.join("real/new.json")).unwrap(),
            "{}"
        );
        std::os::unix::fs::symlink("gone/x.json", folder.join("dangling.json")).unwrap();
        let error = format!(
            "{:#}",
            OutputFile::check(&folder.join("dangling.json"), "--save").unwrap_err()
        );
        assert!(
            error.contains("a link to") && error.contains("does not exist"),
            "{error}"
        );
        std::os::unix::fs::symlink("loop.json", folder.join("loop.json")).unwrap();
        let error = format!(
            "{:#}",
            OutputFile::check(&folder.join("loop.json"), "--save").unwrap_err()
        );
        assert!(error.contains("symbolic links"), "{error}");
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_written_into_not_replaced() {
        let folder = scratch("output-fifo");
        let fifo = folder.join("fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let output = OutputFile::check(&fifo, "--save").unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        output.write(b"{\"layers\": []}").unwrap();
        assert_eq!(reader.join().unwrap(), "{\"layers\": []}");
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
        // A device that refuses the bytes is an error, and stays a device.
        let full = Path::new("/dev/full");
        if full.exists() {
            let error = format!(
                "{:#}",
                OutputFile::check(full, "--save")
                    .unwrap()
                    .write(b"{}")
                    .unwrap_err()
            );
            assert!(error.contains("cannot write /dev/full"), "{error}");
            assert!(
                std::fs::symlink_metadata(full)
                    .unwrap()
                    .file_type()
                    .is_char_device()
            );
        }
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn written_files_get_ordinary_permissions_and_replaced_ones_keep_theirs() {
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
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        OutputFile::check(&target, "--save")
            .unwrap()
            .write(b"{}")
            .unwrap();
        assert_eq!(mode(&target), 0o640);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}

//! The bundle file: a zip (default) or a gzip-compressed tar, written to an
//! anonymous file in the output directory (`O_TMPFILE`: it has no name
//! while it is written) and linked to its final name only once complete
//! (`linkat` of `/proc/self/fd/N`), so a crash, even SIGKILL, leaves
//! nothing behind.
//!
//! ```text
//! <dir>/                                           while writing (nothing)
//! <dir>/mayastor-2026-12-06--15-11-31-UTC.zip      when complete
//! ```
//!
//! Where the file system has no `O_TMPFILE` (or `/proc` is missing), the
//! file is written to a hidden temporary name and renamed at the end:
//! `<dir>/.mayastor-...zip.<pid>.partial`; a `.partial` left by a killed
//! run is removed by the next run once its process is gone
//! ([`remove_stale_partials`]).
//!
//! Invariants:
//! - dropping an [`Archive`] that was not [`Archive::finish`]ed leaves
//!   nothing (an error, a failed collector's panic, Ctrl-C handled by the
//!   caller);
//! - every byte goes through the [`Redactor`], one line at a time, with at
//!   most [`crate::redact::MAX_LINE_BYTES`] held (a longer line is cut there);
//! - zip entries are compressed as they are written; a tar entry, whose
//!   header needs its size first, is spooled to an anonymous temporary file
//!   (unlinked at creation, so nothing is left behind) and then appended.
//!
//! One entry is open at a time (`&mut self`).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::redact::{RedactingWriter, Redactor};
use crate::DumpError;

/// Container format of the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Zip,
    TarGz,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::TarGz => "tar.gz",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zip" => Ok(Format::Zip),
            "tar.gz" | "tgz" | "tar" => Ok(Format::TarGz),
            other => Err(format!("unknown archive format '{other}' (zip or tar.gz)")),
        }
    }
}

enum Writer {
    Zip(Box<zip::ZipWriter<BufWriter<File>>>),
    Tar(tar::Builder<flate2::write::GzEncoder<BufWriter<File>>>),
}

/// How the file being written is named until it is complete.
#[derive(Debug)]
enum Temp {
    /// `O_TMPFILE`: no name at all.
    Anonymous,
    /// The fallback: a hidden `.partial` name, renamed at the end.
    Named(PathBuf),
}

/// A bundle being written.
pub struct Archive {
    writer: Option<Writer>,
    temp: Temp,
    dir: PathBuf,
    stem: String,
    format: Format,
    final_path: PathBuf,
    finished: bool,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("final_path", &self.final_path)
            .finish()
    }
}

fn partial_suffix() -> String {
    format!(".{}.partial", std::process::id())
}

/// Removes `.mayastor-*.partial` files of runs whose process is gone.
pub fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name
            .strip_prefix(".mayastor-")
            .and_then(|r| r.strip_suffix(".partial"))
        else {
            continue;
        };
        let Some(pid) = rest.rsplit('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Archive {
    /// Creates the temporary file `<dir>/.<stem>.<ext>.<pid>.partial`.
    /// The final name is `<stem>.<ext>`, or `<stem>-N.<ext>` when taken.
    pub fn create(dir: &Path, stem: &str, format: Format) -> Result<Archive, DumpError> {
        let meta = std::fs::metadata(dir).map_err(|e| DumpError::OutputDirectory {
            dir: dir.to_path_buf(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "it does not exist".into(),
                _ => e.to_string(),
            },
        })?;
        if !meta.is_dir() {
            return Err(DumpError::OutputDirectory {
                dir: dir.to_path_buf(),
                reason: "it is not a directory".into(),
            });
        }
        remove_stale_partials(dir);
        let final_path = free_name(dir, stem, format);
        let cannot = |e: std::io::Error| DumpError::OutputDirectory {
            dir: dir.to_path_buf(),
            reason: format!("cannot create a file there: {e}"),
        };
        let (file, temp) = match anonymous_file(dir) {
            Ok(file) => (file, Temp::Anonymous),
            Err(e) if tmpfile_unsupported(&e) => {
                let final_name = final_path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let temp_path = dir.join(format!(".{final_name}{}", partial_suffix()));
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp_path)
                    .map_err(cannot)?;
                (file, Temp::Named(temp_path))
            }
            Err(e) => return Err(cannot(e)),
        };
        let out = BufWriter::with_capacity(256 << 10, file);
        let writer = match format {
            Format::Zip => Writer::Zip(Box::new(zip::ZipWriter::new(out))),
            Format::TarGz => Writer::Tar(tar::Builder::new(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            ))),
        };
        Ok(Archive {
            writer: Some(writer),
            temp,
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            format,
            final_path,
            finished: false,
        })
    }

    /// Where the bundle will be once finished.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Adds a whole text entry (redacted); returns the bytes stored.
    pub fn add_text(
        &mut self,
        path: &str,
        text: &str,
        redactor: &Redactor,
    ) -> Result<u64, DumpError> {
        let mut entry = self.entry(path, redactor)?;
        entry.write_all(text.as_bytes()).map_err(|e| io(path, e))?;
        entry.finish()
    }

    /// Opens an entry; write to it, then [`Entry::finish`].
    pub fn entry<'a>(
        &'a mut self,
        path: &str,
        redactor: &'a Redactor,
    ) -> Result<Entry<'a>, DumpError> {
        let sink = match self.writer.as_mut() {
            Some(Writer::Zip(zip)) => {
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .unix_permissions(0o644)
                    .large_file(true);
                zip.start_file(path, options)
                    .map_err(|e| io(path, std::io::Error::other(e)))?;
                Sink::Zip(zip.as_mut())
            }
            Some(Writer::Tar(tar)) => {
                let spool = tempfile::tempfile().map_err(|e| io(path, e))?;
                Sink::Tar {
                    tar,
                    spool: BufWriter::with_capacity(256 << 10, spool),
                }
            }
            None => return Err(io(path, std::io::Error::other("archive already finished"))),
        };
        Ok(Entry {
            path: path.to_string(),
            inner: RedactingWriter::new(sink, redactor),
        })
    }

    /// Whether the file being written has no name (`O_TMPFILE`).
    pub fn anonymous(&self) -> bool {
        matches!(self.temp, Temp::Anonymous)
    }

    /// Completes the container, syncs it and gives it its final name.
    pub fn finish(mut self) -> Result<PathBuf, DumpError> {
        let what = self.final_path.display().to_string();
        let file = match self.writer.take() {
            Some(Writer::Zip(zip)) => zip
                .finish()
                .map_err(|e| io(&what, std::io::Error::other(e)))?
                .into_inner()
                .map_err(|e| io(&what, e.into_error()))?,
            Some(Writer::Tar(tar)) => tar
                .into_inner()
                .and_then(|gz| gz.finish())
                .map_err(|e| io(&what, e))?
                .into_inner()
                .map_err(|e| io(&what, e.into_error()))?,
            None => return Err(io(&what, std::io::Error::other("archive already finished"))),
        };
        file.sync_all().map_err(|e| io(&what, e))?;
        match &self.temp {
            Temp::Named(temp_path) => {
                drop(file);
                std::fs::rename(temp_path, &self.final_path).map_err(|e| io(&what, e))?;
            }
            Temp::Anonymous => loop {
                match link_anonymous(&file, &self.final_path) {
                    Ok(()) => break,
                    // Taken since `create` (another dump in this second).
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        self.final_path = free_name(&self.dir, &self.stem, self.format);
                    }
                    Err(e) => return Err(io(&what, e)),
                }
            },
        }
        // The new name is durable once the directory is synced.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.finished = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        if !self.finished {
            self.writer = None;
            if let Temp::Named(temp_path) = &self.temp {
                let _ = std::fs::remove_file(temp_path);
            }
        }
    }
}

/// `<stem>.<ext>`, or `<stem>-N.<ext>` when taken.
fn free_name(dir: &Path, stem: &str, format: Format) -> PathBuf {
    let ext = format.extension();
    let mut path = dir.join(format!("{stem}.{ext}"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.{ext}"));
        n += 1;
    }
    path
}

/// An unnamed file in `dir` (`O_TMPFILE`), readable by its owner and group
/// and others once linked, as a file made by `open` would be.
fn anonymous_file(dir: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags, CWD};
    let fd = rustix::fs::openat(
        CWD,
        dir,
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    // Linking needs `/proc/self/fd`; without it, use the fallback.
    if !Path::new("/proc/self/fd").is_dir() {
        return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
    }
    Ok(File::from(fd))
}

/// Whether `O_TMPFILE` failed because the kernel or file system lacks it
/// (then the named fallback is used) rather than for a reason that also
/// stops a named file (permissions, a missing directory).
fn tmpfile_unsupported(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    e.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            errno,
            Some(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS)
        )
}

/// Gives the unnamed file `file` the name `path` (fails with
/// `AlreadyExists` when taken).
fn link_anonymous(file: &File, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(CWD, proc_path.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW)?;
    Ok(())
}

fn io(what: &str, e: std::io::Error) -> DumpError {
    DumpError::Archive {
        what: what.to_string(),
        source: e,
    }
}

enum Sink<'a> {
    Zip(&'a mut zip::ZipWriter<BufWriter<File>>),
    Tar {
        tar: &'a mut tar::Builder<flate2::write::GzEncoder<BufWriter<File>>>,
        spool: BufWriter<File>,
    },
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Zip(zip) => zip.write(buf),
            Sink::Tar { spool, .. } => spool.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One file of the bundle being written: bytes are redacted line by line.
pub struct Entry<'a> {
    path: String,
    inner: RedactingWriter<'a, Sink<'a>>,
}

impl Entry<'_> {
    /// Writes what is pending and closes the entry; returns its size.
    pub fn finish(self) -> Result<u64, DumpError> {
        let path = self.path;
        let (sink, written) = self.inner.finish().map_err(|e| io(&path, e))?;
        if let Sink::Tar { tar, spool } = sink {
            let mut file = spool.into_inner().map_err(|e| io(&path, e.into_error()))?;
            file.seek(SeekFrom::Start(0)).map_err(|e| io(&path, e))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(written);
            header.set_mode(0o644);
            header.set_mtime(u64::try_from(crate::now_ns() / 1_000_000_000).unwrap_or(0));
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, &path, (&mut file).take(written))
                .map_err(|e| io(&path, e))?;
        }
        Ok(written)
    }
}

impl Write for Entry<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_zip(path: &Path) -> Vec<(String, String)> {
        let mut zip = zip::ZipArchive::new(File::open(path).expect("open")).expect("zip");
        (0..zip.len())
            .map(|i| {
                let mut f = zip.by_index(i).expect("entry");
                let mut s = String::new();
                f.read_to_string(&mut s).expect("read");
                (f.name().expect("name").to_string(), s)
            })
            .collect()
    }

    fn read_tar(path: &Path) -> Vec<(String, String)> {
        let gz = flate2::read::GzDecoder::new(File::open(path).expect("open"));
        let mut tar = tar::Archive::new(gz);
        tar.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let mut s = String::new();
                e.read_to_string(&mut s).expect("read");
                (e.path().expect("path").display().to_string(), s)
            })
            .collect()
    }

    #[test]
    fn both_formats_hold_redacted_entries_and_rename_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redactor = Redactor::new(["topsecret-1".to_string()]);
        for format in [Format::Zip, Format::TarGz] {
            let mut archive = Archive::create(dir.path(), "bundle", format).expect("create");
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .expect("ls")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.starts_with("bundle."))
                .collect();
            // Nothing named while writing (tmpfs and ext4 have O_TMPFILE).
            assert!(archive.anonymous(), "O_TMPFILE is supported here");
            assert!(names.is_empty(), "{names:?}");
            archive
                .add_text("a/one.txt", "x topsecret-1 y\nline2", &redactor)
                .expect("add");
            let mut entry = archive.entry("b/two.log", &redactor).expect("entry");
            for i in 0..1000 {
                writeln!(entry, "line {i}").expect("write");
            }
            let size = entry.finish().expect("finish");
            assert!(size > 5000);
            let path = archive.finish().expect("finish");
            let entries = match format {
                Format::Zip => read_zip(&path),
                Format::TarGz => read_tar(&path),
            };
            assert_eq!(entries[0].0, "a/one.txt");
            assert_eq!(entries[0].1, "x <redacted> y\nline2");
            assert_eq!(entries[1].1.lines().count(), 1000);
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["bundle.tar.gz", "bundle.zip"]);
    }

    #[test]
    fn dropped_archive_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redactor = Redactor::default();
        let mut archive = Archive::create(dir.path(), "bundle", Format::Zip).expect("create");
        archive.add_text("x", "y", &redactor).expect("add");
        drop(archive);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
        assert!(Archive::create(&dir.path().join("missing"), "b", Format::Zip).is_err());
    }
}

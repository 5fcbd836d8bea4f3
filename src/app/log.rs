//! Log lines as SRS writes them, and the log file that logrotate can move. [`SrsFormat`] is a
//! `tracing-subscriber` event format giving SRS's layout,
//! `[2026-12-02 16:48:37.155][INFO][4242][17] message`, so that tools written for SRS's logs
//! (grep by connection id, log shippers' parsers) read ringcast's unchanged. [`LogFile`] is
//! the `srs_log_file` writer, whose file [`LogFile::reopen`] swaps for a fresh one at the
//! same path on SIGUSR1, as SRS does. It owns only the line layout and the file handle; it
//! must not choose levels or filters, read the config, or install a subscriber (main.rs does).
//!
//! The layout, from SRS 6's `srs_log_header`: local time with milliseconds, the level, the
//! process id, the connection id (the event's `cid` field; empty, `[]`, when the event has
//! none, as SRS prints its default context), then for warnings and errors SRS's `[errno]`
//! field, which ringcast has no value for and writes as `[0]` so that parsers expecting it
//! still split the line right. Level names are SRS 6's defaults (its build option
//! `--log-level_v2=on`): `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, which are ringcast's
//! tracing levels uppercased since `srs_log_level trace` is tracing's `info`. Fields other
//! than the message and `cid` follow the message as ` name=value`. No colour codes, ever.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::NaiveDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// SRS's log line layout, as a `tracing-subscriber` event format.
#[derive(Debug, Clone, Copy)]
pub struct SrsFormat {
    pid: u32,
    clock: fn() -> NaiveDateTime,
}

impl SrsFormat {
    /// This process's id and the local wall clock, as SRS writes them.
    #[must_use]
    pub fn new() -> Self {
        Self::with(std::process::id(), || chrono::Local::now().naive_local())
    }

    /// A given process id and clock, for tests that need fixed lines.
    #[must_use]
    pub fn with(pid: u32, clock: fn() -> NaiveDateTime) -> Self {
        Self { pid, clock }
    }
}

impl Default for SrsFormat {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, N> FormatEvent<S, N> for SrsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        write!(
            writer,
            "[{}][{}][{}][{}]",
            (self.clock)().format("%Y-%m-%d %H:%M:%S%.3f"),
            level_name(level),
            self.pid,
            fields.cid
        )?;
        if level <= Level::WARN {
            writer.write_str("[0]")?;
        }
        writeln!(writer, " {}{}", fields.message, fields.rest)
    }
}

/// SRS 6's name for the level: `srs_log_level verbose`, `info`, `trace`, `warn`, `error` are
/// tracing's TRACE, DEBUG, INFO, WARN, ERROR, which SRS 6 prints under those same names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// An event's fields, split into what the layout places apart.
#[derive(Default)]
struct Fields {
    message: String,
    cid: String,
    /// The other fields, each as ` name=value`.
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Writing into a String cannot fail.
        let _ = match field.name() {
            "message" => write!(self.message, "{value:?}"),
            "cid" => write!(self.cid, "{value:?}"),
            name => write!(self.rest, " {name}={value:?}"),
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "cid" => self.cid.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }
}

/// The `srs_log_file` writer: every line goes to the file under one lock, so lines from
/// different threads never interleave, and [`LogFile::reopen`] replaces the file between two
/// lines. Clones share the file.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    /// Opens `path` for appending, creating it and its directory if needed.
    ///
    /// # Errors
    /// The directory cannot be created or the file cannot be opened.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    /// Opens the path again and writes to the new file from the next line on: after
    /// logrotate renamed the old one, this starts a new file at the configured path. On
    /// failure the old file stays in use.
    ///
    /// # Errors
    /// As [`LogFile::open`].
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.lock() = fresh;
        Ok(())
    }

    /// The configured path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        // A panic while writing a line leaves the file usable.
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// One line's hold on the [`LogFile`].
#[derive(Debug)]
pub struct LogFileWriter<'a>(MutexGuard<'a, File>);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noon() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 2)
            .and_then(|d| d.and_hms_milli_opt(16, 48, 37, 155))
            .expect("a valid time")
    }

    /// The lines `emit` logs through [`SrsFormat`] at every level, pid 4242, at `noon`.
    fn lines(emit: impl FnOnce()) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = LogFile::open(&dir.path().join("srs.log")).expect("log file");
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .event_format(SrsFormat::with(4242, noon))
            .with_writer(file.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        std::fs::read_to_string(file.path()).expect("reading the log")
    }

    #[test]
    fn info_with_a_cid_is_srs_layout() {
        let out = lines(|| tracing::info!(cid = 17, "publish live/a"));
        assert_eq!(
            out,
            "[2026-12-02 16:48:37.155][INFO][4242][17] publish live/a\n"
        );
    }

    #[test]
    fn no_cid_leaves_the_brackets_empty_as_srs_default_context() {
        let out = lines(|| tracing::info!("ringcast serving"));
        assert_eq!(
            out,
            "[2026-12-02 16:48:37.155][INFO][4242][] ringcast serving\n"
        );
    }

    #[test]
    fn warnings_and_errors_carry_srs_errno_field() {
        let out = lines(|| {
            tracing::warn!(cid = 3, "closing: reset");
            tracing::error!("reload failed");
        });
        assert_eq!(
            out,
            "[2026-12-02 16:48:37.155][WARN][4242][3][0] closing: reset\n\
             [2026-12-02 16:48:37.155][ERROR][4242][][0] reload failed\n"
        );
    }

    #[test]
    fn level_names_are_srs_6_defaults() {
        let out = lines(|| {
            tracing::trace!("v");
            tracing::debug!("d");
        });
        assert_eq!(
            out,
            "[2026-12-02 16:48:37.155][TRACE][4242][] v\n\
             [2026-12-02 16:48:37.155][DEBUG][4242][] d\n"
        );
    }

    #[test]
    fn other_fields_follow_the_message_without_colour() {
        let out = lines(|| tracing::info!(cid = 9, peer = %"127.0.0.1:5000", open = 2, "accepted"));
        assert_eq!(
            out,
            "[2026-12-02 16:48:37.155][INFO][4242][9] accepted peer=127.0.0.1:5000 open=2\n"
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn reopen_starts_a_new_file_after_a_rename() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("logs").join("srs.log");
        let file = LogFile::open(&path).expect("log file");
        file.make_writer().write_all(b"one\n").expect("write");
        let rotated = dir.path().join("srs.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        file.make_writer().write_all(b"two\n").expect("write");
        file.reopen().expect("reopen");
        file.make_writer().write_all(b"three\n").expect("write");
        assert_eq!(
            std::fs::read_to_string(&rotated).expect("rotated"),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("fresh"), "three\n");
    }
}

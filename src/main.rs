//! The `ringcast` server: command line, config, logging, pid file, workers and signals.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use ringcast::app::log::{LogFile, SrsFormat};
use ringcast::app::{self, Shutdown};
use ringcast::config::{Config, ConfigError, Environment, LogLevel, LogTank};
use ringcast::profile;
use ringcast::runtime::{self, IoMode};
use ringcast::state::Shared;

#[cfg(all(feature = "jemalloc", feature = "valgrind"))]
compile_error!("features jemalloc and valgrind each choose the allocator: pick one");
#[cfg(not(any(feature = "jemalloc", feature = "valgrind")))]
type Base = mimalloc::MiMalloc;
#[cfg(not(any(feature = "jemalloc", feature = "valgrind")))]
const BASE: Base = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
type Base = tikv_jemallocator::Jemalloc;
#[cfg(feature = "jemalloc")]
const BASE: Base = tikv_jemallocator::Jemalloc;
// memcheck sees the heap only through malloc and free.
#[cfg(all(feature = "valgrind", not(feature = "jemalloc")))]
type Base = std::alloc::System;
#[cfg(all(feature = "valgrind", not(feature = "jemalloc")))]
const BASE: Base = std::alloc::System;

/// Counted for the leak check (`/api/v1/valgrind`), unless built without `alloc-count`.
#[cfg(feature = "alloc-count")]
#[global_allocator]
static GLOBAL: profile::alloc::Counting<Base> = profile::alloc::Counting(BASE);
#[cfg(not(feature = "alloc-count"))]
#[global_allocator]
static GLOBAL: Base = BASE;

/// jemalloc's `const char *malloc_conf` (prefixed as tikv-jemalloc-sys builds it): heap
/// profiling compiled in and inactive until `--profile=heap`, the API or a leak check
/// activates it; one sample per 64 KiB allocated on average, fine enough for a leak check to see
/// what grows between two checks. A reference to the first byte of a
/// NUL-terminated string is exactly a C string pointer.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &u8 = &b"prof:true,prof_active:false,lg_prof_sample:16\0"[0];

/// What `--profile` can sample for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProfileKind {
    /// CPU time, with pprof.
    Cpu,
    /// Live heap, with jemalloc (builds with `--features jemalloc`).
    Heap,
}

/// A live-streaming server (RTMP, HTTP-FLV, SRS's HTTP API, forwarding) on io_uring, thread
/// per core.
#[derive(Debug, Parser)]
#[command(name = "ringcast", disable_version_flag = true)]
struct Cli {
    /// The config file, SRS/nginx syntax; RINGCAST_CONFIG_FILE or SRS_CONFIG_FILE, when set,
    /// names another. SRS_* and RINGCAST_* variables override its directives.
    #[arg(short = 'c', long = "conf", default_value = "conf/ringcast.conf")]
    config: PathBuf,
    /// Read the configuration from the environment alone (SRS_LISTEN=1935, ...), no file,
    /// like `srs -e`; also when SRS_ENV_ONLY or RINGCAST_ENV_ONLY is set.
    #[arg(short = 'e', long = "env")]
    env_only: bool,
    /// Check the config file and exit, like `srs -t`.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Print the version and exit, like `srs -v`.
    #[arg(short = 'v', short_alias = 'V', long = "version")]
    version: bool,
    /// Worker threads; default: the config's `workers`, else one per core.
    #[arg(long)]
    workers: Option<usize>,
    /// I/O driver; default: RINGCAST_IO, else auto (io_uring where available, else epoll).
    #[arg(long, value_enum)]
    io: Option<IoMode>,
    /// Profile the whole run (cpu, heap, or both: cpu,heap); profiles are written on exit
    /// and on SIGUSR2.
    #[arg(long, value_enum, value_delimiter = ',')]
    profile: Vec<ProfileKind>,
    /// CPU sampling rate of --profile=cpu, in Hz.
    #[arg(long, default_value_t = profile::cpu::DEFAULT_HZ, value_parser = clap::value_parser!(i32).range(1..=1000))]
    profile_hz: i32,
    /// Where --profile writes its .svg and .pb.gz files.
    #[arg(long, default_value = "flamegraphs")]
    profile_dir: PathBuf,
}

fn main() -> ExitCode {
    #[cfg(feature = "alloc-count")]
    GLOBAL.install();
    // Transparent huge pages make a 2 MiB page resident once any byte of it is touched: a
    // server holding thousands of small sessions spread over its heap paid for the gaps
    // (300 WHEP players: 130-143 KB a player over the idle server with them, 97-108
    // without, CPU the same within noise). mimalloc's `no_thp` (Cargo.toml) stops it
    // asking for them; this covers hosts whose THP mode is "always", which give them
    // unasked, and every allocator. Children (ffmpeg) inherit it. Failing (an old
    // kernel) costs only the memory.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("ringcast: warning: transparent huge pages stay on: {e}");
    }
    let cli = Cli::parse();
    if cli.version {
        println!("ringcast {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let env = process_environment();
    let source = ConfigSource::new(&cli, &env);
    let (config, warnings) = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringcast: {e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &warnings {
        eprintln!("ringcast: warning: {w}");
    }
    if cli.profile.contains(&ProfileKind::Heap) && !cfg!(feature = "jemalloc") {
        eprintln!("ringcast: --profile heap needs a build with --features jemalloc");
        return ExitCode::FAILURE;
    }
    if cli.test {
        println!("ringcast: {} syntax is ok", source.describe());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = run(cli, source, config) {
        eprintln!("ringcast: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Installs the subscriber: console lines in tracing's layout, coloured only when stderr is a
/// terminal; file lines in SRS's layout, and the file handle SIGUSR1 reopens.
fn init_logging(config: &Config) -> Result<Option<LogFile>, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let level = match config.log_level {
        LogLevel::Verbose => "trace",
        LogLevel::Info => "debug",
        LogLevel::Trace => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // RUST_LOG, when set, overrides srs_log_level.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},compio=warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_tank {
        LogTank::Console => {
            builder
                .with_thread_names(true)
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .init();
            Ok(None)
        }
        LogTank::File => {
            let file = LogFile::open(&config.log_file)
                .map_err(|e| format!("{}: {e}", config.log_file.display()))?;
            builder
                .event_format(SrsFormat::new())
                .with_writer(file.clone())
                .init();
            Ok(Some(file))
        }
    }
}

/// SIGUSR1, as in SRS: logrotate has moved the log file, so open a new one at its path.
fn reopen_log(file: Option<&LogFile>) {
    match file {
        Some(file) => match file.reopen() {
            Ok(()) => tracing::info!("log file {} reopened", file.path().display()),
            Err(e) => tracing::error!(
                "reopening log file {}: {e}; still writing to the old one",
                file.path().display()
            ),
        },
        None => tracing::info!("SIGUSR1: logs go to the console, no file to reopen"),
    }
}

fn write_pid(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("pid {}: {e}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .map_err(|e| format!("pid {}: {e}", path.display()))
}

fn run(cli: Cli, source: ConfigSource, config: Config) -> Result<(), String> {
    // Read before the daemon forks, so that a bad key or certificate stops the start.
    let https: Arc<[_]> = ringcast::http::https_listeners(&config)
        .map_err(|e| e.to_string())?
        .into();
    let mut http: Vec<_> = ringcast::http::listeners(&config)
        .into_iter()
        .map(|(addr, _)| addr)
        .collect();
    // SO_REUSEPORT would let two listeners share a port and split its connections at random.
    if let Some(l) = https.iter().find(|l| http.contains(&l.addr)) {
        return Err(format!(
            "{} is both an HTTP listen address and an HTTPS one",
            l.addr
        ));
    }
    http.extend(https.iter().map(|l| l.addr));
    if let Some(addr) = http.iter().find(|a| config.listen.contains(a)) {
        return Err(format!(
            "{addr} is both an RTMP listen address and an HTTP one"
        ));
    }
    runtime::check_bind(&config.listen).map_err(|e| e.to_string())?;
    runtime::check_bind(&http).map_err(|e| e.to_string())?;
    if config.rtc_server.enabled {
        let addr = config.rtc_server.listen;
        ringcast::rtc::udp::bind(addr).map_err(|e| format!("rtc_server: udp {addr}: {e}"))?;
    }
    if config.daemon {
        nix::unistd::daemon(true, false).map_err(|e| format!("daemon: {e}"))?;
    }
    let log_file = init_logging(&config)?;
    write_pid(&config.pid)?;

    // Signals are taken by this thread alone, with sigwait: workers inherit the mask.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    // Before the workers start, so that sampling sees them from their first instruction.
    let profiling = profile::Session::start(profile::Options {
        cpu: cli.profile.contains(&ProfileKind::Cpu),
        heap: cli.profile.contains(&ProfileKind::Heap),
        hz: cli.profile_hz,
        dir: cli.profile_dir.clone(),
    })
    .map_err(|e| {
        let _ = std::fs::remove_file(&config.pid);
        e.to_string()
    })?;

    let workers = cli
        .workers
        .or(config.workers)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mode = cli.io.or_else(IoMode::from_env).unwrap_or(IoMode::Auto);
    let listen: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
    let pid_path = config.pid.clone();
    // Before any other thread starts, so that all inherit the nice value and CPU mask.
    let cpus = runtime::tuning::tune_process(&config);
    let shared = Shared::new(config);
    let shutdown = Shutdown::new();
    let (s, stop) = (shared.clone(), shutdown.clone());
    let running = runtime::spawn_pinned_workers(
        workers,
        mode,
        Some(ringcast::rtc::udp::BUFFER_POOL),
        &cpus,
        move |w| app::run_worker(w, s.clone(), stop.clone(), https.clone()),
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(
        "ringcast {} serving RTMP on {} with {workers} worker(s) on {}, pid {}",
        env!("CARGO_PKG_VERSION"),
        listen.join(" "),
        running.driver,
        std::process::id()
    );
    let (s, stop) = (shared.clone(), shutdown.clone());
    std::thread::Builder::new()
        .name("ringcast-rates".into())
        .spawn(move || app::report::sample_rates(s, stop))
        .map_err(|e| format!("rates thread: {e}"))?;
    let (s, stop) = (shared.clone(), shutdown.clone());
    std::thread::Builder::new()
        .name("ringcast-stats".into())
        .spawn(move || app::report::log_forever(s, Duration::from_secs(10), stop))
        .map_err(|e| format!("stats thread: {e}"))?;

    loop {
        match signals.wait() {
            Ok(Signal::SIGINT | Signal::SIGTERM) => {
                tracing::info!("signal received, exiting");
                shutdown.trigger();
                stop_workers(running.handles, SHUTDOWN_GRACE);
                profiling.finish();
                let _ = std::fs::remove_file(&pid_path);
                return Ok(());
            }
            Ok(Signal::SIGHUP) => reload(&shared, &source),
            Ok(Signal::SIGUSR1) => reopen_log(log_file.as_ref()),
            Ok(Signal::SIGUSR2) => profiling.dump(),
            Ok(other) => tracing::info!("{other} ignored"),
            Err(e) => return Err(format!("sigwait: {e}")),
        }
    }
}

/// How long `main` waits for the workers to drop what they run before it exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Waits up to `grace` for the workers to end after the shutdown broadcast; one that is still
/// running then ends with the process.
fn stop_workers(handles: Vec<std::thread::JoinHandle<()>>, grace: Duration) {
    let deadline = std::time::Instant::now() + grace;
    for h in handles {
        while !h.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !h.is_finished() {
            tracing::warn!("a worker did not stop within {grace:?}; exiting anyway");
            return;
        }
        let _ = h.join();
    }
}

fn reload(shared: &Arc<Shared>, source: &ConfigSource) {
    match source.load() {
        Ok((config, warnings)) => {
            for w in &warnings {
                tracing::warn!("{w}");
            }
            shared.reload(config);
            tracing::info!(
                "reloaded {}: new settings apply to new streams",
                source.describe()
            );
        }
        Err(e) => tracing::error!("reload failed, keeping the old config: {e}"),
    }
}

/// The process's SRS_* and RINGCAST_* variables; a name or value that is not UTF-8 can be
/// neither, and is left out.
fn process_environment() -> Environment {
    Environment::new(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// Where the configuration comes from, at start and on SIGHUP: the file (from `-c`, or the
/// variable naming one) with the environment over it, or the environment alone.
struct ConfigSource {
    file: Option<PathBuf>,
    env: Environment,
}

impl ConfigSource {
    fn new(cli: &Cli, env: &Environment) -> Self {
        let file = if cli.env_only || env.env_only() {
            None
        } else {
            Some(env.config_file().unwrap_or_else(|| cli.config.clone()))
        };
        Self {
            file,
            env: env.clone(),
        }
    }

    fn load(&self) -> Result<(Config, Vec<ringcast::config::Warning>), ConfigError> {
        Config::load_with(self.file.as_deref(), &self.env)
    }

    fn describe(&self) -> String {
        match &self.file {
            Some(file) => format!("the configuration file {}", file.display()),
            None => "the configuration from the environment".to_owned(),
        }
    }
}

//! `ringcast-bench`: the load tool. Thousands of RTMP or HTTP-FLV players, or RTMP publishers,
//! from one process,
//! with per-client bitrate and SEI latency, reported every interval and summed up at the end
//! in one `SUMMARY` line that bench.sh reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use ringcast::bench::flv::{self as flv_load, parse_http_url, FlvTarget};
use ringcast::bench::rtmp::{self as load, Target, PLAYER_WARMUP};
use ringcast::bench::{parse_rtmp_url, Report, Stats};
use ringcast::flv::FlvReader;
use ringcast::runtime::{self, IoMode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for RTMP and HTTP-FLV servers (ringcast, SRS, nginx-rtmp).
#[derive(Debug, Parser)]
#[command(name = "ringcast-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N players of one stream, like SRS's sb_rtmp_load.
    RtmpPlay(Common),
    /// N HTTP-FLV players of one stream (`-r http://HOST:PORT/APP/STREAM.flv`), like SRS's
    /// sb_http_load.
    FlvPlay(Common),
    /// N publishers of an FLV file, looped at its own pace, video frames stamped with SEI.
    RtmpPublish {
        #[command(flatten)]
        common: Common,
        /// The FLV file to publish.
        #[arg(short = 'i', long = "input")]
        input: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// Clients.
    #[arg(short = 'c', long = "clients", default_value_t = 1)]
    clients: usize,
    /// rtmp://HOST[:PORT]/APP/STREAM (flv-play: http://HOST[:PORT]/PATH); `{i}` becomes the
    /// client's index.
    #[arg(short = 'r', long = "url")]
    url: String,
    /// Seconds over which clients start, evenly.
    #[arg(short = 's', long = "ramp", default_value_t = 0.0)]
    ramp: f64,
    /// Seconds to run, ramp included (publishers: default forever).
    #[arg(short = 'd', long = "duration")]
    duration: Option<f64>,
    /// Seconds between report lines.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// I/O driver (default: RINGCAST_IO, else auto).
    #[arg(long, value_enum)]
    io: Option<IoMode>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,compio=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (common, tags, http) = match cli.command {
        Command::RtmpPlay(c) => (c, None, false),
        Command::FlvPlay(c) => (c, None, true),
        Command::RtmpPublish { common, input } => match read_flv(&input) {
            Ok(tags) => (common, Some(Arc::new(tags)), false),
            Err(e) => fail(&format!("{}: {e}", input.display())),
        },
    };
    if common.clients == 0 {
        fail("-c must be at least 1");
    }
    let duration = common
        .duration
        .unwrap_or(if tags.is_some() { 1e9 } else { 30.0 });
    let targets: Vec<Client> = (0..common.clients)
        .map(|i| {
            let url = common.url.replace("{i}", &i.to_string());
            if http {
                return match parse_http_url(&url) {
                    Some(t) => Client::Flv(t),
                    None => fail(&format!("{url}: not http://HOST[:PORT]/PATH")),
                };
            }
            match parse_rtmp_url(&url) {
                Some((addr, tc_url, stream)) => Client::Rtmp(Target {
                    addr,
                    tc_url,
                    stream,
                }),
                None => fail(&format!("{url}: not rtmp://HOST[:PORT]/APP/STREAM")),
            }
        })
        .collect();
    let stats = Arc::new(Stats::new(common.clients));
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(duration);
    let ramp = Duration::from_secs_f64(common.ramp.max(0.0));
    let workers = common.workers.max(1);
    let mode = common.io.or_else(IoMode::from_env).unwrap_or(IoMode::Auto);
    let (targets, st) = (Arc::new(targets), stats.clone());
    let running = runtime::spawn_workers(workers, mode, move |w| {
        let (targets, stats, tags) = (targets.clone(), st.clone(), tags.clone());
        async move {
            let n = targets.len();
            let mut tasks = Vec::new();
            for i in (w..n).step_by(workers) {
                let at = start + ramp.mul_f64(i as f64 / n as f64);
                let (target, stats, tags) = (targets[i].clone(), stats.clone(), tags.clone());
                tasks.push(compio::runtime::spawn(async move {
                    compio::time::sleep_until(at).await;
                    match (target, tags) {
                        (Client::Rtmp(t), Some(tags)) => {
                            load::publish(i, t, tags, stats, stop).await
                        }
                        (Client::Rtmp(t), None) => load::play(i, t, stats, stop).await,
                        (Client::Flv(t), _) => flv_load::play(i, t, stats, stop).await,
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    })
    .unwrap_or_else(|e| fail(&e.to_string()));

    // Steady state: after the ramp and each player's GOP-cache burst.
    let steady_at = start + ramp + PLAYER_WARMUP + Duration::from_secs(1);
    let interval = Duration::from_secs_f64(common.interval.max(0.1));
    let mut last = (Instant::now(), stats.snapshot());
    let mut steady = None;
    while Instant::now() < stop {
        std::thread::sleep(interval.min(stop.saturating_duration_since(Instant::now())));
        let now = Instant::now();
        let snap = stats.snapshot();
        let r = snap.since(&last.1, (now - last.0).as_secs_f64());
        println!(
            "[{:>5.0}s] {}",
            (now - start).as_secs_f64(),
            line(&r, running.driver)
        );
        if steady.is_none() && now >= steady_at {
            steady = Some((now, snap.clone()));
        }
        last = (now, snap);
    }
    let end = (Instant::now(), stats.snapshot());
    let (t0, s0) = steady.unwrap_or((start, Stats::new(common.clients).snapshot()));
    let r = end.1.since(&s0, (end.0 - t0).as_secs_f64());
    let (p50, p99) = r.latency.map_or((-1, -1), |[a, b]| (a as i64, b as i64));
    println!(
        "SUMMARY clients={} alive={} failed={} mbps={:.2} kbps_min={} kbps_median={} \
         kbps_max={} lat_p50_ms={p50} lat_p99_ms={p99} samples={}",
        common.clients, r.alive, r.failed, r.mbps, r.kbps[0], r.kbps[1], r.kbps[2], r.samples
    );
    // Workers end at `stop`; exiting drops any connection still open.
    std::process::exit(0);
}

/// One client's target.
#[derive(Debug, Clone)]
enum Client {
    Rtmp(Target),
    Flv(FlvTarget),
}

fn line(r: &Report, driver: &str) -> String {
    let lat = r
        .latency
        .map_or_else(|| "-".to_owned(), |[a, b]| format!("{a}/{b}ms"));
    format!(
        "alive={} failed={} total={:.2}Mbps kbps(min/median/max)={}/{}/{} lat(p50/p99)={lat} ({driver})",
        r.alive, r.failed, r.mbps, r.kbps[0], r.kbps[1], r.kbps[2]
    )
}

fn read_flv(path: &std::path::Path) -> Result<Vec<ringcast::flv::Tag>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut r = FlvReader::new();
    r.push(&data);
    let mut tags = Vec::new();
    while let Some(t) = r.next_tag().map_err(|e| e.to_string())? {
        tags.push(t);
    }
    if tags.is_empty() {
        return Err("no FLV tags".into());
    }
    Ok(tags)
}

fn fail(msg: &str) -> ! {
    eprintln!("ringcast-bench: {msg}");
    std::process::exit(2);
}

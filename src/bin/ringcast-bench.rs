//! `ringcast-bench`: the load tool. Thousands of RTMP, HTTP-FLV, HLS or WHEP players, or RTMP
//! or WHIP publishers, from one process, with per-client bitrate and SEI latency (RTMP) or
//! packets, NACKs and loss (WebRTC), reported every interval and summed up at the end in one
//! `SUMMARY` line that bench.sh reads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use ringcast::bench::flv::{self as flv_load, FlvTarget};
use ringcast::bench::hls::{self, HlsCounters};
use ringcast::bench::rtmp::{self as load, Target};
use ringcast::bench::whep::{self, WhepCounters};
use ringcast::bench::{parse_rtmp_url, PlayMode, Report, Stats, PLAYER_WARMUP};
use ringcast::flv::FlvReader;
use ringcast::runtime::{self, IoMode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for RTMP, HTTP-FLV and WebRTC servers (ringcast, SRS, nginx-rtmp).
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
    /// N HLS players of one live stream (`-r http://HOST:PORT/APP/STREAM.m3u8`), each like a
    /// real player: playlist reloads every target duration, starting three target durations
    /// behind the live edge, segments fetched in order over a keep-alive connection, latency
    /// from the stamps in the segments' video on a playout clock. SUMMARY adds how many
    /// players kept up (no 404, no skipped segment, no stall); a line before it names those
    /// that fell behind.
    HlsPlay {
        #[command(flatten)]
        common: Common,
        /// Every Nth player (index i with i % N == 0) is full: it demuxes its segments'
        /// video for the latency stamps and plays each frame on its clock. The others are
        /// light: they fetch every segment whole and in order too, but count its bytes
        /// without demuxing, and play whole segments on the clock at their #EXTINF
        /// durations. Latency comes from the full players alone.
        #[arg(long, default_value_t = 1)]
        sample: usize,
    },
    /// N publishers of an FLV file, looped at its own pace, video frames stamped with SEI.
    RtmpPublish {
        #[command(flatten)]
        common: Common,
        /// The FLV file to publish.
        #[arg(short = 'i', long = "input")]
        input: std::path::PathBuf,
    },
    /// Turns bench.sh's CSV into the Markdown table (printed) and an SVG chart.
    Report {
        /// The CSV that bench.sh wrote.
        #[arg(long)]
        csv: std::path::PathBuf,
        /// Where to write the chart of CPU and memory against players.
        #[arg(long)]
        svg: Option<std::path::PathBuf>,
    },
    /// N WebRTC players of one stream over WHEP (-r http://HOST:1985/rtc/v1/whep/?app=live&stream=NAME).
    WhepPlay {
        #[command(flatten)]
        common: Common,
        /// Every Nth player (index i with i % N == 0) is full: str0m decrypts its media, for
        /// SEI latency, NACKs and str0m's loss figures. The others are light: they count RTP
        /// from its clear SRTP header without decrypting it (payload bytes, packets, RFC 3550
        /// loss per SSRC), a fraction of the CPU. Light players send no NACKs: their loss is the
        /// raw loss on the wire, unrepaired. Latency comes from the full players alone.
        #[arg(long, default_value_t = 1)]
        sample: usize,
        /// Read each datagram alone, without UDP_GRO. On loopback the kernel then splits a
        /// server's UDP GSO sends at the players' sockets, and bills the server for it.
        #[arg(long)]
        no_gro: bool,
    },
    /// N WebRTC publishers over WHIP of an FLV file (H.264 and AAC, sent as H.264 and Opus).
    WhipPublish {
        #[command(flatten)]
        common: Common,
        /// The FLV file to publish.
        #[arg(short = 'i', long = "input")]
        input: std::path::PathBuf,
    },
}

/// What each client does.
enum Job {
    RtmpPlay(Arc<Vec<Target>>),
    FlvPlay(Arc<Vec<FlvTarget>>),
    /// The URLs, and the `--sample` period of full players.
    HlsPlay(Arc<Vec<FlvTarget>>, usize),
    RtmpPublish(Arc<Vec<Target>>, Arc<Vec<ringcast::flv::Tag>>),
    /// The URLs, the `--sample` period of full players, and whether they read with UDP_GRO.
    WhepPlay(Arc<Vec<Arc<(String, String)>>>, usize, bool),
    WhipPublish(
        Arc<Vec<Arc<(String, String)>>>,
        Arc<Vec<ringcast::flv::Tag>>,
    ),
}

#[derive(Debug, Args)]
struct Common {
    /// Clients.
    #[arg(short = 'c', long = "clients", default_value_t = 1)]
    clients: usize,
    /// `rtmp://HOST[:PORT]/APP/STREAM` (flv-play and hls-play: `http://HOST[:PORT]/PATH`; whep-play and
    /// whip-publish: the WHEP or WHIP URL); `{i}` becomes the client's index.
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
    // whep-play's and hls-play's --sample; the other commands have no light clients, as 1
    // means.
    let mut sample = 1;
    let mut is_hls = false;
    let mut gro = false;
    let (common, tags, is_whep, is_flv) = match cli.command {
        Command::Report { csv, svg } => report(&csv, svg.as_deref()),
        Command::RtmpPlay(c) => (c, None, false, false),
        Command::FlvPlay(c) => (c, None, false, true),
        Command::HlsPlay { common, sample: n } => {
            is_hls = true;
            sample = n;
            (common, None, false, true)
        }
        Command::RtmpPublish { common, input } => match read_flv(&input) {
            Ok(tags) => (common, Some(Arc::new(tags)), false, false),
            Err(e) => fail(&format!("{}: {e}", input.display())),
        },
        Command::WhepPlay {
            common,
            sample: n,
            no_gro,
        } => {
            sample = n;
            gro = !no_gro;
            (common, None, true, false)
        }
        Command::WhipPublish { common, input } => match read_flv(&input) {
            Ok(tags) => (common, Some(Arc::new(tags)), true, false),
            Err(e) => fail(&format!("{}: {e}", input.display())),
        },
    };
    if common.clients == 0 {
        fail("-c must be at least 1");
    }
    if sample == 0 {
        fail("--sample must be at least 1");
    }
    let duration = common
        .duration
        .unwrap_or(if tags.is_some() { 1e9 } else { 30.0 });
    let urls = (0..common.clients).map(|i| common.url.replace("{i}", &i.to_string()));
    let job = if is_flv {
        let targets = urls
            .map(|url| match flv_load::parse_http_url(&url) {
                Some(t) => t,
                None => fail(&format!("{url}: not http://HOST[:PORT]/PATH")),
            })
            .collect();
        if is_hls {
            Job::HlsPlay(Arc::new(targets), sample)
        } else {
            Job::FlvPlay(Arc::new(targets))
        }
    } else if is_whep {
        let urls = urls
            .map(|url| match whep::parse_http_url(&url) {
                Some(u) => Arc::new(u),
                None => fail(&format!("{url}: not http://HOST[:PORT]/PATH")),
            })
            .collect();
        match tags {
            Some(tags) => Job::WhipPublish(Arc::new(urls), tags),
            None => Job::WhepPlay(Arc::new(urls), sample, gro),
        }
    } else {
        let targets: Vec<Target> = urls
            .map(|url| match parse_rtmp_url(&url) {
                Some((addr, tc_url, stream)) => Target {
                    addr,
                    tc_url,
                    stream,
                },
                None => fail(&format!("{url}: not rtmp://HOST[:PORT]/APP/STREAM")),
            })
            .collect();
        match tags {
            Some(tags) => Job::RtmpPublish(Arc::new(targets), tags),
            None => Job::RtmpPlay(Arc::new(targets)),
        }
    };
    let job = Arc::new(job);
    let counters = Arc::new(WhepCounters::default());
    let stats = Arc::new(Stats::new(common.clients));
    let hls_counters = Arc::new(HlsCounters::new(if is_hls { common.clients } else { 0 }));
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(duration);
    let ramp = Duration::from_secs_f64(common.ramp.max(0.0));
    let workers = common.workers.max(1);
    let mode = common.io.or_else(IoMode::from_env).unwrap_or(IoMode::Auto);
    let (st, ct, ht) = (stats.clone(), counters.clone(), hls_counters.clone());
    let n = common.clients;
    let running = runtime::spawn_workers(workers, mode, move |w| {
        let (job, stats, counters, hls_counters) =
            (job.clone(), st.clone(), ct.clone(), ht.clone());
        async move {
            let mut tasks = Vec::new();
            for i in (w..n).step_by(workers) {
                let at = start + ramp.mul_f64(i as f64 / n as f64);
                let (job, stats, counters, hls_counters) = (
                    job.clone(),
                    stats.clone(),
                    counters.clone(),
                    hls_counters.clone(),
                );
                tasks.push(compio::runtime::spawn(async move {
                    compio::time::sleep_until(at).await;
                    match &*job {
                        Job::RtmpPublish(targets, tags) => {
                            load::publish(i, targets[i].clone(), tags.clone(), stats, stop).await
                        }
                        Job::RtmpPlay(targets) => {
                            load::play(i, targets[i].clone(), stats, stop).await
                        }
                        Job::FlvPlay(targets) => {
                            flv_load::play(i, targets[i].clone(), stats, stop).await
                        }
                        Job::HlsPlay(targets, sample) => {
                            let mode = PlayMode::of(i, *sample);
                            hls::play(i, targets[i].clone(), mode, stats, hls_counters, stop).await
                        }
                        Job::WhepPlay(urls, sample, gro) => {
                            let mode = PlayMode::of(i, *sample);
                            whep::play(i, urls[i].clone(), mode, *gro, stats, counters, stop).await
                        }
                        Job::WhipPublish(urls, tags) => {
                            whep::publish(i, urls[i].clone(), tags.clone(), stats, stop).await
                        }
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
        // A run that ends before its steady state measures from its start: a window that
        // opened at the last sample would be empty.
        if steady.is_none() && now >= steady_at && now < stop {
            steady = Some((now, snap.clone(), hls_counters.snapshot()));
        }
        last = (now, snap);
    }
    let end = (Instant::now(), stats.snapshot());
    let (t0, s0, h0) = steady.unwrap_or((
        start,
        Stats::new(common.clients).snapshot(),
        HlsCounters::new(hls_counters.late.len()).snapshot(),
    ));
    let r = end.1.since(&s0, (end.0 - t0).as_secs_f64());
    let [p50, p95, p99] = r.latency.map_or([-1; 3], |l| l.map(|ms| ms as i64));
    let extra = if is_whep {
        let packets = counters.packets.load(Ordering::Relaxed);
        let lost = counters.lost.load(Ordering::Relaxed);
        format!(
            " packets={packets} nacks={} lost={lost} loss_pct={:.3}",
            counters.nacks.load(Ordering::Relaxed),
            lost as f64 * 100.0 / (packets + lost).max(1) as f64
        )
    } else if is_hls {
        let h1 = hls_counters.snapshot();
        let behind = h1.fell_behind(&h0);
        if !behind.is_empty() {
            let full = behind
                .iter()
                .filter(|&&i| PlayMode::of(i, sample) == PlayMode::Full)
                .count();
            let shown: Vec<String> = behind.iter().take(40).map(|i| i.to_string()).collect();
            println!(
                "fell behind in the window (a 404, a skipped segment or a stall): {} players, \
                 {full} of them full; players {}{}",
                behind.len(),
                shown.join(" "),
                if behind.len() > shown.len() {
                    " ..."
                } else {
                    ""
                }
            );
        }
        format!(
            " keeping_up={} segments={} not_found={} skipped={} stalls={}",
            h1.keeping_up(&h0, &stats),
            h1.segments - h0.segments,
            h1.not_found - h0.not_found,
            h1.skipped - h0.skipped,
            h1.stalls - h0.stalls
        )
    } else {
        String::new()
    };
    println!(
        "SUMMARY clients={} alive={} failed={} mbps={:.2} kbps_min={} kbps_median={} \
         kbps_max={} lat_p50_ms={p50} lat_p95_ms={p95} lat_p99_ms={p99} samples={}{extra}",
        common.clients, r.alive, r.failed, r.mbps, r.kbps[0], r.kbps[1], r.kbps[2], r.samples
    );
    // Workers end at `stop`; exiting drops any connection still open.
    std::process::exit(0);
}

fn line(r: &Report, driver: &str) -> String {
    let lat = r
        .latency
        .map_or_else(|| "-".to_owned(), |[a, _, b]| format!("{a}/{b}ms"));
    format!(
        "alive={} failed={} total={:.2}Mbps kbps(min/median/max)={}/{}/{} lat(p50/p99)={lat} ({driver})",
        r.alive, r.failed, r.mbps, r.kbps[0], r.kbps[1], r.kbps[2]
    )
}

fn report(csv: &std::path::Path, svg: Option<&std::path::Path>) -> ! {
    use ringcast::bench::report;
    let text =
        std::fs::read_to_string(csv).unwrap_or_else(|e| fail(&format!("{}: {e}", csv.display())));
    let rows =
        report::parse_csv(&text).unwrap_or_else(|e| fail(&format!("{}: {e}", csv.display())));
    print!("{}", report::markdown(&rows));
    if let Some(path) = svg {
        if let Err(e) = std::fs::write(path, report::svg(&rows)) {
            fail(&format!("{}: {e}", path.display()));
        }
    }
    std::process::exit(0);
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

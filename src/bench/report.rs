//! The benchmark's report: bench.sh appends one CSV row per server and client level, and
//! `ringcast-bench report` turns the rows into the seed's Markdown table (SRS's performance
//! page: `| Server | CPU | Mem | Conn | ENbps | ANbps | sb | Lat |`), ratio rows of ringcast
//! against each other server, and an SVG chart of CPU and memory against players. Pure
//! functions from text to text: no process, socket or clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The CSV header bench.sh writes; columns are looked up by these names.
pub const CSV_HEADER: &str = "server,proto,players,cpu_pct,user_pct,sys_pct,rss_mb,idle_rss_mb,\
conn,enbps_mbps,anbps_mbps,sb_cpu_pct,lat_p50_ms,lat_p99_ms,alive,failed,loss_pct,keeping_up,\
lat_p95_ms";

/// One measured point: a server at a client level.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The server's name as bench.sh calls it (`ringcast`, `ringcast-epoll`, `nginx-rtmp`, `srs`).
    pub server: String,
    /// What the players used (`rtmp`, `flv`).
    pub proto: String,
    /// Players asked for.
    pub players: u64,
    /// Server CPU, percent of one core, user plus system.
    pub cpu_pct: f64,
    /// Of which user time.
    pub user_pct: f64,
    /// Of which system time.
    pub sys_pct: f64,
    /// Server RSS with the players on, MB.
    pub rss_mb: f64,
    /// Server RSS with the publisher alone, MB.
    pub idle_rss_mb: f64,
    /// Established connections to the server.
    pub conn: u64,
    /// Expected bandwidth: players times the stream's bitrate, Mbps.
    pub enbps_mbps: f64,
    /// Actual bandwidth the players received, Mbps.
    pub anbps_mbps: f64,
    /// The load tool's CPU, percent of one core.
    pub sb_cpu_pct: f64,
    /// Latency p50, ms (negative: no sample).
    pub lat_p50_ms: i64,
    /// Latency p99, ms (negative: no sample).
    pub lat_p99_ms: i64,
    /// Players alive at the end.
    pub alive: u64,
    /// Players failed.
    pub failed: u64,
    /// Packets lost, percent (WebRTC players; `None` for TCP players and older CSVs).
    pub loss_pct: Option<f64>,
    /// Players that kept up with the live edge (HLS players; `None` for the others).
    pub keeping_up: Option<u64>,
    /// Latency p95, ms (`None` in older CSVs; negative: no sample).
    pub lat_p95_ms: Option<i64>,
}

/// Why the CSV could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The header lacks a column.
    #[error("the CSV has no column {0:?}")]
    MissingColumn(&'static str),
    /// A cell does not parse.
    #[error("line {line}: column {column}: {value:?} is not a number")]
    BadNumber {
        /// 1-based line.
        line: usize,
        /// Column name.
        column: &'static str,
        /// The cell.
        value: String,
    },
    /// A row has fewer cells than the header.
    #[error("line {0}: too few cells")]
    ShortRow(usize),
    /// No header at all.
    #[error("the CSV is empty")]
    Empty,
}

/// Parses bench.sh's CSV.
pub fn parse_csv(text: &str) -> Result<Vec<Row>, ReportError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(ReportError::Empty)?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let index = |name: &'static str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or(ReportError::MissingColumn(name))
    };
    let names = [
        "server",
        "proto",
        "players",
        "cpu_pct",
        "user_pct",
        "sys_pct",
        "rss_mb",
        "idle_rss_mb",
        "conn",
        "enbps_mbps",
        "anbps_mbps",
        "sb_cpu_pct",
        "lat_p50_ms",
        "lat_p99_ms",
        "alive",
        "failed",
    ];
    let mut idx = [0usize; 16];
    for (i, n) in names.iter().enumerate() {
        idx[i] = index(n)?;
    }
    // Added later than the others, so an older CSV without it still reads.
    let loss = cols.iter().position(|c| *c == "loss_pct");
    let keeping_up = cols.iter().position(|c| *c == "keeping_up");
    let p95 = cols.iter().position(|c| *c == "lat_p95_ms");
    let mut rows = Vec::new();
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() < cols.len() {
            return Err(ReportError::ShortRow(n + 1));
        }
        let num = |i: usize| -> Result<f64, ReportError> {
            let v = cells[idx[i]];
            v.parse::<f64>().map_err(|_| ReportError::BadNumber {
                line: n + 1,
                column: names[i],
                value: v.to_owned(),
            })
        };
        rows.push(Row {
            server: cells[idx[0]].to_owned(),
            proto: cells[idx[1]].to_owned(),
            players: num(2)? as u64,
            cpu_pct: num(3)?,
            user_pct: num(4)?,
            sys_pct: num(5)?,
            rss_mb: num(6)?,
            idle_rss_mb: num(7)?,
            conn: num(8)? as u64,
            enbps_mbps: num(9)?,
            anbps_mbps: num(10)?,
            sb_cpu_pct: num(11)?,
            lat_p50_ms: num(12)? as i64,
            lat_p99_ms: num(13)? as i64,
            alive: num(14)? as u64,
            failed: num(15)? as u64,
            loss_pct: loss
                .map(|i| cells[i])
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<f64>().map_err(|_| ReportError::BadNumber {
                        line: n + 1,
                        column: "loss_pct",
                        value: v.to_owned(),
                    })
                })
                .transpose()?,
            keeping_up: keeping_up
                .and_then(|i| cells.get(i))
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<u64>().map_err(|_| ReportError::BadNumber {
                        line: n + 1,
                        column: "keeping_up",
                        value: (*v).to_owned(),
                    })
                })
                .transpose()?,
            lat_p95_ms: p95
                .and_then(|i| cells.get(i))
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<i64>().map_err(|_| ReportError::BadNumber {
                        line: n + 1,
                        column: "lat_p95_ms",
                        value: (*v).to_owned(),
                    })
                })
                .transpose()?,
        });
    }
    Ok(rows)
}

fn lat(r: &Row) -> String {
    match r.lat_p95_ms {
        _ if r.lat_p50_ms < 0 => "-".to_owned(),
        Some(p95) => format!("{}/{p95}/{} ms", r.lat_p50_ms, r.lat_p99_ms),
        None => format!("{}/{} ms", r.lat_p50_ms, r.lat_p99_ms),
    }
}

/// Memory per player above the idle server, KB.
pub fn kb_per_player(r: &Row) -> f64 {
    if r.players == 0 {
        return 0.0;
    }
    (r.rss_mb - r.idle_rss_mb).max(0.0) * 1024.0 / r.players as f64
}

/// The Markdown table: one row per server and level (levels ascending, ringcast first, the
/// others in the order they first appear), then, for each level, ringcast's ratio to every other server.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Server | CPU | Mem | Conn | ENbps | ANbps | sb | Lat |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let order = server_order(rows);
    let mut by_level: BTreeMap<(String, u64), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_level
            .entry((r.proto.clone(), r.players))
            .or_default()
            .push(r);
    }
    for ((proto, players), mut level) in by_level {
        level.sort_by_key(|r| order.iter().position(|s| *s == r.server));
        for r in &level {
            let name = if proto == "rtmp" {
                r.server.clone()
            } else {
                format!("{} ({proto})", r.server)
            };
            let _ = writeln!(
                out,
                "| {name}, {players} players | {:.1}% (user {:.1}%) | {:.0} MB ({:.1} KB/player) | {} | {:.0} Mbps | {:.0} Mbps{} | {:.1}% | {} |",
                r.cpu_pct,
                r.user_pct,
                r.rss_mb,
                kb_per_player(r),
                r.conn,
                r.enbps_mbps,
                r.anbps_mbps,
                r.loss_pct
                    .map_or(String::new(), |l| format!(", loss {l:.2}%"))
                    + &r.keeping_up.map_or(String::new(), |k| {
                        format!(", {k}/{players} keeping up")
                    }),
                r.sb_cpu_pct,
                lat(r)
            );
        }
        let Some(ours) = level.iter().find(|r| r.server == "ringcast") else {
            continue;
        };
        for other in level.iter().filter(|r| !r.server.starts_with("ringcast")) {
            let ratio = |a: f64, b: f64| {
                if b > 0.0 {
                    format!("{:.2}x", a / b)
                } else {
                    "-".to_owned()
                }
            };
            let _ = writeln!(
                out,
                "| **ringcast / {}**, {players} players | {} (user {}) | {} ({} per player) | | | {} | | |",
                other.server,
                ratio(ours.cpu_pct, other.cpu_pct),
                ratio(ours.user_pct, other.user_pct),
                ratio(ours.rss_mb, other.rss_mb),
                ratio(kb_per_player(ours), kb_per_player(other)),
                ratio(ours.anbps_mbps, other.anbps_mbps),
            );
        }
    }
    out
}

fn server_order(rows: &[Row]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for r in rows {
        if !order.contains(&r.server) {
            order.push(r.server.clone());
        }
    }
    // ringcast's rows lead each level, the others follow in the order they were measured.
    order.sort_by_key(|s| !s.starts_with("ringcast"));
    order
}

/// One chart panel: its title, its y axis' title (with the unit) and what it plots of a row.
struct Panel {
    title: &'static str,
    y_axis: &'static str,
    value: fn(&Row) -> f64,
}

const PANELS: [Panel; 2] = [
    Panel {
        title: "Server CPU",
        y_axis: "CPU, % of one core (user + system)",
        value: |r| r.cpu_pct,
    },
    Panel {
        title: "Server memory",
        y_axis: "RSS, MB",
        value: |r| r.rss_mb,
    },
];

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Dash patterns beside the colours, so that lines stay apart in grey print.
const DASHES: [&str; 3] = ["", "6 3", "2 3"];

/// A tick step of 1, 2 or 5 times a power of ten that cuts `0..max` into at most `ticks`
/// parts, and the axis' end: the first multiple of the step at or above `max`.
fn axis(max: f64, ticks: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / ticks;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    (step, (max / step - 1e-9).ceil() * step)
}

/// A tick label with as many decimals as the step needs.
fn tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// An SVG chart, readable as it is in a browser: a panel of server CPU (% of one core) and
/// one of RSS (MB), each against players, with axis titles, ticks on round numbers and a
/// legend of one line per server (and protocol, when not RTMP).
pub fn svg(rows: &[Row]) -> String {
    let mut series: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let name = if r.proto == "rtmp" {
            r.server.clone()
        } else {
            format!("{} ({})", r.server, r.proto)
        };
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(r),
            None => series.push((name, vec![r])),
        }
    }
    for (_, v) in &mut series {
        v.sort_by_key(|r| r.players);
    }
    let protos: Vec<&str> = rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.proto.as_str()) {
            v.push(&r.proto);
        }
        v
    });
    // Plot areas side by side; room on the left of each for the y axis' labels and title,
    // below for the x axis', above for the chart's title and the legend.
    let (pw, ph) = (380.0, 260.0);
    let (left, right, bottom) = (80.0, 30.0, 60.0);
    let legend_rows = series.len().div_ceil(4) as f64;
    let top = 60.0 + 22.0 * legend_rows;
    let width = PANELS.len() as f64 * (left + pw + right);
    let height = top + ph + bottom;
    let (x_step, x_max) = axis(
        rows.iter().map(|r| r.players).max().unwrap_or(0) as f64,
        6.0,
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let title = format!(
        "ringcast bench.sh: server CPU and memory against players ({})",
        protos.join(", ")
    );
    let _ = writeln!(out, "<title>{}</title>", escape(&title));
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        width / 2.0,
        escape(&title)
    );
    for (i, (name, _)) in series.iter().enumerate() {
        let x = left + 200.0 * (i % 4) as f64;
        let y = 48.0 + 22.0 * (i / 4) as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2.5" stroke-dasharray="{}"/><circle cx="{}" cy="{y}" r="3.5" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            x + 28.0,
            COLORS[i % COLORS.len()],
            DASHES[i % DASHES.len()],
            x + 14.0,
            COLORS[i % COLORS.len()],
            x + 36.0,
            y + 4.0,
            escape(name)
        );
    }
    for (p, panel) in PANELS.iter().enumerate() {
        let x0 = p as f64 * (left + pw + right) + left;
        let y0 = top;
        let (y_step, y_max) = axis(rows.iter().map(panel.value).fold(0.0, f64::max), 5.0);
        let px = |players: f64| x0 + players / x_max * pw;
        let py = |v: f64| y0 + ph - v / y_max * ph;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#,
            x0 + pw / 2.0,
            y0 - 10.0,
            panel.title
        );
        let mut v = 0.0;
        while v <= y_max + y_step / 2.0 {
            let y = py(v);
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#e4e4e4"/><line x1="{}" y1="{y}" x2="{x0}" y2="{y}" stroke="#333"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 5.0,
                x0 - 8.0,
                y + 4.0,
                tick(v, y_step)
            );
            v += y_step;
        }
        let mut n = 0.0;
        while n <= x_max + x_step / 2.0 {
            let x = px(n);
            let _ = writeln!(
                out,
                r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{}" stroke="#f0f0f0"/><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#333"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + ph,
                y0 + ph,
                y0 + ph + 5.0,
                y0 + ph + 18.0,
                tick(n, x_step)
            );
            n += x_step;
        }
        let _ = writeln!(
            out,
            r##"<path d="M{x0},{y0} V{} H{}" fill="none" stroke="#333"/>"##,
            y0 + ph,
            x0 + pw
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">players (connections to the server)</text>"#,
            x0 + pw / 2.0,
            y0 + ph + 40.0
        );
        let _ = writeln!(
            out,
            r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            x0 - 55.0,
            y0 + ph / 2.0,
            panel.y_axis
        );
        for (i, (name, points)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = points
                .iter()
                .map(|r| (px(r.players as f64), py((panel.value)(r))))
                .collect();
            let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{}"/>"#,
                line.join(" "),
                DASHES[i % DASHES.len()]
            );
            for ((x, y), r) in pts.iter().zip(points) {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"><title>{}, {} players: {:.1}</title></circle>"#,
                    escape(name),
                    r.players,
                    (panel.value)(r)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv() -> String {
        format!(
            "{CSV_HEADER}\n\
             nginx-rtmp,rtmp,2000,43.9,20.0,23.9,58,18,2001,1056,1050,30,40,80,2000,0,,,\n\
             ringcast,rtmp,2000,8.0,1.5,6.5,40,8,2001,1056,1055,30,20,60,2000,0,,,\n\
             ringcast,rtmp,500,2.0,0.5,1.5,15,8,501,264,264,8,18,50,500,0,,,\n"
        )
    }

    #[test]
    fn webrtc_rows_show_loss_and_old_csvs_still_read() {
        let text = format!(
            "{CSV_HEADER}\nringcast,whep,300,40.0,20.0,20.0,60,20,300,158,150,60,30,70,300,0,0.013,,\n"
        );
        let rows = parse_csv(&text).expect("parses");
        assert_eq!(rows[0].loss_pct, Some(0.013));
        let md = markdown(&rows);
        assert!(md.contains("| ringcast (whep), 300 players |"), "{md}");
        assert!(md.contains("150 Mbps, loss 0.01% |"), "{md}");
        let old = "server,proto,players,cpu_pct,user_pct,sys_pct,rss_mb,idle_rss_mb,conn,\
                   enbps_mbps,anbps_mbps,sb_cpu_pct,lat_p50_ms,lat_p99_ms,alive,failed\n\
                   ringcast,rtmp,500,2.0,0.5,1.5,15,8,501,264,264,8,18,50,500,0\n";
        assert_eq!(parse_csv(old).expect("parses")[0].loss_pct, None);
    }

    #[test]
    fn hls_rows_show_players_keeping_up() {
        let text = format!(
            "{CSV_HEADER}\nnginx-rtmp,hls,1000,30.0,10.0,20.0,40,20,1001,528,570,50,7000,8000,1000,0,,998,7600\n"
        );
        let rows = parse_csv(&text).expect("parses");
        assert_eq!((rows[0].keeping_up, rows[0].loss_pct), (Some(998), None));
        assert_eq!(rows[0].lat_p95_ms, Some(7600));
        let md = markdown(&rows);
        assert!(md.contains("| nginx-rtmp (hls), 1000 players |"), "{md}");
        assert!(md.contains("570 Mbps, 998/1000 keeping up |"), "{md}");
        assert!(md.contains("| 7000/7600/8000 ms |"), "{md}");
    }

    #[test]
    fn table_has_rows_and_ratios() {
        let rows = parse_csv(&csv()).expect("parses");
        assert_eq!(rows.len(), 3);
        let md = markdown(&rows);
        let lines: Vec<&str> = md.lines().collect();
        // Header, rule, the 500 level (one row), the 2000 level (two rows and a ratio).
        assert_eq!(lines.len(), 6, "{md}");
        assert_eq!(
            lines[0],
            "| Server | CPU | Mem | Conn | ENbps | ANbps | sb | Lat |"
        );
        assert!(lines[2].starts_with("| ringcast, 500 players |"), "{md}");
        assert!(lines[3].starts_with("| ringcast, 2000 players |"), "{md}");
        assert!(lines[4].starts_with("| nginx-rtmp, 2000 players |"), "{md}");
        assert!(
            lines[5].contains("ringcast / nginx-rtmp") && lines[5].contains("0.18x"),
            "{md}"
        );
        // (40 - 8) MB over 2000 players.
        assert!((kb_per_player(&rows[1]) - 16.384).abs() < 1e-9);
    }

    #[test]
    fn chart_has_a_line_per_server() {
        let rows = parse_csv(&csv()).expect("parses");
        let s = svg(&rows);
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("<polyline").count(), 4, "two servers, two panels");
        assert!(s.contains("nginx-rtmp") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("viewBox=") && s.contains("RSS, MB") && s.contains("players ("));
        // Ticks on round numbers: 0 to 2000 players in steps of 500, CPU 0 to 50 in 10s.
        for label in [">500<", ">2000<", ">10<", ">50<"] {
            assert!(s.contains(label), "{label} in {s}");
        }
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(axis(2000.0, 6.0), (500.0, 2000.0));
        assert_eq!(axis(2500.0, 6.0), (500.0, 2500.0));
        assert_eq!(axis(73.2, 5.0), (20.0, 80.0));
        assert_eq!(axis(0.0, 5.0), (0.2, 1.0));
        assert_eq!(tick(0.4, 0.2), "0.4");
        assert_eq!(tick(1500.0, 500.0), "1500");
    }

    #[test]
    fn bad_csv_is_an_error() {
        assert!(matches!(parse_csv(""), Err(ReportError::Empty)));
        assert!(matches!(
            parse_csv("server,players\nx,1"),
            Err(ReportError::MissingColumn(_))
        ));
        let bad = format!("{CSV_HEADER}\nr,rtmp,x,1,1,1,1,1,1,1,1,1,1,1,1,1,,,\n");
        assert!(matches!(
            parse_csv(&bad),
            Err(ReportError::BadNumber { line: 2, .. })
        ));
        let short = format!("{CSV_HEADER}\nr,rtmp,1\n");
        assert!(matches!(parse_csv(&short), Err(ReportError::ShortRow(2))));
    }
}

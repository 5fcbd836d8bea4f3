//! The benchmark's report: bench.sh appends one CSV row per server and client level, and
//! `ringcast-bench report` turns the rows into the seed's Markdown table (SRS's performance
//! page: `| Server | CPU | Mem | Conn | ENbps | ANbps | sb | Lat |`), ratio rows of ringcast
//! against each other server, and an SVG chart of CPU and memory against players. Pure
//! functions from text to text: no process, socket or clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The CSV header bench.sh writes; columns are looked up by these names.
pub const CSV_HEADER: &str = "server,proto,players,cpu_pct,user_pct,sys_pct,rss_mb,idle_rss_mb,\
conn,enbps_mbps,anbps_mbps,sb_cpu_pct,lat_p50_ms,lat_p99_ms,alive,failed,loss_pct";

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
        });
    }
    Ok(rows)
}

fn lat(r: &Row) -> String {
    if r.lat_p50_ms < 0 {
        "-".to_owned()
    } else {
        format!("{}/{} ms", r.lat_p50_ms, r.lat_p99_ms)
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
                    .map_or(String::new(), |l| format!(", loss {l:.2}%")),
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

/// What a chart panel plots of a row.
type Metric = fn(&Row) -> f64;

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// An SVG with two panels side by side, server CPU (%) and RSS (MB) against players, one
/// line per server (and protocol).
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
    let (pw, ph, margin) = (420.0, 300.0, 50.0);
    let width = 2.0 * (pw + 2.0 * margin);
    let height = ph + 2.0 * margin + 20.0 * series.len() as f64;
    let max_players = rows.iter().map(|r| r.players).max().unwrap_or(1).max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let panels: [(&str, Metric); 2] = [
        ("Server CPU (% of one core)", |r| r.cpu_pct),
        ("Server memory (RSS, MB)", |r| r.rss_mb),
    ];
    for (p, (title, value)) in panels.iter().enumerate() {
        let x0 = margin + p as f64 * (pw + 2.0 * margin);
        let y0 = margin;
        let max_v = rows.iter().map(value).fold(0.0, f64::max).max(1e-9) * 1.1;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}</text>"#,
            x0 + pw / 2.0,
            y0 - 15.0
        );
        let _ = writeln!(
            out,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        for t in 0..=4 {
            let f = f64::from(t) / 4.0;
            let y = y0 + ph - f * ph;
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{:.1}</text>"##,
                x0 + pw,
                x0 - 5.0,
                y + 4.0,
                f * max_v
            );
            let x = x0 + f * pw;
            let _ = writeln!(
                out,
                r#"<text x="{x}" y="{}" text-anchor="middle">{:.0}</text>"#,
                y0 + ph + 15.0,
                f * max_players
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">players</text>"#,
            x0 + pw / 2.0,
            y0 + ph + 32.0
        );
        for (i, (_, points)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<String> = points
                .iter()
                .map(|r| {
                    format!(
                        "{:.1},{:.1}",
                        x0 + r.players as f64 / max_players * pw,
                        y0 + ph - value(r) / max_v * ph
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                pts.join(" ")
            );
            for pt in &pts {
                let (x, y) = pt.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
            }
        }
    }
    for (i, (name, _)) in series.iter().enumerate() {
        let y = margin + ph + 50.0 + 20.0 * i as f64;
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<rect x="{margin}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            margin + 18.0,
            escape(name)
        );
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
             nginx-rtmp,rtmp,2000,43.9,20.0,23.9,58,18,2001,1056,1050,30,40,80,2000,0,\n\
             ringcast,rtmp,2000,8.0,1.5,6.5,40,8,2001,1056,1055,30,20,60,2000,0,\n\
             ringcast,rtmp,500,2.0,0.5,1.5,15,8,501,264,264,8,18,50,500,0,\n"
        )
    }

    #[test]
    fn webrtc_rows_show_loss_and_old_csvs_still_read() {
        let text = format!(
            "{CSV_HEADER}\nringcast,whep,300,40.0,20.0,20.0,60,20,300,158,150,60,30,70,300,0,0.013\n"
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
    }

    #[test]
    fn bad_csv_is_an_error() {
        assert!(matches!(parse_csv(""), Err(ReportError::Empty)));
        assert!(matches!(
            parse_csv("server,players\nx,1"),
            Err(ReportError::MissingColumn(_))
        ));
        let bad = format!("{CSV_HEADER}\nr,rtmp,x,1,1,1,1,1,1,1,1,1,1,1,1,1,\n");
        assert!(matches!(
            parse_csv(&bad),
            Err(ReportError::BadNumber { line: 2, .. })
        ));
        let short = format!("{CSV_HEADER}\nr,rtmp,1\n");
        assert!(matches!(parse_csv(&short), Err(ReportError::ShortRow(2))));
    }
}

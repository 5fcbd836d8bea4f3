//! A recording's file name, as SRS 6 makes it from `dvr_path`: a template without a `.flv` or
//! `.mp4` ending is a folder that gets `/[stream].[timestamp].flv`; then `[vhost]`, `[app]`
//! and `[stream]`, then the clock's `[2006]` (year), `[01]` (month), `[02]` (day), `[15]`
//! (hour), `[04]` (minute), `[05]` (second), `[999]` (millisecond) and `[timestamp]` (Unix
//! time in ms), each replaced everywhere, in that order (so a stream named `[01]` becomes
//! the month, as in SRS). `[duration]` (the file's length in ms) is left for [`reaped`] to
//! fill in when the file is closed. Pure: the time is passed in, local as SRS's default.
#![forbid(unsafe_code)]

use chrono::{Datelike, NaiveDateTime, Timelike};

/// The path of a file opened at `local` (wall-clock time in the server's zone) and
/// `unix_ms`, for stream `vhost/app/stream`.
pub fn expand(
    template: &str,
    (vhost, app, stream): (&str, &str, &str),
    local: NaiveDateTime,
    unix_ms: i64,
) -> String {
    let mut path = template.to_owned();
    if !path.ends_with(".flv") && !path.ends_with(".mp4") {
        path.push_str("/[stream].[timestamp].flv");
    }
    let vars = [
        ("[vhost]", vhost.to_owned()),
        ("[app]", app.to_owned()),
        ("[stream]", stream.to_owned()),
        ("[2006]", format!("{:04}", local.year())),
        ("[01]", format!("{:02}", local.month())),
        ("[02]", format!("{:02}", local.day())),
        ("[15]", format!("{:02}", local.hour())),
        ("[04]", format!("{:02}", local.minute())),
        ("[05]", format!("{:02}", local.second())),
        (
            "[999]",
            format!("{:03}", local.nanosecond() / 1_000_000 % 1000),
        ),
        ("[timestamp]", unix_ms.to_string()),
    ];
    for (var, value) in vars {
        path = path.replace(var, &value);
    }
    path
}

/// Where a file being written to `path` lives until it is closed: SRS's `.tmp` beside it.
pub fn temporary(path: &str) -> String {
    format!("{path}.tmp")
}

/// The name a closed file of `duration_ms` is renamed to.
pub fn reaped(path: &str, duration_ms: u64) -> String {
    path.replace("[duration]", &duration_ms.to_string())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn at() -> (NaiveDateTime, i64) {
        // full.conf's example: 2015-01-03 10:57:30.776.
        let t = NaiveDate::from_ymd_opt(2015, 1, 3)
            .and_then(|d| d.and_hms_milli_opt(10, 57, 30, 776))
            .expect("a valid time");
        (t, 1_420_254_050_776)
    }

    #[test]
    fn srs_full_conf_examples() {
        let (local, ms) = at();
        let key = ("ossrs.net", "live", "livestream");
        let cases = [
            (
                "./objs/nginx/html",
                "./objs/nginx/html/livestream.1420254050776.flv",
            ),
            (
                "/data/[vhost]/[app]/[stream]/[2006]/[01]/[02]/[15].[04].[05].[999].flv",
                "/data/ossrs.net/live/livestream/2015/01/03/10.57.30.776.flv",
            ),
            (
                "/data/[vhost]/[app]/[2006]/[01]/[stream]-[02]-[15].[04].[05].[999].flv",
                "/data/ossrs.net/live/2015/01/livestream-03-10.57.30.776.flv",
            ),
            (
                "./objs/nginx/html/[app]/[stream].[timestamp].mp4",
                "./objs/nginx/html/live/livestream.1420254050776.mp4",
            ),
        ];
        for (template, expected) in cases {
            assert_eq!(expand(template, key, local, ms), expected, "{template}");
        }
    }

    #[test]
    fn stream_variables_come_first_and_duration_last() {
        let (local, ms) = at();
        let path = expand("/r/[stream]-[duration].flv", ("v", "a", "[01]"), local, ms);
        assert_eq!(path, "/r/01-[duration].flv");
        assert_eq!(temporary(&path), "/r/01-[duration].flv.tmp");
        assert_eq!(reaped(&path, 30_020), "/r/01-30020.flv");
    }
}

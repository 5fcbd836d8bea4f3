//! AMF0 values and their wire encoding, as carried by RTMP command (type 20) and data
//! (type 18) messages. This module owns the byte format only: what a command means belongs to
//! the session. It must not touch sockets, clocks or threads, and it never panics or
//! allocates in proportion to a length field it has not yet seen backed by bytes.
//!
//! Decoding is deliberately lenient where real encoders are sloppy (wrong ECMA array counts,
//! Latin-1 strings, unsupported/XML/typed-object markers) and strict where leniency would
//! cost memory or stack (truncation, nesting beyond [`MAX_DEPTH`]).

use bytes::{BufMut, BytesMut};

/// Deepest container nesting [`decode`] accepts; deeper input fails with
/// [`Amf0Error::TooDeep`] instead of exhausting the stack.
pub const MAX_DEPTH: usize = 32;

const MARKER_NUMBER: u8 = 0x00;
const MARKER_BOOLEAN: u8 = 0x01;
const MARKER_STRING: u8 = 0x02;
const MARKER_OBJECT: u8 = 0x03;
const MARKER_NULL: u8 = 0x05;
const MARKER_UNDEFINED: u8 = 0x06;
const MARKER_REFERENCE: u8 = 0x07;
const MARKER_ECMA_ARRAY: u8 = 0x08;
const MARKER_OBJECT_END: u8 = 0x09;
const MARKER_STRICT_ARRAY: u8 = 0x0a;
const MARKER_DATE: u8 = 0x0b;
const MARKER_LONG_STRING: u8 = 0x0c;
const MARKER_UNSUPPORTED: u8 = 0x0d;
const MARKER_XML_DOCUMENT: u8 = 0x0f;
const MARKER_TYPED_OBJECT: u8 = 0x10;

/// Upper bound on capacity reserved from an untrusted count before elements actually arrive.
const PREALLOC_LIMIT: usize = 1024;

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// An IEEE-754 double (marker 0x00).
    Number(f64),
    /// A boolean (marker 0x01).
    Boolean(bool),
    /// A string of up to 65535 bytes (marker 0x02); longer ones are encoded as long strings.
    String(String),
    /// An anonymous object (marker 0x03); also what typed objects (0x10) decode to.
    Object(Vec<(String, Amf0Value)>),
    /// Null (marker 0x05).
    Null,
    /// Undefined (marker 0x06); also what unsupported (0x0d) and references (0x07) decode to.
    Undefined,
    /// An associative array (marker 0x08), e.g. the body of `onMetaData`.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// A dense array (marker 0x0a).
    StrictArray(Vec<Amf0Value>),
    /// A date (marker 0x0b): milliseconds since the Unix epoch and a time zone that the spec
    /// says should be 0 and readers ignore.
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Time zone offset in minutes, as sent.
        tz: i16,
    },
    /// A string longer than 65535 bytes (marker 0x0c); also what XML documents (0x0f)
    /// decode to.
    LongString(String),
}

/// Why AMF0 input could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum Amf0Error {
    /// The input ended in the middle of a value.
    #[error("AMF0 input truncated")]
    Truncated,
    /// A type marker that AMF0 does not define or this decoder does not handle (movie clip,
    /// record set, the AVM+ switch, or garbage).
    #[error("unknown AMF0 type marker {0:#04x}")]
    UnknownMarker(u8),
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 nested too deep (more than {MAX_DEPTH} levels)")]
    TooDeep,
    /// An object-end marker (0x09) where a value was expected.
    #[error("AMF0 object-end marker outside an object")]
    UnexpectedObjectEnd,
}

impl Amf0Value {
    /// The text of a `String` or `LongString`.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) | Self::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Number`.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// Looks up a property of an `Object` or `EcmaArray`. With duplicate keys the last one
    /// wins, as when `ActionScript` reads the object.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Self::Object(props) | Self::EcmaArray(props) => props
                .iter()
                .rev()
                .find_map(|(k, v)| (k == key).then_some(v)),
            _ => None,
        }
    }

    /// Appends the encoding of this value to `out`.
    ///
    /// Lengths the format cannot express are handled without panicking: a `String` over 65535
    /// bytes is written as a long string, and a property name over 65535 bytes is cut at a
    /// character boundary.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Number(n) => {
                out.put_u8(MARKER_NUMBER);
                out.put_f64(*n);
            }
            Self::Boolean(b) => {
                out.put_u8(MARKER_BOOLEAN);
                out.put_u8(u8::from(*b));
            }
            Self::String(s) if s.len() <= usize::from(u16::MAX) => {
                out.put_u8(MARKER_STRING);
                put_short_str(out, s);
            }
            Self::String(s) | Self::LongString(s) => {
                out.put_u8(MARKER_LONG_STRING);
                put_long_str(out, s);
            }
            Self::Object(props) => {
                out.put_u8(MARKER_OBJECT);
                put_properties(out, props);
            }
            Self::Null => out.put_u8(MARKER_NULL),
            Self::Undefined => out.put_u8(MARKER_UNDEFINED),
            Self::EcmaArray(props) => {
                out.put_u8(MARKER_ECMA_ARRAY);
                out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
                put_properties(out, props);
            }
            Self::StrictArray(items) => {
                out.put_u8(MARKER_STRICT_ARRAY);
                // The count is the framing here, so it must match what is written.
                let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
                out.put_u32(count);
                for item in items.iter().take(count as usize) {
                    item.encode(out);
                }
            }
            Self::Date { millis, tz } => {
                out.put_u8(MARKER_DATE);
                out.put_f64(*millis);
                out.put_i16(*tz);
            }
        }
    }
}

/// Longest prefix of `s` that fits in `max` bytes without splitting a character.
fn clamp_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_short_str(out: &mut BytesMut, s: &str) {
    let s = clamp_str(s, usize::from(u16::MAX));
    out.put_u16(u16::try_from(s.len()).expect("clamped to u16::MAX bytes"));
    out.put_slice(s.as_bytes());
}

fn put_long_str(out: &mut BytesMut, s: &str) {
    let s = clamp_str(s, u32::MAX as usize);
    out.put_u32(u32::try_from(s.len()).expect("clamped to u32::MAX bytes"));
    out.put_slice(s.as_bytes());
}

fn put_properties(out: &mut BytesMut, props: &[(String, Amf0Value)]) {
    for (key, value) in props {
        put_short_str(out, key);
        value.encode(out);
    }
    out.put_u16(0);
    out.put_u8(MARKER_OBJECT_END);
}

/// Decodes one value from the front of `buf` and advances past it. On error `buf` is left
/// untouched.
///
/// # Errors
///
/// [`Amf0Error::Truncated`] when `buf` ends inside the value, [`Amf0Error::TooDeep`] past
/// [`MAX_DEPTH`], and the marker errors for bytes that do not start a value.
///
/// References (0x07) decode as `Undefined`: resolving them would mean cloning earlier
/// containers, letting a few bytes expand into gigabytes, and the encoders an RTMP server
/// meets (ffmpeg, OBS) never send them. The index is skipped so the rest stays decodable.
pub fn decode(buf: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    let mut cursor = *buf;
    let value = read_value(&mut cursor, 0)?;
    *buf = cursor;
    Ok(value)
}

/// Decodes values until `buf` is empty.
///
/// # Errors
///
/// The first error [`decode`] meets; values decoded before it are dropped.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut buf = buf;
    let mut values = Vec::new();
    while !buf.is_empty() {
        values.push(decode(&mut buf)?);
    }
    Ok(values)
}

/// Appends the encoding of every value in `values` to `out`.
pub fn encode_all(values: &[Amf0Value], out: &mut BytesMut) {
    for value in values {
        value.encode(out);
    }
}

fn read_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], Amf0Error> {
    let (head, tail) = buf.split_first_chunk::<N>().ok_or(Amf0Error::Truncated)?;
    *buf = tail;
    Ok(*head)
}

fn read_u8(buf: &mut &[u8]) -> Result<u8, Amf0Error> {
    read_array::<1>(buf).map(|[b]| b)
}

fn read_u16(buf: &mut &[u8]) -> Result<u16, Amf0Error> {
    read_array(buf).map(u16::from_be_bytes)
}

fn read_u32(buf: &mut &[u8]) -> Result<u32, Amf0Error> {
    read_array(buf).map(u32::from_be_bytes)
}

fn read_f64(buf: &mut &[u8]) -> Result<f64, Amf0Error> {
    read_array(buf).map(f64::from_be_bytes)
}

fn read_bytes<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], Amf0Error> {
    if buf.len() < len {
        return Err(Amf0Error::Truncated);
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

/// Real encoders put Latin-1 into metadata; losing a character beats dropping the message.
fn read_text(buf: &mut &[u8], len: usize) -> Result<String, Amf0Error> {
    read_bytes(buf, len).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

fn read_short_str(buf: &mut &[u8]) -> Result<String, Amf0Error> {
    let len = read_u16(buf)?;
    read_text(buf, usize::from(len))
}

fn read_long_str(buf: &mut &[u8]) -> Result<String, Amf0Error> {
    let len = read_u32(buf)?;
    // On 16-bit targets a length that does not fit cannot be backed by the buffer either.
    read_text(buf, usize::try_from(len).unwrap_or(usize::MAX))
}

/// `depth` is the number of containers enclosing the value being read.
fn read_value(buf: &mut &[u8], depth: usize) -> Result<Amf0Value, Amf0Error> {
    let marker = read_u8(buf)?;
    let is_container = matches!(
        marker,
        MARKER_OBJECT | MARKER_ECMA_ARRAY | MARKER_STRICT_ARRAY | MARKER_TYPED_OBJECT
    );
    if is_container && depth >= MAX_DEPTH {
        return Err(Amf0Error::TooDeep);
    }
    Ok(match marker {
        MARKER_NUMBER => Amf0Value::Number(read_f64(buf)?),
        MARKER_BOOLEAN => Amf0Value::Boolean(read_u8(buf)? != 0),
        MARKER_STRING => Amf0Value::String(read_short_str(buf)?),
        MARKER_OBJECT => Amf0Value::Object(read_properties(buf, depth + 1, 0)?),
        MARKER_NULL => Amf0Value::Null,
        MARKER_UNDEFINED | MARKER_UNSUPPORTED => Amf0Value::Undefined,
        MARKER_REFERENCE => {
            read_u16(buf)?;
            Amf0Value::Undefined
        }
        MARKER_ECMA_ARRAY => {
            // Only a capacity hint: encoders are known to send 0 or stale counts, so the
            // end marker, not the count, terminates the array.
            let hint = read_u32(buf)?;
            Amf0Value::EcmaArray(read_properties(buf, depth + 1, hint)?)
        }
        MARKER_OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
        MARKER_STRICT_ARRAY => {
            let count = read_u32(buf)?;
            // Every element takes at least one byte, so the input bounds what is reserved.
            let mut items = Vec::with_capacity(bounded_capacity(count, buf.len()));
            for _ in 0..count {
                items.push(read_value(buf, depth + 1)?);
            }
            Amf0Value::StrictArray(items)
        }
        MARKER_DATE => {
            let millis = read_f64(buf)?;
            let tz = i16::from_be_bytes(read_array(buf)?);
            Amf0Value::Date { millis, tz }
        }
        MARKER_LONG_STRING | MARKER_XML_DOCUMENT => Amf0Value::LongString(read_long_str(buf)?),
        MARKER_TYPED_OBJECT => {
            // The class name has no place in the value model; the properties do.
            read_short_str(buf)?;
            Amf0Value::Object(read_properties(buf, depth + 1, 0)?)
        }
        other => return Err(Amf0Error::UnknownMarker(other)),
    })
}

fn bounded_capacity(count: u32, min_bytes_each_from: usize) -> usize {
    usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(min_bytes_each_from)
        .min(PREALLOC_LIMIT)
}

/// Reads `key, value` pairs up to the empty-key object-end marker. `depth` is that of the
/// container's members.
fn read_properties(
    buf: &mut &[u8],
    depth: usize,
    count_hint: u32,
) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
    // A property takes at least 3 bytes: key length and a marker.
    let mut props = Vec::with_capacity(bounded_capacity(count_hint, buf.len() / 3));
    loop {
        let key = read_short_str(buf)?;
        // An empty key only ends the container when the end marker follows; some encoders
        // use "" as an ordinary property name.
        if key.is_empty() && buf.first() == Some(&MARKER_OBJECT_END) {
            *buf = &buf[1..];
            return Ok(props);
        }
        let value = read_value(buf, depth)?;
        props.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: &Amf0Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        value.encode(&mut out);
        out.to_vec()
    }

    fn round_trip(value: &Amf0Value) {
        let bytes = encoded(value);
        let mut buf = &bytes[..];
        assert_eq!(&decode(&mut buf).unwrap(), value);
        assert!(buf.is_empty(), "decode consumed exactly the encoding");
    }

    /// Number, hand-framed: marker then the big-endian double.
    fn num(n: f64) -> Vec<u8> {
        [&[0x00][..], &n.to_be_bytes()].concat()
    }

    fn s(text: &str) -> Amf0Value {
        Amf0Value::String(text.to_owned())
    }

    fn sample_tree() -> Amf0Value {
        Amf0Value::Object(vec![
            ("n".into(), Amf0Value::Number(-1.5)),
            ("b".into(), Amf0Value::Boolean(true)),
            ("s".into(), s("h\u{e9}llo")),
            ("null".into(), Amf0Value::Null),
            ("undef".into(), Amf0Value::Undefined),
            (
                "ecma".into(),
                Amf0Value::EcmaArray(vec![("x".into(), Amf0Value::Number(1.0))]),
            ),
            (
                "strict".into(),
                Amf0Value::StrictArray(vec![s("a"), Amf0Value::StrictArray(vec![])]),
            ),
            (
                "date".into(),
                Amf0Value::Date {
                    millis: 1.7e12,
                    tz: -60,
                },
            ),
            ("long".into(), Amf0Value::LongString("L".into())),
            ("".into(), s("empty key is a property")),
        ])
    }

    /// `connect` as ffmpeg's `gen_connect` sends it when publishing.
    fn ffmpeg_connect() -> Vec<u8> {
        [
            &b"\x02\x00\x07connect"[..],
            &num(1.0),
            b"\x03",
            b"\x00\x03app\x02\x00\x04live",
            b"\x00\x04type\x02\x00\x0anonprivate",
            b"\x00\x08flashVer\x02\x00\x23FMLE/3.0 (compatible; Lavf61.7.100)",
            b"\x00\x05tcUrl\x02\x00\x1artmp://127.0.0.1:1935/live",
            b"\x00\x00\x09",
        ]
        .concat()
    }

    /// `@setDataFrame onMetaData` as ffmpeg's flv muxer writes it, with a deliberately wrong
    /// ECMA count and a Latin-1 title.
    fn set_data_frame() -> Vec<u8> {
        [
            &b"\x02\x00\x0d@setDataFrame"[..],
            b"\x02\x00\x0aonMetaData",
            b"\x08\x00\x00\x00\x02",
            b"\x00\x08duration",
            &num(0.0),
            b"\x00\x05width",
            &num(1280.0),
            b"\x00\x06height",
            &num(720.0),
            b"\x00\x09framerate",
            &num(30.0),
            b"\x00\x0cvideocodecid",
            &num(7.0),
            b"\x00\x0faudiosamplerate",
            &num(44100.0),
            b"\x00\x06stereo\x01\x01",
            b"\x00\x07encoder\x02\x00\x0cLavf61.7.100",
            b"\x00\x05title\x02\x00\x04Caf\xe9",
            b"\x00\x00\x09",
        ]
        .concat()
    }

    #[test]
    fn round_trips_every_type() {
        for value in [
            Amf0Value::Number(0.0),
            Amf0Value::Number(-0.0),
            Amf0Value::Number(f64::INFINITY),
            Amf0Value::Number(1e300),
            Amf0Value::Boolean(false),
            Amf0Value::Boolean(true),
            s(""),
            s("rtmp://example.com/live"),
            Amf0Value::Object(vec![]),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::EcmaArray(vec![]),
            Amf0Value::StrictArray(vec![Amf0Value::Null; 3]),
            Amf0Value::Date { millis: 0.0, tz: 0 },
            Amf0Value::LongString("x".repeat(70_000)),
            sample_tree(),
        ] {
            round_trip(&value);
        }
    }

    #[test]
    fn exact_encodings() {
        assert_eq!(
            encoded(&Amf0Value::Number(1.0)),
            [0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(encoded(&s("ab")), b"\x02\x00\x02ab");
        assert_eq!(
            encoded(&Amf0Value::Object(vec![("a".into(), Amf0Value::Null)])),
            b"\x03\x00\x01a\x05\x00\x00\x09"
        );
        assert_eq!(
            encoded(&Amf0Value::EcmaArray(vec![])),
            b"\x08\x00\x00\x00\x00\x00\x00\x09"
        );
        assert_eq!(
            encoded(&Amf0Value::Date {
                millis: 0.0,
                tz: -1
            }),
            b"\x0b\0\0\0\0\0\0\0\0\xff\xff"
        );
    }

    #[test]
    fn long_text_is_promoted_or_clamped() {
        let big = "\u{e9}".repeat(40_000); // 80000 bytes
        let bytes = encoded(&Amf0Value::String(big.clone()));
        assert_eq!(bytes[0], MARKER_LONG_STRING);
        assert_eq!(
            decode_all(&bytes).unwrap(),
            [Amf0Value::LongString(big.clone())]
        );

        let bytes = encoded(&Amf0Value::Object(vec![(big, Amf0Value::Null)]));
        let value = decode_all(&bytes).unwrap().remove(0);
        let Amf0Value::Object(props) = value else {
            panic!("object expected");
        };
        assert_eq!(props[0].0.len(), 65_534, "cut at a char boundary");
    }

    #[test]
    fn decodes_ffmpeg_connect() {
        let bytes = ffmpeg_connect();
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        let obj = &values[2];
        assert_eq!(obj.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(
            obj.get("type").and_then(Amf0Value::as_str),
            Some("nonprivate")
        );
        assert_eq!(
            obj.get("flashVer").and_then(Amf0Value::as_str),
            Some("FMLE/3.0 (compatible; Lavf61.7.100)")
        );
        assert_eq!(
            obj.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:1935/live")
        );
        assert!(obj.get("swfUrl").is_none());

        let mut out = BytesMut::new();
        encode_all(&values, &mut out);
        assert_eq!(&out[..], &bytes[..], "re-encodes byte for byte");
    }

    #[test]
    fn decodes_set_data_frame_on_metadata() {
        let values = decode_all(&set_data_frame()).unwrap();
        assert_eq!(values[0].as_str(), Some("@setDataFrame"));
        assert_eq!(values[1].as_str(), Some("onMetaData"));
        let meta = &values[2];
        let Amf0Value::EcmaArray(props) = meta else {
            panic!("ECMA array expected, got {meta:?}");
        };
        assert_eq!(props.len(), 9, "the count of 2 is only a hint");
        let f = |k| meta.get(k).and_then(Amf0Value::as_f64);
        assert_eq!(f("width"), Some(1280.0));
        assert_eq!(f("height"), Some(720.0));
        assert_eq!(f("framerate"), Some(30.0));
        assert_eq!(f("videocodecid"), Some(7.0));
        assert_eq!(f("audiosamplerate"), Some(44100.0));
        assert_eq!(meta.get("stereo").and_then(Amf0Value::as_bool), Some(true));
        assert_eq!(
            meta.get("title").and_then(Amf0Value::as_str),
            Some("Caf\u{fffd}"),
            "Latin-1 decodes lossily"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let tree = encoded(&sample_tree());
        for bytes in [ffmpeg_connect(), set_data_frame(), tree] {
            let mut boundaries = vec![0];
            let mut buf = &bytes[..];
            while !buf.is_empty() {
                decode(&mut buf).unwrap();
                boundaries.push(bytes.len() - buf.len());
            }
            for cut in 0..bytes.len() {
                let result = decode_all(&bytes[..cut]);
                match boundaries.iter().position(|&b| b == cut) {
                    Some(values) => assert_eq!(result.unwrap().len(), values),
                    None => assert!(matches!(result, Err(Amf0Error::Truncated)), "cut {cut}"),
                }
            }
        }
    }

    #[test]
    fn failed_decode_leaves_buffer_alone() {
        let bytes = b"\x02\x00\x05ab";
        let mut buf = &bytes[..];
        assert!(matches!(decode(&mut buf), Err(Amf0Error::Truncated)));
        assert_eq!(buf.len(), bytes.len());
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let strict: Vec<u8> = b"\x0a\x00\x00\x00\x01".repeat(100_000);
        assert!(matches!(decode_all(&strict), Err(Amf0Error::TooDeep)));
        let objects: Vec<u8> = b"\x03\x00\x01a".repeat(100_000);
        assert!(matches!(decode_all(&objects), Err(Amf0Error::TooDeep)));
        let typed: Vec<u8> = b"\x10\x00\x01C\x00\x01a".repeat(100_000);
        assert!(matches!(decode_all(&typed), Err(Amf0Error::TooDeep)));
    }

    #[test]
    fn nesting_limit_is_exact() {
        let nest = |levels: usize| {
            let mut bytes = b"\x0a\x00\x00\x00\x01".repeat(levels);
            bytes.push(MARKER_NULL);
            bytes
        };
        assert!(decode_all(&nest(MAX_DEPTH)).is_ok());
        assert!(matches!(
            decode_all(&nest(MAX_DEPTH + 1)),
            Err(Amf0Error::TooDeep)
        ));
    }

    #[test]
    fn huge_counts_do_not_preallocate() {
        // Reserving u32::MAX values up front would abort the test process.
        let strict = b"\x0a\xff\xff\xff\xff\x05";
        assert!(matches!(decode_all(strict), Err(Amf0Error::Truncated)));
        let ecma = b"\x08\xff\xff\xff\xff\x00\x00\x09";
        assert_eq!(decode_all(ecma).unwrap(), [Amf0Value::EcmaArray(vec![])]);
        let long = b"\x0c\xff\xff\xff\xffab";
        assert!(matches!(decode_all(long), Err(Amf0Error::Truncated)));
    }

    #[test]
    fn lenient_markers() {
        assert_eq!(decode_all(b"\x0d").unwrap(), [Amf0Value::Undefined]);
        assert_eq!(
            decode_all(b"\x07\x00\x01\x05").unwrap(),
            [Amf0Value::Undefined, Amf0Value::Null],
            "reference skips its index"
        );
        assert_eq!(
            decode_all(b"\x0f\x00\x00\x00\x03<a>").unwrap(),
            [Amf0Value::LongString("<a>".into())]
        );
        assert_eq!(
            decode_all(b"\x10\x00\x03Foo\x00\x01x\x01\x00\x00\x00\x09").unwrap(),
            [Amf0Value::Object(vec![(
                "x".into(),
                Amf0Value::Boolean(false)
            )])]
        );
        assert_eq!(decode_all(b"\x01\x02").unwrap(), [Amf0Value::Boolean(true)]);
    }

    #[test]
    fn bad_markers() {
        for marker in [0x04, 0x0e, 0x11, 0xff] {
            assert!(matches!(
                decode_all(&[marker]),
                Err(Amf0Error::UnknownMarker(m)) if m == marker
            ));
        }
        assert!(matches!(
            decode_all(b"\x09"),
            Err(Amf0Error::UnexpectedObjectEnd)
        ));
        assert_eq!(
            decode_all(b"\x03\x00\x00\x09").unwrap(),
            [Amf0Value::Object(vec![])]
        );
    }

    #[test]
    fn accessors() {
        let tree = sample_tree();
        assert_eq!(tree.get("n").and_then(Amf0Value::as_f64), Some(-1.5));
        assert_eq!(tree.get("b").and_then(Amf0Value::as_bool), Some(true));
        assert_eq!(tree.get("long").and_then(Amf0Value::as_str), Some("L"));
        assert!(tree.get("missing").is_none());
        assert!(s("x").get("x").is_none());
        assert!(s("x").as_f64().is_none());
        assert!(Amf0Value::Number(1.0).as_bool().is_none());
        assert!(Amf0Value::Null.as_str().is_none());
        let dup = Amf0Value::EcmaArray(vec![
            ("k".into(), Amf0Value::Number(1.0)),
            ("k".into(), Amf0Value::Number(2.0)),
        ]);
        assert_eq!(dup.get("k").and_then(Amf0Value::as_f64), Some(2.0));
    }
}

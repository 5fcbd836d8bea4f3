//! The layering check: reads every `.rs` file of the library under `src/` (not `main.rs` or
//! `src/bin/`, which are the binaries on top of it) and draws its imports: `use crate::...`,
//! `use super::...` and `self::` paths, and `crate::x::y` paths written inline in code, never
//! what comments or string literals mention. Each reference becomes an edge between the two
//! children of the lowest module that holds both ends, so `src/rtc/engine.rs` naming
//! `crate::rtc::udp::X` is `engine -> udp` inside `rtc`, and `src/http/api.rs` naming
//! `crate::hub::Source` is `http -> hub` at the top. The tests fail on any cycle at any depth,
//! on a protocol folder importing a driver folder, and on a protocol folder without
//! `#![forbid(unsafe_code)]`. `cargo test --test layering -- --nocapture` prints the
//! top-level graph.
//!
//! It reads tokens, not a syntax tree (std only, no `syn`), which is enough for imports:
//! `pub use` lines are followed so that naming a re-export counts as an edge to the file that
//! defines the item, and a child naming an item that its parent's own file defines is an edge
//! to `mod` (that file; `lib.rs` at the top). A parent's file naming its own children is
//! not an edge between siblings. Test code counts (a cycle through a test is still a
//! cycle) and is marked `(test)` where the places of an edge are listed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

/// Modules of protocol code (a top-level folder, or a deeper one written `rtc/signal`): they
/// and everything below them must not import any of [`DRIVERS`].
const PROTOCOL: &[&str] = &[
    "access",
    "rtmp",
    "hls",
    "flv",
    "media",
    "mp4",
    "dvr/path",
    "dvr/plan",
    "dvr/format",
    "config",
    "coworkers",
    "hub/ring",
    "hub/flush",
    "hub/source",
    "rtc/signal",
    "rtc/stun",
    "rtc/sdp",
    "rtc/packetize",
    "rtc/bridge",
    "rtc/engine",
    "rtc/to_rtmp",
];
/// The I/O, process and API layers, which protocol code never imports.
const DRIVERS: &[&str] = &[
    "server", "app", "http", "runtime", "state", "egress", "profile", "httpc", "hooks", "dvr",
];
/// Modules whose file (`x/mod.rs` for a folder, `x.rs` otherwise; `hub/ring` for a file
/// inside a folder) must say `#![forbid(unsafe_code)]`.
const FORBID_UNSAFE: &[&str] = &[
    "access",
    "rtmp",
    "hls",
    "flv",
    "media",
    "mp4",
    "dvr",
    "config",
    "coworkers",
    "hub/ring",
    "hub/flush",
    "hub/consumer",
    "hub/source",
    "rtc/signal",
    "rtc/stun",
    "rtc/sdp",
    "rtc/packetize",
    "rtc/bridge",
    "rtc/engine",
    "rtc/to_rtmp",
    "app",
    "state",
    "stats",
    "http",
    "server",
    "bench",
    "httpc",
    "hooks",
];
/// Most file:line locations shown per edge of a cycle; the rest are counted.
const SHOWN_LOCATIONS: usize = 8;
/// Most cycles listed for one module; a folder tangled past this is reported as such.
const MAX_CYCLES: usize = 200;

/// The node name of a parent's own file among its children.
const OWN_FILE: &str = "mod";

/// A module path from the crate root, e.g. `["rtc", "udp"]`; empty for the root.
type ModPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A lifetime or label: never an identifier, so `'static` is not the keyword.
    Lifetime,
    /// A string, char or number literal; its content is dropped.
    Literal,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits Rust source into tokens, dropping comments (doc comments too) and the content of
/// string, char and number literals, so that paths mentioned there are not imports.
fn lex(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let start_line = line;
        let push = |tok, out: &mut Vec<Token>| {
            out.push(Token {
                tok,
                line: start_line,
            });
        };
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&c, i) {
            line += c[i..end].iter().filter(|&&x| x == '\n').count();
            i = end;
            push(Tok::Literal, &mut out);
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && at(i + 1) == '"') {
            i += if ch == '"' { 1 } else { 2 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
            push(Tok::Literal, &mut out);
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let q = if ch == '\'' { i } else { i + 1 };
            if at(q + 1) == '\\' {
                i = q + 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                push(Tok::Literal, &mut out);
            } else if at(q + 2) == '\'' {
                i = q + 3;
                push(Tok::Literal, &mut out);
            } else {
                i = q + 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                push(Tok::Lifetime, &mut out);
            }
        } else if ch.is_ascii_digit() {
            while i < c.len()
                && (is_ident_char(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit()))
            {
                i += 1;
            }
            push(Tok::Literal, &mut out);
        } else if is_ident_start(ch) {
            if ch == 'r' && at(i + 1) == '#' {
                i += 2;
            }
            let from = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            push(Tok::Ident(c[from..i].iter().collect()), &mut out);
        } else if ch == ':' && at(i + 1) == ':' {
            i += 2;
            push(Tok::PathSep, &mut out);
        } else {
            i += 1;
            push(Tok::Punct(ch), &mut out);
        }
    }
    out
}

/// Where a raw string (`r"..."`, `r#"..."#`, `br"..."`, `cr"..."`) starting at `i` ends.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(c.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&x| x == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"'
            && c[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&x| x == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// A path a file names, as written: `scope` is the module it is written in (inline `mod`
/// blocks included), so `super` and `self` can be resolved later.
#[derive(Debug, Clone, PartialEq)]
struct Ref {
    scope: ModPath,
    segs: Vec<String>,
    /// `use path::*`
    glob: bool,
    line: usize,
    /// Written in `#[cfg(test)]` code.
    test: bool,
}

/// A `pub use` at a file's top level: `name` (the alias, or `*` for a glob) stands for `path`.
#[derive(Debug, Clone)]
struct Reexport {
    name: String,
    path: Ref,
}

/// What one file says that matters to layering.
#[derive(Debug, Default)]
struct FileInfo {
    /// `src/...` as shown in messages.
    file: String,
    module: ModPath,
    refs: Vec<Ref>,
    /// Names of the items the file itself defines at its top level.
    items: BTreeSet<String>,
    /// Names of the modules it declares (`mod x;` or `mod x { }`).
    mods: BTreeSet<String>,
    reexports: Vec<Reexport>,
    forbids_unsafe: bool,
    /// Names of the child files it declares under `#[cfg(test)]`.
    test_mods: BTreeSet<String>,
}

/// The module path of a file under `src/`: `a/b.rs` is `[a, b]`, `a/mod.rs` and `a.rs` are
/// `[a]`, `lib.rs` is the root.
fn module_path(rel: &str) -> ModPath {
    let stem = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segs: ModPath = stem.split('/').map(str::to_owned).collect();
    if segs.last().is_some_and(|s| s == "mod") || segs == ["lib"] {
        segs.pop();
    }
    segs
}

fn ident(toks: &[Token], i: usize) -> Option<&str> {
    match toks.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is(toks: &[Token], i: usize, want: &Tok) -> bool {
    toks.get(i).is_some_and(|t| &t.tok == want)
}

/// One leaf of a `use` tree: the whole path, the name it binds, the line of its last part.
#[derive(Debug, Clone, PartialEq)]
struct UseLeaf {
    segs: Vec<String>,
    glob: bool,
    name: String,
    line: usize,
}

/// Parses the use tree starting at `i` (after `use`) under `prefix`, returning the index
/// after it. Nested groups `a::{b, c::{d, e as f}, g::*}` give one leaf each.
fn use_tree(toks: &[Token], mut i: usize, prefix: &[String], out: &mut Vec<UseLeaf>) -> usize {
    let mut path = prefix.to_vec();
    if is(toks, i, &Tok::PathSep) {
        // `use ::name`: another crate, never this one.
        path.push("::".to_owned());
        i += 1;
    }
    loop {
        let line = toks.get(i).map_or(0, |t| t.line);
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
                if is(toks, i, &Tok::PathSep) {
                    i += 1;
                    continue;
                }
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                let mut name = path.last().cloned().unwrap_or_default();
                if ident(toks, i) == Some("as") {
                    name = ident(toks, i + 1).unwrap_or_default().to_owned();
                    i += 2;
                }
                out.push(UseLeaf {
                    segs: path,
                    glob: false,
                    name,
                    line,
                });
                return i;
            }
            Some(Tok::Punct('*')) => {
                out.push(UseLeaf {
                    segs: path,
                    glob: true,
                    name: "*".to_owned(),
                    line,
                });
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.tok) {
                        None => return i,
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        Some(_) => {
                            let next = use_tree(toks, i, &path, out);
                            if next == i {
                                return i;
                            }
                            i = next;
                        }
                    }
                }
            }
            _ => return i,
        }
    }
}

/// Whether the `use` at `i` is `pub` or `pub(...)`: a re-export the module offers.
fn is_pub_use(toks: &[Token], i: usize) -> bool {
    if i >= 1 && ident(toks, i - 1) == Some("pub") {
        return true;
    }
    if i >= 1 && is(toks, i - 1, &Tok::Punct(')')) {
        let open = (0..i - 1).rev().find(|&j| is(toks, j, &Tok::Punct('(')));
        return open.is_some_and(|j| j >= 1 && ident(toks, j - 1) == Some("pub"));
    }
    false
}

/// An inline `mod name { }` block: the brace depth outside it, whether it is test code.
struct Inline {
    name: String,
    depth: usize,
    test: bool,
}

/// The module a token is in: the file's, then the inline `mod` blocks open around it.
fn scope_of(module: &[String], inline: &[Inline]) -> ModPath {
    let mut s = module.to_vec();
    s.extend(inline.iter().map(|m| m.name.clone()));
    s
}

/// Whether the item starting at `i` (after any `pub`) carries `#[cfg(test)]` right before.
fn after_cfg_test(toks: &[Token], mut i: usize) -> bool {
    if i >= 1 && is(toks, i - 1, &Tok::Punct(')')) {
        if let Some(open) = (0..i - 1).rev().find(|&j| is(toks, j, &Tok::Punct('('))) {
            if open >= 1 && ident(toks, open - 1) == Some("pub") {
                i = open - 1;
            }
        }
    } else if i >= 1 && ident(toks, i - 1) == Some("pub") {
        i -= 1;
    }
    let attr = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".to_owned()),
        Tok::Punct('('),
        Tok::Ident("test".to_owned()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    i >= attr.len()
        && toks[i - attr.len()..i]
            .iter()
            .zip(&attr)
            .all(|(t, want)| &t.tok == want)
}

const ITEM_KEYWORDS: &[&str] = &[
    "fn", "struct", "enum", "trait", "type", "const", "static", "union",
];

/// Reads one file's imports, top-level items, child modules and re-exports.
fn scan_file(file: &str, module: ModPath, text: &str) -> FileInfo {
    let toks = lex(text);
    let mut info = FileInfo {
        file: file.to_owned(),
        module,
        ..FileInfo::default()
    };
    let mut depth = 0usize;
    let mut inline: Vec<Inline> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|m| m.depth == depth) {
                    inline.pop();
                }
            }
            Tok::Punct('#')
                if depth == 0
                    && is(&toks, i + 1, &Tok::Punct('!'))
                    && is(&toks, i + 2, &Tok::Punct('['))
                    && ident(&toks, i + 3) == Some("forbid") =>
            {
                let close = (i..toks.len()).find(|&j| is(&toks, j, &Tok::Punct(']')));
                let args = &toks[i..close.unwrap_or(toks.len())];
                if args
                    .iter()
                    .any(|t| t.tok == Tok::Ident("unsafe_code".to_owned()))
                {
                    info.forbids_unsafe = true;
                }
            }
            Tok::Ident(kw) if kw == "use" => {
                let scope = scope_of(&info.module, &inline);
                let mut leaves = Vec::new();
                let end = use_tree(&toks, i + 1, &[], &mut leaves);
                let public = is_pub_use(&toks, i) && inline.is_empty();
                let test = inline.iter().any(|m| m.test);
                for leaf in leaves {
                    let r = Ref {
                        scope: scope.clone(),
                        segs: leaf.segs,
                        glob: leaf.glob,
                        line: leaf.line,
                        test,
                    };
                    if public {
                        info.reexports.push(Reexport {
                            name: leaf.name,
                            path: r.clone(),
                        });
                    }
                    info.refs.push(r);
                }
                i = (end..toks.len())
                    .find(|&j| is(&toks, j, &Tok::Punct(';')))
                    .unwrap_or(toks.len());
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(name) = ident(&toks, i + 1) {
                    let test = after_cfg_test(&toks, i);
                    if inline.is_empty() {
                        info.mods.insert(name.to_owned());
                        if test && is(&toks, i + 2, &Tok::Punct(';')) {
                            info.test_mods.insert(name.to_owned());
                        }
                    }
                    if is(&toks, i + 2, &Tok::Punct('{')) {
                        inline.push(Inline {
                            name: name.to_owned(),
                            depth,
                            test,
                        });
                        depth += 1;
                        i += 2;
                    }
                }
            }
            Tok::Ident(kw) if depth == 0 && ITEM_KEYWORDS.contains(&kw.as_str()) => {
                if let Some(name) = ident(&toks, i + 1) {
                    info.items.insert(name.to_owned());
                }
            }
            Tok::Ident(kw) if depth == 0 && kw == "macro_rules" => {
                if let Some(name) = ident(&toks, i + 2) {
                    info.items.insert(name.to_owned());
                }
            }
            Tok::Ident(kw)
                if matches!(kw.as_str(), "crate" | "super" | "self")
                    && is(&toks, i + 1, &Tok::PathSep)
                    // `pub(in crate::x)` is a visibility, not a use of `x`.
                    && !(i >= 1 && ident(&toks, i - 1) == Some("in")) =>
            {
                let line = toks[i].line;
                let mut segs = vec![kw.clone()];
                let mut j = i + 1;
                while is(&toks, j, &Tok::PathSep) {
                    match ident(&toks, j + 1) {
                        Some(s) => segs.push(s.to_owned()),
                        None => break,
                    }
                    j += 2;
                }
                info.refs.push(Ref {
                    scope: scope_of(&info.module, &inline),
                    segs,
                    glob: false,
                    line,
                    test: inline.iter().any(|m| m.test),
                });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    info
}

/// Where a reference ends up: the file that defines what it names, and whether it names an
/// item there (rather than only the module).
#[derive(Debug, Clone, PartialEq)]
struct Target {
    module: ModPath,
    item: bool,
}

/// One import between two children of `scope`, written at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    scope: ModPath,
    from: String,
    to: String,
    file: String,
    line: usize,
    test: bool,
}

/// Every file of a crate, scanned, with the module paths they define.
struct Crate {
    files: Vec<FileInfo>,
    by_module: HashMap<ModPath, usize>,
}

impl Crate {
    /// Scans `(path under src/, text)` pairs.
    fn new(sources: &[(String, String)]) -> Self {
        let mut files: Vec<FileInfo> = sources
            .iter()
            .map(|(rel, text)| scan_file(&format!("src/{rel}"), module_path(rel), text))
            .collect();
        let by_module: HashMap<ModPath, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        // A file is test code when any module above it is declared under `#[cfg(test)]`.
        let test: Vec<bool> = files
            .iter()
            .map(|f| {
                (1..=f.module.len()).any(|n| {
                    let (parent, name) = (&f.module[..n - 1], &f.module[n - 1]);
                    by_module
                        .get(parent)
                        .is_some_and(|&p| files[p].test_mods.contains(name))
                })
            })
            .collect();
        for (f, t) in files.iter_mut().zip(test) {
            for r in &mut f.refs {
                r.test |= t;
            }
        }
        Self { files, by_module }
    }

    /// Reads the library's files under `src`.
    fn read(src: &Path) -> Self {
        let mut sources = Vec::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src dir") {
                let path = entry.expect("read src entry").path();
                let rel = path
                    .strip_prefix(src)
                    .expect("below src")
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel == "main.rs" || rel == "bin" {
                    continue;
                }
                if path.is_dir() {
                    dirs.push(path);
                } else if rel.ends_with(".rs") {
                    let text = std::fs::read_to_string(&path).expect("read source file");
                    sources.push((rel, text));
                }
            }
        }
        sources.sort();
        Self::new(&sources)
    }

    fn file(&self, module: &[String]) -> Option<&FileInfo> {
        self.by_module.get(module).map(|&i| &self.files[i])
    }

    /// The absolute path a reference names, or `None` when it names another crate.
    fn absolute(&self, r: &Ref) -> Option<ModPath> {
        let (first, rest) = r.segs.split_first()?;
        let mut path = match first.as_str() {
            "crate" => Vec::new(),
            "self" => r.scope.clone(),
            "super" => {
                let mut base = r.scope.clone();
                base.pop()?;
                let mut rest = rest;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                return Some(base);
            }
            _ => {
                // A bare first name is a child module of the scope (`pub use parser::X` in
                // mod.rs), or else another crate or a local item.
                let mut child = r.scope.clone();
                child.push(first.clone());
                let declared = self.file(&r.scope).is_some_and(|f| f.mods.contains(first));
                if !declared && !self.by_module.contains_key(&child) {
                    return None;
                }
                child
            }
        };
        path.extend(rest.iter().cloned());
        Some(path)
    }

    /// The longest prefix of `path` that is a file's module.
    fn owner(&self, path: &[String]) -> ModPath {
        (0..=path.len())
            .rev()
            .map(|n| &path[..n])
            .find(|p| self.by_module.contains_key(*p))
            .unwrap_or(&[])
            .to_vec()
    }

    /// Whether module `module` offers `name`: defines it, declares it, or re-exports it.
    fn provides(&self, module: &[String], name: &str, depth: usize) -> bool {
        let m = self.resolve(module, depth + 1).module;
        let mut child = m.clone();
        child.push(name.to_owned());
        self.by_module.contains_key(&child)
            || self.file(&m).is_some_and(|f| {
                f.items.contains(name)
                    || f.mods.contains(name)
                    || f.reexports.iter().any(|r| r.name == name)
            })
    }

    /// The file that defines what `path` names, following `pub use` re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Target {
        let module = self.owner(path);
        let rest = &path[module.len()..];
        let Some(name) = rest.first() else {
            return Target {
                module,
                item: false,
            };
        };
        let here = Target {
            module: module.clone(),
            item: true,
        };
        let Some(file) = self.file(&module) else {
            return here;
        };
        // Re-exports chain at most a few times; the bound only guards against `pub use` loops.
        if depth > 16 || file.items.contains(name) || file.mods.contains(name) {
            return here;
        }
        let follow = |target: &Ref| {
            self.absolute(target).map(|mut p| {
                p.extend(rest[1..].iter().cloned());
                p
            })
        };
        if let Some(r) = file
            .reexports
            .iter()
            .find(|r| !r.path.glob && &r.name == name)
        {
            if let Some(p) = follow(&r.path) {
                return self.resolve(&p, depth + 1);
            }
            return here;
        }
        for r in file.reexports.iter().filter(|r| r.path.glob) {
            if let Some(g) = self.absolute(&r.path) {
                if self.provides(&g, name, depth) {
                    let mut p = g;
                    p.extend(rest.iter().cloned());
                    return self.resolve(&p, depth + 1);
                }
            }
        }
        here
    }

    /// Every file a reference depends on: one, or for a glob the module's own items and
    /// each of its re-exports.
    fn targets(&self, r: &Ref) -> Vec<Target> {
        let Some(path) = self.absolute(r) else {
            return Vec::new();
        };
        if !r.glob {
            return vec![self.resolve(&path, 0)];
        }
        let module = self.resolve(&path, 0).module;
        let Some(file) = self.file(&module) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !file.items.is_empty() {
            out.push(Target {
                module: module.clone(),
                item: true,
            });
        }
        for re in &file.reexports {
            if let Some(p) = self.absolute(&re.path) {
                let mut t = self.resolve(&p, 1);
                t.item = true;
                out.push(t);
            }
        }
        out
    }

    /// Every import, as an edge between siblings, plus the module each one reaches.
    fn edges(&self) -> Vec<(Edge, ModPath)> {
        let mut out = BTreeSet::new();
        for f in &self.files {
            for r in &f.refs {
                for t in self.targets(r) {
                    if let Some((scope, from, to)) = sibling_edge(&f.module, &t) {
                        let edge = Edge {
                            scope,
                            from,
                            to,
                            file: f.file.clone(),
                            line: r.line,
                            test: r.test,
                        };
                        out.insert((edge, t.module));
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}

/// The edge that a reference from module `from` to `to` draws: between the two children
/// of their lowest common ancestor that hold each end. `None` for a file naming itself or
/// a parent naming its own descendants; a child naming an item of an ancestor's own file
/// is an edge to [`OWN_FILE`].
fn sibling_edge(from: &[String], to: &Target) -> Option<(ModPath, String, String)> {
    let t = &to.module;
    if t.starts_with(from) || (from.starts_with(t) && !to.item) {
        return None;
    }
    let common = from.iter().zip(t).take_while(|(a, b)| a == b).count();
    let to_child = t
        .get(common)
        .cloned()
        .unwrap_or_else(|| OWN_FILE.to_owned());
    Some((from[..common].to_vec(), from[common].clone(), to_child))
}

/// Where an edge is written: file, line, and whether in test code.
type Place = (String, usize, bool);

/// Edges of one module's children, each with the places that draw it.
type Graph = BTreeMap<(String, String), BTreeSet<Place>>;

fn graphs(edges: &[(Edge, ModPath)]) -> BTreeMap<ModPath, Graph> {
    let mut out: BTreeMap<ModPath, Graph> = BTreeMap::new();
    for (e, _) in edges {
        out.entry(e.scope.clone())
            .or_default()
            .entry((e.from.clone(), e.to.clone()))
            .or_default()
            .insert((e.file.clone(), e.line, e.test));
    }
    out
}

/// Every elementary cycle of the graph, each starting at its least node, at most `limit`.
fn cycles(graph: &Graph, limit: usize) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in graph.keys() {
        next.entry(a).or_default().push(b);
        next.entry(b).or_default();
    }
    let mut found = Vec::new();
    for &start in next.keys() {
        // Depth-first over nodes after `start`, so each cycle is found once, from its least.
        let mut path = vec![start];
        let mut stack = vec![next[start].iter()];
        while let Some(succ) = stack.last_mut() {
            match succ.next() {
                Some(&n) if n == start => {
                    found.push(path.iter().map(|s| (*s).to_owned()).collect());
                    if found.len() >= limit {
                        return found;
                    }
                }
                Some(&n) if n > start && !path.contains(&n) => {
                    path.push(n);
                    stack.push(next[n].iter());
                }
                Some(_) => {}
                None => {
                    stack.pop();
                    path.pop();
                }
            }
        }
    }
    found
}

fn scope_name(scope: &[String]) -> String {
    if scope.is_empty() {
        "crate".to_owned()
    } else {
        scope.join("::")
    }
}

/// The cycles of every module's children, written out with where each edge comes from;
/// empty when there are none.
fn cycle_report(edges: &[(Edge, ModPath)]) -> String {
    let mut out = String::new();
    for (scope, graph) in graphs(edges) {
        let found = cycles(&graph, MAX_CYCLES);
        if found.len() >= MAX_CYCLES {
            let _ = writeln!(
                out,
                "in {}: {MAX_CYCLES} cycles or more; the first ones:",
                scope_name(&scope)
            );
        }
        for cycle in found {
            let mut ring = cycle.clone();
            ring.push(cycle[0].clone());
            let _ = writeln!(out, "in {}: {}", scope_name(&scope), ring.join(" -> "));
            for pair in ring.windows(2) {
                let places = &graph[&(pair[0].clone(), pair[1].clone())];
                let mut shown: Vec<String> = places
                    .iter()
                    .take(SHOWN_LOCATIONS)
                    .map(|(f, l, test)| format!("{f}:{l}{}", if *test { " (test)" } else { "" }))
                    .collect();
                if places.len() > SHOWN_LOCATIONS {
                    shown.push(format!("(+{} more)", places.len() - SHOWN_LOCATIONS));
                }
                let _ = writeln!(out, "    {} -> {}: {}", pair[0], pair[1], shown.join(", "));
            }
        }
    }
    out
}

/// Imports from a [`PROTOCOL`] module into a [`DRIVERS`] folder, one line each.
fn protocol_violations(edges: &[(Edge, ModPath)]) -> String {
    let protocol: Vec<ModPath> = PROTOCOL
        .iter()
        .map(|p| p.split('/').map(str::to_owned).collect())
        .collect();
    let mut out = String::new();
    let mut seen = BTreeSet::new();
    for (e, target) in edges {
        let from = module_path(e.file.strip_prefix("src/").unwrap_or(&e.file));
        let Some(p) = protocol.iter().find(|p| from.starts_with(p)) else {
            continue;
        };
        let Some(top) = target.first() else {
            continue;
        };
        if DRIVERS.contains(&top.as_str())
            && !target.starts_with(p)
            && seen.insert((e.file.clone(), e.line, top.clone()))
        {
            let _ = writeln!(
                out,
                "{}:{}: {} imports {}",
                e.file,
                e.line,
                p.join("/"),
                target.join("::")
            );
        }
    }
    out
}

/// The [`FORBID_UNSAFE`] modules whose file lacks `#![forbid(unsafe_code)]`, or that do
/// not exist.
fn missing_forbid(krate: &Crate) -> Vec<String> {
    FORBID_UNSAFE
        .iter()
        .filter_map(|m| {
            let path: ModPath = m.split('/').map(str::to_owned).collect();
            match krate.file(&path) {
                None => Some(format!("{m}: no such module under src/")),
                Some(f) if !f.forbids_unsafe => {
                    Some(format!("{}: no #![forbid(unsafe_code)]", f.file))
                }
                Some(_) => None,
            }
        })
        .collect()
}

/// The top-level graph as `from -> to: references`, one edge a line.
fn top_level_listing(edges: &[(Edge, ModPath)]) -> String {
    let mut out = String::new();
    if let Some(graph) = graphs(edges).get(&Vec::new()) {
        for ((a, b), places) in graph {
            let _ = writeln!(out, "{a} -> {b}: {}", places.len());
        }
    }
    out
}

fn real_crate() -> &'static (Crate, Vec<(Edge, ModPath)>) {
    static CRATE: OnceLock<(Crate, Vec<(Edge, ModPath)>)> = OnceLock::new();
    CRATE.get_or_init(|| {
        let krate = Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        let edges = krate.edges();
        (krate, edges)
    })
}

#[test]
fn no_import_cycle_between_folders_or_files() {
    let (_, edges) = real_crate();
    println!(
        "top-level imports (from -> to: places; `mod` is lib.rs):\n{}",
        top_level_listing(edges)
    );
    let report = cycle_report(edges);
    assert!(
        report.is_empty(),
        "import cycles (`mod` is the folder's own mod.rs, lib.rs at the top):\n{report}"
    );
}

#[test]
fn protocol_folders_import_no_driver() {
    let (_, edges) = real_crate();
    let report = protocol_violations(edges);
    assert!(
        report.is_empty(),
        "protocol code ({PROTOCOL:?}) imports a driver folder ({DRIVERS:?}):\n{report}"
    );
}

#[test]
fn protocol_folders_forbid_unsafe() {
    let (krate, _) = real_crate();
    let missing = missing_forbid(krate);
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

mod parsing {
    use super::*;

    fn krate(files: &[(&str, &str)]) -> Crate {
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        Crate::new(&sources)
    }

    fn segs(refs: &[Ref]) -> Vec<(String, bool)> {
        refs.iter().map(|r| (r.segs.join("::"), r.glob)).collect()
    }

    #[test]
    fn module_paths() {
        assert_eq!(module_path("a/b.rs"), ["a", "b"]);
        assert_eq!(module_path("a/mod.rs"), ["a"]);
        assert_eq!(module_path("a.rs"), ["a"]);
        assert!(module_path("lib.rs").is_empty());
    }

    #[test]
    fn use_groups_give_one_path_per_leaf() {
        let f = scan_file(
            "src/x.rs",
            vec!["x".into()],
            "use crate::{a::b, c::{d, e as f, self}, g::*};\nuse std::io;\n",
        );
        assert_eq!(
            segs(&f.refs),
            [
                ("crate::a::b".to_owned(), false),
                ("crate::c::d".to_owned(), false),
                ("crate::c::e".to_owned(), false),
                ("crate::c".to_owned(), false),
                ("crate::g".to_owned(), true),
                ("std::io".to_owned(), false),
            ]
        );
        let lines: Vec<usize> = f.refs.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 1, 1, 1, 1, 2]);
    }

    #[test]
    fn comments_and_literals_are_not_imports() {
        let text = r##"
// use crate::a::A;
/* crate::b::B /* nested crate::c::C */ crate::d::D */
/// [`crate::e::E`]
//! crate::f::F
const S: &str = "crate::g::G \" crate::h::H";
const R: &str = r#"crate::i::I "quoted" "#;
const C: char = '"';
const Q: char = '\'';
fn f<'a>(x: &'a str) -> &'static str { crate::real::Thing::new(x) }
"##;
        let f = scan_file("src/x.rs", vec!["x".into()], text);
        assert_eq!(
            segs(&f.refs),
            [("crate::real::Thing::new".to_owned(), false)]
        );
        assert_eq!(f.refs[0].line, 10);
        assert!(f.items.contains("S") && f.items.contains("f"));
    }

    #[test]
    fn super_and_self_resolve_from_the_inline_module() {
        let k = krate(&[
            ("lib.rs", "pub mod x;"),
            ("x/mod.rs", "mod y; mod w;"),
            ("x/w.rs", "pub struct V;"),
            (
                "x/y.rs",
                "use super::w::V;\nstruct Z;\n#[cfg(test)]\nmod tests {\n    use super::Z;\n    use self::inner::Q;\n}\n",
            ),
        ]);
        let y = k.file(&["x".into(), "y".into()]).unwrap();
        let abs: Vec<_> = y.refs.iter().map(|r| k.absolute(r)).collect();
        let s = |p: &[&str]| Some(p.iter().map(|s| (*s).to_owned()).collect::<ModPath>());
        assert_eq!(
            abs,
            [
                s(&["x", "w", "V"]),
                s(&["x", "y", "Z"]),
                s(&["x", "y", "tests", "inner", "Q"]),
            ]
        );
        let edges: Vec<_> = k.edges().into_iter().map(|(e, _)| e).collect();
        assert_eq!(
            edges,
            [Edge {
                scope: vec!["x".into()],
                from: "y".into(),
                to: "w".into(),
                file: "src/x/y.rs".into(),
                line: 1,
                test: false,
            }]
        );
    }

    #[test]
    fn reexports_lead_to_the_defining_file() {
        let k = krate(&[
            ("lib.rs", "pub mod a;\npub mod top;"),
            (
                "a/mod.rs",
                "mod b;\nmod c;\npub use b::Thing;\npub struct Own;\npub use crate::top::*;",
            ),
            ("a/b.rs", "pub struct Thing;"),
            (
                "a/c.rs",
                "use super::Thing;\nuse super::Own;\nfn f() { crate::a::Far::go() }",
            ),
            ("top.rs", "pub struct Far;"),
        ]);
        let got: Vec<_> = k
            .edges()
            .into_iter()
            .map(|(e, _)| {
                format!(
                    "{}: {} -> {} at {}:{}",
                    scope_name(&e.scope),
                    e.from,
                    e.to,
                    e.file,
                    e.line
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "crate: a -> top at src/a/c.rs:3",
                "crate: a -> top at src/a/mod.rs:5",
                "a: c -> b at src/a/c.rs:1",
                "a: c -> mod at src/a/c.rs:2",
            ]
        );
    }

    #[test]
    fn cycles_of_a_tiny_graph() {
        let mut g = Graph::new();
        for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "c")] {
            g.entry((a.into(), b.into()))
                .or_default()
                .insert(("src/f.rs".into(), 1, false));
        }
        assert_eq!(
            cycles(&g, 10),
            [vec!["a", "b", "c"], vec!["c", "d"]]
                .map(|c| c.into_iter().map(str::to_owned).collect::<Vec<_>>())
        );
        g.remove(&("c".to_owned(), "a".to_owned()));
        g.remove(&("d".to_owned(), "c".to_owned()));
        assert!(cycles(&g, 10).is_empty());
    }

    #[test]
    fn a_cycle_is_reported_with_its_places() {
        let k = krate(&[
            ("lib.rs", "pub mod p;\npub mod q;"),
            ("p/mod.rs", "use crate::q::Q;\npub struct P;"),
            ("q.rs", "pub struct Q;\n\nfn f() -> crate::p::P { todo!() }"),
        ]);
        let report = cycle_report(&k.edges());
        assert_eq!(
            report,
            "in crate: p -> q -> p\n    p -> q: src/p/mod.rs:1\n    q -> p: src/q.rs:3\n"
        );
    }

    #[test]
    fn test_code_is_marked() {
        let k = krate(&[
            ("lib.rs", "pub mod p;\npub mod q;\n#[cfg(test)]\nmod t;"),
            (
                "p.rs",
                "pub struct P;\n#[cfg(test)]\npub(crate) mod tests {\n    use crate::q::Q;\n}",
            ),
            ("q.rs", "pub struct Q;\nfn f(_: crate::p::P) {}"),
            ("t/mod.rs", "mod deep;"),
            ("t/deep.rs", "use crate::q::Q;"),
        ]);
        assert_eq!(
            cycle_report(&k.edges()),
            "in crate: p -> q -> p\n    p -> q: src/p.rs:4 (test)\n    q -> p: src/q.rs:2\n"
        );
        let deep: Vec<_> = k
            .edges()
            .into_iter()
            .filter(|(e, _)| e.file == "src/t/deep.rs")
            .map(|(e, _)| e.test)
            .collect();
        assert_eq!(deep, [true]);
    }

    #[test]
    fn a_protocol_folder_importing_a_driver_is_named() {
        let k = krate(&[
            ("lib.rs", "pub mod rtmp;\npub mod server;"),
            ("rtmp/mod.rs", "#![forbid(unsafe_code)]\nmod session;"),
            ("rtmp/session.rs", "use crate::server::Shared;"),
            ("server/mod.rs", "pub struct Shared;"),
        ]);
        assert_eq!(
            protocol_violations(&k.edges()),
            "src/rtmp/session.rs:1: rtmp imports server\n"
        );
        assert!(k.file(&["rtmp".into()]).unwrap().forbids_unsafe);
        assert!(!k.file(&["server".into()]).unwrap().forbids_unsafe);
    }
}

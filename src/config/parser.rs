//! Layer 1: turns the text of an nginx/SRS style config file into a generic
//! [`Directive`] tree. It owns tokenizing (words, quotes, comments, `;`, `{`,
//! `}`) and block structure, and knows nothing about what any directive means;
//! giving names meaning is the job of the typed layer (build.rs, into model.rs).
//! It must not touch the file system or the network: it only sees a `&str`.
//!
//! Grammar, following SRS's own reader where the brief leaves room:
//! `name arg ... ;` or `name arg ... { children }`. A `#` starts a comment
//! only where a new token could start, so `#` inside a word (`a#b`) or inside
//! quotes stays literal. Quotes (`'...'` or `"..."`) are recognised only at
//! the start of a token, have no escapes (as in SRS), and may span lines.
//! `;`, `{` and `}` end an unquoted word even without surrounding spaces.

use std::sync::Arc;

use thiserror::Error;

/// Deepest block nesting accepted. Real SRS configs nest four levels at most
/// (`vhost { transcode { engine { vfilter {} } } }`); the cap keeps hostile
/// input from building a tree so deep that dropping it overflows the stack.
pub const MAX_DEPTH: usize = 16;

/// One directive: `name args...;` or `name args... { children }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    /// The first word, e.g. `listen` or `vhost`.
    pub name: String,
    /// The remaining words before `;` or `{`, unquoted.
    pub args: Vec<String>,
    /// 1-based line of the directive's name.
    pub line: usize,
    /// Directives inside `{ }`; empty for a `;` directive.
    pub children: Vec<Directive>,
    /// Whether the directive was written with a `{ }` block (possibly empty),
    /// which is what tells `forward {}` apart from `forward;`.
    pub block: bool,
    /// Where it was written when not in the text [`parse_tree`] was given: an included
    /// file's path, or the environment variable that set it (then `line` is 0). The parser
    /// leaves it `None`; whoever splices directives from elsewhere into a tree sets it, so
    /// that messages point at the right place.
    pub origin: Option<Arc<str>>,
}

/// Why the text is not a well-formed directive tree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    /// A `}` with no open block to close.
    #[error("unexpected `}}`: no block is open")]
    UnexpectedClose,
    /// The file ended inside a block; the error line is where it opened.
    #[error("block `{name}` opened here is never closed with `}}`")]
    UnclosedBlock {
        /// Name of the directive that opened the block.
        name: String,
    },
    /// A directive was not terminated by `;` before `}` or the end of file;
    /// the error line is where the directive starts.
    #[error("missing `;` after directive `{name}`")]
    MissingSemicolon {
        /// Name of the unterminated directive.
        name: String,
    },
    /// A `;` or `{` with no directive name before it, or an empty name (`"";`).
    #[error("empty directive before `{found}`")]
    EmptyDirective {
        /// The token that ended the empty directive: `;` or `{`.
        found: char,
    },
    /// A quoted argument runs to the end of the file; the error line is where
    /// the quote opened.
    #[error("unterminated {quote} quote")]
    UnterminatedQuote {
        /// The opening quote character.
        quote: char,
    },
    /// A closing quote is directly followed by something other than
    /// whitespace, `;`, `{`, `}` or `#`, as in `"a"b`.
    #[error("unexpected `{found}` right after a closing quote; add a space")]
    AfterQuote {
        /// The offending character.
        found: char,
    },
    /// Blocks nest deeper than [`MAX_DEPTH`].
    #[error("blocks nested deeper than {max} levels")]
    TooDeep {
        /// The nesting limit, [`MAX_DEPTH`].
        max: usize,
    },
}

/// A syntax error at a 1-based line. It carries no file name because this
/// layer only sees text; the typed layer adds the file when it wraps it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line the error is reported at.
    pub line: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Semi,
    Open,
    Close,
}

/// A token together with the 1-based line it starts on.
type Spanned = (Token, usize);

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            chars: text.chars().peekable(),
            line: 1,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn next_token(&mut self) -> Result<Option<Spanned>, ParseError> {
        loop {
            let Some(&c) = self.chars.peek() else {
                return Ok(None);
            };
            let line = self.line;
            match c {
                c if c.is_ascii_whitespace() => {
                    self.bump();
                }
                '#' => {
                    while self.chars.peek().is_some_and(|&c| c != '\n') {
                        self.bump();
                    }
                }
                ';' | '{' | '}' => {
                    self.bump();
                    let token = match c {
                        ';' => Token::Semi,
                        '{' => Token::Open,
                        _ => Token::Close,
                    };
                    return Ok(Some((token, line)));
                }
                '"' | '\'' => return self.quoted(c).map(|w| Some((Token::Word(w), line))),
                _ => return Ok(Some((Token::Word(self.bare()), line))),
            }
        }
    }

    fn quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.line;
        self.bump();
        let mut word = String::new();
        loop {
            match self.bump() {
                Some(c) if c == quote => break,
                Some(c) => word.push(c),
                None => {
                    return Err(ParseError {
                        line: start,
                        kind: ParseErrorKind::UnterminatedQuote { quote },
                    })
                }
            }
        }
        // `"a"b` is almost certainly a typo; gluing or splitting silently
        // would both guess at intent, so reject it like SRS does.
        match self.chars.peek() {
            Some(&c) if !(c.is_ascii_whitespace() || matches!(c, ';' | '{' | '}' | '#')) => {
                Err(ParseError {
                    line: self.line,
                    kind: ParseErrorKind::AfterQuote { found: c },
                })
            }
            _ => Ok(word),
        }
    }

    fn bare(&mut self) -> String {
        let mut word = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_whitespace() || matches!(c, ';' | '{' | '}') {
                break;
            }
            word.push(c);
            self.bump();
        }
        word
    }
}

/// A block whose `{` has been read but whose `}` has not.
struct Open {
    directive: Directive,
    /// Children collected so far; moved into `directive` when it closes.
    children: Vec<Directive>,
}

/// Parses config text into its top-level directives.
///
/// # Errors
/// Returns the first [`ParseError`] found; see [`ParseErrorKind`] for the cases.
pub fn parse_tree(text: &str) -> Result<Vec<Directive>, ParseError> {
    let mut lexer = Lexer::new(text);
    let mut top: Vec<Directive> = Vec::new();
    // Explicit stack instead of recursion, so depth is bounded by MAX_DEPTH
    // and never by the thread's stack size.
    let mut stack: Vec<Open> = Vec::new();
    // Words of the directive being read, with the line of its first word.
    let mut words: Vec<String> = Vec::new();
    let mut words_line = 0;

    while let Some((token, line)) = lexer.next_token()? {
        match token {
            Token::Word(w) => {
                if words.is_empty() {
                    words_line = line;
                }
                words.push(w);
            }
            Token::Semi | Token::Open => {
                let found = if token == Token::Semi { ';' } else { '{' };
                let mut parts = std::mem::take(&mut words).into_iter();
                let name = match parts.next() {
                    Some(name) if !name.is_empty() => name,
                    Some(_) => {
                        return Err(ParseError {
                            line: words_line,
                            kind: ParseErrorKind::EmptyDirective { found },
                        })
                    }
                    None => {
                        return Err(ParseError {
                            line,
                            kind: ParseErrorKind::EmptyDirective { found },
                        })
                    }
                };
                let directive = Directive {
                    name,
                    args: parts.collect(),
                    line: words_line,
                    children: Vec::new(),
                    block: token == Token::Open,
                    origin: None,
                };
                if token == Token::Semi {
                    match stack.last_mut() {
                        Some(open) => open.children.push(directive),
                        None => top.push(directive),
                    }
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(ParseError {
                            line,
                            kind: ParseErrorKind::TooDeep { max: MAX_DEPTH },
                        });
                    }
                    stack.push(Open {
                        directive,
                        children: Vec::new(),
                    });
                }
            }
            Token::Close => {
                if let Some(name) = words.first() {
                    return Err(ParseError {
                        line: words_line,
                        kind: ParseErrorKind::MissingSemicolon { name: name.clone() },
                    });
                }
                let Some(Open {
                    mut directive,
                    children,
                }) = stack.pop()
                else {
                    return Err(ParseError {
                        line,
                        kind: ParseErrorKind::UnexpectedClose,
                    });
                };
                directive.children = children;
                match stack.last_mut() {
                    Some(open) => open.children.push(directive),
                    None => top.push(directive),
                }
            }
        }
    }

    if let Some(name) = words.first() {
        return Err(ParseError {
            line: words_line,
            kind: ParseErrorKind::MissingSemicolon { name: name.clone() },
        });
    }
    if let Some(open) = stack.last() {
        return Err(ParseError {
            line: open.directive.line,
            kind: ParseErrorKind::UnclosedBlock {
                name: open.directive.name.clone(),
            },
        });
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(name: &str, args: &[&str], line: usize) -> Directive {
        Directive {
            name: name.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            line,
            children: Vec::new(),
            block: false,
            origin: None,
        }
    }

    fn err(text: &str) -> ParseError {
        parse_tree(text).expect_err("input must be rejected")
    }

    #[test]
    fn simple_directives_and_blocks() {
        let tree = parse_tree("listen 1935 19350;\nvhost a {\n  enabled on;\n}\n").unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0], leaf("listen", &["1935", "19350"], 1));
        assert_eq!(tree[1].name, "vhost");
        assert_eq!(tree[1].args, ["a"]);
        assert!(tree[1].block);
        assert_eq!(tree[1].children, [leaf("enabled", &["on"], 3)]);
    }

    #[test]
    fn punctuation_needs_no_spaces() {
        let tree = parse_tree("a{b 1;c{}d;}e;").unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].children.len(), 3);
        assert_eq!(tree[0].children[0], leaf("b", &["1"], 1));
        assert!(tree[0].children[1].block && tree[0].children[1].children.is_empty());
        assert_eq!(tree[1], leaf("e", &[], 1));
    }

    #[test]
    fn empty_block_differs_from_leaf() {
        let tree = parse_tree("vparams {\n}\nx;").unwrap();
        assert!(tree[0].block);
        assert!(!tree[1].block);
    }

    #[test]
    fn comments_and_quotes() {
        let text = "# header\nvf 'a; b {c} #d' \"e'f\"; # trailing\nurl http://h/#frag;\n";
        let tree = parse_tree(text).unwrap();
        assert_eq!(tree[0], leaf("vf", &["a; b {c} #d", "e'f"], 2));
        assert_eq!(tree[1], leaf("url", &["http://h/#frag"], 3));
    }

    #[test]
    fn quotes_may_span_lines_and_be_empty() {
        let tree = parse_tree("a \"x\ny\" '';\nb;").unwrap();
        assert_eq!(tree[0], leaf("a", &["x\ny", ""], 1));
        assert_eq!(tree[1].line, 3);
    }

    #[test]
    fn crlf_and_tabs() {
        let tree = parse_tree("a\t1;\r\nb 2;\r\n").unwrap();
        assert_eq!(tree[1], leaf("b", &["2"], 2));
    }

    #[test]
    fn empty_input_is_empty_tree() {
        assert_eq!(parse_tree("").unwrap(), []);
        assert_eq!(parse_tree("  # only a comment").unwrap(), []);
    }

    #[test]
    fn stray_close() {
        let e = err("a;\n}\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, ParseErrorKind::UnexpectedClose);
    }

    #[test]
    fn unclosed_block_reports_opening_line() {
        let e = err("vhost a {\n  play {\n    x 1;\n  }\n");
        assert_eq!(e.line, 1);
        assert_eq!(
            e.kind,
            ParseErrorKind::UnclosedBlock {
                name: "vhost".into()
            }
        );
    }

    #[test]
    fn missing_semicolon_at_eof_and_before_close() {
        let e = err("a 1;\nlisten 1935\n");
        assert_eq!(
            (e.line, e.kind),
            (
                2,
                ParseErrorKind::MissingSemicolon {
                    name: "listen".into()
                }
            )
        );
        let e = err("v {\n  enabled on\n}");
        assert_eq!(
            (e.line, e.kind),
            (
                2,
                ParseErrorKind::MissingSemicolon {
                    name: "enabled".into()
                }
            )
        );
    }

    #[test]
    fn empty_directives() {
        assert_eq!(
            err("a;\n;").kind,
            ParseErrorKind::EmptyDirective { found: ';' }
        );
        assert_eq!(
            err("{ }").kind,
            ParseErrorKind::EmptyDirective { found: '{' }
        );
        let e = err("\n\"\" x;");
        assert_eq!(
            (e.line, e.kind),
            (2, ParseErrorKind::EmptyDirective { found: ';' })
        );
    }

    #[test]
    fn quote_errors() {
        let e = err("a;\nb 'unterminated;\n\n");
        assert_eq!(
            (e.line, e.kind),
            (2, ParseErrorKind::UnterminatedQuote { quote: '\'' })
        );
        assert_eq!(
            err("a \"x\"y;").kind,
            ParseErrorKind::AfterQuote { found: 'y' }
        );
    }

    #[test]
    fn depth_cap() {
        let ok = "a {".repeat(MAX_DEPTH) + &"}".repeat(MAX_DEPTH);
        assert!(parse_tree(&ok).is_ok());
        let deep = "a {".repeat(MAX_DEPTH + 1);
        assert_eq!(err(&deep).kind, ParseErrorKind::TooDeep { max: MAX_DEPTH });
        // Far past the cap must fail fast, not overflow the stack.
        assert!(parse_tree(&"a{".repeat(1_000_000)).is_err());
    }

    #[test]
    fn error_display_has_line() {
        assert_eq!(
            err("a;\n}").to_string(),
            "line 2: unexpected `}`: no block is open"
        );
    }
}

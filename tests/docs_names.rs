//! Every code name the teaching docs mention exists under that name (issue 11: "a reader ... can
//! follow docs/architecture.md from `main` to a byte echoed back, with every function it names
//! existing under that name"; docs/protocol.md maps each rule to "the module and function that
//! enforces it"). Owns only reading the docs and the source text; it builds nothing, touches no
//! network or clock, and parses Rust with a small lexer of its own (no compiler, no new crate).
//!
//! The rule, applied to README.md, docs/architecture.md, docs/protocol.md and docs/testing.md:
//!
//! * **What is a name.** Inside a backticked code span (fenced blocks are skipped):
//!   - every path `a::b::c`, optionally called `a::b::c(...)`;
//!   - a `file.rs::path` (e.g. `reactor/listener.rs::bind`): the path is looked up in that file's
//!     module;
//!   - a span that is only `name()` (with arguments it is usually arithmetic or a system call:
//!     `min(len, room)`, `shutdown(Write)`);
//!   - in the columns of a table that name code (`where`, `counted at`, `asserted in`, `owner`,
//!     `drives`, `test`, `target`), also a span that is a bare identifier.
//!
//!   Not names: anything without `::` or a call (flags, headers, metric names, shell commands,
//!   file paths), and paths whose first segment is an external crate or std module
//!   (`EXTERNAL_ROOTS`) or a foreign type the docs name on purpose (`EXTERNAL_TYPES`).
//! * **What is a definition.** In `src/`, `tests/`, `benches/`, `fuzz/` and `examples/`: `fn`,
//!   `struct`, `enum`, `union`, `trait`, `type`, `const`, `static`, `mod`, `macro_rules!`, an enum
//!   variant, or a named struct (or struct-variant) field. Each is recorded with its module (from
//!   the file path plus inline `mod`s) and its container: the type of its `impl` block or trait,
//!   or the struct/enum it belongs to.
//! * **How a path resolves.** Leading `crate`/`self`/`super`/`wsloop` are dropped. The leading
//!   lowercase segments are a module path that must be the tail of a real module path
//!   (`workers` is `reactor::workers`); the next segment must be defined at item level (no
//!   container) inside that module or a module below it (re-exports: `conn::Outbox` lives in
//!   `conn/outbox.rs`), or be a module itself. Without a module prefix, a first segment followed
//!   by more must be a type or trait. Every later segment must be defined with the previous one as
//!   its container (`Reactor::turn` is a method of an `impl ... Reactor`; `Event::Message` a
//!   variant of `Event`; `Entry::class` a field of `Entry`). A called name (`...()`) must be a
//!   `fn` (or a tuple variant's constructor): a field written as a call fails.
//!
//! All misses are reported in one failure: doc file, line, the name, and why.
//! `DOCS_NAMES_LIST=1 cargo test --test docs_names -- --nocapture` lists every name found with
//! its verdict.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

const DOCS: &[&str] = &[
    "README.md",
    "docs/architecture.md",
    "docs/protocol.md",
    "docs/testing.md",
];

/// `proto/src` is the `wsloop-proto` crate, whose modules `wsloop` re-exports under their own
/// names (`conn`, `ws`, …), so its files map to root modules like `src/`'s.
const SOURCE_DIRS: &[&str] = &["src", "proto/src", "tests", "benches", "fuzz", "examples"];

/// Table columns whose code spans are all names of code, bare identifiers included.
const NAME_COLUMNS: &[&str] = &[
    "where",
    "counted at",
    "asserted in",
    "owner",
    "drives",
    "test",
    "target",
];

/// First segments that belong to someone else: std's modules as the code imports them, and the
/// crates in Cargo.toml (plus the peers of benches/peers and the tools the docs mention).
const EXTERNAL_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "io",
    "fmt",
    "net",
    "mio",
    "rustls",
    "flate2",
    "zlib_rs",
    "httparse",
    "socket2",
    "slab",
    "libc",
    "clippy",
    "rustc",
    "signal_hook",
    "signal_hook_mio",
    "simdutf8",
    "toml",
    "clap",
    "log",
    "env_logger",
    "sha1",
    "base64",
    "hdrhistogram",
    "criterion",
    "proptest",
    "rcgen",
    "ring",
    "tokio",
    "tungstenite",
    "tokio_tungstenite",
    "fastwebsockets",
    "libfuzzer_sys",
];

/// Types of other crates the docs name without their crate root, with the crate they are from.
const EXTERNAL_TYPES: &[(&str, &str)] = &[("Poll", "mio"), ("Compress", "flate2")];

// ---------------------------------------------------------------------------------------------
// The source index.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Fn,
    Struct,
    Enum,
    Union,
    Trait,
    Type,
    Const,
    Static,
    Mod,
    Macro,
    Variant,
    Field,
}

impl Kind {
    fn is_type(self) -> bool {
        matches!(
            self,
            Kind::Struct | Kind::Enum | Kind::Union | Kind::Trait | Kind::Type
        )
    }
}

#[derive(Debug)]
struct Def {
    kind: Kind,
    module: Vec<String>,
    container: Option<String>,
}

#[derive(Default)]
struct Index {
    defs: HashMap<String, Vec<Def>>,
    /// Every module path: from files, `mod x;` declarations and inline `mod x { }`.
    modules: Vec<Vec<String>>,
    /// Source file (relative, `/`-separated) → its module path.
    files: HashMap<String, Vec<String>>,
}

impl Index {
    fn build(root: &Path) -> Index {
        let mut index = Index::default();
        for dir in SOURCE_DIRS {
            let mut files = Vec::new();
            collect_rs(&root.join(dir), &mut files);
            files.sort();
            for file in files {
                let rel = file
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let module = module_of(&rel);
                let text = fs::read_to_string(&file).unwrap();
                index.add_module(module.clone());
                index.files.insert(rel, module.clone());
                scan(&tokenize(&text), &module, &mut index);
            }
        }
        index
    }

    fn add_module(&mut self, path: Vec<String>) {
        if !self.modules.contains(&path) {
            self.modules.push(path);
        }
    }

    fn add(&mut self, name: &str, kind: Kind, module: &[String], container: Option<&str>) {
        if kind == Kind::Mod {
            let mut path = module.to_vec();
            path.push(name.to_string());
            self.add_module(path);
        }
        self.defs.entry(name.to_string()).or_default().push(Def {
            kind,
            module: module.to_vec(),
            container: container.map(str::to_string),
        });
    }

    fn named(&self, name: &str) -> &[Def] {
        self.defs.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rs(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// `src/ws/decode.rs` (or `proto/src/ws/decode.rs`) → `ws::decode`; `src/ws/mod.rs` → `ws`;
/// `src/lib.rs` → the root. Files
/// outside `src/` keep their top directory (`tests/faults.rs` → `tests::faults`) so that a test
/// crate never passes for a library module of the same name.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if parts.len() >= 2 && parts[0] == "proto" && parts[1] == "src" {
        parts.remove(0);
    }
    if parts.first().map(String::as_str) == Some("src") {
        parts.remove(0);
        if parts.is_empty() && (stem == "lib" || stem == "main") {
            return parts;
        }
    }
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

// ---------------------------------------------------------------------------------------------
// A lexer that is just enough to find item definitions: comments, strings, chars and lifetimes
// are dropped; identifiers and punctuation remain (`::`, `->`, `=>` as one token each).

#[derive(Clone, Debug, PartialEq)]
struct Tok {
    text: String,
    ident: bool,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn tokenize(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let prev_ident = i > 0 && is_ident_char(c[i - 1]);
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 1;
            i += 2;
            while i < c.len() && depth > 0 {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
        } else if !prev_ident && (ch == 'r' || (ch == 'b' && at(i + 1) == 'r')) && {
            let mut j = i + if ch == 'b' { 2 } else { 1 };
            while at(j) == '#' {
                j += 1;
            }
            at(j) == '"'
        } {
            // A raw string: r"..", r#".."#, br"..".
            let mut j = i + if ch == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            while j < c.len() {
                if c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
        } else if ch == '"' || (!prev_ident && ch == 'b' && at(i + 1) == '"') {
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '\'' || (!prev_ident && ch == 'b' && at(i + 1) == '\'') {
            if ch == 'b' {
                i += 1;
            }
            if at(i + 1) == '\\' {
                // '\n', '\'', '\u{..}'
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime ('a, 'static): dropped, so `'static` is no `static` item.
                i += 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
            }
        } else if ch == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) && !prev_ident {
            let start = i + 2;
            i = start;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Tok {
                text: c[start..i].iter().collect(),
                ident: true,
            });
        } else if is_ident_start(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Tok {
                text: c[start..i].iter().collect(),
                ident: true,
            });
        } else if ch.is_ascii_digit() {
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
        } else {
            let two: String = [ch, at(i + 1)].iter().collect();
            let text = if two == "::" || two == "->" || two == "=>" {
                i += 2;
                two
            } else {
                i += 1;
                ch.to_string()
            };
            out.push(Tok { text, ident: false });
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Scope {
    Module(String),
    Impl(String),
    Trait(String),
    Struct(String),
    Enum(String),
    /// The fields of a struct-like variant of the named enum.
    Variant(String),
    Fn,
    Block,
    /// `(` or `[`.
    Paren,
}

/// Records every definition in one file's tokens.
fn scan(toks: &[Tok], file_module: &[String], index: &mut Index) {
    let mut stack: Vec<Scope> = Vec::new();
    // The scope the next `{` opens, once an item header has been seen.
    let mut pending: Option<Scope> = None;
    let text = |i: usize| toks.get(i).map(|t| t.text.as_str()).unwrap_or("");
    let ident = |i: usize| toks.get(i).is_some_and(|t| t.ident);
    let mut i = 0;
    while i < toks.len() {
        let module: Vec<String> = file_module
            .iter()
            .cloned()
            .chain(stack.iter().filter_map(|s| match s {
                Scope::Module(m) => Some(m.clone()),
                _ => None,
            }))
            .collect();
        let container: Option<String> = match stack.last() {
            Some(Scope::Impl(t)) | Some(Scope::Trait(t)) => Some(t.clone()),
            _ => None,
        };
        let t = text(i);
        let prev = if i == 0 { ";" } else { text(i - 1) };
        let item_position = matches!(prev, ";" | "{" | "}" | "]" | "unsafe" | "default");
        let next_name = ident(i + 1).then(|| text(i + 1).to_string());
        match t {
            "mod" if next_name.is_some() => {
                let name = next_name.unwrap();
                index.add(&name, Kind::Mod, &module, None);
                pending = Some(Scope::Module(name));
                i += 2;
                continue;
            }
            "fn" if next_name.is_some() => {
                index.add(&next_name.unwrap(), Kind::Fn, &module, container.as_deref());
                pending = Some(Scope::Fn);
                i += 2;
                continue;
            }
            "struct" | "union" | "enum" | "trait" if next_name.is_some() => {
                let name = next_name.unwrap();
                let (kind, scope) = match t {
                    "struct" => (Kind::Struct, Scope::Struct(name.clone())),
                    "union" => (Kind::Union, Scope::Struct(name.clone())),
                    "enum" => (Kind::Enum, Scope::Enum(name.clone())),
                    _ => (Kind::Trait, Scope::Trait(name.clone())),
                };
                index.add(&name, kind, &module, None);
                pending = Some(scope);
                i += 2;
                continue;
            }
            "type" if next_name.is_some() => {
                index.add(
                    &next_name.unwrap(),
                    Kind::Type,
                    &module,
                    container.as_deref(),
                );
                i += 2;
                continue;
            }
            "const" | "static" if prev != "*" => {
                let mut j = i + 1;
                if text(j) == "mut" {
                    j += 1;
                }
                let name = text(j);
                if ident(j) && !matches!(name, "fn" | "unsafe" | "extern" | "async" | "_") {
                    let kind = if t == "const" {
                        Kind::Const
                    } else {
                        Kind::Static
                    };
                    index.add(name, kind, &module, container.as_deref());
                    i = j + 1;
                    continue;
                }
            }
            "macro_rules" if text(i + 1) == "!" && ident(i + 2) => {
                index.add(text(i + 2), Kind::Macro, &module, None);
                i += 3;
                continue;
            }
            "impl" if item_position => {
                let mut j = i + 1;
                while j < toks.len() && text(j) != "{" && text(j) != ";" {
                    j += 1;
                }
                if let Some(target) = impl_target(&toks[i + 1..j]) {
                    pending = Some(Scope::Impl(target));
                }
                i = j;
                continue;
            }
            "{" => {
                let scope = match pending.take() {
                    Some(s) => s,
                    None => match stack.last() {
                        Some(Scope::Enum(e)) if ident(i - 1) => Scope::Variant(e.clone()),
                        _ => Scope::Block,
                    },
                };
                stack.push(scope);
                i += 1;
                continue;
            }
            "(" | "[" => {
                stack.push(Scope::Paren);
                i += 1;
                continue;
            }
            "}" | ")" | "]" => {
                stack.pop();
                i += 1;
                continue;
            }
            ";" => {
                if !matches!(stack.last(), Some(Scope::Paren)) {
                    pending = None;
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        if ident(i) {
            let next = text(i + 1);
            match stack.last() {
                Some(Scope::Struct(s)) | Some(Scope::Variant(s))
                    if next == ":" && matches!(prev, "{" | "," | "]" | "pub" | ")") =>
                {
                    let s = s.clone();
                    index.add(t, Kind::Field, &module, Some(&s));
                }
                Some(Scope::Enum(e))
                    if matches!(prev, "{" | "," | "]")
                        && matches!(next, "," | "}" | "(" | "{" | "=") =>
                {
                    let e = e.clone();
                    index.add(t, Kind::Variant, &module, Some(&e));
                }
                _ => {}
            }
        }
        i += 1;
    }
}

/// The type an `impl` header implements for: `impl<N: Net> Reactor<N>` → `Reactor`,
/// `impl fmt::Display for ParseError` → `ParseError`.
fn impl_target(header: &[Tok]) -> Option<String> {
    let mut k = 0;
    if header.first().map(|t| t.text.as_str()) == Some("<") {
        let mut depth = 0;
        while k < header.len() {
            match header[k].text.as_str() {
                "<" => depth += 1,
                ">" => depth -= 1,
                _ => {}
            }
            k += 1;
            if depth == 0 {
                break;
            }
        }
    }
    let mut rest = &header[k..];
    if let Some(w) = rest.iter().position(|t| t.text == "where") {
        rest = &rest[..w];
    }
    let mut depth = 0;
    let mut start = 0;
    for (n, t) in rest.iter().enumerate() {
        match t.text.as_str() {
            "<" | "(" => depth += 1,
            ">" | ")" => depth -= 1,
            "for" if depth == 0 => start = n + 1,
            _ => {}
        }
    }
    let mut name = None;
    for t in &rest[start..] {
        match t.text.as_str() {
            "&" | "mut" | "dyn" | "::" => {}
            "<" => break,
            _ if t.ident => name = Some(t.text.clone()),
            _ => break,
        }
    }
    name
}

// ---------------------------------------------------------------------------------------------
// The docs: code spans, and the names in them.

#[derive(Debug)]
struct Span {
    line: usize,
    text: String,
    /// In a table column that names code.
    names_column: bool,
}

/// Inline code spans (CommonMark: a run of n backticks closes at the next run of exactly n),
/// outside fenced code blocks; a span may continue onto the next line of its paragraph.
fn code_spans(md: &str) -> Vec<Span> {
    let lines: Vec<&str> = md.lines().collect();
    let mut spans = Vec::new();
    let mut in_fence = false;
    let mut header: Vec<String> = Vec::new();
    let mut para: Vec<(usize, &str)> = Vec::new();
    let flush = |para: &mut Vec<(usize, &str)>, spans: &mut Vec<Span>| {
        if para.is_empty() {
            return;
        }
        let first = para[0].0;
        let joined = para.iter().map(|p| p.1).collect::<Vec<_>>().join("\n");
        for (offset, text) in spans_in(&joined) {
            let line = first + joined[..offset].matches('\n').count();
            spans.push(Span {
                line,
                text,
                names_column: false,
            });
        }
        para.clear();
    };
    for (n, line) in lines.iter().enumerate() {
        let number = n + 1;
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            flush(&mut para, &mut spans);
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if trimmed.starts_with('|') {
            flush(&mut para, &mut spans);
            let cells = table_cells(trimmed);
            let is_separator = |l: &str| {
                l.trim_start().starts_with('|')
                    && l.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
            };
            if is_separator(trimmed) {
                continue;
            }
            if lines.get(n + 1).is_some_and(|l| is_separator(l)) {
                header = cells.iter().map(|c| c.trim().to_lowercase()).collect();
            }
            for (col, cell) in cells.iter().enumerate() {
                let names_column = header
                    .get(col)
                    .is_some_and(|h| NAME_COLUMNS.contains(&h.as_str()));
                for (_, text) in spans_in(cell) {
                    spans.push(Span {
                        line: number,
                        text: text.replace("\\|", "|"),
                        names_column,
                    });
                }
            }
            continue;
        }
        header.clear();
        if line.trim().is_empty() {
            flush(&mut para, &mut spans);
        } else {
            para.push((number, line));
        }
    }
    flush(&mut para, &mut spans);
    spans
}

/// A table row's cells, split at `|` outside code spans and not escaped.
fn table_cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|');
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut cells = vec![String::new()];
    let mut in_code = false;
    let mut prev = '\0';
    for ch in row.chars() {
        if ch == '`' {
            in_code = !in_code;
        }
        if ch == '|' && !in_code && prev != '\\' {
            cells.push(String::new());
        } else {
            cells.last_mut().unwrap().push(ch);
        }
        prev = ch;
    }
    cells
}

/// (byte offset, content) of every code span in `text`.
fn spans_in(text: &str) -> Vec<(usize, String)> {
    let b = text.as_bytes();
    let run = |mut i: usize| {
        let start = i;
        while i < b.len() && b[i] == b'`' {
            i += 1;
        }
        i - start
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run(i);
        let open = i;
        let mut j = i + n;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let m = run(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(c) => {
                let content = text[open + n..c].replace('\n', " ");
                let content = if content.len() > 1
                    && content.starts_with(' ')
                    && content.ends_with(' ')
                    && !content.trim().is_empty()
                {
                    content[1..content.len() - 1].to_string()
                } else {
                    content
                };
                out.push((open, content));
                i = c + n;
            }
            None => i = open + n,
        }
    }
    out
}

#[derive(Debug, PartialEq)]
struct Name {
    /// `reactor/listener.rs` in `reactor/listener.rs::bind`.
    file: Option<String>,
    segments: Vec<String>,
    called: bool,
}

impl Name {
    fn show(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.file {
            s.push_str(f);
            s.push_str("::");
        }
        s.push_str(&self.segments.join("::"));
        if self.called {
            s.push_str("()");
        }
        s
    }
}

fn is_path_char(c: char) -> bool {
    is_ident_char(c) || matches!(c, '/' | '.' | '-')
}

/// The names of code in one span (see the rule at the top).
fn names_in(span: &str, names_column: bool) -> Vec<Name> {
    let c: Vec<char> = span.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let whole = span.trim();
    // A bare `name()` or, in a names column, a bare `name`.
    if let Some(ident_end) = whole
        .find(|ch: char| !is_ident_char(ch))
        .or(Some(whole.len()))
    {
        let name = &whole[..ident_end];
        let rest = &whole[ident_end..];
        // Only an empty call: `min(len, room)` or `shutdown(Write)` is arithmetic or a syscall.
        let called = rest == "()";
        if !name.is_empty()
            && name.starts_with(is_ident_start)
            && (called || (names_column && rest.is_empty()))
        {
            return vec![Name {
                file: None,
                segments: vec![name.to_string()],
                called,
            }];
        }
    }
    let mut i = 0;
    while i < c.len() {
        let boundary = i == 0 || !(is_path_char(at(i - 1)) || at(i - 1) == ':');
        if !(boundary && (is_path_char(c[i]))) {
            i += 1;
            continue;
        }
        // A word, possibly a file path: up to the first `::`.
        let start = i;
        while i < c.len() && is_path_char(c[i]) {
            i += 1;
        }
        let word: String = c[start..i].iter().collect();
        let (file, first) = if word.ends_with(".rs") && at(i) == ':' && at(i + 1) == ':' {
            i += 2;
            let s = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            (Some(word.clone()), c[s..i].iter().collect::<String>())
        } else if word.chars().all(is_ident_char) && word.starts_with(is_ident_start) {
            (None, word)
        } else {
            continue;
        };
        let mut segments = vec![first];
        while at(i) == ':' && at(i + 1) == ':' && is_ident_start(at(i + 2)) {
            let s = i + 2;
            i = s;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            segments.push(c[s..i].iter().collect());
        }
        if segments.len() < 2 && file.is_none() {
            continue;
        }
        let called = at(i) == '(';
        out.push(Name {
            file,
            segments,
            called,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Resolution.

enum Verdict {
    Found,
    External,
    Missing(String),
}

fn starts_lower(s: &str) -> bool {
    s.starts_with(|c: char| c.is_lowercase() || c == '_')
}

fn resolve(name: &Name, index: &Index) -> Verdict {
    let mut segs: Vec<&str> = name.segments.iter().map(String::as_str).collect();
    while segs.len() > 1 && matches!(segs[0], "crate" | "self" | "super" | "wsloop") {
        segs.remove(0);
    }
    if EXTERNAL_ROOTS.contains(&segs[0]) && (segs.len() > 1 || name.file.is_some()) {
        return Verdict::External;
    }
    if segs.len() > 1 && EXTERNAL_TYPES.iter().any(|(t, _)| *t == segs[0]) {
        return Verdict::External;
    }
    // The module prefix: exact for a file, else any module path ending with it.
    let (modules, rest): (Vec<Vec<String>>, &[&str]) = if let Some(file) = &name.file {
        let found = index
            .files
            .iter()
            .filter(|(f, _)| {
                f.as_str() == format!("src/{file}")
                    || f.as_str() == format!("proto/src/{file}")
                    || f.as_str() == file.as_str()
            })
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>();
        if found.is_empty() {
            return Verdict::Missing(format!(
                "no source file `{file}` (looked in src/, proto/src/ and /)"
            ));
        }
        (found, &segs[..])
    } else {
        let k = segs[..segs.len() - 1]
            .iter()
            .take_while(|s| starts_lower(s))
            .count();
        if k == 0 {
            (Vec::new(), &segs[..])
        } else {
            let prefix: Vec<String> = segs[..k].iter().map(|s| s.to_string()).collect();
            let found: Vec<Vec<String>> = index
                .modules
                .iter()
                .filter(|m| m.ends_with(&prefix))
                .cloned()
                .collect();
            if found.is_empty() {
                return Verdict::Missing(format!("no module `{}`", prefix.join("::")));
            }
            (found, &segs[k..])
        }
    };
    let first = rest[0];
    let in_modules = |d: &Def| modules.iter().any(|m| d.module.starts_with(m));
    let first_ok = if !modules.is_empty() || name.file.is_some() {
        index
            .named(first)
            .iter()
            .any(|d| d.container.is_none() && in_modules(d))
            || (rest.len() == 1
                && modules.iter().any(|m| {
                    let mut p = m.clone();
                    p.push(first.to_string());
                    index.modules.contains(&p)
                }))
    } else if rest.len() > 1 {
        index.named(first).iter().any(|d| d.kind.is_type())
    } else {
        !index.named(first).is_empty()
    };
    if !first_ok {
        let mut why = if index.named(first).is_empty() {
            format!("nothing is named `{first}`")
        } else if rest.len() > 1 && modules.is_empty() {
            format!("`{first}` is not a type or trait")
        } else {
            format!("`{first}` exists, but not as an item of that module")
        };
        if !modules.is_empty() {
            let shown: Vec<String> = modules.iter().map(|m| m.join("::")).collect();
            why.push_str(&format!(" (module {})", shown.join(" or ")));
        }
        return Verdict::Missing(why);
    }
    for pair in rest.windows(2) {
        let (owner, member) = (pair[0], pair[1]);
        if !index
            .named(member)
            .iter()
            .any(|d| d.container.as_deref() == Some(owner))
        {
            let why = if index.named(member).is_empty() {
                format!("nothing is named `{member}`")
            } else {
                format!("`{member}` exists, but not as a method, field, variant or associated item of `{owner}`")
            };
            return Verdict::Missing(why);
        }
    }
    let last = rest[rest.len() - 1];
    if name.called {
        let owner = (rest.len() > 1).then(|| rest[rest.len() - 2]);
        // A fn, or a tuple variant's constructor (`WriteStep::Accept(700)`).
        let callable = index.named(last).iter().any(|d| {
            matches!(d.kind, Kind::Fn | Kind::Variant)
                && (owner.is_none() || d.container.as_deref() == owner)
        });
        if !callable {
            return Verdict::Missing(format!("`{last}` is written as a call but is not a fn"));
        }
    }
    Verdict::Found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Report {
    checked: usize,
    external: usize,
    missing: Vec<String>,
}

fn check(doc: &str, md: &str, index: &Index, report: &mut Report) {
    for span in code_spans(md) {
        for name in names_in(&span.text, span.names_column) {
            let verdict = resolve(&name, index);
            if std::env::var_os("DOCS_NAMES_LIST").is_some() {
                let v = match &verdict {
                    Verdict::Found => "ok".to_string(),
                    Verdict::External => "external".to_string(),
                    Verdict::Missing(why) => format!("MISSING: {why}"),
                };
                eprintln!("{doc}:{}: {} {v}", span.line, name.show());
            }
            match verdict {
                Verdict::Found => report.checked += 1,
                Verdict::External => report.external += 1,
                Verdict::Missing(why) => {
                    report.checked += 1;
                    report
                        .missing
                        .push(format!("{doc}:{}: `{}`: {why}", span.line, name.show()));
                }
            }
        }
    }
}

#[test]
fn every_name_the_docs_give_exists_in_the_source() {
    let root = root();
    let index = Index::build(&root);
    let mut report = Report {
        checked: 0,
        external: 0,
        missing: Vec::new(),
    };
    for doc in DOCS {
        let md = fs::read_to_string(root.join(doc)).unwrap();
        check(doc, &md, &index, &mut report);
    }
    eprintln!(
        "docs_names: {} names checked, {} external skipped",
        report.checked, report.external
    );
    // A checker that finds nothing checks nothing.
    assert!(report.checked > 200, "only {} names found", report.checked);
    assert!(
        report.missing.is_empty(),
        "{} of {} names in the docs have no matching definition \
         (rule: top of tests/docs_names.rs):\n{}",
        report.missing.len(),
        report.checked,
        report.missing.join("\n")
    );
}

/// The checker itself: what it must accept and what it must refuse, against the real tree.
#[test]
fn the_checker_refuses_wrong_names_and_accepts_right_ones() {
    let index = Index::build(&root());
    let verdict = |md: &str| {
        let mut report = Report {
            checked: 0,
            external: 0,
            missing: Vec::new(),
        };
        check("t.md", md, &index, &mut report);
        (report.checked, report.missing.len())
    };
    for good in [
        "`Reactor::turn`",
        "`reactor::Reactor::flush`",
        "`conn::Outbox::reject`",
        "`workers::run`",
        "`reactor/listener.rs::bind`",
        "`Event::Message`",
        "`Entry::class`",
        "`ws::decode::Decoder::next`",
        "`Reactor::render_metrics() -> String`",
        "| where |\n|---|\n| `check_header` |",
    ] {
        assert_eq!(verdict(good), (1, 0), "{good} should pass");
    }
    for external in ["`mio::Poll`", "`std::str::from_utf8`", "`Poll::poll`"] {
        assert_eq!(verdict(external), (0, 0), "{external} is external");
    }
    for bad in [
        "`Entry::class()`",
        "`Reactor::no_such_method`",
        "`conn::Reactor`",
        "`no_such_module::turn`",
        "`no_such_fn()`",
        "`ws/frame.rs::bind`",
        "`Turn::Reactor`",
        "`Conn::turn`",
        "text `Reactor::turn` and\n`Reactor::nope` on the next line",
        "| where |\n|---|\n| `no_such_thing` |",
    ] {
        let (checked, missing) = verdict(bad);
        assert!(checked >= 1 && missing == 1, "{bad:?} should fail once");
    }
    // Not names: flags, headers, paths, shell.
    for skip in [
        "`--max-queued-bytes`",
        "`Sec-WebSocket-Accept`",
        "`src/reactor/fake.rs`",
        "`cargo test --lib`",
        "```\nfn x() { Nope::nope() }\n```",
        "| what |\n|---|\n| `bare_word` |",
    ] {
        assert_eq!(verdict(skip), (0, 0), "{skip:?} is not a name");
    }
}

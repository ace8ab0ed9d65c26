//! Reads a resource file one list item at a time. libyaml's event parser (the one serde_yaml
//! runs on) is driven event by event; each item of a top-level list (`routes`, `consumers`, ...)
//! is built into a small `serde_yaml::Value` and handed to the caller before the next is read,
//! so a file of a million consumers never exists as one tree (nor as serde_yaml's buffer of every
//! event of the document). Values come out as serde_yaml would build them: the same scalar
//! resolution (`123` is a number, `"123"` a string, `~` null), `!tag` values as `Tagged`,
//! anchors and aliases expanded, `<<` merge keys left for `Value::apply_merge`.
//!
//! The items of one list (`consumers`) are first recorded as events on a tape and hashed
//! ([`ItemHash`]: what the events say, not where they stand), so a reload can tell an item
//! that reads as before and skip building it at all ([`Hashing`]); otherwise the tape is
//! replayed into the same value, with the same errors in the same order.
#![allow(unsafe_code)] // libyaml is a C-style API: every call is unsafe (SAFETY notes below).

use std::ffi::CStr;
use std::fmt::Write as _;
use std::mem::MaybeUninit;

use ahash::AHashMap;
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Number, Value};
use unsafe_libyaml as unsafe_sys;

/// Nesting deeper than this is refused, as serde_yaml does.
const MAX_DEPTH: usize = 128;

/// What the document holds besides the streamed lists.
pub(crate) enum Rest {
    /// An empty document, or `~`.
    Null,
    /// The top-level mapping without the lists that were streamed.
    Mapping(Mapping),
    /// A scalar or a sequence at the top.
    Other,
}

/// One item of a streamed list, as handed to the caller.
pub(crate) enum Read<'t> {
    /// The item as a value; `hash` is its [`ItemHash`] when its list is hashed and the item
    /// holds no anchor and no alias (so its meaning is all in its own events).
    Value(Value, Option<ItemHash>),
    /// The item's recorded events, for [`crate::config::tape_de`]: a plain item ([`is_plain`])
    /// of a list hashed with `tape` set, whose value was never built.
    Tape(&'t [u8], ItemHash),
    /// The item's hash matched what `Hashing::lookup` knows: its value was never built.
    Reused(u32),
}

/// A 128-bit hash of one list item's events (kinds, scalar text, styles, tags; not their
/// places in the file), keyed per process: two items with the same hash read the same.
pub(crate) type ItemHash = [u64; 2];

/// The hash no item has (a consumer not to be reused).
pub(crate) const NO_HASH: ItemHash = [0, 0];

fn item_hash(data: &[u8]) -> ItemHash {
    static KEYS: std::sync::LazyLock<(ahash::RandomState, ahash::RandomState)> =
        std::sync::LazyLock::new(|| (ahash::RandomState::new(), ahash::RandomState::new()));
    let h = [KEYS.0.hash_one(data), KEYS.1.hash_one(data)];
    if h == NO_HASH { [0, 1] } else { h }
}

/// The list whose items are hashed, and what to ask about each hash: `Some(n)` means the
/// caller already has what the item compiles to (its number `n`), so the value is not built.
pub(crate) struct Hashing<'r> {
    pub list: usize,
    /// Plain items are handed on as their tape ([`Read::Tape`]) rather than as a value.
    pub tape: bool,
    pub lookup: Option<&'r mut (dyn FnMut(ItemHash) -> Option<u32> + Send)>,
}

/// A position in the text, 0-based as libyaml counts.
#[derive(Clone, Copy)]
struct Mark {
    line: u64,
    column: u64,
    index: u64,
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line != 0 || self.column != 0 {
            write!(f, "line {} column {}", self.line + 1, self.column + 1)
        } else {
            write!(f, "position {}", self.index)
        }
    }
}

impl From<unsafe_sys::yaml_mark_t> for Mark {
    fn from(m: unsafe_sys::yaml_mark_t) -> Mark {
        Mark {
            line: m.line,
            column: m.column,
            index: m.index,
        }
    }
}

/// A file read in chunks as libyaml asks for them, each chunk also fed to a hasher.
pub(crate) struct Source {
    pub file: std::fs::File,
    pub hasher: sha2::Sha256,
    pub error: Option<std::io::Error>,
}

/// libyaml's read callback for a [`Source`].
///
/// SAFETY: libyaml calls it with the `data` given to `yaml_parser_set_input` (a live, boxed
/// `Source` that nothing else touches meanwhile) and a writable buffer of `size` bytes.
unsafe fn read_source(
    data: *mut std::ffi::c_void,
    buffer: *mut u8,
    size: u64,
    size_read: *mut u64,
) -> i32 {
    use sha2::Digest;
    use std::io::Read;
    // SAFETY: per this function's contract.
    let (src, buf) = unsafe {
        (
            &mut *data.cast::<Source>(),
            std::slice::from_raw_parts_mut(buffer, size as usize),
        )
    };
    loop {
        match src.file.read(buf) {
            Ok(n) => {
                src.hasher.update(&buf[..n]);
                // SAFETY: per this function's contract.
                unsafe { *size_read = n as u64 };
                return 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                src.error = Some(e);
                return 0;
            }
        }
    }
}

/// What libyaml reads: a text that outlives the parser (`'a`), or a file it owns.
pub(crate) enum Input<'a> {
    Text(&'a [u8]),
    File(Box<Source>),
}

/// The libyaml parser over one input.
struct Parser<'a> {
    sys: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    /// Kept (at a fixed address, boxed) for as long as the parser reads from it.
    source: Option<Box<Source>>,
    /// Events read so far (bounds how far aliases may expand).
    events: usize,
    _input: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn new(input: Input<'a>) -> Result<Parser<'a>, String> {
        let mut sys = Box::<unsafe_sys::yaml_parser_t>::new_uninit();
        let p = sys.as_mut_ptr();
        let mut source = None;
        // SAFETY: `p` points to memory owned by the box, which stays at that address (boxed)
        // until `Drop` deletes the parser; initialize writes every field before any is read.
        // A text is borrowed for 'a, which outlives the parser; a file source is boxed and
        // owned by the parser, dropped only after the parser is deleted.
        unsafe {
            if unsafe_sys::yaml_parser_initialize(p).fail {
                return Err("libyaml: out of memory".into());
            }
            unsafe_sys::yaml_parser_set_encoding(p, unsafe_sys::YAML_UTF8_ENCODING);
            match input {
                Input::Text(t) => {
                    unsafe_sys::yaml_parser_set_input_string(p, t.as_ptr(), t.len() as u64)
                }
                Input::File(mut src) => {
                    let data: *mut Source = &mut *src;
                    unsafe_sys::yaml_parser_set_input(p, read_source, data.cast());
                    source = Some(src);
                }
            }
        }
        Ok(Parser {
            sys,
            source,
            events: 0,
            _input: std::marker::PhantomData,
        })
    }

    fn next(&mut self) -> Result<Event, String> {
        self.events += 1;
        let mut ev = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        let p = self.sys.as_mut_ptr();
        // SAFETY: the parser was initialised in `new`; on success `yaml_parser_parse` has
        // written a whole event, which `Event` deletes exactly once.
        unsafe {
            if (&*p).error != unsafe_sys::YAML_NO_ERROR
                || unsafe_sys::yaml_parser_parse(p, ev.as_mut_ptr()).fail
            {
                return Err(self.error());
            }
            Ok(Event(ev.assume_init()))
        }
    }

    /// The parser's error, worded as serde_yaml words it (a read error as `cannot read: ...`).
    fn error(&self) -> String {
        if let Some(e) = self.source.as_ref().and_then(|s| s.error.as_ref()) {
            return format!("cannot read: {e}");
        }
        // SAFETY: the parser is initialised; problem and context are null or static C strings.
        let (problem, problem_mark, problem_offset, context, context_mark) = unsafe {
            let p = &*self.sys.as_ptr();
            (
                cstr(p.problem.cast()).map(String::from_utf8_lossy),
                Mark::from(p.problem_mark),
                p.problem_offset,
                cstr(p.context.cast()).map(String::from_utf8_lossy),
                Mark::from(p.context_mark),
            )
        };
        let mut s = problem.map_or_else(|| "libyaml parser failed".into(), |p| p.into_owned());
        if problem_mark.line != 0 || problem_mark.column != 0 {
            let _ = write!(s, " at {problem_mark}");
        } else if problem_offset != 0 {
            let _ = write!(s, " at position {problem_offset}");
        }
        if let Some(c) = context {
            let _ = write!(s, ", {c}");
            if (context_mark.line != 0 || context_mark.column != 0)
                && (context_mark.line != problem_mark.line
                    || context_mark.column != problem_mark.column)
            {
                let _ = write!(s, " at {context_mark}");
            }
        }
        s
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` (a failed initialize never builds a Parser).
        unsafe { unsafe_sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
    }
}

/// A NUL-terminated C string as bytes, None for a null pointer.
///
/// SAFETY: `p` is null or points to a NUL-terminated string that lives for 'e.
unsafe fn cstr<'e>(p: *const u8) -> Option<&'e [u8]> {
    if p.is_null() {
        None
    } else {
        // SAFETY: per this function's contract.
        Some(unsafe { CStr::from_ptr(p.cast()) }.to_bytes())
    }
}

/// One parsed event, deleted on drop.
struct Event(unsafe_sys::yaml_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event was filled by yaml_parser_parse and is deleted only here.
        unsafe { unsafe_sys::yaml_event_delete(&mut self.0) }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Other,
}

impl Event {
    fn kind(&self) -> unsafe_sys::yaml_event_type_t {
        self.0.type_
    }
    fn mark(&self) -> Mark {
        self.0.start_mark.into()
    }
    /// Anchor and tag of a scalar, sequence or mapping start.
    fn anchor_tag(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        // SAFETY: the union member read matches the event type; the strings live as long as
        // the event.
        unsafe {
            match self.0.type_ {
                unsafe_sys::YAML_SCALAR_EVENT => (
                    cstr(self.0.data.scalar.anchor),
                    cstr(self.0.data.scalar.tag),
                ),
                unsafe_sys::YAML_SEQUENCE_START_EVENT => (
                    cstr(self.0.data.sequence_start.anchor),
                    cstr(self.0.data.sequence_start.tag),
                ),
                unsafe_sys::YAML_MAPPING_START_EVENT => (
                    cstr(self.0.data.mapping_start.anchor),
                    cstr(self.0.data.mapping_start.tag),
                ),
                _ => (None, None),
            }
        }
    }
    fn alias(&self) -> &[u8] {
        debug_assert!(self.0.type_ == unsafe_sys::YAML_ALIAS_EVENT);
        // SAFETY: an alias event always names its anchor.
        unsafe { cstr(self.0.data.alias.anchor).unwrap_or_default() }
    }
    fn scalar(&self) -> (&[u8], Style) {
        debug_assert!(self.0.type_ == unsafe_sys::YAML_SCALAR_EVENT);
        // SAFETY: value points to `length` bytes owned by the event.
        unsafe {
            let s = &self.0.data.scalar;
            let bytes = if s.value.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(s.value, s.length as usize)
            };
            let style = if s.style == unsafe_sys::YAML_PLAIN_SCALAR_STYLE {
                Style::Plain
            } else {
                Style::Other
            };
            (bytes, style)
        }
    }
}

const TAG_BOOL: &[u8] = b"tag:yaml.org,2002:bool";
const TAG_INT: &[u8] = b"tag:yaml.org,2002:int";
const TAG_FLOAT: &[u8] = b"tag:yaml.org,2002:float";
const TAG_NULL: &[u8] = b"tag:yaml.org,2002:null";

/// The tag name of a `!tag` (serde_yaml's `parse_tag`): None for core and URI tags.
fn local_tag(tag: Option<&[u8]>) -> Option<&str> {
    let tag = tag?;
    let (b'!', rest) = tag.split_first()? else {
        return None;
    };
    std::str::from_utf8(if rest.is_empty() { tag } else { rest }).ok()
}

fn parse_null(s: &str) -> bool {
    matches!(s, "null" | "Null" | "NULL" | "~")
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn digits_but_not_number(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    s.len() > 1 && s.starts_with('0') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn radix_int<T>(s: &str, parse: fn(&str, u32) -> Result<T, std::num::ParseIntError>) -> Option<T> {
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = s.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(v) = parse(rest, radix) {
                return Some(v);
            }
        }
    }
    None
}

/// serde_yaml's `parse_unsigned_int` for u64.
fn parse_unsigned(s: &str) -> Option<u64> {
    let unpositive = s.strip_prefix('+').unwrap_or(s);
    if let Some(v) = radix_int(unpositive, u64::from_str_radix) {
        return Some(v);
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(s) {
        return None;
    }
    unpositive.parse().ok()
}

/// serde_yaml's `parse_negative_int` for i64.
fn parse_negative(s: &str) -> Option<i64> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = s.strip_prefix(prefix)
            && let Ok(v) = i64::from_str_radix(&format!("-{rest}"), radix)
        {
            return Some(v);
        }
    }
    if digits_but_not_number(s) {
        return None;
    }
    s.parse().ok()
}

fn parse_f64(s: &str) -> Option<f64> {
    let unpositive = match s.strip_prefix('+') {
        Some(u) if u.starts_with(['+', '-']) => return None,
        Some(u) => u,
        None => s,
    };
    match unpositive {
        ".inf" | ".Inf" | ".INF" => return Some(f64::INFINITY),
        _ => {}
    }
    match s {
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    unpositive.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// An integer as serde_yaml reads one into a `Value` (u64, else a negative i64; larger ones are
/// refused, as serde_yaml's `Value` refuses 128-bit integers).
fn int_value(s: &str) -> Option<Result<Number, String>> {
    if let Some(u) = parse_unsigned(s) {
        return Some(Ok(u.into()));
    }
    if let Some(i) = parse_negative(s) {
        return Some(Ok(i.into()));
    }
    let wide = s.trim_start_matches(['+', '-']);
    if !wide.is_empty() && wide.bytes().all(|b| b.is_ascii_digit()) && !digits_but_not_number(s) {
        return Some(Err(format!(
            "invalid type: integer `{s}` as 128-bit, expected any YAML value"
        )));
    }
    None
}

/// A scalar as serde_yaml resolves it, borrowing its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'s> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'s str),
}

impl Scalar<'_> {
    fn into_value(self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Number(n) => Value::Number(n),
            Scalar::Str(s) => Value::String(s.to_owned()),
        }
    }
}

/// A plain untagged scalar, resolved as serde_yaml resolves one.
pub(crate) fn resolve_plain(s: &str) -> Result<Scalar<'_>, String> {
    // Fast path: a word that starts with a letter is a string unless it is null or a boolean
    // (`inf` and `nan` without the dot are strings in YAML).
    match s.as_bytes().first() {
        None => return Ok(Scalar::Null),
        Some(b) if b.is_ascii_alphabetic() => {
            if parse_null(s) {
                return Ok(Scalar::Null);
            }
            if let Some(b) = parse_bool(s) {
                return Ok(Scalar::Bool(b));
            }
            return Ok(Scalar::Str(s));
        }
        _ => {}
    }
    if parse_null(s) {
        return Ok(Scalar::Null);
    }
    if let Some(v) = int_value(s) {
        return v.map(Scalar::Number);
    }
    if !digits_but_not_number(s)
        && let Some(f) = parse_f64(s)
    {
        return Ok(Scalar::Number(Number::from(f)));
    }
    Ok(Scalar::Str(s))
}

/// A plain untagged scalar as a `Value`.
fn plain(s: &str) -> Result<Value, String> {
    resolve_plain(s).map(Scalar::into_value)
}

/// A scalar event as a `Value`, tags applied as serde_yaml applies them.
fn scalar_value(
    bytes: &[u8],
    tag: Option<&[u8]>,
    style: Style,
    mark: Mark,
) -> Result<Value, String> {
    let s = std::str::from_utf8(bytes).map_err(|_| format!("invalid UTF-8 at {mark}"))?;
    if let Some(name) = local_tag(tag) {
        let inner = if style == Style::Plain {
            plain(s)?
        } else {
            Value::String(s.to_owned())
        };
        return Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(name),
            value: inner,
        })));
    }
    match tag {
        Some(TAG_BOOL) => parse_bool(s)
            .map(Value::Bool)
            .ok_or_else(|| format!("invalid value: string {s:?}, expected a boolean at {mark}")),
        Some(TAG_INT) => match int_value(s) {
            Some(v) => v.map(Value::Number),
            None => Err(format!(
                "invalid value: string {s:?}, expected an integer at {mark}"
            )),
        },
        Some(TAG_FLOAT) => parse_f64(s)
            .map(|f| Value::Number(Number::from(f)))
            .ok_or_else(|| format!("invalid value: string {s:?}, expected a float at {mark}")),
        Some(TAG_NULL) => {
            if parse_null(s) {
                Ok(Value::Null)
            } else {
                Err(format!(
                    "invalid value: string {s:?}, expected null at {mark}"
                ))
            }
        }
        Some(_) => Ok(Value::String(s.to_owned())),
        None if style == Style::Plain => plain(s),
        None => Ok(Value::String(s.to_owned())),
    }
}

/// serde_yaml's wording for a key written twice in one mapping.
fn duplicate_key(key: &Value) -> String {
    match key {
        Value::Null => "duplicate entry with null key".into(),
        Value::Bool(b) => format!("duplicate entry with key `{b}`"),
        Value::Number(n) => format!("duplicate entry with key {n}"),
        Value::String(s) => format!("duplicate entry with key {s:?}"),
        _ => "duplicate entry in YAML map".into(),
    }
}

/// The event stream of one document and the anchors seen so far.
struct Reader<'a> {
    parser: Parser<'a>,
    anchors: AHashMap<Vec<u8>, Value>,
    /// Nodes copied by aliases so far: a few aliases must not expand into a huge tree
    /// ("billion laughs"), as serde_yaml refuses too.
    expanded: usize,
    /// The events of the item being read, when its list is hashed.
    tape: Tape,
}

/// The events of one item, recorded: `data` holds what they say (hashed), `marks` where each
/// one was (not hashed).
#[derive(Default)]
struct Tape {
    data: Vec<u8>,
    marks: Vec<Mark>,
    /// An anchor or an alias was seen: the item depends on (or defines) something outside it.
    linked: bool,
}

// The tape's event kinds. A scalar is followed by its style (1 plain, 0 other), anchor, tag
// and text; a sequence or mapping start by its anchor and tag; each string as a u32 length
// (little-endian; u32::MAX for none) and its bytes.
pub(crate) const T_SCALAR: u8 = 0;
pub(crate) const T_SEQ: u8 = 1;
pub(crate) const T_SEQ_END: u8 = 2;
pub(crate) const T_MAP: u8 = 3;
pub(crate) const T_MAP_END: u8 = 4;
pub(crate) const T_ALIAS: u8 = 5;

impl Tape {
    fn put(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.data.extend_from_slice(&(b.len() as u32).to_le_bytes());
                self.data.extend_from_slice(b);
            }
            None => self.data.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
}

/// Reads a tape back; `None` at its end (an item cut short by a syntax error).
pub(crate) struct TapeReader<'t> {
    data: &'t [u8],
    marks: &'t [Mark],
    pub(crate) pos: usize,
    ev: usize,
}

impl<'t> TapeReader<'t> {
    /// A reader of `data` without marks (every mark reads as position 0).
    pub(crate) fn new(data: &'t [u8]) -> TapeReader<'t> {
        TapeReader {
            data,
            marks: &[],
            pos: 0,
            ev: 0,
        }
    }
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    pub(crate) fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }
    pub(crate) fn bytes(&mut self) -> Option<Option<&'t [u8]>> {
        let len = u32::from_le_bytes(self.data.get(self.pos..self.pos + 4)?.try_into().ok()?);
        self.pos += 4;
        if len == u32::MAX {
            return Some(None);
        }
        let b = self.data.get(self.pos..self.pos + len as usize)?;
        self.pos += len as usize;
        Some(Some(b))
    }
    fn mark(&mut self) -> Mark {
        let m = self.marks.get(self.ev).copied().unwrap_or(Mark {
            line: 0,
            column: 0,
            index: 0,
        });
        self.ev += 1;
        m
    }
}

/// Whether a recorded item reads the same through [`crate::config::tape_de`] as through a
/// value: no anchor, alias or tag; every text UTF-8 and every plain scalar resolvable (so no
/// error is left that building the value would have given); every mapping key a string (as
/// scalars resolve), none twice in one mapping, at most [`PLAIN_MAX_KEYS`] keys.
pub(crate) fn is_plain(data: &[u8]) -> bool {
    let mut t = TapeReader::new(data);
    plain_node(&mut t, false).is_some() && t.peek().is_none()
}

/// Mappings with more keys than this are left to the value path (duplicates are looked for
/// pairwise).
const PLAIN_MAX_KEYS: usize = 32;

/// Reads one node of a plain item; its text when it is a scalar that reads as a string (a
/// mapping key must), None when the item is not plain.
fn plain_node<'t>(t: &mut TapeReader<'t>, key: bool) -> Option<Option<&'t str>> {
    match t.byte()? {
        T_SCALAR => {
            let style = t.byte()?;
            if t.bytes()?.is_some() || t.bytes()?.is_some() {
                return None;
            }
            let s = std::str::from_utf8(t.bytes()??).ok()?;
            if style != 1 {
                return Some(Some(s));
            }
            match resolve_plain(s).ok()? {
                Scalar::Str(s) => Some(Some(s)),
                _ if key => None,
                _ => Some(None),
            }
        }
        kind @ (T_SEQ | T_MAP) if !key => {
            if t.bytes()?.is_some() || t.bytes()?.is_some() {
                return None;
            }
            let mut keys: Vec<&str> = Vec::new();
            loop {
                match t.peek()? {
                    T_SEQ_END if kind == T_SEQ => break,
                    T_MAP_END if kind == T_MAP => break,
                    _ if kind == T_SEQ => {
                        plain_node(t, false)?;
                    }
                    _ => {
                        let k = plain_node(t, true)??;
                        if keys.len() == PLAIN_MAX_KEYS || keys.contains(&k) {
                            return None;
                        }
                        keys.push(k);
                        plain_node(t, false)?;
                    }
                }
            }
            t.byte();
            Some(None)
        }
        _ => None,
    }
}

/// Why a replay stopped.
enum Replay {
    Error(String),
    /// The tape ended before the item did.
    Cut,
}

impl From<String> for Replay {
    fn from(s: String) -> Replay {
        Replay::Error(s)
    }
}

/// How many nodes aliases may copy: ten per event read, plus a fixed allowance.
fn expansion_limit(events: usize) -> usize {
    events.saturating_mul(10).saturating_add(100_000)
}

/// The nodes of a value (scalars, sequences, mappings, keys included).
fn node_count(v: &Value) -> usize {
    match v {
        Value::Sequence(s) => 1 + s.iter().map(node_count).sum::<usize>(),
        Value::Mapping(m) => {
            1 + m
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
        Value::Tagged(t) => 1 + node_count(&t.value),
        _ => 1,
    }
}

impl Reader<'_> {
    /// Records the node that starts with `ev` (a list item) on the tape, to its end, without
    /// building it. Errors are the ones [`Reader::node`] gives for the same events, in the
    /// same order: a syntax error further on comes after what the events read so far say.
    fn record(&mut self, ev: Event) -> Result<(), String> {
        self.tape.data.clear();
        self.tape.marks.clear();
        self.tape.linked = false;
        let mut open = 0usize;
        let mut ev = ev;
        loop {
            let mark = ev.mark();
            let kind = ev.kind();
            let is_end = kind == unsafe_sys::YAML_SEQUENCE_END_EVENT
                || kind == unsafe_sys::YAML_MAPPING_END_EVENT;
            if !is_end && 2 + open > MAX_DEPTH {
                return Err(self.replay_first(format!("recursion limit exceeded at {mark}")));
            }
            self.tape.marks.push(mark);
            let t = &mut self.tape;
            match kind {
                unsafe_sys::YAML_ALIAS_EVENT => {
                    t.linked = true;
                    t.data.push(T_ALIAS);
                    t.put(Some(ev.alias()));
                }
                unsafe_sys::YAML_SCALAR_EVENT => {
                    let (anchor, tag) = ev.anchor_tag();
                    let (bytes, style) = ev.scalar();
                    t.linked |= anchor.is_some();
                    t.data.push(T_SCALAR);
                    t.data.push(u8::from(style == Style::Plain));
                    t.put(anchor);
                    t.put(tag);
                    t.put(Some(bytes));
                }
                unsafe_sys::YAML_SEQUENCE_START_EVENT | unsafe_sys::YAML_MAPPING_START_EVENT => {
                    let (anchor, tag) = ev.anchor_tag();
                    t.linked |= anchor.is_some();
                    t.data
                        .push(if kind == unsafe_sys::YAML_SEQUENCE_START_EVENT {
                            T_SEQ
                        } else {
                            T_MAP
                        });
                    t.put(anchor);
                    t.put(tag);
                    open += 1;
                }
                unsafe_sys::YAML_SEQUENCE_END_EVENT | unsafe_sys::YAML_MAPPING_END_EVENT => {
                    t.data.push(if kind == unsafe_sys::YAML_SEQUENCE_END_EVENT {
                        T_SEQ_END
                    } else {
                        T_MAP_END
                    });
                    open -= 1;
                }
                _ => {
                    return Err(self.replay_first(format!("unexpected YAML event at {mark}")));
                }
            }
            if open == 0 {
                return Ok(());
            }
            drop(ev);
            ev = match self.parser.next() {
                Ok(ev) => ev,
                Err(e) => return Err(self.replay_first(e)),
            };
        }
    }

    /// `err` stopped the recording: an error the events recorded before it give comes first.
    fn replay_first(&mut self, err: String) -> String {
        match self.replay() {
            Err(Replay::Error(e)) => e,
            _ => err,
        }
    }

    /// The recorded item as a value.
    fn replay(&mut self) -> Result<Value, Replay> {
        let tape = std::mem::take(&mut self.tape);
        let mut t = TapeReader {
            marks: &tape.marks,
            ..TapeReader::new(&tape.data)
        };
        let out = self.replay_node(&mut t, 2);
        self.tape = tape;
        out
    }

    /// [`Reader::node`] over recorded events.
    fn replay_node(&mut self, t: &mut TapeReader<'_>, depth: usize) -> Result<Value, Replay> {
        let kind = t.byte().ok_or(Replay::Cut)?;
        let mark = t.mark();
        if depth > MAX_DEPTH {
            return Err(format!("recursion limit exceeded at {mark}").into());
        }
        let value = match kind {
            T_ALIAS => {
                let name = t.bytes().flatten().ok_or(Replay::Cut)?;
                let v = self
                    .anchors
                    .get(name)
                    .ok_or_else(|| format!("unknown anchor at {mark}"))?;
                self.expanded = self.expanded.saturating_add(node_count(v));
                if self.expanded > expansion_limit(self.parser.events) {
                    return Err(format!(
                        "repetition limit exceeded at {mark}: aliases expand to too many nodes"
                    )
                    .into());
                }
                return Ok(v.clone());
            }
            T_SCALAR => {
                let style = if t.byte().ok_or(Replay::Cut)? == 1 {
                    Style::Plain
                } else {
                    Style::Other
                };
                let anchor = t.bytes().ok_or(Replay::Cut)?;
                let tag = t.bytes().ok_or(Replay::Cut)?;
                let bytes = t.bytes().flatten().ok_or(Replay::Cut)?;
                let v = scalar_value(bytes, tag, style, mark)?;
                if let Some(a) = anchor {
                    self.anchors.insert(a.to_vec(), v.clone());
                }
                return Ok(v);
            }
            T_SEQ | T_MAP => {
                let anchor = t.bytes().ok_or(Replay::Cut)?;
                let tag = t.bytes().ok_or(Replay::Cut)?;
                let value = if kind == T_SEQ {
                    let mut seq = Vec::new();
                    loop {
                        if t.peek().ok_or(Replay::Cut)? == T_SEQ_END {
                            t.byte();
                            t.mark();
                            break;
                        }
                        seq.push(self.replay_node(t, depth + 1)?);
                    }
                    Value::Sequence(seq)
                } else {
                    let mut map = Mapping::new();
                    loop {
                        if t.peek().ok_or(Replay::Cut)? == T_MAP_END {
                            t.byte();
                            t.mark();
                            break;
                        }
                        let key = self.replay_node(t, depth + 1)?;
                        if map.contains_key(&key) {
                            return Err(format!("{} at {mark}", duplicate_key(&key)).into());
                        }
                        let value = self.replay_node(t, depth + 1)?;
                        map.insert(key, value);
                    }
                    Value::Mapping(map)
                };
                let value = match local_tag(tag) {
                    Some(name) => Value::Tagged(Box::new(TaggedValue {
                        tag: Tag::new(name),
                        value,
                    })),
                    None => value,
                };
                if let Some(a) = anchor {
                    self.anchors.insert(a.to_vec(), value.clone());
                }
                value
            }
            _ => return Err(format!("unexpected YAML event at {mark}").into()),
        };
        Ok(value)
    }

    /// The node that starts with `ev`, read to its end.
    fn node(&mut self, ev: Event, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("recursion limit exceeded at {}", ev.mark()));
        }
        let mark = ev.mark();
        let (anchor, tag) = ev.anchor_tag();
        let anchor = anchor.map(<[u8]>::to_vec);
        let tagged = local_tag(tag).map(str::to_owned);
        let value = match ev.kind() {
            unsafe_sys::YAML_ALIAS_EVENT => {
                let v = self
                    .anchors
                    .get(ev.alias())
                    .ok_or_else(|| format!("unknown anchor at {mark}"))?;
                self.expanded = self.expanded.saturating_add(node_count(v));
                if self.expanded > expansion_limit(self.parser.events) {
                    return Err(format!(
                        "repetition limit exceeded at {mark}: aliases expand to too many nodes"
                    ));
                }
                return Ok(v.clone());
            }
            unsafe_sys::YAML_SCALAR_EVENT => {
                let (bytes, style) = ev.scalar();
                let v = scalar_value(bytes, tag, style, mark)?;
                if let Some(a) = anchor {
                    self.anchors.insert(a, v.clone());
                }
                return Ok(v);
            }
            unsafe_sys::YAML_SEQUENCE_START_EVENT => {
                drop(ev);
                let mut seq = Vec::new();
                loop {
                    let ev = self.parser.next()?;
                    if ev.kind() == unsafe_sys::YAML_SEQUENCE_END_EVENT {
                        break;
                    }
                    seq.push(self.node(ev, depth + 1)?);
                }
                Value::Sequence(seq)
            }
            unsafe_sys::YAML_MAPPING_START_EVENT => {
                drop(ev);
                let mut map = Mapping::new();
                loop {
                    let ev = self.parser.next()?;
                    if ev.kind() == unsafe_sys::YAML_MAPPING_END_EVENT {
                        break;
                    }
                    let key = self.node(ev, depth + 1)?;
                    if map.contains_key(&key) {
                        return Err(format!("{} at {mark}", duplicate_key(&key)));
                    }
                    let ev = self.parser.next()?;
                    let value = self.node(ev, depth + 1)?;
                    map.insert(key, value);
                }
                Value::Mapping(map)
            }
            _ => return Err(format!("unexpected YAML event at {mark}")),
        };
        let value = match tagged {
            Some(name) => Value::Tagged(Box::new(TaggedValue {
                tag: Tag::new(name),
                value,
            })),
            None => value,
        };
        if let Some(a) = anchor {
            self.anchors.insert(a, value.clone());
        }
        Ok(value)
    }
}

/// Reads `text`; every item of a top-level key named in `lists` whose value is a plain
/// sequence goes to `on_item(list, index, value)` as soon as it is read. Returns the rest of
/// the top-level mapping. An error (a syntax error) stops the reading; items already handed on
/// stay handed on.
#[cfg(test)]
pub(crate) fn read_resources(
    text: &str,
    lists: &[&str],
    mut on_item: impl FnMut(usize, usize, Value),
) -> Result<Rest, String> {
    read_input(
        Input::Text(text.as_bytes()),
        lists,
        None,
        |l, i, r: Read<'_>| {
            if let Read::Value(v, _) = r {
                on_item(l, i, v);
            }
        },
    )
    .0
}

/// [`read_resources`] from any [`Input`]; gives back a file source (its hasher) at the end.
/// The items of `hashing.list` are recorded and hashed before they are built (and not built
/// when the lookup knows their hash).
pub(crate) fn read_input(
    input: Input<'_>,
    lists: &[&str],
    hashing: Option<Hashing<'_>>,
    on_item: impl FnMut(usize, usize, Read<'_>),
) -> (Result<Rest, String>, Option<Box<Source>>) {
    let mut r = match Parser::new(input) {
        Ok(parser) => Reader {
            parser,
            anchors: AHashMap::new(),
            expanded: 0,
            tape: Tape::default(),
        },
        Err(e) => return (Err(e), None),
    };
    let rest = read_document(&mut r, lists, hashing, on_item);
    let source = r.parser.source.take();
    drop(r);
    (rest, source)
}

fn read_document(
    r: &mut Reader<'_>,
    lists: &[&str],
    mut hashing: Option<Hashing<'_>>,
    mut on_item: impl FnMut(usize, usize, Read<'_>),
) -> Result<Rest, String> {
    let mut ev = r.parser.next()?;
    if ev.kind() == unsafe_sys::YAML_STREAM_START_EVENT {
        ev = r.parser.next()?;
    }
    if ev.kind() == unsafe_sys::YAML_STREAM_END_EVENT {
        return Ok(Rest::Null);
    }
    if ev.kind() != unsafe_sys::YAML_DOCUMENT_START_EVENT {
        return Err(format!("expected a YAML document at {}", ev.mark()));
    }
    let root = r.parser.next()?;
    let (anchor, tag) = root.anchor_tag();
    let rest = if root.kind() == unsafe_sys::YAML_MAPPING_START_EVENT
        && anchor.is_none()
        && tag.is_none()
    {
        drop(root);
        let mut rest = Mapping::new();
        let mut seen: Vec<String> = Vec::new();
        loop {
            let ev = r.parser.next()?;
            if ev.kind() == unsafe_sys::YAML_MAPPING_END_EVENT {
                break;
            }
            let key_mark = ev.mark();
            let key = r.node(ev, 1)?;
            if let Value::String(k) = &key {
                if seen.contains(k) {
                    return Err(format!("{} at {key_mark}", duplicate_key(&key)));
                }
                seen.push(k.clone());
            }
            let ev = r.parser.next()?;
            let list = key
                .as_str()
                .and_then(|k| lists.iter().position(|l| *l == k));
            let (a, t) = ev.anchor_tag();
            match list {
                Some(l)
                    if ev.kind() == unsafe_sys::YAML_SEQUENCE_START_EVENT
                        && a.is_none()
                        && t.is_none() =>
                {
                    drop(ev);
                    let mut i = 0;
                    loop {
                        let ev = r.parser.next()?;
                        if ev.kind() == unsafe_sys::YAML_SEQUENCE_END_EVENT {
                            break;
                        }
                        match &mut hashing {
                            Some(h) if h.list == l => {
                                r.record(ev)?;
                                let hash = (!r.tape.linked).then(|| item_hash(&r.tape.data));
                                let known = match (hash, &mut h.lookup) {
                                    (Some(hash), Some(lookup)) => lookup(hash),
                                    _ => None,
                                };
                                match (known, hash) {
                                    (Some(n), _) => on_item(l, i, Read::Reused(n)),
                                    (None, Some(hash)) if h.tape && is_plain(&r.tape.data) => {
                                        on_item(l, i, Read::Tape(&r.tape.data, hash));
                                    }
                                    (None, _) => {
                                        let item = r.replay().map_err(|e| match e {
                                            Replay::Error(e) => e,
                                            Replay::Cut => "libyaml: an item ended early".into(),
                                        })?;
                                        on_item(l, i, Read::Value(item, hash));
                                    }
                                }
                            }
                            _ => {
                                let item = r.node(ev, 2)?;
                                on_item(l, i, Read::Value(item, None));
                            }
                        }
                        i += 1;
                    }
                }
                _ => {
                    if rest.contains_key(&key) {
                        return Err(format!("{} at {key_mark}", duplicate_key(&key)));
                    }
                    let value = r.node(ev, 1)?;
                    rest.insert(key, value);
                }
            }
        }
        Rest::Mapping(rest)
    } else {
        match r.node(root, 0)? {
            Value::Null => Rest::Null,
            Value::Mapping(m) => Rest::Mapping(m),
            _ => Rest::Other,
        }
    };
    let end = r.parser.next()?;
    if end.kind() != unsafe_sys::YAML_DOCUMENT_END_EVENT {
        return Err(format!(
            "expected the end of the document at {}",
            end.mark()
        ));
    }
    let next = r.parser.next()?;
    if next.kind() == unsafe_sys::YAML_DOCUMENT_START_EVENT {
        return Err(
            "deserializing from YAML containing more than one document is not supported".into(),
        );
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our reader and serde_yaml build the same value.
    fn same(text: &str) {
        let ours = match read_resources(text, &[], |_, _, _| {}).unwrap() {
            Rest::Mapping(m) => Value::Mapping(m),
            Rest::Null => Value::Null,
            Rest::Other => return,
        };
        let theirs: Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(ours, theirs, "{text}");
    }

    #[test]
    fn scalars_resolve_as_serde_yaml() {
        same(
            "a: 123\nb: \"123\"\nc: '12'\nd: ~\ne: null\nf: true\ng: False\nh: 1.5\ni: .inf\n\
             j: -.inf\nk: 0x1F\nl: 0o17\nm: -12\nn: 007\no: +5\np: 1e3\nq: inf\nr: nan\n\
             s: k0000001\nt: 127.0.0.1:80\nu: \"\"\nv:\nw: |\n  lit\nx: !!str 5\ny: !!int \"7\"\n\
             z: !custom 5\naa: !custom {a: 1}\nab: [1, \"2\", three]\nac: -0x10\nad: 1_000\n\
             ae: 2024-01-01\naf: 12:30\nag: .5\nah: -.5e2\nai: +.inf\naj: 0b101\n",
        );
        same("x-base: &b {k: 1, m: [1, 2]}\nroutes:\n  - <<: *b\n    id: r1\n  - *b\n");
        same("a: &x 5\nb: *x\n");
    }

    #[test]
    fn lists_stream_items() {
        let mut got = Vec::new();
        let rest = read_resources(
            "x-a: &a {uri: /a}\nroutes:\n  - {id: 1}\n  - <<: *a\nversion: 2\n",
            &["routes"],
            |l, i, v| got.push((l, i, v)),
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, 1);
        assert_eq!(
            got[1].2,
            serde_yaml::from_str::<Value>("{<<: {uri: /a}}").unwrap()
        );
        let Rest::Mapping(m) = rest else { panic!() };
        assert!(m.contains_key("version") && m.contains_key("x-a") && !m.contains_key("routes"));
    }

    /// Items of a hashed list: (value, hash) each, as read.
    fn hashed(text: &str) -> Vec<(Value, Option<ItemHash>)> {
        let mut got = Vec::new();
        let h = Hashing {
            list: 0,
            tape: false,
            lookup: None,
        };
        read_input(
            Input::Text(text.as_bytes()),
            &["consumers"],
            Some(h),
            |_, _, r| {
                if let Read::Value(v, hash) = r {
                    got.push((v, hash));
                }
            },
        )
        .0
        .unwrap();
        got
    }

    #[test]
    fn hashed_items_read_as_serde_yaml_and_hash_by_content() {
        let text = "x: &k {key: 1}\nconsumers:\n  - {username: a, n: 007, t: !!str 5, q: \"5\"}\n  - username: a\n    n: 007\n    t: !!str 5\n    q: '5'\n  - {username: a, n: 7, t: !!str 5, q: \"5\"}\n  - {username: b, plugins: *k}\n  - {username: c, <<: {d: [1, {e: ~}]}}\n";
        let got = hashed(text);
        let theirs: Value = serde_yaml::from_str(text).unwrap();
        let want = theirs["consumers"].as_sequence().unwrap();
        assert_eq!(got.len(), want.len());
        for ((v, _), w) in got.iter().zip(want) {
            assert_eq!(v, w);
        }
        // The same item in another style, indentation or place hashes the same: `"5"` and
        // `'5'` are both quoted, flow and block mappings give the same events.
        assert_eq!(got[0].1, got[1].1);
        assert!(got[0].1.is_some());
        // `007` and `7` read differently (a string and a number), so they hash differently.
        assert_ne!(got[0].1, got[2].1);
        // An alias: no hash (the item depends on an anchor outside it).
        assert_eq!(got[3].1, None);
        assert!(got[4].1.is_some());
        // Errors read as without hashing, in the same order.
        for bad in [
            "consumers:\n  - {a: 1, a: 2, b: [1\n",
            "consumers:\n  - {a: !!int x}\n",
            "consumers:\n  - {a: *nope}\n",
            "consumers:\n  - {a: [1, 2}\n",
        ] {
            let plain = read_resources(bad, &["consumers"], |_, _, _| {}).err();
            let mut r = Vec::new();
            let ours = read_input(
                Input::Text(bad.as_bytes()),
                &["consumers"],
                Some(Hashing {
                    list: 0,
                    tape: false,
                    lookup: None,
                }),
                |_, _, v| r.push(matches!(v, Read::Value(..))),
            )
            .0
            .err();
            assert!(plain.is_some(), "{bad}");
            assert_eq!(ours, plain, "{bad}");
        }
    }

    #[test]
    fn errors() {
        assert!(read_resources("a: [1, 2\n", &[], |_, _, _| {}).is_err());
        let e = read_resources("a: 1\na: 2\n", &[], |_, _, _| {})
            .err()
            .unwrap();
        assert!(e.starts_with("duplicate entry with key \"a\""), "{e}");
        let e = read_resources("a: *nope\n", &[], |_, _, _| {})
            .err()
            .unwrap();
        assert!(e.starts_with("unknown anchor"), "{e}");
        assert!(read_resources("a: 1\n---\nb: 2\n", &[], |_, _, _| {}).is_err());
        assert!(matches!(
            read_resources("", &[], |_, _, _| {}),
            Ok(Rest::Null)
        ));
        assert!(matches!(
            read_resources("[1]", &[], |_, _, _| {}),
            Ok(Rest::Other)
        ));
    }
}

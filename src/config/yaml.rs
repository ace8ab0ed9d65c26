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

/// A file read in chunks as libyaml asks for them, each chunk also fed to a hasher (every
/// byte of the file, whatever `raw` leaves out of what libyaml reads).
pub(crate) struct Source<'a> {
    pub file: std::fs::File,
    pub hasher: sha2::Sha256,
    pub error: Option<std::io::Error>,
    /// Recognises unchanged `consumers` items from their raw text (see [`RawFilter`]).
    pub raw: Option<RawFilter<'a>>,
}

/// The hash lookup of [`Hashing`]: `Some(n)` when the caller has what the item compiles to.
pub(crate) type Lookup<'r> = &'r mut (dyn FnMut(ItemHash) -> Option<u32> + Send);

/// Recognises unchanged items of the top-level `consumers` list from their raw text, before
/// libyaml reads them, and leaves them out of what libyaml reads: a reload of a million
/// unchanged consumers then does not scan them again.
///
/// The file is cut into lines (`\n`). After a line that is exactly `consumers:`, each line
/// that starts with D spaces and `- ` starts an item (D is the first such line's), and the
/// lines after it indented more than D (or blank) continue it. An item is *simple* when its
/// bytes are printable ASCII among ``A-Z a-z 0-9 space _ . : / , { } [ ] = + ~ ^ ( ) - $ ;``
/// (no quote, comment, anchor, alias, tag, block scalar, tab, CR or non-ASCII byte) and its
/// brackets, counted as if each were a flow indicator, never go below zero and end at zero.
/// Then libyaml reads the item as exactly those lines: it ends in block context (the count
/// never falls below libyaml's flow level, so it ends at zero only when that does), and a
/// line indented D or less ends an item in block context. Each simple item is hashed
/// (its bytes, with keys of its own) and looked up; a known one is left out of libyaml's
/// input and comes to the reader as [`Read::Reused`] in its place.
///
/// Nothing is left out until the reader confirms the guess: libyaml's top-level `consumers`
/// block sequence starts at the line and column of the first item found here (lines are
/// counted alike: nothing before it holds a CR or a non-ASCII byte). So the first item always
/// reaches libyaml, and no item is left out of a list libyaml does not read as this one.
/// From the first item that is not simple (or the first line that ends the list) to the end
/// of the file every byte goes to libyaml as read. An item read by libyaml carries its raw
/// hash when it has one ([`RawFilter::take_hash`]), so that the next load can recognise it.
/// A load that leaves anything out and finds any error is run again in full by its caller.
///
/// With [`RawFilter::fast`], a simple item that is not known and has the simplest form (one
/// line of flow mappings and plain scalars, [`fast_item_tape`]) is recorded here, as libyaml's
/// events would record it, and left out of libyaml's input too: a first load of a million
/// such consumers does not scan them with libyaml (libyaml then counts fewer lines: hence the
/// run again in full on an error).
pub(crate) struct RawFilter<'a> {
    lookup: Option<Lookup<'a>>,
    state: RawState,
    /// Lines ended so far (`\n`), as libyaml counts them while `clean`.
    line: u64,
    /// Where the first item starts: (line, indentation D).
    first: Option<(u64, usize)>,
    confirmed: bool,
    item: Vec<u8>,
    simple: bool,
    depth: i64,
    /// Items handed to libyaml so far.
    passed: u32,
    /// What the reader must know, by the number of items passed before it: an item left out
    /// (the old item it reads as), or the raw hash of an item passed.
    queue: std::collections::VecDeque<(u32, RawItem)>,
    /// Bytes read and not yet cut into lines; bytes cut, ready for libyaml.
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    eof: bool,
    /// Items left out.
    pub skipped: usize,
    /// Bytes read from the file at a time (small in tests: libyaml then confirms the list
    /// before the filter has cut the rest).
    pub chunk: usize,
    /// Whether the simplest items are recorded here rather than by libyaml
    /// ([`fast_item_tape`]); only for a list whose plain items are handed on as their tape.
    pub fast: bool,
    /// Items recorded here (left out of libyaml's input).
    pub parsed: usize,
    /// The buffer the file is read into.
    read_buf: Vec<u8>,
    /// Items left out since the last one passed to libyaml.
    left_run: u32,
}

/// At most this many items in a row are left out of libyaml's input (see
/// [`RawFilter::end_item`]).
const LEFT_RUN: u32 = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RawState {
    /// Before `consumers:`.
    Prefix,
    /// The line after `consumers:`.
    Head,
    Items,
    /// Everything goes to libyaml as read.
    Off,
}

#[derive(Debug)]
pub(crate) enum RawItem {
    /// Left out: reads as old item `n`.
    Skip(u32),
    /// Left out: recorded by the filter itself (its tape, its raw hash).
    Parsed(Vec<u8>, ItemHash),
    /// Passed to libyaml, with its raw hash.
    Hash(ItemHash),
    /// Passed to libyaml before the list was confirmed, and known: reads as old item `n`.
    Known(u32),
}

/// The bytes a simple item may hold (besides its line ends).
const RAW_OK: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b' ' | b'_'
                    | b'.'
                    | b':'
                    | b'/'
                    | b','
                    | b'{'
                    | b'}'
                    | b'['
                    | b']'
                    | b'='
                    | b'+'
                    | b'~'
                    | b'^'
                    | b'('
                    | b')'
                    | b'-'
                    | b'$'
                    | b';'
            );
        b += 1;
    }
    t
};

/// A 128-bit hash of an item's raw bytes, keyed apart from [`item_hash`]'s.
fn raw_hash(data: &[u8]) -> ItemHash {
    static KEYS: std::sync::LazyLock<(ahash::RandomState, ahash::RandomState)> =
        std::sync::LazyLock::new(|| (ahash::RandomState::new(), ahash::RandomState::new()));
    let h = [KEYS.0.hash_one(data), KEYS.1.hash_one(data)];
    if h == NO_HASH { [0, 1] } else { h }
}

impl<'a> RawFilter<'a> {
    /// A filter that looks items up with `lookup` (None: it only hashes them).
    pub(crate) fn new(lookup: Option<Lookup<'a>>) -> RawFilter<'a> {
        RawFilter {
            lookup,
            state: RawState::Prefix,
            line: 0,
            first: None,
            confirmed: false,
            item: Vec::new(),
            simple: true,
            depth: 0,
            passed: 0,
            queue: std::collections::VecDeque::new(),
            input: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            eof: false,
            skipped: 0,
            chunk: 64 << 10,
            fast: false,
            parsed: 0,
            read_buf: Vec::new(),
            left_run: 0,
        }
    }

    /// Takes `chunk` (the next bytes of the file; empty at its end).
    fn feed(&mut self, chunk: &[u8]) {
        if self.state == RawState::Off && self.input.is_empty() {
            self.output.extend_from_slice(chunk);
        } else {
            self.input.extend_from_slice(chunk);
            let input = std::mem::take(&mut self.input);
            let mut at = 0;
            while let Some(n) = memchr::memchr(b'\n', &input[at..]) {
                self.line_in(&input[at..at + n + 1]);
                at += n + 1;
            }
            self.input = input;
            self.input.drain(..at);
        }
        if chunk.is_empty() {
            self.eof = true;
            let rest = std::mem::take(&mut self.input);
            if !rest.is_empty() {
                self.line_in(&rest);
            }
            self.off();
        }
    }

    /// One line (with its `\n`, but the last line of a file may have none).
    fn line_in(&mut self, l: &[u8]) {
        match self.state {
            RawState::Off => self.output.extend_from_slice(l),
            RawState::Prefix => {
                self.output.extend_from_slice(l);
                if l.iter().any(|&b| b == b'\r' || b >= 0x80) {
                    self.off();
                } else if l == b"consumers:\n" {
                    self.state = RawState::Head;
                }
            }
            RawState::Head => match item_start(l) {
                Some(d) => {
                    self.first = Some((self.line, d));
                    self.state = RawState::Items;
                    self.start_item(l);
                }
                None => {
                    self.output.extend_from_slice(l);
                    self.off();
                }
            },
            RawState::Items => {
                let d = self.first.map_or(0, |f| f.1);
                let indent = l.iter().take_while(|&&b| b == b' ').count();
                let rest = &l[indent..];
                if rest.is_empty() || rest == b"\n" || indent > d {
                    self.item.extend_from_slice(l);
                    self.lex(l);
                } else if item_start(l) == Some(d) {
                    self.end_item();
                    if self.state == RawState::Items {
                        self.start_item(l);
                    } else {
                        self.output.extend_from_slice(l);
                    }
                } else {
                    self.end_item();
                    self.output.extend_from_slice(l);
                    self.off();
                }
            }
        }
        if l.last() == Some(&b'\n') {
            self.line += 1;
        }
    }

    fn start_item(&mut self, l: &[u8]) {
        self.item.clear();
        self.item.extend_from_slice(l);
        self.simple = true;
        self.depth = 0;
        self.lex(l);
    }

    fn lex(&mut self, l: &[u8]) {
        let l = l.strip_suffix(b"\n").unwrap_or(l);
        for &b in l {
            if !RAW_OK[b as usize] {
                self.simple = false;
                return;
            }
            match b {
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth < 0 {
                        self.simple = false;
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// The item read so far is whole: left out, or passed on (with its hash when simple).
    fn end_item(&mut self) {
        if !(self.simple && self.depth == 0) {
            // Not sure where libyaml ends it: from here on, everything as read.
            self.output.extend_from_slice(&self.item);
            self.item.clear();
            self.off();
            return;
        }
        let h = raw_hash(&self.item);
        let known = match (&mut self.lookup, self.confirmed) {
            (Some(lookup), true) => lookup(h),
            _ => None,
        };
        // The reader hands left-out items on between the items libyaml reads; while none goes
        // to libyaml, libyaml asks for more input and this filter reads on, so a list left out
        // whole would be cut (and held here) to its end before the reader got any of it. One
        // item in LEFT_RUN goes to libyaml, which keeps both the queue and the delay short.
        let room = self.left_run < LEFT_RUN;
        let fast = || {
            let tape = fast_item_tape(&self.item)?;
            is_plain(&tape).then_some(tape)
        };
        let parsed = match known {
            None if room && self.fast && self.confirmed => fast(),
            _ => None,
        };
        match (known, parsed) {
            (Some(n), _) if room => {
                self.queue.push_back((self.passed, RawItem::Skip(n)));
                self.skipped += 1;
                self.left_run += 1;
            }
            (None, Some(tape)) => {
                self.queue
                    .push_back((self.passed, RawItem::Parsed(tape, h)));
                self.parsed += 1;
                self.left_run += 1;
            }
            _ => {
                let item = match known {
                    Some(n) => RawItem::Known(n),
                    None => RawItem::Hash(h),
                };
                self.queue.push_back((self.passed, item));
                self.output.extend_from_slice(&self.item);
                self.passed += 1;
                self.left_run = 0;
            }
        }
        self.item.clear();
        // libyaml reads a few kilobytes ahead: a list it has not confirmed by now is not the
        // one it streams.
        if !self.confirmed && self.queue.len() > 4096 {
            self.disown();
        }
    }

    /// Everything from here on goes to libyaml as read (an item being read included).
    fn off(&mut self) {
        if self.state == RawState::Items && !self.item.is_empty() {
            self.output.extend_from_slice(&self.item);
            self.item.clear();
        }
        self.state = RawState::Off;
    }

    /// The reader found libyaml's top-level `consumers` block sequence starting at `line`,
    /// `column`: items may be left out from now on if that is where this filter's list starts;
    /// if not, it stops and what it queued is dropped.
    fn confirm(&mut self, line: u64, column: u64) {
        if self.first == Some((line, column as usize)) && !self.confirmed {
            self.confirmed = true;
            // The items libyaml already has are looked up now, in their order.
            if let Some(lookup) = &mut self.lookup {
                for (_, item) in &mut self.queue {
                    if let RawItem::Hash(h) = *item
                        && let Some(n) = lookup(h)
                    {
                        *item = RawItem::Known(n);
                    }
                }
            }
        } else {
            self.disown();
        }
    }

    /// Stops for good: nothing more is left out, and the reader is told nothing more.
    fn disown(&mut self) {
        self.off();
        self.confirmed = false;
        self.first = None;
        self.queue.clear();
    }

    /// Before item `j` of the confirmed list: the next item left out in front of it, if any.
    fn take_skip(&mut self, j: u32) -> Option<LeftOut> {
        if !self.confirmed {
            return None;
        }
        match self.queue.front() {
            Some((at, RawItem::Skip(_) | RawItem::Parsed(..))) if *at == j => {
                match self.queue.pop_front()?.1 {
                    RawItem::Skip(n) => Some(LeftOut::Reused(n)),
                    RawItem::Parsed(tape, h) => Some(LeftOut::Parsed(tape, h)),
                    RawItem::Hash(_) | RawItem::Known(_) => None,
                }
            }
            _ => None,
        }
    }

    /// Item `j` of the confirmed list: its raw hash or the old item it reads as, if known.
    fn take_hash(&mut self, j: u32) -> Option<RawItem> {
        if !self.confirmed {
            return None;
        }
        while let Some(&(at, _)) = self.queue.front()
            && at < j
        {
            self.queue.pop_front();
        }
        match self.queue.front() {
            Some((at, RawItem::Hash(_) | RawItem::Known(_))) if *at == j => {
                self.queue.pop_front().map(|(_, item)| item)
            }
            _ => None,
        }
    }
}

/// An item the raw filter left out of libyaml's input.
enum LeftOut {
    /// It reads as old item `n`.
    Reused(u32),
    /// Its tape, recorded by the filter, and its raw hash.
    Parsed(Vec<u8>, ItemHash),
}

/// The bytes of a scalar of [`fast_item_tape`]: those of [`RAW_OK`] but the space and the
/// indicators among them (`:` `,` `{` `}` `[` `]`).
const FAST_SCALAR: [bool; 256] = {
    let mut t = RAW_OK;
    let mut k = 0;
    let not = b" :,{}[]";
    while k < not.len() {
        t[not[k] as usize] = false;
        k += 1;
    }
    t
};

/// The tape libyaml's events give for an item of the simplest form, recorded without
/// libyaml: one line, `- {key: value, key: {key: value}}` (spaces where the form has one, or
/// more), flow mappings nested at most 8 deep, each key and value a plain scalar of at most
/// 1,000 [`FAST_SCALAR`] bytes that does not start with `-`, each key followed by `: `, no
/// empty or trailing entry. None for anything else, which libyaml reads. `item` is a simple
/// item as [`RawFilter`] cut it (its indentation, `- `, its line end).
fn fast_item_tape(item: &[u8]) -> Option<Vec<u8>> {
    let line = item.strip_suffix(b"\n")?;
    if memchr::memchr(b'\n', line).is_some() {
        return None;
    }
    let indent = line.iter().take_while(|&&b| b == b' ').count();
    let rest = line[indent..].strip_prefix(b"- ")?;
    let mut p = FastItem {
        s: rest,
        at: 0,
        tape: Vec::with_capacity(2 * rest.len() + 32),
    };
    p.spaces();
    p.map(0)?;
    p.spaces();
    (p.at == p.s.len()).then_some(p.tape)
}

/// The reading of [`fast_item_tape`].
struct FastItem<'s> {
    s: &'s [u8],
    at: usize,
    tape: Vec<u8>,
}

impl FastItem<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn none(&mut self) {
        self.tape.extend_from_slice(&u32::MAX.to_le_bytes());
    }

    /// A flow mapping (at `{`), `depth` mappings deep.
    fn map(&mut self, depth: usize) -> Option<()> {
        if depth >= 8 || self.peek() != Some(b'{') {
            return None;
        }
        self.at += 1;
        self.tape.push(T_MAP);
        self.none();
        self.none();
        self.spaces();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.tape.push(T_MAP_END);
            return Some(());
        }
        loop {
            self.scalar()?;
            if self.s.get(self.at..self.at + 2) != Some(b": ") {
                return None;
            }
            self.at += 2;
            self.spaces();
            if self.peek() == Some(b'{') {
                self.map(depth + 1)?;
            } else {
                self.scalar()?;
            }
            self.spaces();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.spaces();
                }
                b'}' => {
                    self.at += 1;
                    self.tape.push(T_MAP_END);
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A plain scalar.
    fn scalar(&mut self) -> Option<()> {
        let start = self.at;
        while self.peek().is_some_and(|b| FAST_SCALAR[b as usize]) {
            self.at += 1;
        }
        let text = &self.s[start..self.at];
        if text.is_empty() || text.len() > 1000 || text[0] == b'-' {
            return None;
        }
        self.tape.push(T_SCALAR);
        self.tape.push(1);
        self.none();
        self.none();
        self.tape
            .extend_from_slice(&(text.len() as u32).to_le_bytes());
        self.tape.extend_from_slice(text);
        Some(())
    }
}

/// The indentation of `l` when it starts an item (spaces, then `- `).
fn item_start(l: &[u8]) -> Option<usize> {
    let d = l.iter().take_while(|&&b| b == b' ').count();
    (l[d..].starts_with(b"- ") && d <= 64).then_some(d)
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
            &mut *data.cast::<Source<'_>>(),
            std::slice::from_raw_parts_mut(buffer, size as usize),
        )
    };
    if let Some(raw) = &mut src.raw {
        loop {
            let ready = raw.output.len() - raw.out_pos;
            if ready > 0 || raw.eof {
                let n = ready.min(buf.len());
                buf[..n].copy_from_slice(&raw.output[raw.out_pos..raw.out_pos + n]);
                raw.out_pos += n;
                if raw.out_pos == raw.output.len() {
                    raw.output.clear();
                    raw.out_pos = 0;
                }
                // SAFETY: per this function's contract.
                unsafe { *size_read = n as u64 };
                return 1;
            }
            let mut chunk = std::mem::take(&mut raw.read_buf);
            chunk.resize(raw.chunk.max(1), 0);
            let read = src.file.read(&mut chunk);
            if let Ok(n) = read {
                src.hasher.update(&chunk[..n]);
                raw.feed(&chunk[..n]);
            }
            raw.read_buf = chunk;
            match read {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    src.error = Some(e);
                    return 0;
                }
            }
        }
    }
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
    File(Box<Source<'a>>),
}

/// The libyaml parser over one input.
struct Parser<'a> {
    sys: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    /// Kept (at a fixed address, boxed) for as long as the parser reads from it.
    source: Option<Box<Source<'a>>>,
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
                    let data: *mut Source<'a> = &mut *src;
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

impl Reader<'_> {
    /// Before item `j` of the hashed list: an item the raw filter left out there, if any.
    fn raw_skip(&mut self, j: u32) -> Option<LeftOut> {
        self.parser.source.as_mut()?.raw.as_mut()?.take_skip(j)
    }

    /// The lookup the raw filter holds (a file's), for an item's event hash.
    fn raw_lookup(&mut self, h: ItemHash) -> Option<u32> {
        self.parser.source.as_mut()?.raw.as_mut()?.lookup.as_mut()?(h)
    }

    /// Item `j` of the hashed list: its raw hash (or what it reads as), if the raw filter
    /// gave it one.
    fn raw_hash(&mut self, j: u32) -> Option<RawItem> {
        self.parser.source.as_mut()?.raw.as_mut()?.take_hash(j)
    }
}

/// Reads `text`; every item of a top-level key named in `lists` whose value is a plain
/// sequence goes to `on_item(list, index, value)` as soon as it is read. Returns the rest of
/// the top-level mapping. An error (a syntax error) stops the reading; items already handed on
/// stay handed on.
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

/// [`read_resources`] from any [`Input`]; gives back a file source's hasher at the end, with
/// the number of items its raw filter recorded itself ([`RawFilter::fast`]).
/// The items of `hashing.list` are recorded and hashed before they are built (and not built
/// when the lookup knows their hash).
pub(crate) fn read_input(
    input: Input<'_>,
    lists: &[&str],
    hashing: Option<Hashing<'_>>,
    on_item: impl FnMut(usize, usize, Read<'_>),
) -> (Result<Rest, String>, Option<(sha2::Sha256, usize)>) {
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
    let end = source.map(|s| (s.hasher, s.raw.as_ref().map_or(0, |raw| raw.parsed)));
    (rest, end)
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
                    let hashed = hashing.as_ref().is_some_and(|h| h.list == l);
                    if let Some(raw) = r.parser.source.as_mut().and_then(|s| s.raw.as_mut()) {
                        // SAFETY: the union member read matches the event type.
                        let block = unsafe { ev.0.data.sequence_start.style }
                            == unsafe_sys::YAML_BLOCK_SEQUENCE_STYLE;
                        let m = ev.mark();
                        if hashed && block {
                            raw.confirm(m.line, m.column);
                        } else if hashed {
                            raw.disown();
                        }
                    }
                    drop(ev);
                    let mut i = 0;
                    // Items libyaml read (the raw filter left the others out).
                    let mut j = 0u32;
                    loop {
                        let ev = r.parser.next()?;
                        if hashed {
                            while let Some(left) = r.raw_skip(j) {
                                match left {
                                    LeftOut::Reused(n) => on_item(l, i, Read::Reused(n)),
                                    LeftOut::Parsed(tape, hash) => {
                                        on_item(l, i, Read::Tape(&tape, hash));
                                    }
                                }
                                i += 1;
                            }
                        }
                        if ev.kind() == unsafe_sys::YAML_SEQUENCE_END_EVENT {
                            break;
                        }
                        match &mut hashing {
                            Some(h) if h.list == l => {
                                let raw = r.raw_hash(j);
                                j += 1;
                                r.record(ev)?;
                                let (hash, known) = match raw {
                                    Some(RawItem::Known(n)) => (None, Some(n)),
                                    // Looked up by the filter already.
                                    Some(RawItem::Hash(h)) => (Some(h), None),
                                    _ => {
                                        let hash =
                                            (!r.tape.linked).then(|| item_hash(&r.tape.data));
                                        let known = match (hash, &mut h.lookup) {
                                            (Some(hash), Some(lookup)) => lookup(hash),
                                            (Some(hash), None) => r.raw_lookup(hash),
                                            _ => None,
                                        };
                                        (hash, known)
                                    }
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

/// What the raw filter must never change, checked on any two texts (tests and the `rawtext`
/// fuzz target): `old` is read from a file with the filter, recording each item's value and
/// hash; then `new` is read from a file with the filter and a lookup that knows those hashes,
/// the filter recording the simplest items itself ([`RawFilter::fast`]). When that reading
/// succeeds, reading `new` plainly (no filter, no hashing) must succeed too and give the same
/// items (an item left out or known counts as the old item's value; an item the filter
/// recorded must have the tape libyaml records for it) and the same rest of the document. A filtered reading that fails is allowed (the load is then
/// run again in full). Returns how many items of `new` were recognised.
pub(crate) fn raw_filter_differential(
    old: &[u8],
    new: &[u8],
    chunk: usize,
) -> Result<usize, String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "tollgate-raw-{}-{}.yaml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    type Items = Vec<(
        Option<Value>,
        Option<ItemHash>,
        Option<u32>,
        Option<Vec<u8>>,
    )>;
    let read = |text: &[u8], lookup: Option<Lookup<'_>>, fast: bool| {
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let mut raw = RawFilter {
            chunk,
            ..RawFilter::new(lookup)
        };
        raw.fast = fast;
        let src = Source {
            file,
            hasher: sha2::Sha256::default(),
            error: None,
            raw: Some(raw),
        };
        let mut items: Items = Vec::new();
        let hashing = Hashing {
            list: 0,
            tape: fast,
            lookup: None,
        };
        let rest = read_input(
            Input::File(Box::new(src)),
            &["consumers"],
            Some(hashing),
            |_, i, r| {
                assert_eq!(i, items.len(), "items out of order");
                items.push(match r {
                    Read::Value(v, h) => (Some(v), h, None, None),
                    Read::Reused(n) => (None, None, Some(n), None),
                    Read::Tape(t, h) => (None, Some(h), None, Some(t.to_vec())),
                });
            },
        )
        .0;
        let _ = std::fs::remove_file(&path);
        Ok::<_, String>((rest, items))
    };
    let (old_rest, old_items) = read(old, None, false)?;
    let mut known: AHashMap<ItemHash, u32> = AHashMap::new();
    if old_rest.is_ok() {
        for (k, (_, h, _, _)) in old_items.iter().enumerate() {
            if let Some(h) = h {
                known.entry(*h).or_insert(k as u32);
            }
        }
    }
    let mut find = |h: ItemHash| known.get(&h).copied();
    let (rest, items) = read(new, Some(&mut find), true)?;
    // The same text with nothing known: the filter records every simple item it can.
    let (rest_fast, items_fast) = read(new, None, true)?;
    if rest.is_err() && rest_fast.is_err() {
        return Ok(0);
    }
    let mut want: Vec<Value> = Vec::new();
    let new_text =
        std::str::from_utf8(new).map_err(|_| "filtered reading of non-UTF-8 text succeeded")?;
    let plain = read_resources(new_text, &["consumers"], |_, _, v| want.push(v))
        .map_err(|e| format!("the filtered reading succeeded, the plain one failed: {e}"))?;
    // The tapes libyaml records for the items (None for an item that is not plain).
    let mut want_tapes: Vec<Option<Vec<u8>>> = Vec::new();
    let hashing = Hashing {
        list: 0,
        tape: true,
        lookup: None,
    };
    read_input(
        Input::Text(new),
        &["consumers"],
        Some(hashing),
        |_, _, r| {
            want_tapes.push(match r {
                Read::Tape(t, _) => Some(t.to_vec()),
                _ => None,
            });
        },
    )
    .0
    .map_err(|e| format!("the plain reading with tapes failed: {e}"))?;
    let compare = |rest: &Rest, items: Items| -> Result<usize, String> {
        let same_rest = match (rest, &plain) {
            (Rest::Null, Rest::Null) | (Rest::Other, Rest::Other) => true,
            (Rest::Mapping(a), Rest::Mapping(b)) => a == b,
            _ => false,
        };
        if !same_rest {
            return Err("the rest of the document differs".into());
        }
        if items.len() != want.len() {
            return Err(format!(
                "{} items filtered, {} plain",
                items.len(),
                want.len()
            ));
        }
        let mut recognised = 0;
        for (k, ((v, _, n, tape), w)) in items.into_iter().zip(&want).enumerate() {
            if let Some(tape) = tape {
                if want_tapes.get(k) != Some(&Some(tape)) {
                    return Err(format!(
                        "item {k}: recorded otherwise than libyaml records it ({w:?})"
                    ));
                }
                continue;
            }
            let got = match (v, n) {
                (Some(v), _) => v,
                (None, Some(n)) => {
                    recognised += 1;
                    old_items
                        .get(n as usize)
                        .and_then(|o| o.0.clone())
                        .ok_or("an unknown old item")?
                }
                _ => return Err("an item without value".into()),
            };
            if &got != w {
                return Err(format!(
                    "item {k}: {got:?} where a plain reading gives {w:?}"
                ));
            }
        }
        Ok(recognised)
    };
    if let Ok(r) = &rest_fast {
        compare(r, items_fast)?;
    }
    match &rest {
        Ok(r) => compare(r, items),
        Err(_) => Ok(0),
    }
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

    const BASE: &str = "routes: []\nconsumers:\n  - {username: a, plugins: {key-auth: {key: ka}}}\n  - username: b\n    plugins:\n      key-auth:\n        key: kb\n  - {username: c, plugins: {key-auth: {key: kc}}}\n#END\n";

    /// [`raw_filter_differential`] with the file read in several chunk sizes; the count of
    /// the whole-file reading.
    fn diff(old: &str, new: &str) -> usize {
        let mut n = 0;
        for chunk in [64 << 10, 1, 7, 100] {
            n = raw_filter_differential(old.as_bytes(), new.as_bytes(), chunk)
                .unwrap_or_else(|e| panic!("chunk {chunk}: {e}\nold:\n{old}\nnew:\n{new}"));
        }
        n
    }

    #[test]
    fn raw_filter_recognises_unchanged_items_in_any_order() {
        assert_eq!(diff(BASE, BASE), 3);
        let swapped = BASE
            .replace("  - {username: c, plugins: {key-auth: {key: kc}}}\n", "")
            .replace(
                "consumers:\n",
                "consumers:\n  - {username: c, plugins: {key-auth: {key: kc}}}\n",
            );
        assert_eq!(diff(BASE, &swapped), 3);
        // A changed item is read again; the others are recognised.
        assert_eq!(diff(BASE, &BASE.replace("key: kb", "key: kB")), 2);
        // Removed and added items.
        let fewer = BASE.replace(
            "  - {username: c, plugins: {key-auth: {key: kc}}}\n",
            "  - {username: d}\n",
        );
        assert_eq!(diff(BASE, &fewer), 2);
        // Other indentation reads the same but is other text: read again, still right.
        let deeper = "routes: []\nconsumers:\n    - {username: a, plugins: {key-auth: {key: ka}}}\n    - {username: c, plugins: {key-auth: {key: kc}}}\n";
        assert_eq!(diff(BASE, deeper), 0);
        // An indentless list (the items at the key's own indentation).
        let flat = BASE.replace("\n  ", "\n");
        assert_eq!(diff(&flat, &flat), 3);
    }

    #[test]
    fn raw_filter_never_changes_what_hostile_text_reads_as() {
        let a = "  - {username: a, plugins: {key-auth: {key: ka}}}\n";
        let hostile = [
            // The list's text inside a quoted scalar, a block scalar, a flow collection.
            format!("x: \"start\nconsumers:\n{a}  end\"\nconsumers:\n  - {{username: z}}\n"),
            format!("x: 'start\nconsumers:\n{a}'\nconsumers:\n  - {{username: z}}\n"),
            format!("notes: |\n  consumers:\n  {a}consumers:\n  - {{username: z}}\n{a}"),
            format!("{{x: 1,\nconsumers:\n{a}}}\n"),
            format!("consumers: [\n{a}]\n"),
            format!("consumers:\n  - {{username: q, x: [\n{a}  ]}}\n{a}"),
            format!("consumers:\n  - {{username: q, x: \"\n{a}  \"}}\n{a}"),
            format!("consumers:\n  - {{username: q, x: '\n{a}  '}}\n{a}"),
            format!("consumers:\n{a}  - username: q\n    x: \"abc\n{a}  \"\n{a}"),
            format!("consumers:\n{a}  - username: q\n    x: 'abc\n{a}  '\n{a}"),
            format!("consumers:\n{a}  - username: q\n    x: 'abc\n{a}'\n{a}"),
            format!("consumers:\n{a}  - username: q # x: 'abc\n{a}{a}"),
            format!("consumers:\n  - username: q\n    x: |\n{a}{a}"),
            format!("consumers:\n  - {{username: q}} # {{\n{a}{a}"),
            format!("consumers:\n  - {{username: q, k: a#b}}\n{a}  # c\n{a}"),
            // Anchors, aliases, tags, merge keys.
            format!(
                "x: &k {{key: ka}}\nconsumers:\n{a}  - {{username: b, plugins: {{key-auth: *k}}}}\n{a}"
            ),
            format!(
                "consumers:\n  - &n {{username: a, plugins: {{key-auth: {{key: ka}}}}}}\n  - *n\n{a}"
            ),
            format!("consumers:\n{a}  - !t {{username: b}}\n{a}  - {{<<: {{username: m}}}}\n"),
            // Line ends, tabs, a byte order mark, document markers, comments.
            BASE.replace('\n', "\r\n"),
            format!("\u{feff}{BASE}"),
            format!("consumers:\n{a}\t- {{username: t}}\n{a}"),
            format!("---\nconsumers:\n{a}{a}...\n"),
            format!("consumers:\n{a}# between\n{a}"),
            format!("consumers:\n{a}\n\n{a}routes: []\n"),
            format!("consumers:\n{a}  -\n    {{username: e}}\n{a}"),
            format!("consumers:\n{a}consumers:\n{a}"),
            format!("consumers:\n{a}   - {{username: off}}\n{a}"),
            format!("consumers:\n{a} - {{username: off}}\n{a}"),
            format!("consumers:\n{a}  - {{username: a}}]\n{a}"),
            format!("consumers:\n{a}  - {{username: a}}}}{{\n    k: 1}}\n{a}"),
            format!("consumers:\n{a}  - u: x}}\n    y: {{z: 1\n{a}"),
            format!("consumers:\n{a}  - a\n  b\n{a}"),
            format!("consumers:\n{a}  - a\n    b\n{a}"),
            format!("consumers:\n{a}  - k: é\n{a}"),
            format!("consumers:\n{a}  - k: \u{2028}x\n{a}"),
            format!("consumers:\n{a}  - k: a\u{85}  - {{username: a}}\n{a}"),
            format!("consumers:\n{a}"),
            "consumers:\n".to_string(),
            format!("consumers:\n{}", a.trim_end()),
        ];
        for new in &hostile {
            for old in [BASE.to_string(), new.clone()] {
                diff(&old, new);
            }
        }
        // What the hostile texts are read as, recognised in a plain file next.
        for old in &hostile {
            diff(old, BASE);
        }
    }

    /// Texts put together from a pool of lines (items, continuations, and everything the
    /// filter must not be fooled by), edited, and read through the filter with random chunk
    /// sizes: every filtered reading that succeeds must read as the plain one.
    #[test]
    fn raw_filter_random_texts_read_as_plain() {
        const LINES: &[&str] = &[
            "consumers:\n",
            "routes: []\n",
            "  - {username: a, plugins: {key-auth: {key: ka}}}\n",
            "  - {username: b}\n",
            "  - username: c\n",
            "    plugins: {key-auth: {key: kc}}\n",
            "    x: [1,\n",
            "      2]\n",
            "  - {username: d, x: [\n",
            "  ]}\n",
            "- {username: e}\n",
            "  - x: \"q\n",
            "  - x: 'q\n",
            "    \"\n",
            "  '\n",
            "  # note\n",
            "# top\n",
            "x: |\n",
            "  - {username: a, plugins: {key-auth: {key: ka}}}\n",
            "\n",
            "   - {username: f}\n",
            "\t- {username: g}\n",
            "  - {username: h}\r\n",
            "  - &a {username: i}\n",
            "  - *a\n",
            "  - !t {username: j}\n",
            "---\n",
            "...\n",
            "  - a\n",
            "    b\n",
            "  b\n",
            "  - {username: k}}\n",
            "  - {username: l]\n",
            "  - [a, {b: c}]\n",
            "y: {\n",
            "}\n",
            "  - {username: é}\n",
            "#END\n",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..1500 {
            let mut old: Vec<&str> = vec!["consumers:\n"];
            for _ in 0..rnd(12) {
                old.push(LINES[rnd(LINES.len())]);
            }
            let mut new = old.clone();
            for _ in 0..rnd(4) {
                let k = rnd(new.len() + 1);
                match rnd(3) {
                    0 => new.insert(k, LINES[rnd(LINES.len())]),
                    1 if k < new.len() => drop(new.remove(k)),
                    _ if k < new.len() => {
                        let other = rnd(new.len());
                        new.swap(k, other);
                    }
                    _ => {}
                }
            }
            let (old, new) = (old.concat(), new.concat());
            let chunk = 1 + rnd(40);
            if let Err(e) = raw_filter_differential(old.as_bytes(), new.as_bytes(), chunk) {
                panic!("chunk {chunk}: {e}\nold:\n{old}\nnew:\n{new}");
            }
        }
    }

    /// The tape libyaml records for the one item of `consumers:\n{item}`, when it reads that
    /// text without error as one plain item.
    fn libyaml_tape(item: &str) -> Option<Vec<u8>> {
        let text = format!("consumers:\n{item}");
        let mut tapes = Vec::new();
        let hashing = Hashing {
            list: 0,
            tape: true,
            lookup: None,
        };
        let (rest, _) = read_input(
            Input::Text(text.as_bytes()),
            &["consumers"],
            Some(hashing),
            |_, _, r| {
                tapes.push(match r {
                    Read::Tape(t, _) => Some(t.to_vec()),
                    _ => None,
                })
            },
        );
        rest.ok()?;
        match tapes.as_slice() {
            [Some(t)] => Some(t.clone()),
            _ => None,
        }
    }

    #[test]
    fn fast_items_record_as_libyaml_records_them() {
        let fast = |item: &str| fast_item_tape(item.as_bytes()).filter(|t| is_plain(t));
        for item in [
            "  - {username: c0000001, plugins: {key-auth: {key: k0000001}}}\n",
            "- {a: b}\n",
            "    -   {  a:   b  ,c: {}, d: {e: ~}  }   \n",
            "  - {a: .5, b: 1e3, c: +1, d: 0x1F, e: null, f: true, g: $x, h: a(b)=c;d^e/f_g~}\n",
            "  - {}\n",
        ] {
            let got = fast(item).unwrap_or_else(|| panic!("not recorded: {item:?}"));
            assert_eq!(Some(got), libyaml_tape(item), "{item:?}");
        }
        for item in [
            "  - {a: b}",
            "  - {a: b}\n\n",
            "  - {a: -b}\n",
            "  - {-a: b}\n",
            "  - {a: b,}\n",
            "  - {a:b}\n",
            "  - {a : b}\n",
            "  - {a: b c}\n",
            "  - {a: [b]}\n",
            "  - {a: b, a: c}\n",
            "  - {a: b} x\n",
            "  - {a: b}: c\n",
            "  - {a: {b: {c: {d: {e: {f: {g: {h: {i: j}}}}}}}}}\n",
            "  -{a: b}\n",
            "  - a: b\n",
            "  - {a: }\n",
        ] {
            assert!(fast(item).is_none(), "recorded: {item:?}");
        }
        // Random items over the simple bytes, shaped like flow mappings: whatever the filter
        // records, libyaml reads as the same tape.
        const PIECES: &[&str] = &[
            "{", "}", "{", "}", ", ", ": ", ",", ":", " ", "  ", "[", "]", "a", "b1", "key-auth",
            "-x", "-", "~", ".5", "1e3", "$env", "x(y)", "a=b", "+1", "^", ";", "/p", "_", "null",
            "true", "0o7", "0x1F", ".inf", "=", "a.b", "--", "..", "...", "---", "$", "a:b",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut recorded = 0;
        for _ in 0..20_000 {
            let mut item = " ".repeat(rnd(3)) + "- ";
            let shaped = rnd(2) == 0;
            if shaped {
                // Mostly well formed: {k: v, k: {k: v}} with random scalars and spaces.
                item.push('{');
                for e in 0..rnd(4) {
                    if e > 0 {
                        item.push_str([", ", ",", " , "][rnd(3)]);
                    }
                    item.push_str(PIECES[12 + rnd(PIECES.len() - 12)]);
                    item.push_str([": ", ":  ", ":"][rnd(3)]);
                    if rnd(3) == 0 {
                        item.push('{');
                        item.push_str(PIECES[12 + rnd(PIECES.len() - 12)]);
                        item.push_str(": ");
                        item.push_str(PIECES[12 + rnd(PIECES.len() - 12)]);
                        item.push('}');
                    } else {
                        item.push_str(PIECES[12 + rnd(PIECES.len() - 12)]);
                    }
                }
                item.push('}');
            } else {
                for _ in 0..1 + rnd(12) {
                    item.push_str(PIECES[rnd(PIECES.len())]);
                }
            }
            item.push_str(["\n", " \n", ""][rnd(3)]);
            if let Some(t) = fast(&item) {
                recorded += 1;
                assert_eq!(Some(t), libyaml_tape(&item), "{item:?}");
            }
        }
        assert!(recorded > 1000, "only {recorded} recorded");
    }

    #[test]
    fn raw_filter_handles_lists_longer_than_what_libyaml_reads_ahead() {
        let mut text = String::from("routes: []\nconsumers:\n");
        for i in 0..6000 {
            text.push_str(&format!(
                "  - {{username: c{i}, plugins: {{key-auth: {{key: k{i}}}}}}}\n"
            ));
        }
        text.push_str("#END\n");
        assert_eq!(diff(&text, &text), 6000);
        let changed = text.replace("key: k4000}", "key: other}");
        assert_eq!(diff(&text, &changed), 5999);
        // Not the streamed list (anchored): nothing recognised, and the queue does not grow.
        let anchored = text.replace("consumers:\n", "consumers: &all\n");
        assert_eq!(diff(&text, &anchored), 0);
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

//! A serde `Deserializer` over one recorded list item ([`yaml::Read::Tape`]): a plain item (no
//! anchor, alias, tag or duplicate key; [`yaml::is_plain`]) is read straight into its typed
//! form, with no `serde_yaml::Value` built, deserialised and freed on the way. Each request is
//! answered as serde_yaml's `Value` deserializer answers it (the same visitor calls, the same
//! errors), so both paths give the same result and the same messages; the tests run both on
//! many items.

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, Error as _, Expected, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use serde_yaml::{Error, Number};

use super::yaml::{
    self, Scalar, T_ALIAS, T_MAP, T_MAP_END, T_SCALAR, T_SEQ, T_SEQ_END, TapeReader,
};

/// Deserialises `T` from a plain item's tape, with the field path of an error (as
/// `serde_path_to_error::deserialize` gives it from a value). The path is tracked (a string per
/// key read) only when a first reading failed: the second fails the same way.
pub(crate) fn deserialize<T: DeserializeOwned>(
    tape: &[u8],
) -> Result<T, serde_path_to_error::Error<Error>> {
    let mut t = TapeReader::new(tape);
    if let Ok(v) = T::deserialize(Node { t: &mut t }) {
        return Ok(v);
    }
    let mut t = TapeReader::new(tape);
    serde_path_to_error::deserialize(Node { t: &mut t })
}

/// The text of top-level field `name` of a plain item when it is a string or a number (a
/// number as its decimal text), as `item_ident` reads it from a value.
pub(crate) fn top_field(tape: &[u8], name: &str) -> Option<String> {
    let mut t = TapeReader::new(tape);
    let mut node = Node { t: &mut t };
    if !matches!(node.head().ok()?, Head::Map) {
        return None;
    }
    while node.t.peek()? != T_MAP_END {
        let is_name = matches!(node.head().ok()?, Head::Scalar(Scalar::Str(k)) if k == name);
        if !is_name {
            skip_node(node.t)?;
            continue;
        }
        return match node.head().ok()? {
            Head::Scalar(Scalar::Str(s)) => Some(s.to_owned()),
            Head::Scalar(Scalar::Number(n)) => Some(n.to_string()),
            _ => None,
        };
    }
    None
}

/// How a node starts: a whole scalar, or the start of a sequence or mapping.
enum Head<'t> {
    Scalar(Scalar<'t>),
    Seq,
    Map,
}

impl Head<'_> {
    /// What serde_yaml's `Value::unexpected` says of the same value.
    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Head::Scalar(Scalar::Null) => Unexpected::Unit,
            Head::Scalar(Scalar::Bool(b)) => Unexpected::Bool(*b),
            Head::Scalar(Scalar::Number(n)) => number_unexpected(n),
            Head::Scalar(Scalar::Str(s)) => Unexpected::Str(s),
            Head::Seq => Unexpected::Seq,
            Head::Map => Unexpected::Map,
        }
    }
}

fn number_unexpected(n: &Number) -> Unexpected<'static> {
    if let Some(u) = n.as_u64() {
        Unexpected::Unsigned(u)
    } else if let Some(i) = n.as_i64() {
        Unexpected::Signed(i)
    } else {
        n.as_f64()
            .map_or(Unexpected::Other("number"), Unexpected::Float)
    }
}

fn cut() -> Error {
    Error::custom("the recorded YAML item ended early")
}

/// Skips one whole node (a plain item has no alias, but a tape may).
fn skip_node(t: &mut TapeReader<'_>) -> Option<()> {
    match t.byte()? {
        T_SCALAR => {
            t.byte()?;
            t.bytes()?;
            t.bytes()?;
            t.bytes()?;
        }
        T_ALIAS => {
            t.bytes()?;
        }
        T_SEQ | T_MAP => {
            t.bytes()?;
            t.bytes()?;
            skip_rest(t)?;
        }
        _ => return None,
    }
    Some(())
}

/// Skips the rest of an open sequence or mapping, its end included.
fn skip_rest(t: &mut TapeReader<'_>) -> Option<()> {
    while !matches!(t.peek()?, T_SEQ_END | T_MAP_END) {
        skip_node(t)?;
    }
    t.byte().map(drop)
}

/// The node at the reader's place; each method reads the whole node.
struct Node<'a, 't> {
    t: &'a mut TapeReader<'t>,
}

impl<'t> Node<'_, 't> {
    /// Reads a scalar whole, or the start of a sequence or mapping, resolved as
    /// `yaml::scalar_value` resolves an untagged scalar.
    fn head(&mut self) -> Result<Head<'t>, Error> {
        let t = &mut *self.t;
        let kind = t.byte().ok_or_else(cut)?;
        match kind {
            T_SCALAR => {
                let plain = t.byte().ok_or_else(cut)? == 1;
                t.bytes().ok_or_else(cut)?;
                t.bytes().ok_or_else(cut)?;
                let bytes = t.bytes().flatten().ok_or_else(cut)?;
                let s = std::str::from_utf8(bytes).map_err(Error::custom)?;
                let scalar = if plain {
                    yaml::resolve_plain(s).map_err(Error::custom)?
                } else {
                    Scalar::Str(s)
                };
                Ok(Head::Scalar(scalar))
            }
            T_SEQ | T_MAP => {
                t.bytes().ok_or_else(cut)?;
                t.bytes().ok_or_else(cut)?;
                Ok(if kind == T_SEQ { Head::Seq } else { Head::Map })
            }
            _ => Err(Error::custom("an alias in a plain YAML item")),
        }
    }

    /// The error for a node of the wrong type (the rest of a sequence or mapping skipped, so
    /// the reader stands after the node, as if the value had been consumed).
    fn invalid(self, head: &Head<'_>, exp: &dyn Expected) -> Error {
        if matches!(head, Head::Seq | Head::Map) {
            skip_rest(self.t);
        }
        Error::invalid_type(head.unexpected(), exp)
    }

    fn number<'de, V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Scalar::Number(n)) => de::Deserializer::deserialize_any(n, visitor),
            other => Err(self.invalid(&other, &visitor)),
        }
    }

    fn seq<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut access = Seq {
            t: self.t,
            taken: 0,
        };
        let value = visitor.visit_seq(&mut access)?;
        access.finish()?;
        Ok(value)
    }

    fn map<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut access = Map {
            t: self.t,
            taken: 0,
            pending: false,
        };
        let value = visitor.visit_map(&mut access)?;
        access.finish()?;
        Ok(value)
    }
}

macro_rules! numbers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.number(visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Node<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Scalar::Null) => visitor.visit_unit(),
            Head::Scalar(Scalar::Bool(b)) => visitor.visit_bool(b),
            Head::Scalar(Scalar::Number(n)) => de::Deserializer::deserialize_any(n, visitor),
            Head::Scalar(Scalar::Str(s)) => visitor.visit_str(s),
            Head::Seq => self.seq(visitor),
            Head::Map => self.map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Scalar::Bool(b)) => visitor.visit_bool(b),
            other => Err(self.invalid(&other, &visitor)),
        }
    }

    numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Scalar::Str(s)) => visitor.visit_str(s),
            other => Err(self.invalid(&other, &visitor)),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Scalar::Str(s)) => visitor.visit_str(s),
            Head::Seq => self.seq(visitor),
            other => Err(self.invalid(&other, &visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        let start = self.t.pos;
        if let Head::Scalar(Scalar::Null) = self.head()? {
            return visitor.visit_none();
        }
        self.t.pos = start;
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Scalar::Null) => visitor.visit_unit(),
            other => Err(self.invalid(&other, &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Seq => self.seq(visitor),
            Head::Scalar(Scalar::Null) => visitor.visit_seq(Empty),
            other => Err(self.invalid(&other, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Map => self.map(visitor),
            Head::Scalar(Scalar::Null) => visitor.visit_map(Empty),
            other => Err(self.invalid(&other, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.head()? {
            Head::Scalar(Scalar::Str(tag)) => visitor.visit_enum(UnitVariant(tag)),
            other => Err(self.invalid(&other, &"a Value::Tagged enum")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        skip_node(self.t).ok_or_else(cut)?;
        visitor.visit_unit()
    }
}

/// The items of a sequence, read in turn.
struct Seq<'a, 't> {
    t: &'a mut TapeReader<'t>,
    taken: usize,
}

impl Seq<'_, '_> {
    /// Reads to the end: items the visitor left are an error, as serde_yaml says it.
    fn finish(self) -> Result<(), Error> {
        let mut left = 0;
        while self.t.peek().ok_or_else(cut)? != T_SEQ_END {
            skip_node(self.t).ok_or_else(cut)?;
            left += 1;
        }
        self.t.byte();
        if left == 0 {
            Ok(())
        } else {
            Err(Error::invalid_length(
                self.taken + left,
                &"fewer elements in sequence",
            ))
        }
    }
}

impl<'de> SeqAccess<'de> for Seq<'_, '_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        if self.t.peek().ok_or_else(cut)? == T_SEQ_END {
            return Ok(None);
        }
        self.taken += 1;
        seed.deserialize(Node { t: self.t }).map(Some)
    }
}

/// The entries of a mapping, read in turn.
struct Map<'a, 't> {
    t: &'a mut TapeReader<'t>,
    taken: usize,
    /// A key was read and its value not yet.
    pending: bool,
}

impl Map<'_, '_> {
    /// Reads to the end: entries the visitor left are an error, as serde_yaml says it.
    fn finish(self) -> Result<(), Error> {
        if self.pending {
            skip_node(self.t).ok_or_else(cut)?;
        }
        let mut left = 0;
        while self.t.peek().ok_or_else(cut)? != T_MAP_END {
            skip_node(self.t).ok_or_else(cut)?;
            skip_node(self.t).ok_or_else(cut)?;
            left += 1;
        }
        self.t.byte();
        if left == 0 {
            Ok(())
        } else {
            Err(Error::invalid_length(
                self.taken + left,
                &"fewer elements in map",
            ))
        }
    }
}

impl<'de> MapAccess<'de> for Map<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.pending {
            skip_node(self.t).ok_or_else(cut)?;
            self.pending = false;
        }
        if self.t.peek().ok_or_else(cut)? == T_MAP_END {
            return Ok(None);
        }
        self.taken += 1;
        self.pending = true;
        seed.deserialize(Node { t: self.t }).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        if !self.pending {
            return Err(Error::custom("a map value read before its key"));
        }
        self.pending = false;
        seed.deserialize(Node { t: self.t })
    }
}

/// A null read as an empty sequence or mapping (as serde_yaml reads one).
struct Empty;

impl<'de> SeqAccess<'de> for Empty {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        _seed: S,
    ) -> Result<Option<S::Value>, Error> {
        Ok(None)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(0)
    }
}

impl<'de> MapAccess<'de> for Empty {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _seed: K,
    ) -> Result<Option<K::Value>, Error> {
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, _seed: S) -> Result<S::Value, Error> {
        Err(Error::custom("a map value read before its key"))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(0)
    }
}

/// An enum written as its variant's name: a unit variant (serde_yaml's `EnumDeserializer`
/// without a value).
struct UnitVariant<'t>(&'t str);

impl<'de> EnumAccess<'de> for UnitVariant<'_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let variant = seed.deserialize(StrDeserializer::<Error>::new(self.0))?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for UnitVariant<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _seed: S) -> Result<S::Value, Error> {
        Err(Error::invalid_type(
            Unexpected::UnitVariant,
            &"newtype variant",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::invalid_type(
            Unexpected::UnitVariant,
            &"tuple variant",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(Error::invalid_type(
            Unexpected::UnitVariant,
            &"struct variant",
        ))
    }
}

/// The tape of each `consumers` item of `text` that is plain (None for the others), or None
/// when the text cannot be read or its top level is not a plain mapping (a tagged document:
/// nothing is streamed, and the loader refuses it). For [`same_as_value`].
fn plain_tapes(text: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let mut out = Vec::new();
    let hashing = yaml::Hashing {
        list: 0,
        tape: true,
        lookup: None,
    };
    let (rest, _) = yaml::read_input(
        yaml::Input::Text(text),
        &["consumers"],
        Some(hashing),
        |_, _, r| match r {
            yaml::Read::Tape(t, _) => out.push(Some(t.to_vec())),
            _ => out.push(None),
        },
    );
    match rest {
        Ok(yaml::Rest::Mapping(_)) => Some(out),
        _ => None,
    }
}

/// Checks this deserializer against serde_yaml's `Value` on every plain `consumers` item of
/// `text`, as `T`: the same value (by `Debug`) or the same error with the same field path, and
/// the same `username`/`id` for naming the item. Panics on a difference; returns how many items
/// were compared (0 when serde_yaml or the reader refuses the text). For the unit tests and the
/// `tape` fuzz target.
pub(crate) fn same_as_value<T: DeserializeOwned + std::fmt::Debug>(text: &[u8]) -> usize {
    let Ok(value) = serde_yaml::from_slice::<serde_yaml::Value>(text) else {
        return 0;
    };
    let Some(items) = value.get("consumers").and_then(|v| v.as_sequence()) else {
        return 0;
    };
    let Some(tapes) = plain_tapes(text) else {
        return 0;
    };
    assert_eq!(items.len(), tapes.len(), "items and tapes");
    let mut plain = 0;
    for (item, tape) in items.iter().zip(&tapes) {
        let Some(tape) = tape else { continue };
        plain += 1;
        let want = serde_path_to_error::deserialize::<_, T>(item.clone())
            .map_err(|e| format!("{}: {}", e.path(), e.inner()));
        let got = deserialize::<T>(tape).map_err(|e| format!("{}: {}", e.path(), e.inner()));
        assert_eq!(
            format!("{got:?}"),
            format!("{want:?}"),
            "{item:?} as {}",
            std::any::type_name::<T>()
        );
        for field in ["username", "id"] {
            let want = match item.get(field) {
                Some(serde_yaml::Value::String(s)) => Some(s.clone()),
                Some(serde_yaml::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            assert_eq!(top_field(tape, field), want, "{item:?}");
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde::de::IgnoredAny;
    use serde_yaml::Value;

    use crate::config::raw::ConsumerConf;
    use crate::config::yaml::{Hashing, Input, read_input};

    /// Each item of `consumers` in `text`: its tape when it is plain, else None.
    fn tapes(text: &str) -> Vec<Option<Vec<u8>>> {
        super::plain_tapes(text.as_bytes()).unwrap()
    }

    /// Both paths on every item of `text` as `T`: the same value or the same error and path.
    fn same_as_value<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> usize {
        super::same_as_value::<T>(text.as_bytes())
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        One,
        Two,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "read through Debug only")]
    struct Wide {
        a: Option<u8>,
        b: Option<i32>,
        c: Option<f64>,
        d: Option<bool>,
        e: Option<Vec<String>>,
        f: Option<BTreeMap<String, u16>>,
        g: Option<Kind>,
        h: Option<char>,
        i: Option<(u8, String)>,
        j: Option<IgnoredAny>,
        k: Option<()>,
        #[serde(default)]
        l: Vec<i64>,
        m: Option<Box<Wide>>,
        n: Option<Value>,
        o: Option<crate::config::raw::Id>,
    }

    const ITEMS: &str = r#"
consumers:
  - {username: a, plugins: {key-auth: {key: k1}}}
  - {username: "007", plugins: {key-auth: {key: '5'}}}
  - {username: 12, plugins: {key-auth: {key: k}}}
  - {username: a, plugins: {key-auth: {key: 123}}}
  - {username: a, plugins: {key-auth: {key: true}}}
  - {username: a, plugins: {key-auth: {key: ~}}}
  - {username: a, plugins: {key-auth: {key: 1.5}}}
  - {username: a, plugins: {key-auth: {key: [1]}}}
  - {username: a, plugins: {key-auth: {key: {x: 1}}}}
  - {username: a, plugins: {key-auth: {kee: x}}}
  - {username: a, plugins: {key-auth: ~}}
  - username: a
    plugins: {key-auth: }
  - {username: a, plugins: ~}
  - {username: a, plugins: [1, 2]}
  - {username: a, plugins: {nope: {}}}
  - {username: a, labels: {x: y, z: "1"}}
  - {username: a, labels: {x: 1}}
  - {username: a, labels: [x]}
  - {username: a, credentials: [{name: c1, plugins: {key-auth: {key: k}}}, {name: c2}]}
  - {username: a, credentials: [{plugins: {key-auth: {key: k}}}]}
  - {username: a, credentials: ~}
  - {username: a, credentials: {a: 1}}
  - {id: 5, group_id: 7, desc: d, create_time: 1, update_time: [1, {a: b}]}
  - {id: -5}
  - {id: x, expires_at: 2024-01-01}
  - {username: a, plugins: {basic-auth: {username: u, password: p}}}
  - {username: a, plugins: {jwt-auth: {key: k, secret: s, algorithm: HS256, exp: 60}}}
  - {username: a, plugins: {jwt-auth: {key: k, secret: s, algorithm: nope}}}
  - {username: a, plugins: {jwt-auth: {key: k, secret: s, exp: -1}}}
  - {username: a, plugins: {jwt-auth: {key: k, secret: s, exp: 1e3}}}
  - {username: a, plugins: {hmac-auth: {key_id: k, secret_key: s}}}
  - {username: a, plugins: {limit-count: {count: 10, time_window: 60, key_type: var, policy: local}}}
  - {username: a, plugins: {limit-count: {count: "10", time_window: 60}}}
  - {username: a, plugins: {limit-count: {count: 0x10, time_window: 0o7}}}
  - {username: a, plugins: {limit-count: {count: -3, time_window: .inf}}}
  - {username: a, plugins: {key-auth: {key: k}, limit-count: {count: 1, time_window: 1, rejected_code: 503, key: remote_addr}}}
  - username: a
    plugins:
      key-auth:
        key: "block"
  - [1, 2]
  - just a string
  - ~
  - 12
  - {username: a, username2: b, "quoted": 1}
  - {1: x}
  - {~: x}
  - {[1]: x}
  - {username: !!str 5}
  - {username: &x a, id: *x}
"#;

    const WIDE: &str = r#"
consumers:
  - {a: 1, b: -2, c: 1.5, d: true, e: [x, "y"], f: {p: 1}, g: one, h: c, i: [1, s], j: {x: [1]}, k: ~, l: [1, -1]}
  - {a: 300}
  - {a: -1}
  - {a: x}
  - {b: 3000000000}
  - {c: .nan}
  - {c: -.inf}
  - {c: 7}
  - {d: "true"}
  - {d: True}
  - {e: ~}
  - {e: x}
  - {e: [1]}
  - {f: ~}
  - {f: {p: -1}}
  - {f: []}
  - {g: three}
  - {g: {one: 1}}
  - {g: ~}
  - {h: ab}
  - {h: ""}
  - {i: [1]}
  - {i: [1, s, 3]}
  - {i: ~}
  - {j: 1}
  - {k: 1}
  - {k: [1]}
  - {l: ~}
  - {l: x}
  - {m: {a: 1, m: {b: 2, zz: 1}}}
  - {m: ~}
  - {n: {a: [1, {b: ~}], c: "d", e: 0x1F, f: 007}}
  - {o: 5}
  - {o: -5}
  - {o: x}
  - {o: 1.5}
  - {o: [1]}
  - {zz: 1}
  - {a: 1, a2: 2}
  - {}
  - ~
  - []
  - 5
"#;

    #[test]
    fn consumers_read_from_the_tape_as_from_a_value() {
        let plain = same_as_value::<ConsumerConf>(ITEMS);
        assert!(plain >= 40, "{plain}");
        same_as_value::<Value>(ITEMS);
        same_as_value::<IgnoredAny>(ITEMS);
        same_as_value::<BTreeMap<String, Value>>(ITEMS);
        same_as_value::<Wide>(ITEMS);
    }

    #[test]
    fn every_kind_of_request_reads_as_from_a_value() {
        let plain = same_as_value::<Wide>(WIDE);
        assert!(plain >= 40, "{plain}");
        same_as_value::<Value>(WIDE);
        same_as_value::<Vec<Value>>(WIDE);
        same_as_value::<Option<Wide>>(WIDE);
        same_as_value::<(Value, Value)>(WIDE);
        same_as_value::<String>(WIDE);
        same_as_value::<u64>(WIDE);
        same_as_value::<Kind>(WIDE);
        same_as_value::<()>(WIDE);
    }

    #[test]
    fn items_with_links_tags_or_odd_keys_are_not_plain() {
        let text = "consumers:\n  - {1: x}\n  - {~: x}\n  - {[1]: x}\n  - {a: !!str 5}\n  - {a: &x 1, b: *x}\n  - {true: 1}\n  - {\"1\": x, b: 'c'}\n";
        let t = tapes(text);
        assert_eq!(
            t.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, false, false, false, false, false, true]
        );
    }

    /// Items whose value cannot be built stop the reading with the same error either way.
    #[test]
    fn reading_errors_are_the_same_with_tapes() {
        for bad in [
            "consumers:\n  - {a: 1}\n  - {a: 1, a: 2}\n",
            "consumers:\n  - {a: {b: 1, \"b\": 2}}\n",
            "consumers:\n  - {a: 99999999999999999999999}\n",
            "consumers:\n  - {a: !!int x}\n",
        ] {
            let read = |tape| {
                let hashing = Hashing {
                    list: 0,
                    tape,
                    lookup: None,
                };
                read_input(
                    Input::Text(bad.as_bytes()),
                    &["consumers"],
                    Some(hashing),
                    |_, _, _| {},
                )
                .0
                .err()
            };
            assert!(read(false).is_some(), "{bad}");
            assert_eq!(read(true), read(false), "{bad}");
        }
    }
}

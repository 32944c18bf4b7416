//! Encoding records with postcard, refusing what postcard cannot read back as the same value.
//!
//! Postcard writes no field names, so a field left out by `#[serde(skip_serializing_if)]`
//! shifts every byte after it. Decoding the record again does not always notice: the bytes
//! `[2, 1, b'x']` of `Skippy { a: 0 (skipped), s: "\u{1}x" }` read back cleanly as
//! `Skippy { a: 2, s: "x" }`. Serde's derive calls `skip_field` for each field it leaves
//! out, so the encoder wraps postcard's serializer and refuses any `skip_field`: the record
//! does not encode, and the write fails naming the field.
//!
//! A field that serde leaves out without a `skip_field` call (`skip_serializing`, or
//! `skip_serializing_if` on a tuple struct) is caught by its count: the codec traces how
//! many fields the type's `Deserialize` reads for each struct and tuple struct (see
//! `layout::field_counts_of`), and a struct written with another number of fields is
//! refused; so is a struct or tuple variant. The fields of a struct or struct variant are
//! also checked by name, in order, against the names its `Deserialize` reads, so a field
//! skipped when serializing and another skipped when deserializing cannot cancel out.
//! Tuple structs and tuple variants have no names, so such a pair of skips in one of them
//! is not caught here (the counts agree and the bytes decode); the writer's round trip
//! (`Codec::encode_checked`) catches it, with every other form that writes one thing and
//! reads another.
//!
//! The wrapper also keeps the message of a `Serialize` impl's own error
//! (`S::Error::custom("…")`), which postcard's error type drops.
//!
//! Every value below the record is serialized through the wrapper too ([`Strict`] wraps each
//! element, field, key and value it forwards), so a skipped field is caught at any depth.
//! The first problem is kept in a thread-local slot, because the errors that cross
//! postcard's own serializer must be postcard's type.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;

use super::layout::{FieldCounts, ReadFields};

use serde::ser::{self, Serialize, Serializer};

thread_local! {
    /// The first problem met while encoding the current record on this thread.
    static PROBLEM: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The fields the record type's `Deserialize` reads per container, when known.
    static EXPECTED: RefCell<Option<Arc<FieldCounts>>> = const { RefCell::new(None) };
    /// Whether the current record wrote a value of no bytes (see [`wrote_zero_width`]).
    static ZERO_WIDTH: Cell<bool> = const { Cell::new(false) };
}

/// Whether the record last encoded on this thread holds a value postcard writes as no
/// bytes at all (a unit, a unit struct, an empty tuple or struct). Its bytes then say
/// nothing of that value: a `Deserialize` that reads something else there takes its bytes
/// from the values after it, and may even encode back to the same bytes (a `None` written
/// as a unit, read as `Some(None)` with the next field's byte). The writer's round trip
/// compares such records as values, not only as bytes.
pub(crate) fn wrote_zero_width() -> bool {
    ZERO_WIDTH.with(Cell::get)
}

fn zero_width() {
    ZERO_WIDTH.with(|z| z.set(true));
}

/// The fields the record type's `Deserialize` reads for the container `name`, when known.
fn expected_fields(name: &'static str) -> Option<ReadFields> {
    EXPECTED.with(|e| e.borrow().as_ref().and_then(|m| m.container(name)))
}

/// The fields variant `index` (`variant`) of enum `name` reads, when known.
fn expected_variant_fields(
    name: &'static str,
    index: u32,
    variant: &'static str,
) -> Option<ReadFields> {
    EXPECTED.with(|e| {
        e.borrow()
            .as_ref()
            .and_then(|m| m.variant(name, index, variant))
    })
}

/// Refuses a struct or tuple struct written with another number of fields than its
/// `Deserialize` reads: a field left out by `skip_serializing` or by `skip_serializing_if`
/// on a tuple struct (which serde reports through no `skip_field`), or one written but not
/// read (`skip_deserializing`). Postcard would read the next bytes as the missing field.
fn fields_differ<E>(name: &'static str, written: usize, read: usize) -> Result<(), StrictError<E>> {
    if written == read {
        return Ok(());
    }
    Err(StrictError::Message(format!(
        "`{name}` is written with {written} fields and read with {read}: a field is skipped \
         when serializing (skip_serializing, or skip_serializing_if on a tuple struct) or \
         when deserializing (skip_deserializing); postcard writes no field names, so the \
         fields after it would be misread ({SKIP_ADVICE})"
    )))
}

/// Refuses a named field written where its `Deserialize` reads another one (by position:
/// postcard writes no names). A field skipped when serializing and another skipped when
/// deserializing leave the count right and shift the fields between them; a field renamed
/// differently for each direction is refused too, since its names alone cannot tell it
/// from such a shift.
fn name_differs<E>(
    container: &'static str,
    position: usize,
    written: &'static str,
    names: &'static [&'static str],
) -> Result<(), StrictError<E>> {
    let read = names.get(position).copied();
    if read == Some(written) {
        return Ok(());
    }
    let read = match read {
        Some(read) => format!("reads `{read}` there"),
        None => format!("reads only {} fields", names.len()),
    };
    Err(StrictError::Message(format!(
        "`{container}` writes field `{written}` in position {position} but its Deserialize \
         {read}: a field is skipped when serializing (skip_serializing) or when \
         deserializing (skip_deserializing), or renamed differently for each direction \
         (rename(serialize = .., deserialize = ..)); postcard writes no field names, so the \
         field would be read back as another ({SKIP_ADVICE})"
    )))
}

/// Refuses a variant its enum's `Deserialize` would not read back as itself. Postcard
/// writes a variant's index among *all* the variants, and reads it among the variants not
/// skipped when deserializing: a skipped variant before this one shifts it onto the next
/// (`B` is read back as `C`), and a skipped variant itself is read as another or not at
/// all. `declared` lists a variant's aliases beside its name, which moves names later,
/// never earlier, so a name found *before* its index means a shift.
fn variant_read_back<E>(
    name: &'static str,
    index: u32,
    variant: &'static str,
) -> Result<(), StrictError<E>> {
    let Some(declared) = EXPECTED.with(|e| e.borrow().as_ref().and_then(|m| m.enum_variants(name)))
    else {
        return Ok(());
    };
    let problem = match declared.iter().position(|&v| v == variant) {
        Some(at) if at >= index as usize => return Ok(()),
        Some(at) => format!(
            "variant `{name}::{variant}` is written as variant {index} but its Deserialize \
             reads it as variant {at}: a variant before it is skipped when deserializing \
             (skip, skip_deserializing), so postcard, which writes the index, would read \
             back another variant"
        ),
        None => format!(
            "variant `{name}::{variant}` is written but its Deserialize reads no variant of \
             that name (skip, skip_deserializing, or renamed differently for each \
             direction): postcard, which writes the index, would read back another variant \
             or none"
        ),
    };
    Err(StrictError::Message(format!(
        "{problem} (remove the skip attribute, or move skipped variants after the others)"
    )))
}

/// For a struct whose declared names include aliases (so positions are not known):
/// refuses a field written under a name its `Deserialize` does not accept, or out of
/// order. A field skipped when deserializing is written but not among the names, so with
/// the count check this catches a pair of opposite skips. Returns the position to look
/// from for the next field.
fn name_not_read<E>(
    container: &'static str,
    written: &'static str,
    declared: &'static [&'static str],
    from: usize,
) -> Result<usize, StrictError<E>> {
    match declared[from.min(declared.len())..]
        .iter()
        .position(|&d| d == written)
    {
        Some(i) => Ok(from + i + 1),
        None => Err(StrictError::Message(format!(
            "`{container}` writes field `{written}`, which its Deserialize does not read \
             there: a field is skipped when deserializing (skip_deserializing), or renamed \
             differently for each direction (rename(serialize = .., deserialize = ..)); \
             postcard writes no field names, so the fields would be read back as others \
             ({SKIP_ADVICE})"
        ))),
    }
}

/// What to do about a skipped field.
const SKIP_ADVICE: &str = "remove the skip attribute, or give the field an Option type \
    that is always written";

fn note(problem: String) {
    PROBLEM.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_none() {
            *p = Some(problem);
        }
    });
}

/// Encodes `value` with postcard into `output`, refusing skipped fields, and any struct or
/// tuple struct written with another number of fields than `fields` (the type's
/// `Deserialize`, traced) says it reads. The error says what went wrong, in the user's
/// words where a `Serialize` impl gave some.
pub(crate) fn encode<T: Serialize + ?Sized, F: postcard::ser_flavors::Flavor>(
    value: &T,
    output: F,
    fields: Option<&Arc<FieldCounts>>,
) -> Result<(), String> {
    PROBLEM.with(|p| p.borrow_mut().take());
    ZERO_WIDTH.with(|z| z.set(false));
    // Swapped only when the type changes: an `Arc` clone per record would bounce its
    // count between the threads writing.
    EXPECTED.with(|e| {
        let mut e = e.borrow_mut();
        let same = match (&*e, fields) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *e = fields.cloned();
        }
    });
    let mut ser = postcard::Serializer { output };
    let outcome = value.serialize(Strict(&mut ser, 0));
    let problem = PROBLEM.with(|p| p.borrow_mut().take());
    match (outcome, problem) {
        (Ok(()), None) => ser.output.finalize().map(drop).map_err(|e| e.to_string()),
        (_, Some(problem)) => Err(problem),
        (Err(e), None) => Err(e.to_string()),
    }
}

/// The error of a [`Strict`] serializer: the inner serializer's, or a message of our own
/// (a refused `skip_field`, or a `Serialize` impl's `custom` error, kept word for word).
#[derive(Debug)]
pub(crate) enum StrictError<E> {
    Inner(E),
    Message(String),
}

impl<E: fmt::Display> fmt::Display for StrictError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictError::Inner(e) => e.fmt(f),
            StrictError::Message(m) => f.write_str(m),
        }
    }
}

impl<E: std::error::Error> std::error::Error for StrictError<E> {}

impl<E: ser::Error> ser::Error for StrictError<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        StrictError::Message(msg.to_string())
    }
}

/// Forwards to the serializer `S`, wrapping every nested value; refuses `skip_field`.
pub(crate) struct Strict<S>(S, u32);

/// A value serialized through [`Strict`] by whatever serializer it is handed, at a depth
/// (values inside values) below the record.
struct Nested<'a, T: ?Sized>(&'a T, u32);

/// The deepest a value may lie inside a record (each struct field, element, option or
/// newtype is a level: a linked list of `Option<Box<Node>>` takes two per node). Serde,
/// postcard and the writer's round trip each recurse once per level, and a deep enough
/// value overflows a worker's stack, which aborts the process (a 12,000-node list did in a
/// debug build): such a record is refused with an error instead, well below that.
const MAX_NESTING: u32 = 4096;

impl<T: Serialize + ?Sized> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.1 > MAX_NESTING {
            let m = format!(
                "it nests values more than {MAX_NESTING} levels deep (a long linked list or \
                 a deep tree of boxes?), deeper than encoding and decoding can go without \
                 running out of stack; store such data flattened (a Vec of nodes with indices)"
            );
            note(m.clone());
            return Err(ser::Error::custom(m));
        }
        self.0
            .serialize(Strict(serializer, self.1))
            .map_err(|e| match e {
                StrictError::Inner(e) => e,
                StrictError::Message(m) => {
                    // Crosses postcard's serializer, whose error type drops messages.
                    note(m.clone());
                    ser::Error::custom(m)
                }
            })
    }
}

/// The compound serializers (sequences, tuples, maps, structs, variants), wrapped.
pub(crate) struct Compound<C> {
    inner: C,
    /// For a container whose `Deserialize` reads known fields: its name and those fields.
    /// Each named field is checked as it is written, the count when it ends (after any
    /// `skip_field`, whose own error names the field).
    expect: Option<(&'static str, ReadFields)>,
    written: usize,
    /// Where the last field written is in the names the struct declares, plus one (for a
    /// struct with aliases, whose positions are not known).
    at: usize,
    /// The container's own depth in the record (its values lie one deeper).
    depth: u32,
}

impl<C> Compound<C> {
    /// Refuses a container written with another number of fields than it reads.
    fn count_matches<E>(&self) -> Result<(), StrictError<E>> {
        match self.expect {
            Some((name, read)) => fields_differ(name, self.written, read.count),
            None => Ok(()),
        }
    }

    fn new(inner: C, depth: u32) -> Self {
        Compound {
            inner,
            expect: None,
            written: 0,
            at: 0,
            depth,
        }
    }
}

impl<S: Serializer> Serializer for Strict<S> {
    type Ok = S::Ok;
    type Error = StrictError<S::Error>;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    fn serialize_bool(self, v: bool) -> Result<S::Ok, Self::Error> {
        self.0.serialize_bool(v).map_err(StrictError::Inner)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, Self::Error> {
        self.0.serialize_i8(v).map_err(StrictError::Inner)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, Self::Error> {
        self.0.serialize_i16(v).map_err(StrictError::Inner)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, Self::Error> {
        self.0.serialize_i32(v).map_err(StrictError::Inner)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, Self::Error> {
        self.0.serialize_i64(v).map_err(StrictError::Inner)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, Self::Error> {
        self.0.serialize_i128(v).map_err(StrictError::Inner)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, Self::Error> {
        self.0.serialize_u8(v).map_err(StrictError::Inner)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, Self::Error> {
        self.0.serialize_u16(v).map_err(StrictError::Inner)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, Self::Error> {
        self.0.serialize_u32(v).map_err(StrictError::Inner)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, Self::Error> {
        self.0.serialize_u64(v).map_err(StrictError::Inner)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, Self::Error> {
        self.0.serialize_u128(v).map_err(StrictError::Inner)
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, Self::Error> {
        self.0.serialize_f32(v).map_err(StrictError::Inner)
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, Self::Error> {
        self.0.serialize_f64(v).map_err(StrictError::Inner)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, Self::Error> {
        self.0.serialize_char(v).map_err(StrictError::Inner)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, Self::Error> {
        self.0.serialize_str(v).map_err(StrictError::Inner)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, Self::Error> {
        self.0.serialize_bytes(v).map_err(StrictError::Inner)
    }
    fn serialize_none(self) -> Result<S::Ok, Self::Error> {
        self.0.serialize_none().map_err(StrictError::Inner)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, Self::Error> {
        self.0
            .serialize_some(&Nested(v, self.1 + 1))
            .map_err(StrictError::Inner)
    }
    fn serialize_unit(self) -> Result<S::Ok, Self::Error> {
        zero_width();
        self.0.serialize_unit().map_err(StrictError::Inner)
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, Self::Error> {
        zero_width();
        self.0
            .serialize_unit_struct(name)
            .map_err(StrictError::Inner)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, Self::Error> {
        variant_read_back(name, index, variant)?;
        self.0
            .serialize_unit_variant(name, index, variant)
            .map_err(StrictError::Inner)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, Self::Error> {
        self.0
            .serialize_newtype_struct(name, &Nested(v, self.1 + 1))
            .map_err(StrictError::Inner)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, Self::Error> {
        variant_read_back(name, index, variant)?;
        self.0
            .serialize_newtype_variant(name, index, variant, &Nested(v, self.1 + 1))
            .map_err(StrictError::Inner)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        let depth = self.1;
        length_known(len, "sequence")?;
        self.0
            .serialize_seq(len)
            .map(|inner| Compound::new(inner, depth))
            .map_err(StrictError::Inner)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        let depth = self.1;
        if len == 0 {
            zero_width();
        }
        self.0
            .serialize_tuple(len)
            .map(|inner| Compound::new(inner, depth))
            .map_err(StrictError::Inner)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        let depth = self.1;
        if len == 0 {
            zero_width();
        }
        // Checked against the fields written when it ends: `len` is a hint postcard ignores.
        let expect = expected_fields(name).map(|read| (name, read));
        self.0
            .serialize_tuple_struct(name, len)
            .map(|inner| Compound {
                expect,
                ..Compound::new(inner, depth)
            })
            .map_err(StrictError::Inner)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        let depth = self.1;
        variant_read_back(name, index, variant)?;
        let expect = expected_variant_fields(name, index, variant).map(|read| (variant, read));
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(|inner| Compound {
                expect,
                ..Compound::new(inner, depth)
            })
            .map_err(StrictError::Inner)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        let depth = self.1;
        length_known(len, "map")?;
        self.0
            .serialize_map(len)
            .map(|inner| Compound::new(inner, depth))
            .map_err(StrictError::Inner)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        let depth = self.1;
        if len == 0 {
            zero_width();
        }
        let expect = expected_fields(name).map(|read| (name, read));
        self.0
            .serialize_struct(name, len)
            .map(|inner| Compound {
                expect,
                ..Compound::new(inner, depth)
            })
            .map_err(StrictError::Inner)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        let depth = self.1;
        variant_read_back(name, index, variant)?;
        let expect = expected_variant_fields(name, index, variant).map(|read| (variant, read));
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(|inner| Compound {
                expect,
                ..Compound::new(inner, depth)
            })
            .map_err(StrictError::Inner)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Refuses a sequence or map whose length is not given up front, with a message that
/// says where such values come from (postcard's own, "The length of a sequence must be
/// known", does not).
fn length_known<E>(len: Option<usize>, what: &str) -> Result<(), StrictError<E>> {
    match len {
        Some(_) => Ok(()),
        None => Err(StrictError::Message(format!(
            "a {what} is written without its length (#[serde(flatten)] does this, as does a \
             Serialize impl that passes None to serialize_{what}), and postcard writes the \
             length first ({FLATTEN_ADVICE})"
        ))),
    }
}

/// What to do about a value written without its length.
const FLATTEN_ADVICE: &str = "write the fields of the flattened struct in the outer one, or \
    give the length";

/// The error of a refused `skip_field`.
fn skipped<E>(key: &'static str) -> StrictError<E> {
    StrictError::Message(format!(
        "field `{key}` was left out by its Serialize impl (skip_serializing_if?): postcard \
         writes no field names, so the fields after it would read back as other values"
    ))
}

/// The one-value compound serializers: each element or field goes through [`Strict`].
macro_rules! forward_values {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = StrictError<C::Error>;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
                self.inner
                    .$method(&Nested(v, self.depth + 1))
                    .map_err(StrictError::Inner)
            }
            fn end(self) -> Result<C::Ok, Self::Error> {
                self.inner.end().map_err(StrictError::Inner)
            }
        }
    )*};
}

forward_values!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
);

/// The positional compound serializers whose fields are counted: each field goes through
/// [`Strict`], and the count is checked when it ends.
macro_rules! counted_values {
    ($($trait:ident),* $(,)?) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = StrictError<C::Error>;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
                self.written += 1;
                self.inner
                    .serialize_field(&Nested(v, self.depth + 1))
                    .map_err(StrictError::Inner)
            }
            fn end(self) -> Result<C::Ok, Self::Error> {
                self.count_matches()?;
                self.inner.end().map_err(StrictError::Inner)
            }
        }
    )*};
}

counted_values!(SerializeTupleStruct, SerializeTupleVariant);

/// The named-field compound serializers: fields go through [`Strict`], a skipped field is
/// refused.
macro_rules! forward_fields {
    ($($trait:ident),* $(,)?) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = StrictError<C::Error>;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Self::Error> {
                if let Some((name, read)) = self.expect {
                    match (read.names(), read.declared) {
                        (Some(names), _) => name_differs(name, self.written, key, names)?,
                        (None, Some(declared)) => {
                            self.at = name_not_read(name, key, declared, self.at)?
                        }
                        (None, None) => {}
                    }
                }
                self.written += 1;
                self.inner
                    .serialize_field(key, &Nested(v, self.depth + 1))
                    .map_err(StrictError::Inner)
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
                Err(skipped(key))
            }
            fn end(self) -> Result<C::Ok, Self::Error> {
                self.count_matches()?;
                self.inner.end().map_err(StrictError::Inner)
            }
        }
    )*};
}

forward_fields!(SerializeStruct, SerializeStructVariant);

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = StrictError<C::Error>;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Self::Error> {
        self.inner
            .serialize_key(&Nested(k, self.depth + 1))
            .map_err(StrictError::Inner)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        self.inner
            .serialize_value(&Nested(v, self.depth + 1))
            .map_err(StrictError::Inner)
    }
    fn end(self) -> Result<C::Ok, Self::Error> {
        self.inner.end().map_err(StrictError::Inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        encode(v, super::super::codec::AppendTo(&mut out), None)?;
        Ok(out)
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Skippy {
        #[serde(skip_serializing_if = "is_zero", default)]
        a: u8,
        s: String,
    }

    fn is_zero(x: &u8) -> bool {
        *x == 0
    }

    #[derive(serde::Serialize)]
    enum E {
        V {
            #[serde(skip_serializing_if = "Option::is_none")]
            x: Option<u8>,
        },
    }

    #[test]
    fn a_skipped_field_is_refused_at_any_depth() {
        let err = strict(&Skippy {
            a: 0,
            s: "\u{1}x".into(),
        })
        .unwrap_err();
        assert!(err.contains("field `a`"), "{err}");
        assert!(strict(&Skippy {
            a: 1,
            s: "x".into()
        })
        .is_ok());
        let nested = vec![(
            1u8,
            Some(Skippy {
                a: 0,
                s: String::new(),
            }),
        )];
        assert!(strict(&nested).unwrap_err().contains("field `a`"));
        assert!(strict(&E::V { x: None }).unwrap_err().contains("field `x`"));
        assert!(strict(&E::V { x: Some(1) }).is_ok());
    }

    #[test]
    fn the_bytes_are_postcards_own() {
        let v = (7u64, "abc".to_string(), vec![Some(1.5f64), None], [1u8, 2]);
        assert_eq!(strict(&v).unwrap(), postcard::to_stdvec(&v).unwrap());
        let m: std::collections::BTreeMap<u8, String> = [(1, "a".into())].into();
        assert_eq!(strict(&m).unwrap(), postcard::to_stdvec(&m).unwrap());
    }

    #[test]
    fn a_serialize_error_keeps_its_message_at_any_depth() {
        struct Unlucky(u8);
        impl Serialize for Unlucky {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if self.0 == 77 {
                    return Err(ser::Error::custom("77 is unlucky"));
                }
                s.serialize_u8(self.0)
            }
        }
        assert!(strict(&Unlucky(77)).unwrap_err().contains("77 is unlucky"));
        let err = strict(&vec![Unlucky(1), Unlucky(77)]).unwrap_err();
        assert!(err.contains("77 is unlucky"), "{err}");
    }
}

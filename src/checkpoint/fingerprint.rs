//! A hash of a value's serde data model in which the order of map entries and of sequence
//! elements does not count, for telling whether a record read back is the value written.
//!
//! The writer's round-trip check (`Codec::encode_checked`) decodes each record's bytes and
//! encodes the value read back: the same bytes mean the same value, as far as its
//! `Serialize` can tell. A `HashMap` or `HashSet` read back iterates in another order, so
//! its bytes differ while its value does not; for those records the check compares the
//! fingerprints of the two values instead. Everything whose order is part of the value
//! (struct fields, tuples, tuple structs, variants) is hashed in order; sequences and maps
//! are hashed as multisets (a commutative sum of their elements' hashes), since serde
//! cannot tell a `Vec` from a `HashSet`.
//!
//! Serializers normally never see a value's type beyond its serde form, so this one
//! reports `is_human_readable() == false` like postcard does: a type that serializes
//! differently for readable formats shows the form that was written.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::ser::{self, Serialize, Serializer};

/// The fingerprint of `x` (see the module docs), or why its `Serialize` failed.
pub(super) fn fingerprint<T: Serialize + ?Sized>(x: &T) -> Result<u64, String> {
    x.serialize(Fingerprint).map_err(|e| e.0)
}

/// A `Serialize` impl's error while fingerprinting.
#[derive(Debug)]
pub(super) struct Failed(String);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

impl ser::Error for Failed {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Failed(msg.to_string())
    }
}

/// The kinds of node, hashed first so that e.g. `Some(1u8)` and `1u8` differ.
#[derive(Hash)]
enum Kind {
    Bool,
    Int,
    Float32,
    Float64,
    Char,
    Str,
    Bytes,
    None,
    Some,
    Unit,
    UnitStruct,
    UnitVariant,
    NewtypeStruct,
    NewtypeVariant,
    Seq,
    Tuple,
    TupleStruct,
    TupleVariant,
    Map,
    Struct,
    StructVariant,
}

fn leaf(kind: Kind, value: impl Hash) -> Result<u64, Failed> {
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    value.hash(&mut h);
    Ok(h.finish())
}

/// Spreads an element's hash before it joins a commutative sum, so that sums of related
/// hashes do not cancel.
fn mix(x: u64) -> u64 {
    let mut h = DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

struct Fingerprint;

/// A node whose children are hashed in order (tuples, structs, variants).
struct Ordered(DefaultHasher);

impl Ordered {
    fn new(kind: Kind, head: impl Hash) -> Self {
        let mut h = DefaultHasher::new();
        kind.hash(&mut h);
        head.hash(&mut h);
        Ordered(h)
    }

    fn push<T: Serialize + ?Sized>(&mut self, x: &T) -> Result<(), Failed> {
        x.serialize(Fingerprint)?.hash(&mut self.0);
        Ok(())
    }
}

/// A node whose children are a multiset (sequences, maps).
struct Unordered {
    kind: Kind,
    count: u64,
    sum: u64,
    key: Option<u64>,
}

impl Unordered {
    fn new(kind: Kind) -> Self {
        Unordered {
            kind,
            count: 0,
            sum: 0,
            key: None,
        }
    }

    fn add(&mut self, element: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(mix(element));
    }

    fn end(self) -> Result<u64, Failed> {
        leaf(self.kind, (self.count, self.sum))
    }
}

/// Integers of every width up to 128 bits hash as the same `i128` (the type is the same on
/// both sides of a comparison; only the value counts).
macro_rules! integers {
    ($($method:ident: $t:ty),* $(,)?) => {$(
        fn $method(self, v: $t) -> Result<u64, Failed> {
            leaf(Kind::Int, i128::from(v))
        }
    )*};
}

impl Serializer for Fingerprint {
    type Ok = u64;
    type Error = Failed;
    type SerializeSeq = Unordered;
    type SerializeTuple = Ordered;
    type SerializeTupleStruct = Ordered;
    type SerializeTupleVariant = Ordered;
    type SerializeMap = Unordered;
    type SerializeStruct = Ordered;
    type SerializeStructVariant = Ordered;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<u64, Failed> {
        leaf(Kind::Bool, v)
    }
    integers!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
    );
    fn serialize_u128(self, v: u128) -> Result<u64, Failed> {
        // Kept apart from the signed values: a u128 above i128::MAX has no i128 twin.
        leaf(Kind::Int, (1u8, v))
    }
    fn serialize_f32(self, v: f32) -> Result<u64, Failed> {
        leaf(Kind::Float32, v.to_bits())
    }
    fn serialize_f64(self, v: f64) -> Result<u64, Failed> {
        leaf(Kind::Float64, v.to_bits())
    }
    fn serialize_char(self, v: char) -> Result<u64, Failed> {
        leaf(Kind::Char, v)
    }
    fn serialize_str(self, v: &str) -> Result<u64, Failed> {
        leaf(Kind::Str, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<u64, Failed> {
        leaf(Kind::Bytes, v)
    }
    fn serialize_none(self) -> Result<u64, Failed> {
        leaf(Kind::None, ())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<u64, Failed> {
        leaf(Kind::Some, value.serialize(Fingerprint)?)
    }
    fn serialize_unit(self) -> Result<u64, Failed> {
        leaf(Kind::Unit, ())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<u64, Failed> {
        leaf(Kind::UnitStruct, name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<u64, Failed> {
        leaf(Kind::UnitVariant, (name, index, variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<u64, Failed> {
        leaf(Kind::NewtypeStruct, (name, value.serialize(Fingerprint)?))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<u64, Failed> {
        let inner = value.serialize(Fingerprint)?;
        leaf(Kind::NewtypeVariant, (name, index, variant, inner))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Unordered, Failed> {
        Ok(Unordered::new(Kind::Seq))
    }
    fn serialize_tuple(self, len: usize) -> Result<Ordered, Failed> {
        Ok(Ordered::new(Kind::Tuple, len))
    }
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Ordered, Failed> {
        Ok(Ordered::new(Kind::TupleStruct, (name, len)))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Ordered, Failed> {
        Ok(Ordered::new(
            Kind::TupleVariant,
            (name, index, variant, len),
        ))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Unordered, Failed> {
        Ok(Unordered::new(Kind::Map))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Ordered, Failed> {
        Ok(Ordered::new(Kind::Struct, (name, len)))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Ordered, Failed> {
        Ok(Ordered::new(
            Kind::StructVariant,
            (name, index, variant, len),
        ))
    }
}

impl ser::SerializeSeq for Unordered {
    type Ok = u64;
    type Error = Failed;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        let h = value.serialize(Fingerprint)?;
        self.add(h);
        Ok(())
    }
    fn end(self) -> Result<u64, Failed> {
        Unordered::end(self)
    }
}

impl ser::SerializeMap for Unordered {
    type Ok = u64;
    type Error = Failed;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Failed> {
        self.key = Some(key.serialize(Fingerprint)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Failed("a map value was serialized before its key".into()))?;
        let value = value.serialize(Fingerprint)?;
        self.add(leaf(Kind::Map, (key, value))?);
        Ok(())
    }
    fn end(self) -> Result<u64, Failed> {
        match self.key {
            Some(_) => Err(Failed("a map key was serialized without its value".into())),
            None => Unordered::end(self),
        }
    }
}

/// Tuples, tuple structs and tuple variants: elements in order.
macro_rules! ordered_elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Ordered {
            type Ok = u64;
            type Error = Failed;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failed> {
                self.push(value)
            }
            fn end(self) -> Result<u64, Failed> {
                Ok(self.0.finish())
            }
        }
    )*};
}

ordered_elements!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// Structs and struct variants: named fields in order; a skipped field counts as a gap.
macro_rules! ordered_fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Ordered {
            type Ok = u64;
            type Error = Failed;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Failed> {
                key.hash(&mut self.0);
                self.push(value)
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), Failed> {
                (key, "skipped").hash(&mut self.0);
                Ok(())
            }
            fn end(self) -> Result<u64, Failed> {
                Ok(self.0.finish())
            }
        }
    )*};
}

ordered_fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::fingerprint;

    #[test]
    fn hash_collections_compare_as_sets_and_everything_else_in_order() {
        let a: HashSet<u64> = (0..100).collect();
        let b: HashSet<u64> = (0..100).rev().collect();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let m: HashMap<String, u32> = (0..50).map(|i| (i.to_string(), i)).collect();
        let n: BTreeMap<String, u32> = (0..50).map(|i| (i.to_string(), i)).collect();
        assert_eq!(fingerprint(&m), fingerprint(&n));
        // Values that differ, including by the place of a field.
        assert_ne!(fingerprint(&(1u8, 2u8)), fingerprint(&(2u8, 1u8)));
        assert_ne!(fingerprint(&Some(1u8)), fingerprint(&1u8));
        assert_ne!(fingerprint(&vec![1u8, 1]), fingerprint(&vec![1u8]));
        assert_ne!(fingerprint(&vec![0u64, 2]), fingerprint(&vec![1u64, 1]));
        let swapped: HashMap<u32, u32> = [(1, 2), (2, 1)].into();
        let same: HashMap<u32, u32> = [(1, 1), (2, 2)].into();
        assert_ne!(fingerprint(&swapped), fingerprint(&same));
        assert_ne!(fingerprint(&f64::NAN), fingerprint(&-f64::NAN));
        assert_eq!(fingerprint(&u128::MAX), fingerprint(&u128::MAX));
        assert_ne!(fingerprint(&u128::MAX), fingerprint(&-1i128));
    }
}

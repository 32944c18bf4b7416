//! A codec of its own for records of plain fixed-width types: the primitive integers,
//! floats and `bool`, and pairs of them (`(u64, f64)`, `(u32, u32)`, `(u64, ())`, ...).
//!
//! It writes and reads **exactly postcard's bytes** (varints for integers wider than a
//! byte, zigzag for signed ones, little-endian floats), so the file format does not change
//! and either codec reads what the other wrote; the tests compare both on random values and
//! on random bytes. What it saves is the serde machinery per record: the strict wrapper
//! (these types have no fields to skip), the thread-local bookkeeping, and the writer's
//! verification (every value of these types reads back as itself, so there is nothing to
//! verify: [`Codec::exact`]). The types are recognised by `TypeId`, so no user type takes
//! this path: a user type's serde impls are the user's, and are checked.

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::Codec;
use super::layout;

/// A value with a fixed postcard form that flintlock encodes and decodes itself.
pub(crate) trait Fixed: Sized + Send + Sync + 'static {
    /// The most bytes a value takes.
    const MAX: usize;
    /// Writes the value's postcard bytes at the front of `buf` (at least [`Self::MAX`]
    /// bytes long) and returns how many it wrote.
    fn write(&self, buf: &mut [u8]) -> usize;
    /// Appends the value's postcard bytes.
    #[inline(always)]
    fn put(&self, out: &mut Vec<u8>) {
        let len = out.len();
        out.resize(len + Self::MAX, 0);
        let n = self.write(&mut out[len..]);
        out.truncate(len + n);
    }
    /// Reads a value from the front of `bytes`, as postcard would, and advances past it.
    fn take(bytes: &mut &[u8]) -> Result<Self, &'static str>;
}

const EOF: &str = "the bytes end inside a value";
const BAD_VARINT: &str = "an integer's varint is malformed";

/// For each count of leading zeros of `n | 1` (0 to 63): the length of `n`'s varint, and
/// the continuation bits of its first eight bytes.
///
/// Computed from the count, the length took a division by 7 (a multiply and shifts) and
/// the mask a shift by it, a chain of about a dozen dependent steps per record on the way
/// to the next record's position; a lookup is one load (measured: 6.2 → 3.7 ns per `u64`
/// encoded, in a loop like [`FixedCodec::encode_all`]'s).
const VARINT_SHAPE: [(u8, u64); 64] = {
    let mut table = [(0, 0); 64];
    let mut zeros = 0;
    while zeros < 64 {
        // 1..=64 significant bits; ceil(bits / 7) bytes.
        let len = (64 - zeros as u32).div_ceil(7);
        // Continuation bits on every byte but the last, within the first eight.
        let more = if len - 1 < 8 { len - 1 } else { 8 };
        let mask = if more == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * more)) - 1
        };
        table[zeros] = (len as u8, 0x8080_8080_8080_8080 & mask);
        zeros += 1;
    }
    table
};

/// Writes `n` as a LEB128 varint (postcard's form of integers wider than a byte) at the
/// front of `buf`, which has room for the longest (10 bytes), and returns its length.
///
/// Without a branch per byte: the length and the continuation bits come from the count of
/// leading zeros ([`VARINT_SHAPE`]), and the low 56 bits are spread into eight 7-bit
/// groups with three shift-and-mask steps. All ten bytes are stored whatever the length
/// (the caller's buffer has room for them, and the bytes past the length are overwritten
/// by the next value or cut off). A loop per byte ends in a branch whose outcome depends on
/// the value, mispredicted about once per record when lengths vary (random 64-bit values
/// take 9 or 10 bytes).
#[inline(always)]
fn write_varint(n: u64, buf: &mut [u8]) -> usize {
    let buf: &mut [u8; 10] = buf.first_chunk_mut().expect("room for a varint");
    let (len, continuation) = VARINT_SHAPE[(n | 1).leading_zeros() as usize];
    // Bits 0..56 into the low 7 bits of bytes 0..8.
    let x = n & 0x00FF_FFFF_FFFF_FFFF;
    let x = (x & 0x0000_0000_0FFF_FFFF) | ((x & 0x00FF_FFFF_F000_0000) << 4);
    let x = (x & 0x0000_3FFF_0000_3FFF) | ((x & 0x0FFF_C000_0FFF_C000) << 2);
    let x = (x & 0x007F_007F_007F_007F) | ((x & 0x3F80_3F80_3F80_3F80) << 1);
    let (word, tail) = buf.split_first_chunk_mut::<8>().expect("ten bytes");
    *word = (x | continuation).to_le_bytes();
    // The ninth byte continues exactly when bit 63 is set (a ten-byte varint).
    let top = (n >> 63) as u8;
    tail[0] = ((n >> 56) as u8 & 0x7F) | (top << 7);
    tail[1] = top;
    usize::from(len)
}

/// The 7-bit groups of a varint's first eight bytes (little-endian in `x`, continuation
/// bits included; bytes past the varint's end zeroed), gathered into one integer.
#[inline(always)]
fn gather(x: u64) -> u64 {
    (x & 0x7F)
        | ((x >> 1) & (0x7F << 7))
        | ((x >> 2) & (0x7F << 14))
        | ((x >> 3) & (0x7F << 21))
        | ((x >> 4) & (0x7F << 28))
        | ((x >> 5) & (0x7F << 35))
        | ((x >> 6) & (0x7F << 42))
        | ((x >> 7) & (0x7F << 49))
}

/// Reads a varint of at most `max` bytes whose last byte is at most `last`, accepting and
/// refusing exactly what postcard does (postcard accepts overlong forms such as
/// `[0x80, 0x00]`, and refuses a last byte that would overflow the type).
///
/// With eight bytes at hand, it reads them as one word, and:
/// - a varint of one to four bytes (every value below 2^28) takes one branch per length,
///   each advancing the cursor by a constant. Where lengths repeat from record to record
///   (ids, counts, keys) the branches are predicted, and the next record's load does not
///   wait for this one's length: computed from the bytes, the length was a chain of
///   dependent steps from each record to the next (a third of a checkpoint's read time);
/// - a varint of five to eight bytes is found with `trailing_zeros` on the continuation
///   bits and gathered with shifts and masks;
/// - a varint of nine or ten bytes (a 64-bit value from 2^56) adds the bytes after the
///   word.
///
/// Anything else (the end of the bytes, an overlong varint, a last byte postcard refuses)
/// takes the byte-by-byte path, which decides exactly as postcard does.
#[inline(always)]
fn take_varint(bytes: &mut &[u8], max: usize, last: u8) -> Result<u64, &'static str> {
    if let Some(head) = bytes.first_chunk::<8>() {
        let word = u64::from_le_bytes(*head);
        // `n < max` leaves the last byte's check (a varint of `max` bytes) to the paths
        // below; `max` is a constant, so these comparisons fold away.
        // (Written out: as a loop over `n` it measured 25% slower.)
        if word & 0x80 == 0 && 1 < max {
            *bytes = &bytes[1..];
            return Ok(word & 0x7F);
        }
        if word & 0x8000 == 0 && 2 < max {
            *bytes = &bytes[2..];
            return Ok(gather(word & 0xFFFF));
        }
        if word & 0x80_0000 == 0 && 3 < max {
            *bytes = &bytes[3..];
            return Ok(gather(word & 0xFF_FFFF));
        }
        if word & 0x8000_0000 == 0 && 4 < max {
            *bytes = &bytes[4..];
            return Ok(gather(word & 0xFFFF_FFFF));
        }
        let stops = !word & 0x8080_8080_8080_8080;
        if stops != 0 {
            let len = (stops.trailing_zeros() / 8 + 1) as usize;
            if len < max || (len == max && (word >> ((len - 1) * 8)) as u8 <= last) {
                *bytes = &bytes[len..];
                return Ok(gather(word & (u64::MAX >> (64 - 8 * len))));
            }
        } else if max == 10
            && let Some(&[.., b8, b9]) = bytes.first_chunk::<10>()
        {
            if b8 & 0x80 == 0 {
                *bytes = &bytes[9..];
                return Ok(gather(word) | (u64::from(b8) << 56));
            }
            if b9 <= last {
                *bytes = &bytes[10..];
                return Ok(gather(word) | (u64::from(b8 & 0x7F) << 56) | (u64::from(b9) << 63));
            }
        }
    }
    let (v, len) = varint_bytewise(bytes, max, last)?;
    *bytes = &bytes[len..];
    Ok(v)
}

/// [`take_varint`] one byte at a time, postcard's own loop: the value and its length.
///
/// It takes the bytes by value, not the cursor by reference: a cursor whose address
/// reached a function that is not inlined would live in memory, and every value decoded
/// would store and reload it on the chain from one record to the next.
#[inline(never)]
fn varint_bytewise(bytes: &[u8], max: usize, last: u8) -> Result<(u64, usize), &'static str> {
    let mut out = 0u64;
    for i in 0..max {
        let &val = bytes.get(i).ok_or(EOF)?;
        out |= u64::from(val & 0x7F) << (7 * i);
        if val & 0x80 == 0 {
            if i == max - 1 && val > last {
                return Err(BAD_VARINT);
            }
            return Ok((out, i + 1));
        }
    }
    Err(BAD_VARINT)
}

/// The largest last byte of a varint of a `bits`-bit integer (postcard's rule).
const fn last_byte(bits: u32) -> u8 {
    (1u8 << (bits % 7)) - 1
}

/// The most bytes of a varint of a `bits`-bit integer.
const fn varint_bytes(bits: u32) -> usize {
    bits.div_ceil(7) as usize
}

#[inline(always)]
fn take_array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], &'static str> {
    let (head, rest) = bytes.split_first_chunk::<N>().ok_or(EOF)?;
    *bytes = rest;
    Ok(*head)
}

macro_rules! fixed_unsigned {
    ($($t:ty),*) => {$(
        impl Fixed for $t {
            const MAX: usize = 10;
            #[inline(always)]
            fn write(&self, buf: &mut [u8]) -> usize {
                write_varint(*self as u64, buf)
            }
            #[inline(always)]
            fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
                let bits = <$t>::BITS;
                take_varint(bytes, varint_bytes(bits), last_byte(bits)).map(|v| v as $t)
            }
        }
    )*};
}

macro_rules! fixed_signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Fixed for $t {
            const MAX: usize = 10;
            #[inline(always)]
            fn write(&self, buf: &mut [u8]) -> usize {
                // Zigzag, in the type's own width (as postcard does).
                let z = ((*self << 1) ^ (*self >> (<$t>::BITS - 1))) as $u;
                write_varint(z as u64, buf)
            }
            #[inline(always)]
            fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
                let bits = <$u>::BITS;
                let z = take_varint(bytes, varint_bytes(bits), last_byte(bits))? as $u;
                Ok(((z >> 1) as $t) ^ (-((z & 1) as $t)))
            }
        }
    )*};
}

fixed_unsigned!(u16, u32, u64);
fixed_signed!(i16 => u16, i32 => u32, i64 => u64);

impl Fixed for u8 {
    const MAX: usize = 1;
    #[inline(always)]
    fn write(&self, buf: &mut [u8]) -> usize {
        buf[0] = *self;
        1
    }
    #[inline(always)]
    fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
        take_array::<1>(bytes).map(|[b]| b)
    }
}

impl Fixed for i8 {
    const MAX: usize = 1;
    #[inline(always)]
    fn write(&self, buf: &mut [u8]) -> usize {
        buf[0] = *self as u8;
        1
    }
    #[inline(always)]
    fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
        take_array::<1>(bytes).map(|[b]| b as i8)
    }
}

impl Fixed for bool {
    const MAX: usize = 1;
    #[inline(always)]
    fn write(&self, buf: &mut [u8]) -> usize {
        buf[0] = u8::from(*self);
        1
    }
    #[inline(always)]
    fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
        match take_array::<1>(bytes)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err("a bool is neither 0 nor 1"),
        }
    }
}

impl Fixed for f32 {
    const MAX: usize = 4;
    #[inline(always)]
    fn write(&self, buf: &mut [u8]) -> usize {
        *buf.first_chunk_mut().expect("room for an f32") = self.to_le_bytes();
        4
    }
    #[inline(always)]
    fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
        take_array::<4>(bytes).map(f32::from_le_bytes)
    }
}

impl Fixed for f64 {
    const MAX: usize = 8;
    #[inline(always)]
    fn write(&self, buf: &mut [u8]) -> usize {
        *buf.first_chunk_mut().expect("room for an f64") = self.to_le_bytes();
        8
    }
    #[inline(always)]
    fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
        take_array::<8>(bytes).map(f64::from_le_bytes)
    }
}

impl Fixed for () {
    const MAX: usize = 0;
    #[inline(always)]
    fn write(&self, _: &mut [u8]) -> usize {
        0
    }
    #[inline(always)]
    fn take(_: &mut &[u8]) -> Result<Self, &'static str> {
        Ok(())
    }
}

impl<A: Fixed, B: Fixed> Fixed for (A, B) {
    const MAX: usize = A::MAX + B::MAX;
    #[inline(always)]
    fn write(&self, buf: &mut [u8]) -> usize {
        let n = self.0.write(buf);
        n + self.1.write(&mut buf[n..])
    }
    #[inline(always)]
    fn take(bytes: &mut &[u8]) -> Result<Self, &'static str> {
        let a = A::take(bytes)?;
        Ok((a, B::take(bytes)?))
    }
}

/// The codec of a [`Fixed`] type: postcard's bytes without serde.
pub(crate) struct FixedCodec<T>(PhantomData<fn() -> T>);

impl<T: Fixed + Serialize + DeserializeOwned> Codec<T> for FixedCodec<T> {
    #[inline]
    fn encode(&self, x: &T, out: &mut Vec<u8>) -> Result<(), String> {
        x.put(out);
        Ok(())
    }

    /// One pass over the records into a buffer sized for the longest encodings.
    fn encode_all(&self, xs: &[T], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        out.resize(start + xs.len() * T::MAX, 0);
        let mut at = start;
        for x in xs {
            at += x.write(&mut out[at..]);
        }
        out.truncate(at);
        Ok(())
    }

    fn max_record_bytes(&self) -> Option<usize> {
        Some(T::MAX)
    }

    /// Decodes through a local copy of the cursor (kept in registers), written back once.
    fn decode_into(&self, bytes: &mut &[u8], n: usize, out: &mut Vec<T>) -> Result<(), String> {
        // `n` may come from untrusted bytes (a frame header, a peer's message): every
        // record takes at least a byte, so the bytes bound what is worth reserving.
        out.reserve(n.min(bytes.len()));
        let mut cursor: &[u8] = bytes;
        let mut result = Ok(());
        for i in 0..n {
            match T::take(&mut cursor) {
                Ok(x) => out.push(x),
                Err(e) => {
                    result = Err(format!(
                        "record {i} of the frame does not decode as `{}`: {e}",
                        std::any::type_name::<T>()
                    ));
                    break;
                }
            }
        }
        *bytes = cursor;
        result
    }

    fn exact(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn layout(&self) -> Option<layout::Layout> {
        layout::Layout::of::<T>()
    }
}

/// `X`'s fixed codec as the codec of `T`, when `T` is `X`.
fn as_codec<X, T: 'static>() -> Option<Arc<dyn Codec<T>>>
where
    X: Fixed + Serialize + DeserializeOwned,
{
    if TypeId::of::<X>() != TypeId::of::<T>() {
        return None;
    }
    let codec: Arc<dyn Codec<X>> = Arc::new(FixedCodec::<X>(PhantomData));
    let any: Box<dyn Any> = Box::new(codec);
    any.downcast::<Arc<dyn Codec<T>>>().ok().map(|b| *b)
}

/// `(A, B)`'s fixed codec as `T`'s, for each `B` flintlock knows, when `T` is such a pair.
fn pair_with<A, T: 'static>() -> Option<Arc<dyn Codec<T>>>
where
    A: Fixed + Serialize + DeserializeOwned,
{
    as_codec::<(A, u64), T>()
        .or_else(as_codec::<(A, f64), T>)
        .or_else(as_codec::<(A, u32), T>)
        .or_else(as_codec::<(A, i64), T>)
        .or_else(as_codec::<(A, i32), T>)
        .or_else(as_codec::<(A, f32), T>)
        .or_else(as_codec::<(A, bool), T>)
        .or_else(as_codec::<(A, u8), T>)
        .or_else(as_codec::<(A, ()), T>)
}

/// The fixed codec of `T`, when `T` is a primitive integer (up to 64 bits), float or
/// `bool`, or a pair of `u64`, `i64`, `u32`, `i32`, `u8`, `f64`, `f32` or `bool` with one
/// of those or `()`.
pub(crate) fn fixed_codec<T: 'static>() -> Option<Arc<dyn Codec<T>>> {
    as_codec::<u64, T>()
        .or_else(as_codec::<i64, T>)
        .or_else(as_codec::<u32, T>)
        .or_else(as_codec::<i32, T>)
        .or_else(as_codec::<u16, T>)
        .or_else(as_codec::<i16, T>)
        .or_else(as_codec::<u8, T>)
        .or_else(as_codec::<i8, T>)
        .or_else(as_codec::<f64, T>)
        .or_else(as_codec::<f32, T>)
        .or_else(as_codec::<bool, T>)
        .or_else(pair_with::<u64, T>)
        .or_else(pair_with::<i64, T>)
        .or_else(pair_with::<u32, T>)
        .or_else(pair_with::<i32, T>)
        .or_else(pair_with::<u8, T>)
        .or_else(pair_with::<f64, T>)
        .or_else(pair_with::<f32, T>)
        .or_else(pair_with::<bool, T>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Postcard's bytes and the fixed codec's agree, both ways, for `T`.
    fn same_as_postcard<T>(x: &T, noise: &[u8])
    where
        T: Fixed + Serialize + DeserializeOwned + std::fmt::Debug,
    {
        let mut mine = Vec::new();
        x.put(&mut mine);
        assert_eq!(mine, postcard::to_allocvec(x).unwrap(), "{x:?}");
        let mut rest = &mine[..];
        let back = T::take(&mut rest).unwrap();
        assert_eq!(postcard::to_allocvec(&back).unwrap(), mine, "{x:?}");
        assert!(rest.is_empty());
        // Any bytes: both accept the same prefix as the same value, or both refuse.
        let mut rest = noise;
        let theirs = postcard::take_from_bytes::<T>(noise);
        match (T::take(&mut rest), theirs) {
            (Ok(a), Ok((b, left))) => {
                // Compared by their bytes: a NaN is not equal to itself.
                let (a, b) = (postcard::to_allocvec(&a), postcard::to_allocvec(&b));
                assert_eq!(a.unwrap(), b.unwrap(), "{noise:?}");
                assert_eq!(rest, left, "{noise:?}");
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{noise:?}: fixed {a:?}, postcard {b:?}"),
        }
    }

    proptest! {
        #[test]
        fn the_bytes_are_postcards_own(
            a: u64, b: i64, c: u32, d: i32, e: u16, f: i16, g: u8, h: i8,
            x: f64, y: f32, t: bool,
            noise in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            same_as_postcard(&a, &noise);
            same_as_postcard(&b, &noise);
            same_as_postcard(&c, &noise);
            same_as_postcard(&d, &noise);
            same_as_postcard(&e, &noise);
            same_as_postcard(&f, &noise);
            same_as_postcard(&g, &noise);
            same_as_postcard(&h, &noise);
            same_as_postcard(&t, &noise);
            same_as_postcard(&x, &noise);
            same_as_postcard(&y, &noise);
            same_as_postcard(&(a, x), &noise);
            same_as_postcard(&(d, y), &noise);
            same_as_postcard(&(b, c), &noise);
            same_as_postcard(&(t, ()), &noise);
            same_as_postcard(&(g, h), &noise);
            // Values of every varint length, not only the long ones most random values take.
            same_as_postcard(&(a >> (c % 64)), &noise);
            same_as_postcard(&(b >> (c % 64)), &noise);
            same_as_postcard(&((c >> (a % 32)), x), &noise);
            same_as_postcard(&(e >> (a % 16)), &noise);
        }
    }

    #[test]
    fn edge_values_and_overlong_varints_match_postcard() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX - 1, u64::MAX] {
            same_as_postcard(&v, &[]);
        }
        // Both sides of every length boundary of the branchless encoder.
        for k in 0..64 {
            for v in [1u64 << k, (1u64 << k) - 1, (1u64 << k) + 1, !0u64 >> k] {
                same_as_postcard(&v, &[]);
                same_as_postcard(&(v as u32, v as f64), &[]);
                same_as_postcard(&(v as i64), &[]);
            }
        }
        for v in [i64::MIN, -1, 0, 1, i64::MAX] {
            same_as_postcard(&v, &[]);
        }
        for v in [i16::MIN, -1, 0, i16::MAX] {
            same_as_postcard(&v, &[]);
        }
        let odd: [&[u8]; 13] = [
            &[0x80, 0x00],
            // A varint of the type's most bytes, eight bytes at hand (the word path's
            // last-byte check): u16 accepts a last byte of 3 and refuses 4, u32 15 and 16.
            &[0x80, 0x80, 0x03, 0, 0, 0, 0, 0],
            &[0x80, 0x80, 0x04, 0, 0, 0, 0, 0],
            &[0x80, 0x80, 0x80, 0x80, 0x0f, 0, 0, 0],
            &[0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xaa],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0x81, 0x00,
            ],
            &[0xff; 11],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0xff, 0xff, 0x03],
            &[0xff, 0xff, 0x04],
        ];
        for noise in odd {
            same_as_postcard(&0u64, noise);
            same_as_postcard(&0i64, noise);
            same_as_postcard(&0u16, noise);
            same_as_postcard(&0i16, noise);
            same_as_postcard(&0u32, noise);
            same_as_postcard(&(0u32, 0u8), noise);
        }
    }

    proptest! {
        #[test]
        fn long_varints_and_their_errors_match_postcard(
            run in proptest::collection::vec(0x80u8..=0xff, 0..12),
            tail in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            // Runs of continuation bytes: every length, including past the longest varint
            // and the bytes ending inside one.
            let noise: Vec<u8> = run.into_iter().chain(tail).collect();
            same_as_postcard(&0u64, &noise);
            same_as_postcard(&0i64, &noise);
            same_as_postcard(&0u32, &noise);
            same_as_postcard(&0u16, &noise);
            same_as_postcard(&(0u64, 0u8), &noise);
        }
    }

    /// A batch encoded in one call (each value's ten-byte store overlapping the next one's
    /// place) is the concatenation of postcard's encodings, and decodes back whole.
    fn batch_same_as_postcard<T>(xs: &[T])
    where
        T: Fixed + Serialize + DeserializeOwned + std::fmt::Debug,
    {
        let codec = FixedCodec::<T>(PhantomData);
        let mut mine = vec![0xAB]; // appended after what the buffer holds
        codec.encode_all(xs, &mut mine).unwrap();
        let mut theirs = vec![0xAB];
        for x in xs {
            theirs.extend(postcard::to_allocvec(x).unwrap());
        }
        assert_eq!(mine, theirs);
        let mut rest = &mine[1..];
        let mut back = Vec::new();
        codec.decode_into(&mut rest, xs.len(), &mut back).unwrap();
        assert!(rest.is_empty());
        let again: Vec<u8> = back
            .iter()
            .flat_map(|x| postcard::to_allocvec(x).unwrap())
            .collect();
        assert_eq!(again, theirs[1..]);
    }

    proptest! {
        #[test]
        fn batches_are_postcards_bytes(
            xs in proptest::collection::vec((any::<u64>(), 0u32..64, any::<f64>()), 0..200),
        ) {
            let pairs: Vec<(u64, f64)> = xs.iter().map(|&(a, s, x)| (a >> s, x)).collect();
            batch_same_as_postcard(&pairs);
            let signed: Vec<i64> = xs.iter().map(|&(a, s, _)| (a as i64) >> s).collect();
            batch_same_as_postcard(&signed);
            let small: Vec<(u32, u16)> =
                xs.iter().map(|&(a, s, _)| ((a >> 32) as u32 >> (s / 2), a as u16)).collect();
            batch_same_as_postcard(&small);
        }
    }

    #[test]
    fn only_the_known_types_take_the_fixed_codec() {
        assert!(fixed_codec::<(u64, f64)>().is_some());
        assert!(fixed_codec::<(i32, ())>().is_some());
        assert!(fixed_codec::<u16>().is_some());
        assert!(fixed_codec::<(u64, String)>().is_none());
        assert!(fixed_codec::<(u64, (u64, u64))>().is_none());
        assert!(fixed_codec::<u128>().is_none());
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Mine(u64);
        assert!(fixed_codec::<Mine>().is_none());
    }
}

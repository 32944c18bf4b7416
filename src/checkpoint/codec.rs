//! The record codec: postcard, captured where `T: Serialize + DeserializeOwned` is known
//! (in `checkpoint()` and `open_checkpoint()`), so that the engine's code needs no serde
//! bounds. Frames are encoded into one buffer and decoded with errors that say what to do
//! about the serde attributes postcard cannot read back.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::fingerprint::fingerprint;
use super::layout::FieldCounts;
use super::{layout, strict};

/// Encodes and decodes records of `T` (postcard), captured where `T: Serialize +
/// DeserializeOwned` is known, i.e. in `checkpoint()` and `open_checkpoint()`.
pub(crate) trait Codec<T>: Send + Sync {
    /// Appends `x`'s postcard encoding to `out`; refuses what would not read back as the
    /// same value (see `strict`). The error says why.
    fn encode(&self, x: &T, out: &mut Vec<u8>) -> std::result::Result<(), String>;
    /// Appends the encodings of all of `xs` to `out`, as [`Codec::encode`] of each would.
    /// On an error `out` may hold some of them.
    fn encode_all(&self, xs: &[T], out: &mut Vec<u8>) -> std::result::Result<(), String> {
        xs.iter().try_for_each(|x| self.encode(x, out))
    }
    /// The most bytes one record takes, when that is bounded (fixed-width records).
    fn max_record_bytes(&self) -> Option<usize> {
        None
    }
    fn decode_frame(&self, bytes: &[u8], records: u32) -> std::result::Result<Vec<T>, String> {
        let mut out = Vec::with_capacity((records as usize).min(bytes.len()));
        let mut rest = bytes;
        self.decode_into(&mut rest, records as usize, &mut out)?;
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes left after the frame's {records} records",
                rest.len()
            ));
        }
        Ok(out)
    }
    /// Decodes `n` records from the front of `bytes`, appends them to `out` and advances
    /// `bytes` past them. The error names the first record (counted from this call) that
    /// does not decode.
    fn decode_into(
        &self,
        bytes: &mut &[u8],
        n: usize,
        out: &mut Vec<T>,
    ) -> std::result::Result<(), String>;
    /// Appends `x`'s encoding to `out`, as [`Codec::encode`] does, and checks that it reads
    /// back: the bytes decode from exactly themselves, as the value written (see
    /// [`SerdeCodec`]'s round trip). The error says why, and `out` is left as it was.
    fn encode_checked(&self, x: &T, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let start = out.len();
        let checked = self
            .encode(x, out)
            .map_err(|e| format!("it does not encode: {e}"))
            .and_then(|()| {
                let mut own = &out[start..];
                let mut one = Vec::with_capacity(1);
                self.decode_into(&mut own, 1, &mut one)
                    .map_err(|e| format!("its bytes do not read back: {e}"))?;
                match own.len() {
                    0 => Ok(()),
                    left => Err(format!("{left} of its bytes are left over")),
                }
            });
        if checked.is_err() {
            out.truncate(start);
        }
        checked
    }
    /// Whether every value encodes to bytes that read back as the same value, so that the
    /// writer has nothing to verify (the fixed-width codec of primitive types).
    fn exact(&self) -> bool {
        false
    }
    fn type_name(&self) -> &'static str;
    /// The element type's structural layout, when it can be traced.
    fn layout(&self) -> Option<layout::Layout>;
}

/// What to do about a type postcard cannot read back, for error messages.
const SERDE_ADVICE: &str = "postcard is not self-describing: serde attributes that need \
    field names or type tags (untagged, internally or adjacently tagged enums, flatten) and \
    deserialize_any types such as serde_json::Value do not read back; give the element type \
    a plain serde form";

struct SerdeCodec<T> {
    /// The fields `T`'s `Deserialize` reads per struct (traced at the first record; `None`
    /// when `T` has no struct whose count is known, or cannot be traced).
    fields: OnceLock<Option<Arc<FieldCounts>>>,
    _type: PhantomData<fn() -> T>,
}

/// The codec of `T`: the fixed-width codec for primitive types and pairs of them
/// (postcard's bytes without serde, see `fixed`), postcard through serde otherwise.
pub(crate) fn codec_for<T: Serialize + DeserializeOwned + 'static>() -> Arc<dyn Codec<T>> {
    super::fixed::fixed_codec::<T>().unwrap_or_else(|| {
        Arc::new(SerdeCodec {
            fields: OnceLock::new(),
            _type: PhantomData,
        })
    })
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for SerdeCodec<T> {
    fn encode(&self, x: &T, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let fields = self
            .fields
            .get_or_init(|| layout::field_counts_of::<T>().filter(|counts| !counts.is_empty()));
        strict::encode(x, AppendTo(out), fields.as_ref())
    }

    fn decode_into(
        &self,
        bytes: &mut &[u8],
        n: usize,
        out: &mut Vec<T>,
    ) -> std::result::Result<(), String> {
        for i in 0..n {
            let (x, r) = postcard::take_from_bytes::<T>(bytes).map_err(|e| {
                format!(
                    "record {i} of the frame does not decode as `{}`: {e} (damaged, or \
                         holding values this type's Deserialize rejects)",
                    std::any::type_name::<T>()
                )
            })?;
            out.push(x);
            *bytes = r;
        }
        Ok(())
    }

    /// The round trip: the record's bytes must decode from exactly themselves, and the
    /// value read back must encode to the same bytes (it is then the value written, as far
    /// as `T`'s `Serialize` can tell). Where the bytes differ, a `HashMap` or `HashSet` read
    /// back in another order is told apart from another value by comparing the two values'
    /// [`fingerprint`](super::fingerprint)s, in which such order does not count.
    fn encode_checked(&self, x: &T, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let start = out.len();
        let checked = self
            .encode(x, out)
            .map_err(|e| format!("it does not encode: {e}"))
            .and_then(|()| round_trip(x, out, start));
        if checked.is_err() {
            out.truncate(start);
        }
        checked
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn layout(&self) -> Option<layout::Layout> {
        layout::Layout::of::<T>()
    }
}

/// Checks that the record encoded at `out[start..]` reads back as `x` (see
/// [`SerdeCodec::encode_checked`]). `out` ends as it began.
fn round_trip<T: Serialize + DeserializeOwned>(
    x: &T,
    out: &mut Vec<u8>,
    start: usize,
) -> std::result::Result<(), String> {
    let written = out.len() - start;
    let back = match postcard::take_from_bytes::<T>(&out[start..]) {
        Ok((back, [])) => back,
        Ok((_, rest)) => {
            return Err(format!(
                "it was written as {written} bytes but reads back from {} of them \
                 ({SERDE_ADVICE})",
                written - rest.len()
            ))
        }
        Err(e) => return Err(format!("its {written} bytes do not read back: {e}")),
    };
    let end = out.len();
    let again = postcard::serialize_with_flavor(&back, AppendTo(out));
    let same = again.is_ok() && out[start..end] == out[end..];
    out.truncate(end);
    // The same bytes are the same value, unless some value took no bytes at all (see
    // `strict::wrote_zero_width`). Other bytes may still be the same value: hash-ordered
    // collections read back in another order. Both are settled by comparing the values.
    if same && !strict::wrote_zero_width() {
        return Ok(());
    }
    match (fingerprint(x), fingerprint(&back)) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(e), _) | (_, Err(e)) => Err(format!(
            "the value read back from its bytes could not be compared with the value \
             written: {e}"
        )),
        _ => Err(format!(
            "its bytes read back as another value: the value decoded from its {written} \
             bytes is not the one written. Serde attributes that write one form and read \
             another do this (a rename or skip for one direction only, `from` and `into` \
             through different types, a `serialize_with` without a matching \
             `deserialize_with`, a `None` written as a unit), and so does a `Serialize` whose \
             output is not a function of the value (a float sum over a `HashMap`'s order); \
             give the type one serde form for both directions"
        )),
    }
}

/// A postcard output that appends to a borrowed `Vec`: about 3x faster per record than
/// `postcard::to_extend`, which moves the buffer in and out of a serializer for every call
/// (measured: 10 ns against 34 ns per `u64`).
pub(super) struct AppendTo<'a>(pub(super) &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

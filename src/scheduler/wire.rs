//! The bytes of a task result that crosses processes: in cluster mode every process gets
//! every partition's result of an action (see `crate::cluster`). In one process nothing is
//! encoded: [`Wire`] is only called when there is another process to send to.
//!
//! Plain values (counts, sums, flags, and options, pairs and vectors of them) encode
//! themselves. Records of the user's types go through the codec the context has for them
//! (the spill codecs: primitive types, `String` and pairs of them built in, others added by
//! `Context::register_spillable`), wrapped as [`One`] or [`Many`]; a type without one fails
//! the job with [`Error::NoCodec`].

use std::sync::Arc;

use crate::checkpoint::Codec;
use crate::context::ContextInner;
use crate::error::{Error, Result};

/// A task result that can be sent to another process and read back there.
pub(crate) trait Wire: Sized + Send + 'static {
    /// Appends the value's bytes.
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()>;
    /// Reads a value from the front of `bytes` and advances past it.
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self>;
}

/// A message for bytes that do not read back: a flintlock bug or a peer of another build.
fn malformed(what: &str) -> Error {
    Error::Cluster {
        process: None,
        message: format!(
            "a result received from another process is malformed ({what}): are all \
             processes the same build of the same program?"
        ),
    }
}

fn take_array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N]> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or_else(|| malformed("the bytes end early"))?;
    *bytes = rest;
    Ok(*head)
}

macro_rules! wire_le {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, _: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
                out.extend_from_slice(&self.to_le_bytes());
                Ok(())
            }
            fn take(_: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
                take_array(bytes).map(<$t>::from_le_bytes)
            }
        }
    )*};
}
wire_le!(u8, u32, u64, i64, f64);

impl Wire for usize {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        (*self as u64).put(ctx, out)
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        usize::try_from(u64::take(ctx, bytes)?).map_err(|_| malformed("a count past usize"))
    }
}

impl Wire for bool {
    fn put(&self, _: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        out.push(u8::from(*self));
        Ok(())
    }
    fn take(_: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        match take_array::<1>(bytes)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(malformed("a flag is neither 0 nor 1")),
        }
    }
}

impl Wire for () {
    fn put(&self, _: &ContextInner, _: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
    fn take(_: &ContextInner, _: &mut &[u8]) -> Result<Self> {
        Ok(())
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        self.0.put(ctx, out)?;
        self.1.put(ctx, out)
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        let a = A::take(ctx, bytes)?;
        Ok((a, B::take(ctx, bytes)?))
    }
}

impl<A: Wire, B: Wire, C: Wire> Wire for (A, B, C) {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        self.0.put(ctx, out)?;
        self.1.put(ctx, out)?;
        self.2.put(ctx, out)
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        let a = A::take(ctx, bytes)?;
        let b = B::take(ctx, bytes)?;
        Ok((a, b, C::take(ctx, bytes)?))
    }
}

impl<A: Wire> Wire for Option<A> {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        match self {
            None => false.put(ctx, out),
            Some(a) => {
                true.put(ctx, out)?;
                a.put(ctx, out)
            }
        }
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        Ok(match bool::take(ctx, bytes)? {
            false => None,
            true => Some(A::take(ctx, bytes)?),
        })
    }
}

impl<A: Wire> Wire for Vec<A> {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        self.len().put(ctx, out)?;
        self.iter().try_for_each(|a| a.put(ctx, out))
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        let n = usize::take(ctx, bytes)?;
        // Every element takes a byte at least, except `()`: no allocation past the bytes.
        let mut out = Vec::with_capacity(n.min(bytes.len()));
        for _ in 0..n {
            out.push(A::take(ctx, bytes)?);
        }
        Ok(out)
    }
}

/// The context's codec for records of `T`, or the error that says to register one.
fn codec<T: 'static>(ctx: &ContextInner) -> Result<Arc<dyn Codec<T>>> {
    ctx.memory.codec::<T>().ok_or_else(|| Error::NoCodec {
        type_name: std::any::type_name::<T>().to_string(),
    })
}

/// Records of the user's type `T`, through the context's codec for `T`.
pub(crate) struct Many<T>(pub(crate) Vec<T>);

/// Appends `xs` as [`Many`] does.
pub(crate) fn put_records<T: 'static>(
    xs: &[T],
    ctx: &ContextInner,
    out: &mut Vec<u8>,
) -> Result<()> {
    let codec = codec::<T>(ctx)?;
    xs.len().put(ctx, out)?;
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    // As a spill does: a record whose serde form does not read back as the value written
    // (the codec's round trip) fails the stage, instead of arriving as another value.
    let encoded = if codec.exact() {
        codec.encode_all(xs, out)
    } else {
        xs.iter().try_for_each(|x| codec.encode_checked(x, out))
    };
    encoded.map_err(|reason| Error::UnspillableRecord {
        type_name: std::any::type_name::<T>().to_string(),
        reason,
    })?;
    let len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

impl<T: Send + Sync + 'static> Wire for Many<T> {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        put_records(&self.0, ctx, out)
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        let codec = codec::<T>(ctx)?;
        let n = usize::take(ctx, bytes)?;
        let len = usize::take(ctx, bytes)?;
        if len > bytes.len() {
            return Err(malformed("records longer than the bytes"));
        }
        let (mut records, rest) = bytes.split_at(len);
        let mut out = Vec::with_capacity(n.min(len));
        codec
            .decode_into(&mut records, n, &mut out)
            .map_err(|why| malformed(&why))?;
        if !records.is_empty() {
            return Err(malformed("bytes left after the records"));
        }
        *bytes = rest;
        Ok(Many(out))
    }
}

/// Splits the bytes of one [`put_records`] off the front of `bytes`, undecoded.
pub(crate) fn split_records<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8]> {
    let all: &'a [u8] = bytes;
    let header: [u8; 16] = all
        .get(..16)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| malformed("the bytes end early"))?;
    let len = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(16))
        .filter(|&end| end <= all.len())
        .ok_or_else(|| malformed("records longer than the bytes"))?;
    let (records, rest) = all.split_at(end);
    *bytes = rest;
    Ok(records)
}

/// Reads the records one [`put_records`] wrote, all of `bytes`.
pub(crate) fn take_records<T: Send + Sync + 'static>(
    ctx: &ContextInner,
    mut bytes: &[u8],
) -> Result<Vec<T>> {
    let Many(records) = Many::<T>::take(ctx, &mut bytes)?;
    if !bytes.is_empty() {
        return Err(malformed("bytes left after the records"));
    }
    Ok(records)
}

/// A result of an action that refuses cluster mode before it runs its job (see
/// `ContextInner::single_process`): it never crosses processes.
pub(crate) struct LocalOnly<T>(pub(crate) T);

impl<T: Send + 'static> Wire for LocalOnly<T> {
    fn put(&self, _: &ContextInner, _: &mut Vec<u8>) -> Result<()> {
        Err(Error::Internal(format!(
            "a `{}` was about to be sent to another process",
            std::any::type_name::<T>()
        )))
    }
    fn take(_: &ContextInner, _: &mut &[u8]) -> Result<Self> {
        Err(Error::Internal(format!(
            "a `{}` was received from another process",
            std::any::type_name::<T>()
        )))
    }
}

/// One record of the user's type `T`, through the context's codec for `T`.
pub(crate) struct One<T>(pub(crate) T);

impl<T: Send + Sync + 'static> Wire for One<T> {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        put_records(std::slice::from_ref(&self.0), ctx, out)
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        let Many(mut one) = Many::<T>::take(ctx, bytes)?;
        match (one.pop(), one.is_empty()) {
            (Some(x), true) => Ok(One(x)),
            _ => Err(malformed("not exactly one record")),
        }
    }
}

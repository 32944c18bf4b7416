//! CRC-32C arithmetic: a part file's whole-file checksum follows from each frame's checksum,
//! without a second pass over the frame's bytes.
//!
//! A CRC is linear over GF(2): with the register update for `n` bytes written as
//! `R(s, B) = M^n·s ⊕ R(0, B)`, the CRC of `B` appended to a CRC `c` (pre- and
//! post-inverted, as CRC-32C is) is `¬R(¬c, B)`. A frame's checksum `h` is `B` appended to
//! `h0` (the CRC of the frame's first eight header bytes), and the file's running checksum
//! continues from `g` (the file's CRC through the frame's whole header). Eliminating
//! `R(0, B)` between the two gives
//!
//! ```text
//! crc32c_append(g, B) = h ⊕ M^n·(g ⊕ h0)
//! ```
//!
//! where `M^n·v` multiplies `v` by `x^(8n)` modulo CRC-32C's polynomial: about 20
//! multiplications of 32-bit polynomials for a 64 KiB frame (zlib's `crc32_combine`
//! method, with the table of `x^(2^k)` computed at compile time), instead of a pass over
//! 64 KiB.

use super::format::FRAME_HEADER;

/// CRC-32C's polynomial (Castagnoli), bit-reflected as the register holds it.
const POLY: u32 = 0x82f6_3b78;

/// `a·b mod POLY` for polynomials in the register's reflected bit order (bit 31 is the
/// coefficient of `x^0`). Branch-free: the bits of `a` are data.
const fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut p = 0u32;
    let mut i = 0;
    while i < 32 {
        p ^= b & ((a >> (31 - i)) & 1).wrapping_neg();
        b = (b >> 1) ^ (POLY & (b & 1).wrapping_neg());
        i += 1;
    }
    p
}

/// `X2N[k] = x^(2^k) mod POLY`. Squaring cycles with period 31 for this polynomial
/// (`x^(2^31) = x`, checked by a test), so `x^(2^k) = X2N[k % 31]` for every `k`.
const X2N: [u32; 31] = {
    let mut table = [0u32; 31];
    let mut p = 1u32 << 30; // x^1
    let mut k = 0;
    while k < 31 {
        table[k] = p;
        p = mul_mod(p, p);
        k += 1;
    }
    table
};

/// `x^(8·bytes) mod POLY`: the operator that shifts a CRC register over `bytes` zero bytes.
fn shift_operator(bytes: u64) -> u32 {
    let mut op = 1u32 << 31; // x^0
    let (mut n, mut k) = (bytes, 3); // x^(8n) = x^(n·2^3)
    while n != 0 {
        if n & 1 == 1 {
            op = mul_mod(X2N[k % 31], op);
        }
        n >>= 1;
        k += 1;
    }
    op
}

/// The CRC-32C of `a ++ b` from `crc32c(a)`, `crc32c(b)` and `b`'s length.
#[cfg(test)]
pub(crate) fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    mul_mod(shift_operator(len_b), crc_a) ^ crc_b
}

/// A file's running CRC-32C after a frame: `file_crc` is the CRC of everything before the
/// frame, `header` the frame's header (whose last four bytes are the frame's checksum of
/// its first eight bytes and the body), `body_len` the body's length. Equal to
/// `crc32c_append(crc32c_append(file_crc, header), body)` when the header's checksum is the
/// body's: the caller has verified it (reading) or computed it (writing).
pub(crate) fn extend_over_frame(
    file_crc: u32,
    header: &[u8; FRAME_HEADER],
    body_len: usize,
) -> u32 {
    let g = crc32c::crc32c_append(file_crc, header);
    let h0 = crc32c::crc32c(&header[..8]);
    let h = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    h ^ mul_mod(shift_operator(body_len as u64), g ^ h0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_table_holds_the_powers_of_x() {
        // x^1, x^2, x^4 in the reflected order; x^32 is the polynomial's low terms.
        assert_eq!(X2N[0], 1 << 30);
        assert_eq!(X2N[1], 1 << 29);
        assert_eq!(X2N[2], 1 << 27);
        assert_eq!(X2N[5], POLY);
        assert_eq!(shift_operator(0), 1 << 31, "x^0");
        assert_eq!(
            mul_mod(X2N[30], X2N[30]),
            X2N[0],
            "x^(2^31) = x: the table's period"
        );
    }

    #[test]
    fn shifts_compose_for_any_length() {
        // op(a + b) = op(a)·op(b), up to the largest lengths (where the table wraps).
        for bits in [0u32, 1, 12, 28, 30, 31, 32, 33, 40, 59, 60, 61, 62] {
            let half = shift_operator(1 << bits);
            assert_eq!(
                shift_operator(2 << bits),
                mul_mod(half, half),
                "2^{} bytes",
                bits + 1
            );
        }
        let (a, b) = (0x0123_4567_89ab_cdefu64, 0x0fed_cba9_8765_4321u64);
        assert_eq!(
            shift_operator(a + b),
            mul_mod(shift_operator(a), shift_operator(b))
        );
    }

    #[test]
    fn shifting_matches_crc_passes_over_zero_bytes() {
        // A pass over n zero bytes from register state s is the operator applied to s,
        // plus the pass from state zero: combine(c, crc(zeros), n) = crc_append(c, zeros).
        for n in [0usize, 1, 2, 3, 7, 8, 255, 4096, 65_535, 65_536, 1 << 20] {
            let zeros = vec![0u8; n];
            for c in [0u32, 1, 0xdead_beef, u32::MAX] {
                assert_eq!(
                    combine(c, crc32c::crc32c(&zeros), n as u64),
                    crc32c::crc32c_append(c, &zeros),
                    "{n} bytes from {c:#x}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn combining_equals_one_pass(
            a in proptest::collection::vec(any::<u8>(), 0..2_000),
            b in proptest::collection::vec(any::<u8>(), 0..70_000),
        ) {
            let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(
                combine(crc32c::crc32c(&a), crc32c::crc32c(&b), b.len() as u64),
                crc32c::crc32c(&whole)
            );
        }

        #[test]
        fn a_file_crc_extends_over_a_frame_as_one_pass_would(
            before in proptest::collection::vec(any::<u8>(), 0..300),
            body in proptest::collection::vec(any::<u8>(), 0..70_000),
            records in any::<u32>(),
        ) {
            let header = super::super::format::frame_header(&body, records);
            let file_crc = crc32c::crc32c(&before);
            let mut whole = before.clone();
            whole.extend_from_slice(&header);
            whole.extend_from_slice(&body);
            prop_assert_eq!(
                extend_over_frame(file_crc, &header, body.len()),
                crc32c::crc32c(&whole)
            );
        }
    }
}

//! Sixteen bytes at a time for the byte searches ([`crate::byteset`], [`crate::output::words`]):
//! SSE2 natively (part of every x86_64 target), simd128 as wasm (Workers run V8, which has it;
//! `.cargo/config.toml` turns it on), and plain arrays elsewhere. The searches are written once
//! against [`Lanes`]; the tests run them natively and, through `scripts/test`, as wasm.

/// Sixteen lanes of one byte.
pub trait Lanes: Copy {
    /// The 16 bytes at the start of `b` (`b.len() >= 16`).
    fn load(b: &[u8]) -> Self;
    fn splat(b: u8) -> Self;
    fn or(self, o: Self) -> Self;
    fn and(self, o: Self) -> Self;
    /// All ones in the lanes where the two are equal.
    fn eq(self, o: Self) -> Self;
    /// Wrapping subtraction per lane.
    fn sub(self, o: Self) -> Self;
    /// Subtraction per lane, stopping at 0.
    fn sub_sat(self, o: Self) -> Self;
    /// The top bit of each lane, lane 0 in bit 0.
    fn mask(self) -> u32;

    /// All ones in the lanes holding a byte of `lo..=hi`: `x - lo`, wrapping, is at most
    /// `hi - lo` exactly then.
    #[inline]
    fn in_range(self, lo: u8, hi: u8) -> Self {
        self.sub(Self::splat(lo))
            .sub_sat(Self::splat(hi.wrapping_sub(lo)))
            .eq(Self::splat(0))
    }
}

/// Lanes that also look bytes up in a sixteen-entry table ([`crate::output::fingerprints`]).
/// simd128 has the shuffle this needs; SSE2 has not (it came with SSSE3), so natively it is
/// the plain lanes, which the tests use and the native build does not.
pub trait Lookup: Lanes {
    /// Lane `i` of the result is lane `idx[i]` of `self` (`idx[i] < 16`).
    fn lookup(self, idx: Self) -> Self;
    /// Each lane shifted right by four bits.
    fn shr4(self) -> Self;
}

/// The lanes of this target that have [`Lookup`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub type LookupLanes = simd128::V;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub type LookupLanes = Plain;

/// Length of the leading run of ASCII bytes of `b`.
#[inline]
pub fn ascii_prefix(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(block) = b.get(i..i + 16) {
        let m = V::load(block).mask();
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    b[i..]
        .iter()
        .position(|c| !c.is_ascii())
        .map_or(b.len(), |p| p + i)
}

/// The lanes of this target.
#[cfg(target_arch = "x86_64")]
pub type V = sse2::V;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub type V = simd128::V;
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
pub type V = Plain;

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub struct V(__m128i);

    // SAFETY (every block below): SSE2 is part of every x86_64 target, so the intrinsics'
    // target feature is always there; `load` reads 16 bytes of a slice that has them.
    impl super::Lanes for V {
        #[inline]
        fn load(b: &[u8]) -> Self {
            assert!(b.len() >= 16);
            V(unsafe { _mm_loadu_si128(b.as_ptr().cast()) })
        }
        #[inline]
        fn splat(b: u8) -> Self {
            V(unsafe { _mm_set1_epi8(b as i8) })
        }
        #[inline]
        fn or(self, o: Self) -> Self {
            V(unsafe { _mm_or_si128(self.0, o.0) })
        }
        #[inline]
        fn and(self, o: Self) -> Self {
            V(unsafe { _mm_and_si128(self.0, o.0) })
        }
        #[inline]
        fn eq(self, o: Self) -> Self {
            V(unsafe { _mm_cmpeq_epi8(self.0, o.0) })
        }
        #[inline]
        fn sub(self, o: Self) -> Self {
            V(unsafe { _mm_sub_epi8(self.0, o.0) })
        }
        #[inline]
        fn sub_sat(self, o: Self) -> Self {
            V(unsafe { _mm_subs_epu8(self.0, o.0) })
        }
        #[inline]
        fn mask(self) -> u32 {
            unsafe { _mm_movemask_epi8(self.0) as u32 }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use std::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub struct V(v128);

    impl super::Lanes for V {
        #[inline]
        fn load(b: &[u8]) -> Self {
            assert!(b.len() >= 16);
            // SAFETY: the slice holds the 16 bytes read (v128_load reads unaligned).
            V(unsafe { v128_load(b.as_ptr().cast()) })
        }
        #[inline]
        fn splat(b: u8) -> Self {
            V(u8x16_splat(b))
        }
        #[inline]
        fn or(self, o: Self) -> Self {
            V(v128_or(self.0, o.0))
        }
        #[inline]
        fn and(self, o: Self) -> Self {
            V(v128_and(self.0, o.0))
        }
        #[inline]
        fn eq(self, o: Self) -> Self {
            V(u8x16_eq(self.0, o.0))
        }
        #[inline]
        fn sub(self, o: Self) -> Self {
            V(u8x16_sub(self.0, o.0))
        }
        #[inline]
        fn sub_sat(self, o: Self) -> Self {
            V(u8x16_sub_sat(self.0, o.0))
        }
        #[inline]
        fn mask(self) -> u32 {
            u32::from(u8x16_bitmask(self.0))
        }
    }

    impl super::Lookup for V {
        #[inline]
        fn lookup(self, idx: Self) -> Self {
            V(i8x16_swizzle(self.0, idx.0))
        }
        #[inline]
        fn shr4(self) -> Self {
            V(u8x16_shr(self.0, 4))
        }
    }
}

/// Lanes as a plain array: the fallback elsewhere, and the reference the tests hold the vector
/// lanes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain([u8; 16]);

impl Plain {
    fn map2(self, o: Self, f: impl Fn(u8, u8) -> u8) -> Self {
        let mut r = [0u8; 16];
        for (i, x) in r.iter_mut().enumerate() {
            *x = f(self.0[i], o.0[i]);
        }
        Plain(r)
    }
}

impl Lanes for Plain {
    fn load(b: &[u8]) -> Self {
        let mut r = [0u8; 16];
        r.copy_from_slice(&b[..16]);
        Plain(r)
    }
    fn splat(b: u8) -> Self {
        Plain([b; 16])
    }
    fn or(self, o: Self) -> Self {
        self.map2(o, |a, b| a | b)
    }
    fn and(self, o: Self) -> Self {
        self.map2(o, |a, b| a & b)
    }
    fn eq(self, o: Self) -> Self {
        self.map2(o, |a, b| if a == b { 0xff } else { 0 })
    }
    fn sub(self, o: Self) -> Self {
        self.map2(o, u8::wrapping_sub)
    }
    fn sub_sat(self, o: Self) -> Self {
        self.map2(o, u8::saturating_sub)
    }
    fn mask(self) -> u32 {
        self.0
            .iter()
            .enumerate()
            .fold(0, |m, (i, &b)| m | u32::from(b >> 7) << i)
    }
}

impl Lookup for Plain {
    fn lookup(self, idx: Self) -> Self {
        let mut r = [0u8; 16];
        for (x, &i) in r.iter_mut().zip(&idx.0) {
            *x = self.0.get(usize::from(i)).copied().unwrap_or(0);
        }
        Plain(r)
    }
    fn shr4(self) -> Self {
        Plain(self.0.map(|x| x >> 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ascii_prefix_stops_at_the_first_other_byte(
            b in prop::collection::vec(prop_oneof![8 => 0u8..0x80, 1 => 0x80u8..=0xff], 0..70),
        ) {
            prop_assert_eq!(ascii_prefix(&b), b.iter().position(|c| !c.is_ascii()).unwrap_or(b.len()));
        }

        /// The target's lanes agree with the plain ones, operation by operation.
        #[test]
        fn lanes_match_the_plain_definition(
            a in prop::array::uniform16(any::<u8>()),
            b in prop::array::uniform16(any::<u8>()),
            lo in any::<u8>(),
            hi in any::<u8>(),
        ) {
            let (va, vb) = (V::load(&a), V::load(&b));
            let (pa, pb) = (Plain::load(&a), Plain::load(&b));
            prop_assert_eq!(va.or(vb).mask(), pa.or(pb).mask());
            prop_assert_eq!(va.and(vb).mask(), pa.and(pb).mask());
            prop_assert_eq!(va.eq(vb).mask(), pa.eq(pb).mask());
            prop_assert_eq!(va.sub(vb).mask(), pa.sub(pb).mask());
            prop_assert_eq!(va.sub_sat(vb).mask(), pa.sub_sat(pb).mask());
            prop_assert_eq!(V::splat(lo).eq(va).mask(), Plain::splat(lo).eq(pa).mask());
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let want = a.iter().enumerate().fold(0u32, |m, (i, &x)| {
                m | u32::from((lo..=hi).contains(&x)) << i
            });
            prop_assert_eq!(va.in_range(lo, hi).mask(), want);
            prop_assert_eq!(pa.in_range(lo, hi).mask(), want);
        }

        /// The target's lookup lanes agree with the plain ones.
        #[test]
        fn lookup_lanes_match_the_plain_definition(
            t in prop::array::uniform16(any::<u8>()),
            x in prop::array::uniform16(any::<u8>()),
        ) {
            let (vt, vx) = (LookupLanes::load(&t), LookupLanes::load(&x));
            let (pt, px) = (Plain::load(&t), Plain::load(&x));
            let nib = LookupLanes::splat(15);
            for bit in 0..8u8 {
                let b = LookupLanes::splat(0x80 >> bit);
                let pb = Plain::splat(0x80 >> bit);
                let want = pt.lookup(px.and(Plain::splat(15))).and(pb).eq(pb).mask();
                prop_assert_eq!(vt.lookup(vx.and(nib)).and(b).eq(b).mask(), want);
                let want = px.shr4().and(pb).eq(pb).mask();
                prop_assert_eq!(vx.shr4().and(b).eq(b).mask(), want);
            }
            prop_assert_eq!(px.shr4(), Plain(x.map(|c| c >> 4)));
            prop_assert_eq!(pt.lookup(px.and(Plain::splat(15))), Plain(x.map(|c| t[usize::from(c & 15)])));
        }
    }
}

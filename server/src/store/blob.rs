//! The raw-window encoding: one batch's samples as a compact byte string stored in one row, so
//! ingest writes one row per batch instead of one per sample. Layout: varint count, then per
//! sample varint series id, zigzag-varint timestamp delta from the previous sample, and the value
//! as 8 little-endian bytes. Decoding never panics on corrupt input.

/// A decoded raw sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSample {
    pub series_id: i64,
    pub ts_ms: i64,
    pub value: f64,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes samples.
pub fn encode(samples: &[RawSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + samples.len() * 12);
    put_varint(&mut out, samples.len() as u64);
    let mut prev = 0i64;
    for s in samples {
        put_varint(&mut out, s.series_id as u64);
        put_varint(&mut out, zigzag(s.ts_ms.wrapping_sub(prev)));
        prev = s.ts_ms;
        out.extend_from_slice(&s.value.to_le_bytes());
    }
    out
}

/// Decodes samples, calling `f` for each; `None` if the data is corrupt.
pub fn decode(data: &[u8], mut f: impl FnMut(RawSample)) -> Option<()> {
    let mut pos = 0;
    let n = get_varint(data, &mut pos)?;
    let mut prev = 0i64;
    for _ in 0..n {
        let series_id = get_varint(data, &mut pos)? as i64;
        let ts_ms = prev.wrapping_add(unzigzag(get_varint(data, &mut pos)?));
        prev = ts_ms;
        let bytes: [u8; 8] = data.get(pos..pos + 8)?.try_into().ok()?;
        pos += 8;
        f(RawSample {
            series_id,
            ts_ms,
            value: f64::from_le_bytes(bytes),
        });
    }
    (pos == data.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(v in prop::collection::vec((0i64..1 << 40, any::<i64>(), any::<f64>()), 0..50)) {
            let samples: Vec<_> = v.iter().map(|&(series_id, ts_ms, value)| RawSample { series_id, ts_ms, value }).collect();
            let mut got = Vec::new();
            decode(&encode(&samples), |s| got.push(s)).unwrap();
            prop_assert_eq!(got.len(), samples.len());
            for (a, b) in got.iter().zip(&samples) {
                prop_assert_eq!((a.series_id, a.ts_ms, a.value.to_bits()), (b.series_id, b.ts_ms, b.value.to_bits()));
            }
        }

        #[test]
        fn corrupt_input_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&data, |_| {});
        }
    }
}

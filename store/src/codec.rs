//! Byte encodings: records on disk and on the wire, typed values for callers.
//!
//! A record is one format byte followed by its postcard encoding. Because every map in a record
//! is ordered, equal records encode to equal bytes, which is what makes digests comparable across
//! replicas.

use crate::error::{Result, StoreError};
use crate::record::Record;
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

/// The record format this build writes and reads.
pub const RECORD_FORMAT: u8 = 1;

/// Encodes a record in its canonical form.
pub fn encode_record(r: &Record) -> Result<Bytes> {
    let mut out = vec![RECORD_FORMAT];
    let out = postcard::to_extend(r, {
        out.reserve(32);
        out
    })?;
    Ok(Bytes::from(out))
}

/// Decodes a record, refusing unknown formats and trailing garbage.
pub fn decode_record(b: &[u8]) -> Result<Record> {
    match b.split_first() {
        Some((&RECORD_FORMAT, rest)) => {
            let (r, tail) = postcard::take_from_bytes::<Record>(rest)
                .map_err(|e| StoreError::Corrupt(format!("record does not decode: {e}")))?;
            if tail.is_empty() {
                Ok(r)
            } else {
                Err(StoreError::Corrupt(format!(
                    "{} trailing bytes after a record",
                    tail.len()
                )))
            }
        }
        Some((f, _)) => Err(StoreError::Corrupt(format!("unknown record format {f}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// Encodes a typed value for `put` (postcard: compact, schema in the code).
pub fn to_value<T: Serialize>(v: &T) -> Result<Bytes> {
    Ok(Bytes::from(postcard::to_allocvec(v)?))
}

/// Decodes a typed value written by [`to_value`].
pub fn from_value<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(postcard::from_bytes(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::node::{NodeId, RegionId};
    use crate::record::Kind;
    use crate::version::Dot;

    #[test]
    fn record_round_trips_and_rejects_damage() {
        let mut r = Record::empty(Kind::Register);
        let dot = Dot {
            hlc: Hlc(5),
            node: NodeId::new(RegionId(1), 2),
        };
        r.write_register(dot, Some(Bytes::from_static(b"hi")), None)
            .unwrap();
        let b = encode_record(&r).unwrap();
        assert_eq!(decode_record(&b).unwrap(), r);
        assert!(decode_record(&b[..b.len() - 1]).is_err());
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(decode_record(&longer).is_err());
        let mut other = b.to_vec();
        other[0] = 99;
        assert!(decode_record(&other).is_err());
        assert!(decode_record(&[]).is_err());
    }

    #[test]
    fn typed_values_round_trip() {
        let v = (42u64, String::from("x"));
        let b = to_value(&v).unwrap();
        assert_eq!(from_value::<(u64, String)>(&b).unwrap(), v);
    }
}

//! A check of a safetensors header before burn-store reads the file, so that a header that
//! lies (a size beyond the file, tensors sharing bytes, a shape that does not fit its bytes)
//! is refused with a message naming the tensor, instead of the reader's bare error code.

use serde_json::{Map, Value};

/// The safetensors crate's own ceiling for the JSON header.
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// The header's length from the first 8 bytes of a file of `file_len` bytes, checked to fit.
pub fn header_len(first8: &[u8], file_len: u64) -> Result<usize, String> {
    let bytes: [u8; 8] = first8
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("shorter than the 8-byte header length of a safetensors file")?;
    let len = u64::from_le_bytes(bytes);
    if len > MAX_HEADER_BYTES || len > file_len.saturating_sub(8) {
        return Err(format!(
            "its header claims {len} bytes, but the file holds {file_len} bytes in all \
             (and a safetensors header is at most {MAX_HEADER_BYTES}); the file is truncated \
             or not safetensors"
        ));
    }
    Ok(len as usize)
}

/// Checks every tensor entry of the JSON `header` against `data_len`, the bytes after it.
pub fn check(header: &[u8], data_len: u64) -> Result<(), String> {
    let entries: Map<String, Value> = serde_json::from_slice(header)
        .map_err(|e| format!("its header is not a JSON object ({e})"))?;
    let mut ranges = Vec::new();
    for (key, entry) in entries.iter().filter(|(k, _)| *k != "__metadata__") {
        let (start, end) = tensor_range(key, entry, data_len)?;
        ranges.push((start, end, key));
    }
    ranges.sort();
    for pair in ranges.windows(2) {
        let ((s0, e0, k0), (s1, e1, k1)) = (pair[0], pair[1]);
        if s1 < e0 {
            return Err(format!(
                "tensors `{k0}` (bytes {s0}..{e0}) and `{k1}` (bytes {s1}..{e1}) overlap; \
                 every tensor must own its bytes"
            ));
        }
    }
    Ok(())
}

/// The byte range of one entry, checked against the data size and its shape × dtype.
fn tensor_range(key: &str, entry: &Value, data_len: u64) -> Result<(u64, u64), String> {
    let offsets = entry["data_offsets"]
        .as_array()
        .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)))
        .ok_or_else(|| format!("tensor `{key}` has no valid data_offsets [start, end]"))?;
    let (start, end) = offsets;
    if start > end || end > data_len {
        return Err(format!(
            "tensor `{key}` claims bytes {start}..{end}, but the file holds {data_len} bytes \
             of tensor data"
        ));
    }
    let elements = entry["shape"]
        .as_array()
        .map(|dims| {
            dims.iter()
                .try_fold(1u64, |n, d| d.as_u64().and_then(|d| n.checked_mul(d)))
        })
        .ok_or_else(|| format!("tensor `{key}` has no shape list"))?;
    let size = entry["dtype"].as_str().and_then(dtype_bytes);
    if let (Some(size), Some(elements)) = (size, elements)
        && elements.checked_mul(size) != Some(end - start)
    {
        return Err(format!(
            "tensor `{key}` has shape {} of {} but {} bytes (data_offsets {start}..{end})",
            entry["shape"],
            entry["dtype"],
            end - start
        ));
    }
    if elements.is_none() {
        return Err(format!(
            "tensor `{key}` has shape {}, more elements than any file holds",
            entry["shape"]
        ));
    }
    Ok((start, end))
}

/// Bytes per element; `None` for a dtype left to burn-store to accept or refuse.
fn dtype_bytes(dtype: &str) -> Option<u64> {
    match dtype {
        "F64" | "I64" | "U64" => Some(8),
        "F32" | "I32" | "U32" => Some(4),
        "F16" | "BF16" | "I16" | "U16" => Some(2),
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consistent_header_passes() {
        let header = br#"{"__metadata__":{"a":"b"},"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"y":{"dtype":"F16","shape":[],"data_offsets":[16,18]}}"#;
        check(header, 18).unwrap();
    }

    #[test]
    fn lies_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"y":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                "`x` (bytes 0..16) and `y` (bytes 8..24) overlap",
            ),
            (
                br#"{"x":{"dtype":"F32","shape":[1048576,262144],"data_offsets":[0,1099511627776]}}"#,
                "bytes 0..1099511627776, but the file holds 24",
            ),
            (
                br#"{"x":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#,
                "shape [5] of \"F32\" but 16 bytes",
            ),
            (
                br#"{"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
                "more elements than any file",
            ),
            (br#"[1,2]"#, "not a JSON object"),
        ];
        for (header, expected) in cases {
            let message = check(header, 24).unwrap_err();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn header_lengths_beyond_the_file_are_refused() {
        let claim = (1u64 << 40).to_le_bytes();
        let message = header_len(&claim, 10).unwrap_err();
        assert!(message.contains("1099511627776"), "{message}");
        assert_eq!(header_len(&2u64.to_le_bytes(), 10), Ok(2));
        assert!(header_len(&[1, 2], 10).is_err());
    }
}

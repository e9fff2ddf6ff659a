//! A safetensors container read tensor by tensor from wherever its bytes live (a file
//! natively, a JavaScript buffer in the browser). Only the header is parsed up front, so
//! loading never holds the whole file next to the model's f32 weights: the peak is the weights
//! plus one tensor, where reading the file whole costs the file's size on top.

use std::collections::BTreeMap;

use burn::tensor::DType;

/// Larger headers are refused before they are read (safetensors' own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Where one tensor's bytes lie in the container (absolute offsets, `start..end`).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRange {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

/// The header's length from the container's first 8 bytes, checked against the container's
/// `total` length before anything is allocated for it.
pub fn header_len(prefix: [u8; 8], total: u64) -> Result<u64, String> {
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER_BYTES || n.saturating_add(8) > total {
        return Err(format!(
            "its header claims {n} bytes but the file has {total} (limit {MAX_HEADER_BYTES}); \
             not a safetensors file, or truncated"
        ));
    }
    Ok(n)
}

/// Parses the JSON header (the `header_len` bytes after the prefix) of a container of `total`
/// bytes: every tensor's dtype, shape and range, checked to tile the data section exactly
/// (no gaps, no overlaps, nothing past the end), as the safetensors format requires.
pub fn parse_header(header: &[u8], total: u64) -> Result<BTreeMap<String, TensorRange>, String> {
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| format!("its header is not a JSON object: {e}"))?;
    let base = 8 + header.len() as u64;
    let mut tensors = BTreeMap::new();
    for (name, info) in json.iter().filter(|(k, _)| *k != "__metadata__") {
        let range = tensor_range(info, base).map_err(|e| format!("tensor `{name}`: {e}"))?;
        tensors.insert(name.clone(), range);
    }
    check_tiling(&tensors, base, total)?;
    Ok(tensors)
}

fn tensor_range(info: &serde_json::Value, base: u64) -> Result<TensorRange, String> {
    let dtype_name = info["dtype"].as_str().ok_or("no `dtype` string")?;
    let (dtype, size) = dtype_of(dtype_name)?;
    let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
        .map_err(|_| "`shape` is not a list of sizes".to_string())?;
    let offsets: [u64; 2] = serde_json::from_value(info["data_offsets"].clone())
        .map_err(|_| "`data_offsets` is not [start, end]".to_string())?;
    let bytes = shape
        .iter()
        .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or("its shape overflows")?;
    if offsets[1] < offsets[0] || offsets[1] - offsets[0] != bytes {
        return Err(format!(
            "data_offsets {offsets:?} hold {} bytes, but {dtype_name} {shape:?} needs {bytes}",
            offsets[1].saturating_sub(offsets[0])
        ));
    }
    Ok(TensorRange {
        dtype,
        shape,
        start: base + offsets[0],
        end: base + offsets[1],
    })
}

/// The dtype and its byte size. Integer dtypes are kept so that the loader can name them.
fn dtype_of(name: &str) -> Result<(DType, usize), String> {
    Ok(match name {
        "F64" => (DType::F64, 8),
        "F32" => (DType::F32, 4),
        "F16" => (DType::F16, 2),
        "BF16" => (DType::BF16, 2),
        "I64" => (DType::I64, 8),
        "I32" => (DType::I32, 4),
        "I16" => (DType::I16, 2),
        "I8" => (DType::I8, 1),
        "U8" => (DType::U8, 1),
        other => return Err(format!("dtype `{other}` is not one this tool reads")),
    })
}

fn check_tiling(
    tensors: &BTreeMap<String, TensorRange>,
    base: u64,
    total: u64,
) -> Result<(), String> {
    let mut ranges: Vec<(&String, &TensorRange)> = tensors.iter().collect();
    ranges.sort_by_key(|(_, r)| (r.start, r.end));
    let mut at = base;
    let mut last = None;
    for (name, r) in ranges {
        if r.start != at {
            let what = if r.start < at {
                "overlaps the tensor before it"
            } else {
                "leaves a gap"
            };
            return Err(format!(
                "tensor `{name}` starts at byte {} and {what} (expected {at})",
                r.start
            ));
        }
        at = r.end;
        last = Some(name);
    }
    if at != total {
        // Name the tensor that runs past the end: a header claiming 2^40 bytes for one tensor
        // is then plain to see.
        let which = last.map_or(String::new(), |n| format!(" (the last, `{n}`)"));
        return Err(format!(
            "its tensors{which} end at byte {at} but the file has {total} bytes; truncated or \
             padded"
        ));
    }
    Ok(())
}

/// A tensor's little-endian bytes as f32 (from f32, f16, bf16 or f64).
pub fn to_f32(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    use burn::tensor::{bf16, f16};
    Some(match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(header: &str, data: usize) -> (Vec<u8>, u64) {
        let total = 8 + header.len() as u64 + data as u64;
        (header.as_bytes().to_vec(), total)
    }

    #[test]
    fn ranges_are_absolute_and_tile_the_data() {
        let h = r#"{"__metadata__":{"a":"b"},"x":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"y":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#;
        let (header, total) = container(h, 16);
        let t = parse_header(&header, total).unwrap();
        let base = 8 + h.len() as u64;
        assert_eq!(t["x"].start, base);
        assert_eq!(t["x"].end, base + 12);
        assert_eq!(t["y"].shape, vec![1]);
        assert_eq!(t["y"].dtype, DType::F32);
    }

    #[test]
    fn overlapping_gapped_short_and_oversized_containers_are_refused() {
        let overlap = r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        let (h, total) = container(overlap, 12);
        assert!(parse_header(&h, total).unwrap_err().contains("overlaps"));
        let gap = r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        let (h, total) = container(gap, 8);
        assert!(parse_header(&h, total).unwrap_err().contains("gap"));
        let short = r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let (h, _) = container(short, 16);
        assert!(
            parse_header(&h, 8 + short.len() as u64 + 8)
                .unwrap_err()
                .contains("truncated")
        );
        let wrong = r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#;
        let (h, total) = container(wrong, 16);
        assert!(parse_header(&h, total).unwrap_err().contains("needs 12"));
        let huge =
            r#"{"x":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}}"#;
        let (h, total) = container(huge, 16);
        assert!(parse_header(&h, total).unwrap_err().contains("overflows"));
        assert!(
            header_len((1u64 << 40).to_le_bytes(), 1000)
                .unwrap_err()
                .contains("claims")
        );
    }

    #[test]
    fn half_floats_widen_exactly() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| burn::tensor::f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(to_f32(DType::F16, &bytes), Some(vec![1.5, -2.0]));
        assert_eq!(to_f32(DType::I32, &bytes), None);
    }
}

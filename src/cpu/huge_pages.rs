//! Weights for the OpenBLAS path in memory the kernel backs with 2 MiB pages (Linux
//! transparent huge pages).
//!
//! A forward streams every weight from memory once, and OpenBLAS packs `[out, in]` panels by
//! reading many rows ~3.5 KiB apart at a time: with 4 KiB pages nearly every row is another TLB
//! miss, and the packing can take as long as the multiplication itself (BENCHMARKS.md, "Where
//! the CPU time goes"). Each weight gets its own anonymous
//! mapping, aligned to 2 MiB and advised for huge pages before it is written; the last partial
//! 2 MiB stays in small pages, so nothing is resident that the weight does not fill.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use burn::tensor::{DType, Shape, Tensor};
use burn_flex::{Flex, FlexTensor, Layout};
use burn_std::{AccessError, AccessPolicy, AllocationController, AllocationProperty, Bytes};

const HUGE_PAGE: usize = 2 << 20;
const PAGE: usize = 4 << 10;

/// An f32 CPU tensor of `shape` holding `values` (row-major) in huge-page-backed memory; `None`
/// when the memory cannot be mapped (the caller then builds an ordinary tensor).
pub fn tensor<const D: usize>(values: &[f32], shape: [usize; D]) -> Option<Tensor<D>> {
    let len = std::mem::size_of_val(values);
    if len == 0 || shape.iter().product::<usize>() != values.len() {
        return None;
    }
    let mapping = Mapping::new(len)?;
    // SAFETY: the mapping holds at least `len` writable bytes, and nothing else refers to it.
    unsafe {
        std::ptr::copy_nonoverlapping(values.as_ptr().cast::<u8>(), mapping.ptr.as_ptr(), len)
    };
    // SAFETY: the first `len` bytes of the mapping were just initialized.
    let bytes = unsafe { Bytes::from_controller(Box::new(mapping), len) };
    let layout = Layout::contiguous(Shape::from(shape.to_vec()));
    let primitive = FlexTensor::new(bytes, layout, DType::F32);
    Some(Tensor::from_primitive::<Flex>(primitive))
}

/// An anonymous private mapping starting on a 2 MiB boundary.
struct Mapping {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is owned memory like a `Vec<u8>`'s; access goes through `&self`/`&mut self`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `len` bytes (rounded up to whole small pages), 2 MiB-aligned, advised for huge pages.
    fn new(len: usize) -> Option<Self> {
        let size = len.checked_next_multiple_of(PAGE)?;
        let reserve = size.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base as usize;
        let start = base.next_multiple_of(HUGE_PAGE);
        let (head, tail) = (start - base, reserve - (start - base) - size);
        // SAFETY: both ranges lie inside the mapping just made and outside `start..start+size`;
        // a failure to unmap only leaves unused address space reserved.
        unsafe {
            if head > 0 {
                libc::munmap(base as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((start + size) as *mut libc::c_void, tail);
            }
            // Advice before the first write, so the first touch faults in huge pages. A kernel
            // without transparent huge pages refuses it: the memory then stays in small pages.
            libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
        }
        Some(Self {
            ptr: NonNull::new(start as *mut u8)?,
            size,
        })
    }

    fn memory(&self) -> &[MaybeUninit<u8>] {
        // SAFETY: `size` bytes from `ptr` are mapped for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.size) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `new` and is not referred to after drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

impl AllocationController for Mapping {
    fn alloc_align(&self) -> usize {
        HUGE_PAGE
    }

    fn property(&self) -> AllocationProperty {
        AllocationProperty::Other
    }

    unsafe fn memory_mut(
        &mut self,
        _policy: AccessPolicy,
    ) -> Result<&mut [MaybeUninit<u8>], AccessError> {
        // SAFETY: as `memory`, and `&mut self` makes this the only view.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.size) })
    }

    fn memory(&self, _policy: AccessPolicy) -> Result<&[MaybeUninit<u8>], AccessError> {
        Ok(Mapping::memory(self))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn holds_the_values_on_a_huge_page_boundary() {
        let values: Vec<f32> = (0..3 * 1000).map(|i| i as f32 * 0.5 - 7.0).collect();
        let t = tensor(&values, [3, 1000]).expect("an anonymous mapping");
        assert_eq!(t.dims(), [3, 1000]);
        let p = t.clone().try_into_primitive::<Flex>().ok().unwrap();
        let slice = p.as_slice::<f32>().unwrap();
        assert_eq!(slice, values.as_slice());
        assert_eq!(
            slice.as_ptr() as usize % HUGE_PAGE,
            0,
            "starts on a 2 MiB boundary"
        );
        let expected = Tensor::<2>::from_data(TensorData::new(values, [3, 1000]), &Device::flex());
        let sum: f32 = (t.clone() - expected).abs().sum().into_scalar();
        assert_eq!(sum, 0.0);
        // The transposed view the loader hands to `blas::affine` reads the same storage.
        assert_eq!(t.transpose().dims(), [1000, 3]);
    }

    #[test]
    fn refuses_a_shape_that_does_not_match_the_values() {
        assert!(tensor(&[1.0, 2.0, 3.0], [2, 2]).is_none());
        assert!(tensor::<1>(&[], [0]).is_none());
    }
}

//! Telling an out-of-memory failure apart from a bug in the browser.
//!
//! In wasm an allocation the memory cannot satisfy (the tab's 4 GiB wasm32 limit, or the
//! browser refusing to grow it) aborts the instance with a bare `unreachable` trap, exactly
//! like a panic. This allocator records the size of the request that failed, so the worker
//! can ask after the trap and tell the user "out of memory" with numbers instead of
//! "something went wrong". It also counts the bytes in use, which the wasm memory's size
//! cannot show (it only grows): a leak is a count that climbs from run to run. Both cost one
//! relaxed atomic operation per call on top of the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

/// Bytes of the last allocation that failed; 0 while none has.
static FAILED_ALLOCATION: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not yet freed.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

struct RecordingAllocator;

#[global_allocator]
static ALLOCATOR: RecordingAllocator = RecordingAllocator;

/// Counts a successful allocation of `bytes` that replaced `freed` bytes, or records a failure.
fn record(ptr: *mut u8, bytes: usize, freed: usize) -> *mut u8 {
    if ptr.is_null() {
        FAILED_ALLOCATION.store(bytes, Ordering::Relaxed);
    } else {
        IN_USE.fetch_add(bytes, Ordering::Relaxed);
        IN_USE.fetch_sub(freed, Ordering::Relaxed);
    }
    ptr
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds GlobalAlloc's contract;
// `record` only reads the returned pointer.
unsafe impl GlobalAlloc for RecordingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(unsafe { System.alloc(layout) }, layout.size(), 0)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(unsafe { System.alloc_zeroed(layout) }, layout.size(), 0)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // On failure the old block stays allocated: nothing is freed then.
        record(
            unsafe { System.realloc(ptr, layout, new_size) },
            new_size,
            layout.size(),
        )
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// Bytes of the allocation that failed and aborted the module, 0 if none did. Called by the
/// worker after a trap; it touches nothing but this counter, so it still answers then.
#[wasm_bindgen(js_name = failedAllocation)]
pub fn failed_allocation() -> f64 {
    FAILED_ALLOCATION.load(Ordering::Relaxed) as f64
}

/// Bytes the Rust code has allocated and not freed: the wasm heap in use (the memory's size
/// is its peak).
#[wasm_bindgen(js_name = heapInUse)]
pub fn heap_in_use() -> f64 {
    IN_USE.load(Ordering::Relaxed) as f64
}

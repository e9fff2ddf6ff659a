//! Telling an out-of-memory failure apart from a bug in the browser.
//!
//! In wasm an allocation the memory cannot satisfy (the tab's 4 GiB wasm32 limit, or the
//! browser refusing to grow it) aborts the instance with a bare `unreachable` trap, exactly
//! like a panic. This allocator records the size of the request that failed, so the worker
//! can ask after the trap and tell the user "out of memory" with numbers instead of
//! "something went wrong". It only adds a null check to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

/// Bytes of the last allocation that failed; 0 while none has.
static FAILED_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

struct RecordingAllocator;

#[global_allocator]
static ALLOCATOR: RecordingAllocator = RecordingAllocator;

fn record(ptr: *mut u8, bytes: usize) -> *mut u8 {
    if ptr.is_null() {
        FAILED_ALLOCATION.store(bytes, Ordering::Relaxed);
    }
    ptr
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds GlobalAlloc's contract;
// `record` only reads the returned pointer.
unsafe impl GlobalAlloc for RecordingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(unsafe { System.alloc(layout) }, layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(unsafe { System.realloc(ptr, layout, new_size) }, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Bytes of the allocation that failed and aborted the module, 0 if none did. Called by the
/// worker after a trap; it touches nothing but this counter, so it still answers then.
#[wasm_bindgen(js_name = failedAllocation)]
pub fn failed_allocation() -> f64 {
    FAILED_ALLOCATION.load(Ordering::Relaxed) as f64
}

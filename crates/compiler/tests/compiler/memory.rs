//! Peak heap of a compilation, counted (issue 16, items 19 and 23): the global allocator of this
//! test binary adds up the bytes allocated and freed by the thread that asks, so the peak is exact
//! and the same on every machine and under any load (it counts requested bytes, not the
//! allocator's own overhead or pages). Other tests running on other threads are not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;

use crate::common::{compile, compiler};

/// The system allocator, counting what the tracking thread allocates.
pub(crate) struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: an allocation while this thread's locals are being torn down is not counted.
    let _ = TRACKING.try_with(|tracking| {
        if tracking.get() {
            let live = LIVE.get() + delta;
            LIVE.set(live);
            if live > PEAK.get() {
                PEAK.set(live);
            }
        }
    });
}

// The only `unsafe` in the tests: a global allocator must be an `unsafe impl`. Safety: every
// call forwards to `System` with the caller's arguments unchanged and returns its result; the
// counting touches only `const`-initialised thread locals, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and returns its result with the peak of the bytes it held at once on this thread.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.set(0);
    PEAK.set(0);
    TRACKING.set(true);
    let out = f();
    TRACKING.set(false);
    (out, PEAK.get().max(0) as usize)
}

/// A chain of `n` `noop` nodes (as `profile_compile` and the compile benchmark make).
fn chain(n: usize) -> String {
    let mut text = String::from("version: 1\nname: chain\nnodes:\n  n0: { kind: noop }\n");
    for i in 1..n {
        let _ = writeln!(text, "  n{i}: {{ kind: noop, needs: [n{}] }}", i - 1);
    }
    text
}

const MIB: usize = 1 << 20;

#[test]
fn compiling_10_000_nodes_peaks_under_its_budget() {
    let compiler = compiler();
    let text = chain(10_000);
    let (c, peak) = peak_of(|| compile(&compiler, "chain.yaml", &text));
    assert!(c.plan.is_some(), "{:?}", c.diagnostics.first());
    drop(c);
    // 19.8 MB before the second round of issue 16, item 19 (massif, the same count), 12.5 MB
    // after: the budget sits between, and leaves the allocator's overhead room under 30 MiB.
    assert!(
        peak < BUDGET_10K,
        "peak heap {:.1} MiB, budget {:.1} MiB",
        peak as f64 / MIB as f64,
        BUDGET_10K as f64 / MIB as f64
    );
}

/// Bytes of heap a 10,000-node chain may hold at once while it compiles.
const BUDGET_10K: usize = 14 * MIB;

//! The process allocator: mimalloc, which keeps memory freed by a reload for the next one to
//! reuse, and hands it back to the system once the config work is idle.
//!
//! A reload at 10,000 services allocates and frees tens of megabytes of temporary tables. With
//! mimalloc's default (freed pages returned to the system after 10 ms), the next reload faults
//! them in again and the kernel zeroes every page: a third of an edit's CPU. Kept for a second,
//! a burst of edits (a canary's steps, a stream of endpoint updates) reuses them; the config
//! thread returns them once it has been idle for longer than that, so idle memory is unchanged.
//!
//! Transparent huge pages are off for the process. With them (mimalloc asks for them on the
//! arena it reserves at the first allocation, before `main`, and kernels in `madvise` mode grant
//! them), each first touch of a 2 MiB region makes the kernel zero all of it: over half of the
//! CPU of a 10,000-service start-up went to that, start-up took 1 to 2.6 s instead of a steady
//! 1 s, and partly used huge pages held about 5% more memory. The request path's working set is small
//! enough that their fewer TLB misses do not show (bench/README.md).

/// The global allocator to install in the binary (`#[global_allocator]`).
pub use mimalloc::MiMalloc as Allocator;

/// How long freed memory waits before it goes back to the system.
const KEEP_FREED_MS: std::ffi::c_long = 1000;

/// `mi_option_purge_delay` in mimalloc v2's `mimalloc.h` (the `libmimalloc-sys` bindings name no
/// constant for it): milliseconds before freed memory is returned to the system.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `mi_option_abandoned_reclaim_on_free` in mimalloc v2's `mimalloc.h` (no constant in the
/// bindings either): whether a thread freeing into the memory of a thread that has exited takes
/// that memory over (off by default).
const MI_OPTION_ABANDONED_RECLAIM_ON_FREE: libmimalloc_sys::mi_option_t = 26;

/// Makes freed memory wait [`KEEP_FREED_MS`] before going back to the system, lets a thread
/// that frees into an exited thread's memory take it over, and keeps the process's memory in
/// small pages. Call it first thing in `main`, before other threads start.
///
/// A build parses and compiles on threads that end with it, and what they allocated for the
/// build alone is mostly freed afterwards, by other threads. Memory of a thread that has ended
/// is only handed back to the system by a thread that takes it over; without taking it over on
/// such a free, a 10,000-service proxy kept about 9 MB more in most starts (199 MB of
/// anonymous memory against 190 MB, bench/README.md).
pub fn tune() {
    // SAFETY: sets two integer options; mimalloc's option setters are not thread safe, and
    // this runs before the process starts any thread of its own.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, KEEP_FREED_MS);
        libmimalloc_sys::mi_option_set(MI_OPTION_ABANDONED_RECLAIM_ON_FREE, 1);
    }
    small_pages();
}

/// Keeps the process's memory in small pages: for every mapping, the arena mimalloc has already
/// reserved included (its own option would come too late for that one). Safe at any time;
/// refused (an old kernel), the process just keeps huge pages.
pub fn small_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Returns to the system what the calling thread freed (and what other threads freed of its
/// memory), without waiting for the delay: for a thread going idle. Harmless when mimalloc is
/// not the global allocator (it then holds nothing).
pub fn release_freed_memory() {
    // SAFETY: takes no pointers and collects only the calling thread's heap and free memory.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

#[cfg(test)]
mod tests {
    /// The options are the bundled mimalloc's purge delay and reclaim on free: set, they read
    /// back; and huge pages are off.
    #[test]
    fn the_purge_delay_is_the_one_set_and_huge_pages_are_off() {
        super::tune();
        // SAFETY: reads one integer option.
        #[allow(unsafe_code)]
        let read = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(read, super::KEEP_FREED_MS);
        // SAFETY: reads one integer option.
        #[allow(unsafe_code)]
        let reclaim =
            unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_ABANDONED_RECLAIM_ON_FREE) };
        assert_eq!(reclaim, 1);
        assert!(matches!(
            rustix::thread::transparent_huge_pages_are_disabled(),
            Ok(true)
        ));
        super::release_freed_memory();
    }
}

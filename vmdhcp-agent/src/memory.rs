//! Giving freed heap memory back to the system after a pool was loaded.
//!
//! Reading an IPPool with tens of thousands of allocations briefly needs several megabytes
//! (the response body or file text, the parser's buffers), all freed once the lease table is
//! built. glibc's allocator keeps such memory in its arenas for reuse instead of returning it,
//! so without help the agent's resident size would stay at the parsing peak for the rest of
//! its life. `malloc_trim` returns every free page of every arena. It costs well under a
//! millisecond at this heap size and runs once per applied IPPool version.
//!
//! The binary also fixes glibc's mmap threshold at its default of 128 KiB ([`tune`]). glibc
//! otherwise raises the threshold to the size of every large block freed (up to 32 MiB), so
//! after the first big response the next ones come from the heap and stay there; with the
//! threshold fixed, every block above 128 KiB (response bodies, parse buffers, the lease
//! table's hash map) is its own mapping and goes back to the system the moment it is freed.
//!
//! The module's only `unsafe` code is those calls.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

/// Returns the allocator's free pages to the system (glibc); a no-op elsewhere.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` takes no pointers and only rearranges glibc's own free lists
        // under its arena locks; it is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Fixes glibc's mmap threshold at 128 KiB (see the module docs); a no-op elsewhere. Call once,
/// first thing in `main`.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` takes no pointers; it changes a tunable of glibc's allocator under
        // its lock, and this one only decides how future allocations are placed.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

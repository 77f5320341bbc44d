//! Giving memory back after a burst. The connections of a burst (TLS and
//! HTTP buffers, bodies being read) are freed when they end, but glibc's
//! allocator keeps freed memory in its arenas for reuse, where it stays
//! resident: after 1,024 slow connections the daemon held 300 MiB for good.
//! [`give_back_every`] asks the allocator, now and then, to return the
//! whole free pages of every arena to the kernel (`malloc_trim`, which
//! since glibc 2.8 also releases free pages inside the heaps, not only at
//! their top). Between bursts this costs a walk of the free lists; memory
//! in use is never touched.
//!
//! Large blocks are a second way to keep memory: glibc serves an
//! allocation over its mmap threshold (128 KiB) from a mapping of its own,
//! returned when freed, but raises that threshold to the size of any such
//! block freed, so that the next ones come from the arenas and stay
//! resident. Argon2id's 19 MiB per password check then stayed resident
//! once per thread that ran one (190 MiB after 50 concurrent wrong
//! sign-ins). [`configure`] fixes the threshold, so they always go back.

use std::time::Duration;

use tracing::debug;

/// Large blocks (over 128 KiB) get mappings of their own, returned to the
/// kernel as they are freed, whatever was freed before. Call at start.
#[allow(unsafe_code)] // one libc call, no pointers
pub fn configure() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes a parameter of the allocator, under
        // its own lock; it is safe to call from any thread.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// How often the daemon gives memory back.
pub const PERIOD: Duration = Duration::from_secs(10);

/// Returns free memory to the kernel now; whether any was returned.
/// Nothing happens where the allocator is not glibc's.
#[allow(unsafe_code)] // one libc call, no pointers
pub fn give_back() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only reorganizes the allocator's free lists,
        // under its own locks; it is safe to call from any thread.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// [`give_back`] every `period`, on a blocking thread, for ever.
pub async fn give_back_every(period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(true) = tokio::task::spawn_blocking(give_back).await {
            debug!("freed memory returned to the kernel");
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_threshold_and_trims() {
        assert!(configure(), "mallopt(M_MMAP_THRESHOLD) refused");
        // A block over the threshold, freed: it had a mapping of its own,
        // so it is gone already; trimming must still work.
        drop(vec![1u8; 1 << 20]);
        let _ = give_back();
    }
}

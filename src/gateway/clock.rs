//! Wall-clock milliseconds that follow tokio's clock, so tests with paused time
//! (`tokio::time::pause`, `start_paused`) move timestamps and schedules too.

use tokio::time::Instant;

/// A wall clock anchored at construction and advanced by tokio's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_ms_at_start: i64,
    started: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        Self {
            wall_ms_at_start: wall,
            started: Instant::now(),
        }
    }
}

impl Clock {
    /// Unix time in milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.wall_ms_at_start + self.started.elapsed().as_millis() as i64
    }
}

//! CPU time that processes spend, from /proc: the cost of a proxied request
//! in CPU microseconds, which the other work on a shared machine disturbs
//! far less than requests per second.

use std::time::Duration;

/// Clock ticks per second of the `utime`/`stime` fields of /proc (the
/// kernel's USER_HZ, 100 on every Linux this runs on).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU of one process (all its threads) so far.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are fixed.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (user + system) * 1000 / TICKS_PER_SECOND,
    ))
}

/// The children of `pid` (e.g. nginx's workers), from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The CPU time of a set of processes together; `None` if one is gone.
pub fn total(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|&pid| process_cpu(pid)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_grows_with_work() {
        let me = std::process::id();
        let before = total(&[me]).expect("own stat");
        let mut x = 0u64;
        let until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = total(&[me]).expect("own stat");
        assert!(after > before, "{before:?} -> {after:?}");
        assert!(total(&[me, u32::MAX]).is_none());
    }
}

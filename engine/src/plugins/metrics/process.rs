//! The `process_*` families of the Go client's process collector, for the server process
//! itself (not its workers), read from /proc at scrape time.

use super::exposition::{Family, Kind};

/// The seven classic families, with the Go library's names and help texts. A value that
/// cannot be read is left out.
#[must_use]
pub fn families() -> Vec<Family> {
    let mut families = Vec::new();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    if let Some(stat) = crate::worker::process::stat_fields("self") {
        let field = |index: usize| stat.get(index).and_then(|v| v.parse::<f64>().ok());
        // Fields after the command, from 0: state is 0, utime 11, stime 12, starttime 19,
        // vsize 20, rss 21 (pages).
        if let (Some(user), Some(system)) = (field(11), field(12)) {
            families.push(Family::single(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                Kind::Counter,
                (user + system) / ticks,
            ));
        }
        if let (Some(start), Some(boot)) = (field(19), crate::worker::process::boot_time()) {
            families.push(Family::single(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                Kind::Gauge,
                boot as f64 + start / ticks,
            ));
        }
        if let Some(vsize) = field(20) {
            families.push(Family::single(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                Kind::Gauge,
                vsize,
            ));
        }
        if let Some(rss) = field(21) {
            families.push(Family::single(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                Kind::Gauge,
                rss * page,
            ));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        families.push(Family::single(
            "process_open_fds",
            "Number of open file descriptors.",
            Kind::Gauge,
            entries.count() as f64,
        ));
    }
    if let Ok(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .ok_or(())
    {
        families.push(Family::single(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            Kind::Gauge,
            limit as f64,
        ));
    }
    let address_space = rustix::process::getrlimit(rustix::process::Resource::As)
        .current
        .map_or(u64::MAX as f64, |limit| limit as f64);
    families.push(Family::single(
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.",
        Kind::Gauge,
        // Unlimited is written as -1 by the Go library.
        if address_space >= u64::MAX as f64 {
            -1.0
        } else {
            address_space
        },
    ));
    families
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seven_families_are_read() {
        let families = super::families();
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_virtual_memory_bytes",
            "process_virtual_memory_max_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let start = families
            .iter()
            .find(|f| f.name == "process_start_time_seconds")
            .unwrap();
        let now = crate::clock::unix_seconds() as f64;
        assert!((now - start.samples[0].value).abs() < 3600.0);
    }
}

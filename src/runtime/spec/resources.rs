//! `linux.resources`: memory, CPU, block I/O and pids limits from `HostConfig`.

use super::*;

// ---------------------------------------------------------------------------------------------
// Resources

pub(super) fn resources(
    hc: &HostConfig,
    version: CgroupVersion,
) -> Result<LinuxResources, SpecError> {
    let mut r = LinuxResources::default();
    let pos = |v: Option<i64>| v.filter(|v| *v > 0);

    // memory
    let memory = pos(hc.memory);
    let swap = hc.memory_swap.unwrap_or(0);
    if let (Some(m), true) = (memory, swap > 0) {
        if swap < m {
            return Err(SpecError::invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
    }
    if memory.is_none() && swap > 0 {
        return Err(SpecError::invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    let mut mem = LinuxMemory::default();
    mem.set_limit(memory);
    mem.set_reservation(pos(hc.memory_reservation));
    mem.set_swap(pos(hc.memory_swap));
    match hc.memory_swappiness {
        None | Some(-1) => {}
        Some(s) if !(0..=100).contains(&s) => {
            return Err(SpecError::invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )))
        }
        // cgroup v2 has no swappiness; Docker drops it there.
        Some(s) if version == CgroupVersion::V1 => {
            mem.set_swappiness(Some(s as u64));
        }
        Some(_) => {}
    };
    if hc.oom_kill_disable == Some(true) && version == CgroupVersion::V1 {
        mem.set_disable_oom_killer(Some(true));
    }
    if mem != LinuxMemory::default() {
        r.set_memory(Some(mem));
    }

    // cpu
    let nano = hc.nano_cpus.unwrap_or(0);
    let period = hc.cpu_period.unwrap_or(0);
    let quota = hc.cpu_quota.unwrap_or(0);
    if nano > 0 && period > 0 {
        return Err(SpecError::invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if nano > 0 && quota > 0 {
        return Err(SpecError::invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    if nano != 0 {
        let n = online_cpus();
        if nano < 0 || nano > n * 1_000_000_000 {
            return Err(SpecError::invalid(format!(
                "range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )));
        }
    }
    let mut cpu = LinuxCpu::default();
    match hc.cpu_shares.unwrap_or(0) {
        0 => {}
        s if s < 0 => {
            return Err(SpecError::invalid(format!(
                "invalid CPU shares ({s}): value must be a positive integer"
            )))
        }
        s => {
            cpu.set_shares(Some(s as u64));
        }
    }
    if let Some(c) = hc.cpuset_cpus.as_ref().filter(|c| !c.is_empty()) {
        cpu.set_cpus(Some(c.clone()));
    }
    if let Some(m) = hc.cpuset_mems.as_ref().filter(|m| !m.is_empty()) {
        cpu.set_mems(Some(m.clone()));
    }
    if nano > 0 {
        const PERIOD: i64 = 100_000;
        cpu.set_period(Some(PERIOD as u64));
        cpu.set_quota(Some(nano * PERIOD / 1_000_000_000));
    }
    if period != 0 {
        cpu.set_period(Some(period as u64));
    }
    if quota != 0 {
        cpu.set_quota(Some(quota));
    }
    if let Some(p) = hc.cpu_realtime_period.filter(|p| *p != 0) {
        cpu.set_realtime_period(Some(p as u64));
    }
    if let Some(rt) = hc.cpu_realtime_runtime.filter(|r| *r != 0) {
        cpu.set_realtime_runtime(Some(rt));
    }
    if cpu != LinuxCpu::default() {
        r.set_cpu(Some(cpu));
    }

    // pids: 0 and negative values mean unlimited, written as -1 (moby's `getPidsLimit`), so
    // that `docker update --pids-limit -1` lifts an earlier limit; unset leaves the default.
    if let Some(limit) = hc.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(if limit > 0 { limit } else { -1 });
        r.set_pids(Some(pids));
    }

    // block I/O
    let mut bio = LinuxBlockIo::default();
    if let Some(w) = hc.blkio_weight.filter(|w| *w != 0) {
        bio.set_weight(Some(w));
    }
    let mut weights = Vec::new();
    for d in hc.blkio_weight_device.iter().flatten() {
        let (major, minor) = block_device_numbers(d.path.as_deref().unwrap_or(""))?;
        let mut w = LinuxWeightDeviceBuilder::default()
            .major(major)
            .minor(minor);
        if let Some(weight) = d.weight {
            w = w.weight(weight.min(u16::MAX as usize) as u16);
        }
        weights.push(w.build().map_err(build_err)?);
    }
    if !weights.is_empty() {
        bio.set_weight_device(Some(weights));
    }
    let throttle = |list: &Option<Vec<bollard_stubs::models::ThrottleDevice>>| {
        list.iter()
            .flatten()
            .map(|d| {
                let (major, minor) = block_device_numbers(d.path.as_deref().unwrap_or(""))?;
                LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(d.rate.unwrap_or(0).max(0) as u64)
                    .build()
                    .map_err(build_err)
            })
            .collect::<Result<Vec<_>, SpecError>>()
            .map(|v| (!v.is_empty()).then_some(v))
    };
    bio.set_throttle_read_bps_device(throttle(&hc.blkio_device_read_bps)?);
    bio.set_throttle_write_bps_device(throttle(&hc.blkio_device_write_bps)?);
    bio.set_throttle_read_iops_device(throttle(&hc.blkio_device_read_iops)?);
    bio.set_throttle_write_iops_device(throttle(&hc.blkio_device_write_iops)?);
    if bio != LinuxBlockIo::default() {
        r.set_block_io(Some(bio));
    }
    Ok(r)
}

/// The CPUs berth may run on (Go's `runtime.NumCPU`).
pub(super) fn online_cpus() -> i64 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    }
    // SAFETY: `set` was filled in by sched_getaffinity.
    i64::from(unsafe { libc::CPU_COUNT(&set) })
}

pub(super) fn block_device_numbers(path: &str) -> Result<(i64, i64), SpecError> {
    let st = nix::sys::stat::stat(path)
        .map_err(|e| SpecError::invalid(format!("stat {path}: {}", std::io::Error::from(e))))?;
    Ok((
        nix::sys::stat::major(st.st_rdev) as i64,
        nix::sys::stat::minor(st.st_rdev) as i64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_mapping() {
        let hc = HostConfig {
            memory: Some(128 << 20),
            memory_swap: Some(256 << 20),
            memory_reservation: Some(64 << 20),
            memory_swappiness: Some(10),
            oom_kill_disable: Some(true),
            nano_cpus: Some(1_500_000_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            cpuset_mems: Some("0".into()),
            pids_limit: Some(100),
            blkio_weight: Some(300),
            ..Default::default()
        };
        let r = resources(&hc, CgroupVersion::V2).unwrap();
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(128 << 20));
        assert_eq!(m.swap(), Some(256 << 20));
        assert_eq!(m.reservation(), Some(64 << 20));
        assert_eq!(m.swappiness(), None, "no swappiness on cgroup v2");
        assert_eq!(m.disable_oom_killer(), None);
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(c.period(), Some(100_000));
        assert_eq!(c.quota(), Some(150_000));
        assert_eq!(c.shares(), Some(512));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(c.mems().as_deref(), Some("0"));
        assert_eq!(r.pids().unwrap().limit(), 100);
        assert_eq!(r.block_io().as_ref().unwrap().weight(), Some(300));

        let v1 = resources(&hc, CgroupVersion::V1).unwrap();
        assert_eq!(v1.memory().unwrap().swappiness(), Some(10));
        assert_eq!(v1.memory().unwrap().disable_oom_killer(), Some(true));

        for limit in [0, -1] {
            let hc = HostConfig {
                pids_limit: Some(limit),
                ..Default::default()
            };
            let r = resources(&hc, CgroupVersion::V2).unwrap();
            assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(-1));
        }
        let r = resources(
            &HostConfig {
                cpu_quota: Some(50_000),
                cpu_period: Some(200_000),
                ..Default::default()
            },
            CgroupVersion::V2,
        )
        .unwrap();
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(r.cpu().as_ref().unwrap().period(), Some(200_000));
        assert_eq!(
            resources(&HostConfig::default(), CgroupVersion::V2).unwrap(),
            LinuxResources::default()
        );

        let err = |hc: HostConfig| resources(&hc, CgroupVersion::V2).unwrap_err().to_string();
        assert_eq!(
            err(HostConfig {
                nano_cpus: Some(1_000_000_000),
                cpu_quota: Some(50_000),
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        assert_eq!(
            err(HostConfig {
                nano_cpus: Some(1_000_000_000),
                cpu_period: Some(50_000),
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
        );
        assert_eq!(
            err(HostConfig {
                memory: Some(256 << 20),
                memory_swap: Some(128 << 20),
                ..Default::default()
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            err(HostConfig {
                memory_swappiness: Some(101),
                ..Default::default()
            }),
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        assert!(err(HostConfig {
            nano_cpus: Some(1_000_000_000_000),
            ..Default::default()
        })
        .starts_with("range of CPUs is from 0.01 to"));
    }
}

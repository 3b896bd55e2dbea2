//! A user-namespace id mapping (`--userns-remap`): which host ids the container's ids stand
//! for. The runtime builds namespaces and idmapped mounts from it (`runtime::idmap`); the
//! archive code translates tar headers with it.

/// Container ids `container..container + size` stand for host ids `host..host + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The most ranges a user namespace takes per map (Linux ≥ 4.15; 5 before).
pub const MAX_RANGES: usize = 340;

/// The uid and gid mappings of a remapping: every subordinate range of the user and of the
/// group, in order of their host start, the container's ids following on from one range to
/// the next (moby's `idtools.createIDMap`): container root is the lowest subordinate id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl IdMap {
    /// The mapping of the host ranges `(start, count)` of `/etc/subuid` and `/etc/subgid`.
    /// Empty ranges are left out; `None` when either side has no id, more than
    /// [`MAX_RANGES`] ranges, overlapping ranges, or more container ids than a u32 holds.
    pub fn from_ranges(uids: &[(u32, u32)], gids: &[(u32, u32)]) -> Option<IdMap> {
        Some(IdMap {
            uids: consecutive(uids)?,
            gids: consecutive(gids)?,
        })
    }

    /// One range each side (tests, and callers that have one).
    pub fn single(uid: u32, uid_size: u32, gid: u32, gid_size: u32) -> IdMap {
        IdMap {
            uids: vec![IdRange {
                container: 0,
                host: uid,
                size: uid_size,
            }],
            gids: vec![IdRange {
                container: 0,
                host: gid,
                size: gid_size,
            }],
        }
    }

    /// The host uid of a container uid (`None` outside the ranges).
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        to_host(uid, &self.uids)
    }

    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        to_host(gid, &self.gids)
    }

    /// The container uid of a host uid (`None` outside the ranges).
    pub fn container_uid(&self, uid: u32) -> Option<u32> {
        to_container(uid, &self.uids)
    }

    pub fn container_gid(&self, gid: u32) -> Option<u32> {
        to_container(gid, &self.gids)
    }

    /// The host ids of container root (dockerd's `RootPair`, which names its directory).
    pub fn root(&self) -> (u32, u32) {
        (self.host_uid(0).unwrap_or(0), self.host_gid(0).unwrap_or(0))
    }

    /// How many uids and gids the container has.
    pub fn sizes(&self) -> (u64, u64) {
        let total = |r: &[IdRange]| r.iter().map(|r| u64::from(r.size)).sum();
        (total(&self.uids), total(&self.gids))
    }
}

fn consecutive(ranges: &[(u32, u32)]) -> Option<Vec<IdRange>> {
    let mut sorted: Vec<(u32, u32)> = ranges.iter().copied().filter(|r| r.1 > 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() || sorted.len() > MAX_RANGES {
        return None;
    }
    let mut out = Vec::with_capacity(sorted.len());
    let mut container = 0u32;
    let mut host_end = 0u64;
    for (host, size) in sorted {
        // The kernel refuses overlapping host ranges in one map.
        if u64::from(host) < host_end {
            return None;
        }
        host_end = u64::from(host) + u64::from(size);
        if host_end > u64::from(u32::MAX) + 1 {
            return None;
        }
        out.push(IdRange {
            container,
            host,
            size,
        });
        container = container.checked_add(size)?;
    }
    Some(out)
}

fn to_host(id: u32, ranges: &[IdRange]) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let d = id.checked_sub(r.container).filter(|d| *d < r.size)?;
        r.host.checked_add(d)
    })
}

fn to_container(id: u32, ranges: &[IdRange]) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let d = id.checked_sub(r.host).filter(|d| *d < r.size)?;
        r.container.checked_add(d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_within_the_ranges() {
        let m = IdMap::single(100_000, 65536, 200_000, 1000);
        assert_eq!(m.host_uid(1000), Some(101_000));
        assert_eq!(m.host_uid(65536), None);
        assert_eq!(m.host_gid(999), Some(200_999));
        assert_eq!(m.host_gid(1000), None);
        assert_eq!(m.container_uid(101_000), Some(1000));
        assert_eq!(m.container_uid(99_999), None);
        assert_eq!(m.container_uid(165_536), None);
        assert_eq!(m.container_gid(200_000), Some(0));
        assert_eq!(m.root(), (100_000, 200_000));
        let top = IdMap::single(u32::MAX - 1, 10, 0, 1);
        assert_eq!(top.host_uid(5), None);
    }

    #[test]
    fn several_ranges_follow_on_in_host_order() {
        // As moby's createIDMap: sorted by host start, container ids consecutive.
        let m =
            IdMap::from_ranges(&[(300_000, 10), (100_000, 5), (200_000, 0)], &[(50, 7)]).unwrap();
        assert_eq!(
            m.uids,
            vec![
                IdRange {
                    container: 0,
                    host: 100_000,
                    size: 5
                },
                IdRange {
                    container: 5,
                    host: 300_000,
                    size: 10
                },
            ]
        );
        assert_eq!(m.root(), (100_000, 50));
        assert_eq!(m.host_uid(4), Some(100_004));
        assert_eq!(m.host_uid(5), Some(300_000));
        assert_eq!(m.host_uid(14), Some(300_009));
        assert_eq!(m.host_uid(15), None);
        assert_eq!(m.container_uid(300_003), Some(8));
        assert_eq!(m.container_uid(100_005), None);
        assert_eq!(m.sizes(), (15, 7));
    }

    #[test]
    fn unusable_ranges_refused() {
        assert_eq!(IdMap::from_ranges(&[], &[(1, 1)]), None);
        assert_eq!(IdMap::from_ranges(&[(1, 0)], &[(1, 1)]), None);
        // Overlapping host ranges.
        assert_eq!(IdMap::from_ranges(&[(100, 10), (105, 10)], &[(1, 1)]), None);
        // Past the last host id.
        assert_eq!(IdMap::from_ranges(&[(u32::MAX, 2)], &[(1, 1)]), None);
        // The same line twice counts once.
        let m = IdMap::from_ranges(&[(100, 10), (100, 10)], &[(1, 1)]).unwrap();
        assert_eq!(m.uids.len(), 1);
        let many: Vec<(u32, u32)> = (0..=MAX_RANGES as u32).map(|i| (i * 10, 1)).collect();
        assert_eq!(IdMap::from_ranges(&many, &[(1, 1)]), None);
    }
}

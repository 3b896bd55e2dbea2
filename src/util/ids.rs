//! A user-namespace id mapping (`--userns-remap`): which host ids the container's ids stand
//! for. The runtime builds namespaces and idmapped mounts from it (`runtime::idmap`); the
//! archive code translates tar headers with it.

/// The host ids the container's ids `0..size` map to (one range each, from `/etc/subuid` and
/// `/etc/subgid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub uid_size: u32,
    pub gid: u32,
    pub gid_size: u32,
}

impl IdMap {
    /// The host uid of a container uid (`None` outside the range).
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        to_host(uid, self.uid, self.uid_size)
    }

    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        to_host(gid, self.gid, self.gid_size)
    }

    /// The container uid of a host uid (`None` outside the range).
    pub fn container_uid(&self, uid: u32) -> Option<u32> {
        to_container(uid, self.uid, self.uid_size)
    }

    pub fn container_gid(&self, gid: u32) -> Option<u32> {
        to_container(gid, self.gid, self.gid_size)
    }
}

fn to_host(id: u32, base: u32, size: u32) -> Option<u32> {
    (id < size).then(|| base.checked_add(id)).flatten()
}

fn to_container(id: u32, base: u32, size: u32) -> Option<u32> {
    id.checked_sub(base).filter(|d| *d < size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_within_the_ranges() {
        let m = IdMap {
            uid: 100_000,
            uid_size: 65536,
            gid: 200_000,
            gid_size: 1000,
        };
        assert_eq!(m.host_uid(1000), Some(101_000));
        assert_eq!(m.host_uid(65536), None);
        assert_eq!(m.host_gid(999), Some(200_999));
        assert_eq!(m.host_gid(1000), None);
        assert_eq!(m.container_uid(101_000), Some(1000));
        assert_eq!(m.container_uid(99_999), None);
        assert_eq!(m.container_uid(165_536), None);
        assert_eq!(m.container_gid(200_000), Some(0));
        let top = IdMap {
            uid: u32::MAX - 1,
            uid_size: 10,
            ..m
        };
        assert_eq!(top.host_uid(5), None);
    }
}

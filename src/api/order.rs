//! The key order of the objects `docker inspect` prints as they arrive (container, image and
//! network inspect: the CLI indents the daemon's bytes and keeps their order). dockerd
//! marshals Go structs, whose fields keep their declaration order, and Go maps, whose keys
//! `encoding/json` sorts. berth's JSON values keep every object's keys sorted: right for the
//! maps, wrong for the structs, which put `AppArmorProfile` where a user looks for `Id`. These
//! shapes, taken from moby v28.5.2's API types (API 1.51), put the structs' fields back in
//! dockerd's order; keys a shape does not name follow, sorted.

use serde_json::Value;

/// What an object in a response is, for its key order.
pub enum Shape {
    /// A Go struct: its fields in declaration order, each with the shape of its value.
    Struct(&'static [(&'static str, &'static Shape)]),
    /// A Go map (keys sorted, as `encoding/json` writes them) of values of this shape.
    Map(&'static Shape),
    /// A list of values of this shape.
    List(&'static Shape),
    /// Anything else: written as it is (objects with sorted keys, as Go maps).
    Any,
}

/// `v` as JSON, the objects `shape` names in dockerd's key order.
pub fn to_vec(v: &Value, shape: &Shape) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write(&mut out, v, shape);
    out
}

fn write(out: &mut Vec<u8>, v: &Value, shape: &Shape) {
    match (v, shape) {
        (Value::Object(m), Shape::Struct(fields)) => {
            out.push(b'{');
            let mut first = true;
            for (k, sub) in fields.iter() {
                if let Some(x) = m.get(*k) {
                    entry(out, &mut first, k, x, sub);
                }
            }
            for (k, x) in m {
                if !fields.iter().any(|(f, _)| f == k) {
                    entry(out, &mut first, k, x, &Shape::Any);
                }
            }
            out.push(b'}');
        }
        (Value::Object(m), Shape::Map(sub)) => {
            out.push(b'{');
            let mut first = true;
            for (k, x) in m {
                entry(out, &mut first, k, x, sub);
            }
            out.push(b'}');
        }
        (Value::Array(a), Shape::List(sub)) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, x, sub);
            }
            out.push(b']');
        }
        _ => scalar(out, v),
    }
}

fn entry(out: &mut Vec<u8>, first: &mut bool, k: &str, v: &Value, shape: &Shape) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    scalar(out, &Value::String(k.to_string()));
    out.push(b':');
    write(out, v, shape);
}

/// A value written by serde_json (strings escaped, numbers as they are).
fn scalar(out: &mut Vec<u8>, v: &Value) {
    // Writing a `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

static ANY: Shape = Shape::Any;

// ---- container inspect (moby's container.InspectResponse) ----

pub static CONTAINER: Shape = Shape::Struct(&[
    ("Id", &ANY),
    ("Created", &ANY),
    ("Path", &ANY),
    ("Args", &ANY),
    ("State", &STATE),
    ("Image", &ANY),
    ("ResolvConfPath", &ANY),
    ("HostnamePath", &ANY),
    ("HostsPath", &ANY),
    ("LogPath", &ANY),
    ("Name", &ANY),
    ("RestartCount", &ANY),
    ("Driver", &ANY),
    ("Platform", &ANY),
    ("MountLabel", &ANY),
    ("ProcessLabel", &ANY),
    ("AppArmorProfile", &ANY),
    ("ExecIDs", &ANY),
    ("HostConfig", &HOST_CONFIG),
    ("GraphDriver", &DRIVER_DATA),
    ("SizeRw", &ANY),
    ("SizeRootFs", &ANY),
    ("Mounts", &MOUNT_POINTS),
    ("Config", &CONFIG),
    ("NetworkSettings", &NETWORK_SETTINGS),
    ("ImageManifestDescriptor", &ANY),
]);

static STATE: Shape = Shape::Struct(&[
    ("Status", &ANY),
    ("Running", &ANY),
    ("Paused", &ANY),
    ("Restarting", &ANY),
    ("OOMKilled", &ANY),
    ("Dead", &ANY),
    ("Pid", &ANY),
    ("ExitCode", &ANY),
    ("Error", &ANY),
    ("StartedAt", &ANY),
    ("FinishedAt", &ANY),
    ("Health", &HEALTH),
]);

static HEALTH: Shape = Shape::Struct(&[
    ("Status", &ANY),
    ("FailingStreak", &ANY),
    ("Log", &HEALTH_LOG),
]);

static HEALTH_LOG: Shape = Shape::List(&HEALTH_RESULT);

static HEALTH_RESULT: Shape = Shape::Struct(&[
    ("Start", &ANY),
    ("End", &ANY),
    ("ExitCode", &ANY),
    ("Output", &ANY),
]);

static HOST_CONFIG: Shape = Shape::Struct(&[
    ("Binds", &ANY),
    ("ContainerIDFile", &ANY),
    ("LogConfig", &LOG_CONFIG),
    ("NetworkMode", &ANY),
    ("PortBindings", &PORT_MAP),
    ("RestartPolicy", &RESTART_POLICY),
    ("AutoRemove", &ANY),
    ("VolumeDriver", &ANY),
    ("VolumesFrom", &ANY),
    ("ConsoleSize", &ANY),
    ("Annotations", &ANY),
    ("CapAdd", &ANY),
    ("CapDrop", &ANY),
    ("CgroupnsMode", &ANY),
    ("Dns", &ANY),
    ("DnsOptions", &ANY),
    ("DnsSearch", &ANY),
    ("ExtraHosts", &ANY),
    ("GroupAdd", &ANY),
    ("IpcMode", &ANY),
    ("Cgroup", &ANY),
    ("Links", &ANY),
    ("OomScoreAdj", &ANY),
    ("PidMode", &ANY),
    ("Privileged", &ANY),
    ("PublishAllPorts", &ANY),
    ("ReadonlyRootfs", &ANY),
    ("SecurityOpt", &ANY),
    ("StorageOpt", &ANY),
    ("Tmpfs", &ANY),
    ("UTSMode", &ANY),
    ("UsernsMode", &ANY),
    ("ShmSize", &ANY),
    ("Sysctls", &ANY),
    ("Runtime", &ANY),
    ("Isolation", &ANY),
    ("CpuShares", &ANY),
    ("Memory", &ANY),
    ("NanoCpus", &ANY),
    ("CgroupParent", &ANY),
    ("BlkioWeight", &ANY),
    ("BlkioWeightDevice", &WEIGHT_DEVICES),
    ("BlkioDeviceReadBps", &THROTTLE_DEVICES),
    ("BlkioDeviceWriteBps", &THROTTLE_DEVICES),
    ("BlkioDeviceReadIOps", &THROTTLE_DEVICES),
    ("BlkioDeviceWriteIOps", &THROTTLE_DEVICES),
    ("CpuPeriod", &ANY),
    ("CpuQuota", &ANY),
    ("CpuRealtimePeriod", &ANY),
    ("CpuRealtimeRuntime", &ANY),
    ("CpusetCpus", &ANY),
    ("CpusetMems", &ANY),
    ("Devices", &DEVICES),
    ("DeviceCgroupRules", &ANY),
    ("DeviceRequests", &DEVICE_REQUESTS),
    ("KernelMemory", &ANY),
    ("KernelMemoryTCP", &ANY),
    ("MemoryReservation", &ANY),
    ("MemorySwap", &ANY),
    ("MemorySwappiness", &ANY),
    ("OomKillDisable", &ANY),
    ("PidsLimit", &ANY),
    ("Ulimits", &ULIMITS),
    ("CpuCount", &ANY),
    ("CpuPercent", &ANY),
    ("IOMaximumIOps", &ANY),
    ("IOMaximumBandwidth", &ANY),
    ("Mounts", &MOUNTS),
    ("MaskedPaths", &ANY),
    ("ReadonlyPaths", &ANY),
    ("Init", &ANY),
]);

static LOG_CONFIG: Shape = Shape::Struct(&[("Type", &ANY), ("Config", &ANY)]);

static RESTART_POLICY: Shape = Shape::Struct(&[("Name", &ANY), ("MaximumRetryCount", &ANY)]);

static PORT_MAP: Shape = Shape::Map(&PORT_BINDINGS);

static PORT_BINDINGS: Shape = Shape::List(&PORT_BINDING);

static PORT_BINDING: Shape = Shape::Struct(&[("HostIp", &ANY), ("HostPort", &ANY)]);

static WEIGHT_DEVICES: Shape = Shape::List(&WEIGHT_DEVICE);

static WEIGHT_DEVICE: Shape = Shape::Struct(&[("Path", &ANY), ("Weight", &ANY)]);

static THROTTLE_DEVICES: Shape = Shape::List(&THROTTLE_DEVICE);

static THROTTLE_DEVICE: Shape = Shape::Struct(&[("Path", &ANY), ("Rate", &ANY)]);

static DEVICES: Shape = Shape::List(&DEVICE);

static DEVICE: Shape = Shape::Struct(&[
    ("PathOnHost", &ANY),
    ("PathInContainer", &ANY),
    ("CgroupPermissions", &ANY),
]);

static DEVICE_REQUESTS: Shape = Shape::List(&DEVICE_REQUEST);

static DEVICE_REQUEST: Shape = Shape::Struct(&[
    ("Driver", &ANY),
    ("Count", &ANY),
    ("DeviceIDs", &ANY),
    ("Capabilities", &ANY),
    ("Options", &ANY),
]);

static ULIMITS: Shape = Shape::List(&ULIMIT);

static ULIMIT: Shape = Shape::Struct(&[("Name", &ANY), ("Hard", &ANY), ("Soft", &ANY)]);

static MOUNTS: Shape = Shape::List(&MOUNT);

static MOUNT: Shape = Shape::Struct(&[
    ("Type", &ANY),
    ("Source", &ANY),
    ("Target", &ANY),
    ("ReadOnly", &ANY),
    ("Consistency", &ANY),
    ("BindOptions", &BIND_OPTIONS),
    ("VolumeOptions", &VOLUME_OPTIONS),
    ("ImageOptions", &ANY),
    ("TmpfsOptions", &TMPFS_OPTIONS),
    ("ClusterOptions", &ANY),
]);

static BIND_OPTIONS: Shape = Shape::Struct(&[
    ("Propagation", &ANY),
    ("NonRecursive", &ANY),
    ("CreateMountpoint", &ANY),
    ("ReadOnlyNonRecursive", &ANY),
    ("ReadOnlyForceRecursive", &ANY),
]);

static VOLUME_OPTIONS: Shape = Shape::Struct(&[
    ("NoCopy", &ANY),
    ("Labels", &ANY),
    ("Subpath", &ANY),
    ("DriverConfig", &DRIVER_CONFIG),
]);

static DRIVER_CONFIG: Shape = Shape::Struct(&[("Name", &ANY), ("Options", &ANY)]);

static TMPFS_OPTIONS: Shape =
    Shape::Struct(&[("SizeBytes", &ANY), ("Mode", &ANY), ("Options", &ANY)]);

static DRIVER_DATA: Shape = Shape::Struct(&[("Data", &ANY), ("Name", &ANY)]);

static MOUNT_POINTS: Shape = Shape::List(&MOUNT_POINT);

static MOUNT_POINT: Shape = Shape::Struct(&[
    ("Type", &ANY),
    ("Name", &ANY),
    ("Source", &ANY),
    ("Destination", &ANY),
    ("Driver", &ANY),
    ("Mode", &ANY),
    ("RW", &ANY),
    ("Propagation", &ANY),
]);

static CONFIG: Shape = Shape::Struct(&[
    ("Hostname", &ANY),
    ("Domainname", &ANY),
    ("User", &ANY),
    ("AttachStdin", &ANY),
    ("AttachStdout", &ANY),
    ("AttachStderr", &ANY),
    ("ExposedPorts", &ANY),
    ("Tty", &ANY),
    ("OpenStdin", &ANY),
    ("StdinOnce", &ANY),
    ("Env", &ANY),
    ("Cmd", &ANY),
    ("Healthcheck", &HEALTHCHECK),
    ("ArgsEscaped", &ANY),
    ("Image", &ANY),
    ("Volumes", &ANY),
    ("WorkingDir", &ANY),
    ("Entrypoint", &ANY),
    ("NetworkDisabled", &ANY),
    ("MacAddress", &ANY),
    ("OnBuild", &ANY),
    ("Labels", &ANY),
    ("StopSignal", &ANY),
    ("StopTimeout", &ANY),
    ("Shell", &ANY),
]);

static HEALTHCHECK: Shape = Shape::Struct(&[
    ("Test", &ANY),
    ("Interval", &ANY),
    ("Timeout", &ANY),
    ("StartPeriod", &ANY),
    ("StartInterval", &ANY),
    ("Retries", &ANY),
]);

static NETWORK_SETTINGS: Shape = Shape::Struct(&[
    ("Bridge", &ANY),
    ("SandboxID", &ANY),
    ("SandboxKey", &ANY),
    ("Ports", &PORT_MAP),
    ("HairpinMode", &ANY),
    ("LinkLocalIPv6Address", &ANY),
    ("LinkLocalIPv6PrefixLen", &ANY),
    ("SecondaryIPAddresses", &ANY),
    ("SecondaryIPv6Addresses", &ANY),
    ("EndpointID", &ANY),
    ("Gateway", &ANY),
    ("GlobalIPv6Address", &ANY),
    ("GlobalIPv6PrefixLen", &ANY),
    ("IPAddress", &ANY),
    ("IPPrefixLen", &ANY),
    ("IPv6Gateway", &ANY),
    ("MacAddress", &ANY),
    ("Networks", &ENDPOINTS),
]);

static ENDPOINTS: Shape = Shape::Map(&ENDPOINT);

static ENDPOINT: Shape = Shape::Struct(&[
    ("IPAMConfig", &ENDPOINT_IPAM),
    ("Links", &ANY),
    ("Aliases", &ANY),
    ("MacAddress", &ANY),
    ("DriverOpts", &ANY),
    ("GwPriority", &ANY),
    ("NetworkID", &ANY),
    ("EndpointID", &ANY),
    ("Gateway", &ANY),
    ("IPAddress", &ANY),
    ("IPPrefixLen", &ANY),
    ("IPv6Gateway", &ANY),
    ("GlobalIPv6Address", &ANY),
    ("GlobalIPv6PrefixLen", &ANY),
    ("DNSNames", &ANY),
]);

static ENDPOINT_IPAM: Shape = Shape::Struct(&[
    ("IPv4Address", &ANY),
    ("IPv6Address", &ANY),
    ("LinkLocalIPs", &ANY),
]);

// ---- image inspect (moby's image.InspectResponse) ----

/// moby 28 marshals `Config` as a map (`inspectCompatResponse`, sorted keys) in a struct that
/// embeds the response: as an outer field it comes after all the embedded ones, last.
pub static IMAGE: Shape = Shape::Struct(&[
    ("Id", &ANY),
    ("RepoTags", &ANY),
    ("RepoDigests", &ANY),
    ("Parent", &ANY),
    ("Comment", &ANY),
    ("Created", &ANY),
    ("Container", &ANY),
    ("ContainerConfig", &CONFIG),
    ("DockerVersion", &ANY),
    ("Author", &ANY),
    ("Architecture", &ANY),
    ("Variant", &ANY),
    ("Os", &ANY),
    ("OsVersion", &ANY),
    ("Size", &ANY),
    ("VirtualSize", &ANY),
    ("GraphDriver", &DRIVER_DATA),
    ("RootFS", &ROOT_FS),
    ("Metadata", &ANY),
    ("Descriptor", &ANY),
    ("Manifests", &ANY),
    ("Config", &ANY),
]);

static ROOT_FS: Shape = Shape::Struct(&[("Type", &ANY), ("Layers", &ANY)]);

// ---- network inspect (moby's network.Inspect) ----

pub static NETWORK: Shape = Shape::Struct(&[
    ("Name", &ANY),
    ("Id", &ANY),
    ("Created", &ANY),
    ("Scope", &ANY),
    ("Driver", &ANY),
    ("EnableIPv4", &ANY),
    ("EnableIPv6", &ANY),
    ("IPAM", &IPAM),
    ("Internal", &ANY),
    ("Attachable", &ANY),
    ("Ingress", &ANY),
    ("ConfigFrom", &ANY),
    ("ConfigOnly", &ANY),
    ("Containers", &NETWORK_CONTAINERS),
    ("Options", &ANY),
    ("Labels", &ANY),
    ("Peers", &ANY),
    ("Services", &ANY),
]);

static IPAM: Shape = Shape::Struct(&[
    ("Driver", &ANY),
    ("Options", &ANY),
    ("Config", &IPAM_CONFIGS),
]);

static IPAM_CONFIGS: Shape = Shape::List(&IPAM_CONFIG);

static IPAM_CONFIG: Shape = Shape::Struct(&[
    ("Subnet", &ANY),
    ("IPRange", &ANY),
    ("Gateway", &ANY),
    ("AuxiliaryAddresses", &ANY),
]);

static NETWORK_CONTAINERS: Shape = Shape::Map(&NETWORK_CONTAINER);

static NETWORK_CONTAINER: Shape = Shape::Struct(&[
    ("Name", &ANY),
    ("EndpointID", &ANY),
    ("MacAddress", &ANY),
    ("IPv4Address", &ANY),
    ("IPv6Address", &ANY),
]);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(b: &[u8]) -> Vec<String> {
        // The top-level keys in the order written (serde_json's map sorts, so scan).
        let s = std::str::from_utf8(b).unwrap();
        let v: Value = serde_json::from_str(s).unwrap();
        let mut ks: Vec<(usize, String)> = v
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (s.find(&format!("\"{k}\":")).unwrap(), k.clone()))
            .collect();
        ks.sort();
        ks.into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn structs_in_moby_order_maps_and_extras_sorted() {
        let v = json!({
            "Name": "/x", "AppArmorProfile": "", "Id": "abc", "Zzz": 1, "Aaa": 2,
            "State": {"Running": true, "Status": "running"},
            "Config": {"Labels": {"b": "1", "a": "2"}, "Hostname": "h"},
            "NetworkSettings": {"Networks": {"n2": {"NetworkID": "2", "IPAMConfig": null},
                                             "n1": {"NetworkID": "1"}}},
            "Mounts": [{"RW": true, "Type": "volume"}],
        });
        let out = to_vec(&v, &CONTAINER);
        // Equal as JSON: nothing lost or changed.
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), v);
        assert_eq!(
            keys(&out),
            [
                "Id",
                "State",
                "Name",
                "AppArmorProfile",
                "Mounts",
                "Config",
                "NetworkSettings",
                "Aaa",
                "Zzz"
            ]
        );
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains(r#""State":{"Status":"running","Running":true}"#),
            "{s}"
        );
        assert!(
            s.contains(r#""Config":{"Hostname":"h","Labels":{"a":"2","b":"1"}}"#),
            "{s}"
        );
        assert!(
            s.contains(
                r#""Networks":{"n1":{"NetworkID":"1"},"n2":{"IPAMConfig":null,"NetworkID":"2"}}"#
            ),
            "{s}"
        );
        assert!(
            s.contains(r#""Mounts":[{"Type":"volume","RW":true}]"#),
            "{s}"
        );
    }

    #[test]
    fn image_config_comes_last_as_in_moby_28() {
        let v = json!({"Config": {"Cmd": ["sh"]}, "Size": 1, "Id": "sha256:x", "RepoTags": []});
        assert_eq!(
            keys(&to_vec(&v, &IMAGE)),
            ["Id", "RepoTags", "Size", "Config"]
        );
    }

    #[test]
    fn strings_are_escaped() {
        let v = json!({"Name": "a\"b\n", "Id": "x"});
        let out = to_vec(&v, &NETWORK);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"Name":"a\"b\n","Id":"x"}"#
        );
    }
}
